//! Optimizers and gradient clipping against torch.optim (fixture: scripts/fixtures/optim.py).
mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet::{
    clip_grad_norm, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig,
    Store, Variable,
};
use tch::{Kind, Tensor};

const STEPS: usize = 4;
const PARAMS: usize = 2;

/// A store holding `p0`, `p1` with the fixture's initial values (or zeros for clipping).
fn params(fx: &Fixture, prefix: &str) -> (Store, Vec<Variable>) {
    let store = Store::cpu();
    let scope = store.root().child("m").unwrap();
    for i in 0..PARAMS {
        let values = fx.get(&format!("{prefix}/p{i}"));
        let mut t = scope.var(&format!("p{i}"), &values.size()).create().unwrap();
        if prefix == "init" {
            tch::no_grad(|| t.copy_(&values));
        }
    }
    let vars = store.variables();
    assert_eq!(vars.iter().map(|v| v.name()).collect::<Vec<_>>(), ["m/p0", "m/p1"]);
    (store, vars)
}

/// Sets each variable's gradient to exactly the given tensor (`None`: no gradient), after
/// the optimizer reset them, by back-propagating `Σ sum(p ⊙ g)`.
fn set_grads(vars: &[Variable], grads: &[Option<Tensor>]) {
    let mut loss = Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
    for (v, g) in vars.iter().zip(grads) {
        if let Some(g) = g {
            loss += (v.tensor() * g).sum(Kind::Float);
        }
    }
    loss.backward();
}

fn optimizer(name: &str, vars: Vec<Variable>) -> Box<dyn Optimizer> {
    match name {
        "sgd" => Box::new(Sgd::new(vars, SgdConfig::new(0.1)).unwrap()),
        "sgd_momentum" => {
            Box::new(Sgd::new(vars, SgdConfig::new(0.1).with_momentum(0.9).with_dampening(0.2)).unwrap())
        }
        "sgd_nesterov" => {
            Box::new(Sgd::new(vars, SgdConfig::new(0.1).with_momentum(0.9).with_nesterov(true)).unwrap())
        }
        "sgd_weight_decay" => {
            Box::new(Sgd::new(vars, SgdConfig::new(0.1).with_momentum(0.5).with_weight_decay(0.1)).unwrap())
        }
        "adam" => Box::new(Adam::new(vars, AdamConfig::new(0.01)).unwrap()),
        "adam_amsgrad_wd" => Box::new(
            Adam::new(
                vars,
                AdamConfig::new(0.01)
                    .with_betas(0.8, 0.99)
                    .with_eps(0.1)
                    .with_weight_decay(0.1)
                    .with_amsgrad(true),
            )
            .unwrap(),
        ),
        "adamw" => Box::new(AdamW::new(vars, AdamWConfig::new(0.01).with_weight_decay(0.1)).unwrap()),
        "rmsprop" => Box::new(RmsProp::new(vars, RmsPropConfig::new(0.01)).unwrap()),
        "rmsprop_centered_momentum" => Box::new(
            RmsProp::new(
                vars,
                RmsPropConfig::new(0.01)
                    .with_alpha(0.9)
                    .with_eps(0.1)
                    .with_weight_decay(0.01)
                    .with_momentum(0.9)
                    .with_centered(true),
            )
            .unwrap(),
        ),
        other => panic!("unknown configuration {other}"),
    }
}

fn replay(name: &str) {
    let fx = load_fixture("optim");
    let (_store, vars) = params(&fx, "init");
    let mut opt = optimizer(name, vars.clone());
    for k in 0..STEPS {
        opt.zero_grad();
        let grads: Vec<Option<Tensor>> = (0..PARAMS)
            .map(|i| fx.keys().contains(&format!("grad/{k}/p{i}")).then(|| fx.get(&format!("grad/{k}/p{i}"))))
            .collect();
        set_grads(&vars, &grads);
        opt.step().unwrap();
        for (i, v) in vars.iter().enumerate() {
            assert_close(v.tensor(), &fx.get(&format!("{name}/{k}/p{i}")), 1e-6);
        }
    }
    // The fixture really skips p1 at step 2: it does not move there.
    assert!(fx.get(&format!("{name}/2/p1")).equal(&fx.get(&format!("{name}/1/p1"))));
}

#[test]
fn sgd_matches_torch() {
    replay("sgd");
}

#[test]
fn sgd_momentum_with_dampening_matches_torch() {
    replay("sgd_momentum");
}

#[test]
fn sgd_nesterov_matches_torch() {
    replay("sgd_nesterov");
}

#[test]
fn sgd_weight_decay_matches_torch() {
    replay("sgd_weight_decay");
}

#[test]
fn adam_matches_torch() {
    replay("adam");
}

#[test]
fn adam_amsgrad_weight_decay_matches_torch() {
    replay("adam_amsgrad_wd");
}

#[test]
fn adamw_matches_torch() {
    replay("adamw");
}

#[test]
fn rmsprop_matches_torch() {
    replay("rmsprop");
}

#[test]
fn rmsprop_centered_momentum_matches_torch() {
    replay("rmsprop_centered_momentum");
}

#[test]
fn clip_grad_norm_matches_torch() {
    let fx = load_fixture("optim");
    let (_store, vars) = params(&fx, "clip/in");
    let grads: Vec<_> = (0..PARAMS).map(|i| Some(fx.get(&format!("clip/in/p{i}")))).collect();
    set_grads(&vars, &grads);
    let total = clip_grad_norm(&vars, fx.get("clip/max_norm").double_value(&[])).unwrap();
    let expected = fx.get("clip/total").double_value(&[]);
    assert!((total - expected).abs() <= 1e-6 * expected, "{total} vs {expected}");
    assert!(total > 2.0, "the fixture must exercise clipping");
    for (i, v) in vars.iter().enumerate() {
        assert_close(&v.tensor().grad(), &fx.get(&format!("clip/out/p{i}")), 1e-6);
    }
}
