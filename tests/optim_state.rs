//! Optimizer state against torch.optim's `state_dict()` (fixture: scripts/fixtures/optim_state.py):
//! the same slots and values after two steps, and training resumed from PyTorch's state
//! continues as PyTorch's does.
mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet::{
    checkpoint, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig,
    Store, Variable,
};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

const STEPS: usize = 4;
const RESUME: usize = 2;
const CONFIGS: [&str; 4] = ["sgd_momentum", "adam_amsgrad_wd", "adamw", "rmsprop_centered_momentum"];

/// A store holding `m/p0`, `m/p1` with the fixture's values `{prefix}/p{i}`.
fn params(fx: &Fixture, prefix: &str) -> (Store, Vec<Variable>) {
    let store = Store::cpu();
    let scope = store.root().child("m").unwrap();
    for i in 0..2 {
        let values = fx.get(&format!("{prefix}/p{i}"));
        let mut t = scope.var(&format!("p{i}"), &values.size()).create().unwrap();
        tch::no_grad(|| t.copy_(&values));
    }
    let vars = store.variables();
    (store, vars)
}

fn optimizer(name: &str, vars: Vec<Variable>) -> Box<dyn Optimizer> {
    match name {
        "sgd_momentum" => {
            Box::new(Sgd::new(vars, SgdConfig::new(0.1).with_momentum(0.9).with_dampening(0.2)).unwrap())
        }
        "adam_amsgrad_wd" => {
            let c = AdamConfig::new(0.01)
                .with_betas(0.8, 0.99)
                .with_eps(0.1)
                .with_weight_decay(0.1)
                .with_amsgrad(true);
            Box::new(Adam::new(vars, c).unwrap())
        }
        "adamw" => Box::new(AdamW::new(vars, AdamWConfig::new(0.01).with_weight_decay(0.1)).unwrap()),
        "rmsprop_centered_momentum" => {
            let c = RmsPropConfig::new(0.01)
                .with_alpha(0.9)
                .with_eps(0.1)
                .with_weight_decay(0.01)
                .with_momentum(0.9)
                .with_centered(true);
            Box::new(RmsProp::new(vars, c).unwrap())
        }
        other => panic!("unknown configuration {other}"),
    }
}

/// Runs steps `from..to` with the fixture's gradients (`p1` has none at step 0).
fn run(fx: &Fixture, opt: &mut dyn Optimizer, from: usize, to: usize) {
    let keys = fx.keys();
    for k in from..to {
        opt.zero_grad();
        for (i, v) in opt.variables().iter().enumerate() {
            let key = format!("grad/{k}/p{i}");
            if keys.contains(&key) {
                (v.tensor() * fx.get(&key)).sum(Kind::Float).backward();
            }
        }
        opt.step().unwrap();
    }
}

/// PyTorch's state of `config`, keyed as couplet's: `m/p{i}/{slot}`.
fn torch_state(fx: &Fixture, config: &str) -> BTreeMap<String, Tensor> {
    let prefix = format!("{config}/state/");
    fx.keys()
        .into_iter()
        .filter_map(|k| Some((format!("m/{}", k.strip_prefix(&prefix)?), fx.get(&k))))
        .collect()
}

#[test]
fn state_matches_pytorch_state_dict() {
    let fx = load_fixture("optim_state");
    for config in CONFIGS {
        let (_store, vars) = params(&fx, "init");
        let mut opt = optimizer(config, vars);
        run(&fx, &mut *opt, 0, RESUME);
        let ours: BTreeMap<String, Tensor> = opt.state_tensors().unwrap().into_iter().collect();
        let torch = torch_state(&fx, config);
        assert_eq!(ours.keys().collect::<Vec<_>>(), torch.keys().collect::<Vec<_>>(), "{config}");
        for (key, expected) in &torch {
            let actual = &ours[key];
            if key.ends_with("/step") {
                // Per-variable counts: p1 missed step 0.
                assert_eq!(actual.kind(), Kind::Int64);
                assert_eq!(actual.double_value(&[]), expected.double_value(&[]), "{config} {key}");
            } else {
                assert_eq!(actual.kind(), Kind::Float);
                assert_close(actual, expected, 1e-6);
            }
        }
    }
}

#[test]
fn training_resumes_from_a_pytorch_state_as_pytorch_does() {
    let fx = load_fixture("optim_state");
    let dir = std::env::temp_dir().join(format!("couplet-optim-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for config in CONFIGS {
        // PyTorch's state (float32 steps) goes through a file, as a converted state dict would.
        let path = dir.join(format!("{config}.safetensors"));
        let state: Vec<(String, Tensor)> = torch_state(&fx, config).into_iter().collect();
        checkpoint::save_tensors(&state, &path, &BTreeMap::new()).unwrap();

        let (_store, vars) = params(&fx, &format!("{config}/resumed"));
        let mut opt = optimizer(config, vars.clone());
        checkpoint::restore_optimizer(&mut *opt, &path).unwrap();
        run(&fx, &mut *opt, RESUME, STEPS);
        // Without the state, the same steps land elsewhere: the test can fail.
        let (_fresh_store, fresh_vars) = params(&fx, &format!("{config}/resumed"));
        let mut fresh = optimizer(config, fresh_vars.clone());
        run(&fx, &mut *fresh, RESUME, STEPS);
        for (i, (v, f)) in vars.iter().zip(&fresh_vars).enumerate() {
            let expected = fx.get(&format!("{config}/final/p{i}"));
            assert_close(v.tensor(), &expected, 1e-5);
            let gap = (f.tensor() - &expected).abs().max().double_value(&[]);
            assert!(gap > 1e-3, "{config} p{i}: a fresh optimizer lands within {gap:e}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
