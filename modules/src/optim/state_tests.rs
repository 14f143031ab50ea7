//! Tests of optimizer state: exact continuation after a save/load, PyTorch's slot names,
//! strict loading.

use super::test_util::*;
use super::*;
use crate::{Error, Store};
use tch::{Device, Kind};

/// The variables of a small model: `m/w [3, 2]`, `m/b [2]` and `m/late [2]`, which only gets
/// gradients from step `LATE_FROM` on (so it is not stepped when the state is saved), with
/// values depending on `seed`.
fn model(seed: i64) -> (Store, Vec<Variable>) {
    let store = Store::cpu();
    let s = store.root().child("m").unwrap();
    for (i, (name, shape)) in [("w", &[3, 2][..]), ("b", &[2]), ("late", &[2])].into_iter().enumerate() {
        let mut t = s.var(name, shape).create().unwrap();
        tch::no_grad(|| t.copy_(&wave(shape, (seed * 10 + i as i64) as f64)));
    }
    let vars = store.variables();
    (store, vars)
}

/// Deterministic values of `shape` without the global RNG (tests run in parallel):
/// `sin(1.3 (k + 1) + phase)` for the `k`-th element.
fn wave(shape: &[i64], phase: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    ((Tensor::arange(n, (Kind::Float, Device::Cpu)) + 1.0) * 1.3 + phase).sin().reshape(shape)
}

const LATE_FROM: i64 = 3;

/// Sets the gradients of step `t`: fixed values, none for `m/late` before `LATE_FROM`.
fn set_grads(vars: &[Variable], t: i64) {
    for (i, v) in vars.iter().enumerate() {
        let mut p = v.tensor().shallow_clone();
        p.zero_grad();
        if i == 2 && t < LATE_FROM {
            continue;
        }
        let g = wave(&p.size(), 0.7 * t as f64 + i as f64);
        (v.tensor() * g).sum(Kind::Float).backward();
    }
}

fn run(opt: &mut dyn Optimizer, steps: std::ops::Range<i64>) {
    for t in steps {
        set_grads(opt.variables(), t);
        opt.step().unwrap();
    }
}

fn same(a: &[Variable], b: &[Variable]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.tensor().equal(y.tensor()))
}

fn as_map(state: Vec<(String, Tensor)>) -> BTreeMap<String, Tensor> {
    state.into_iter().collect()
}

type Make = fn(Vec<Variable>) -> Box<dyn Optimizer>;

/// Runs 3 steps, moves the state into a fresh optimizer over a fresh copy of the model, runs
/// 3 more steps on both: the variables must be bit-identical, and differ from those of a
/// fresh optimizer without the state (when `stateful`).
fn continues_exactly(make: Make, stateful: bool) {
    let (_sa, va) = model(1);
    let mut a = make(va.clone());
    run(&mut *a, 0..3);
    let saved = a.state_tensors().unwrap();
    assert!(!saved.iter().any(|(k, _)| k.starts_with("m/late/")), "m/late was not stepped");

    let copy_model = |seed| {
        let (s, v) = model(seed);
        tch::no_grad(|| v.iter().zip(&va).for_each(|(d, s)| d.tensor().shallow_clone().copy_(s.tensor())));
        (s, v)
    };
    let (_sb, vb) = copy_model(2);
    let mut b = make(vb.clone());
    b.load_state_tensors(&as_map(saved)).unwrap();
    let (_sc, vc) = copy_model(3);
    let mut c = make(vc.clone());

    for opt in [&mut a, &mut b, &mut c] {
        run(&mut **opt, 3..6);
    }
    assert!(same(&va, &vb), "restored optimizer diverged");
    assert_eq!(stateful, !same(&va, &vc), "a fresh optimizer must differ exactly when there is state");
    let (sa, sb) = (a.state_tensors().unwrap(), b.state_tensors().unwrap());
    assert_eq!(sa.len(), sb.len());
    for ((ka, ta), (kb, tb)) in sa.iter().zip(&sb) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "{ka} differs");
    }
}

#[test]
fn sgd_continues_exactly() {
    continues_exactly(
        |v| {
            let c = SgdConfig::new(0.1).with_momentum(0.9).with_dampening(0.2).with_weight_decay(0.01);
            Box::new(Sgd::new(v, c).unwrap())
        },
        true,
    );
    continues_exactly(
        |v| Box::new(Sgd::new(v, SgdConfig::new(0.1).with_momentum(0.5).with_nesterov(true)).unwrap()),
        true,
    );
    // Plain SGD has no state: the fresh optimizer matches too.
    continues_exactly(|v| Box::new(Sgd::new(v, SgdConfig::new(0.1)).unwrap()), false);
}

#[test]
fn adam_continues_exactly() {
    continues_exactly(|v| Box::new(Adam::new(v, AdamConfig::new(0.05)).unwrap()), true);
    continues_exactly(
        |v| Box::new(Adam::new(v, AdamConfig::new(0.05).with_amsgrad(true).with_weight_decay(0.1)).unwrap()),
        true,
    );
}

#[test]
fn adamw_continues_exactly() {
    continues_exactly(|v| Box::new(AdamW::new(v, AdamWConfig::new(0.05).with_amsgrad(true)).unwrap()), true);
}

#[test]
fn rmsprop_continues_exactly() {
    continues_exactly(|v| Box::new(RmsProp::new(v, RmsPropConfig::new(0.01)).unwrap()), true);
    continues_exactly(
        |v| {
            let c = RmsPropConfig::new(0.01).with_momentum(0.9).with_centered(true).with_weight_decay(0.1);
            Box::new(RmsProp::new(v, c).unwrap())
        },
        true,
    );
}

fn keys(state: &[(String, Tensor)]) -> Vec<&str> {
    state.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn slots_are_pytorch_state_keys_with_hand_worked_values() {
    let (_s, p) = param(&[1.0, 2.0]);
    let mut adam = Adam::new(vec![p.clone()], AdamConfig::new(0.1).with_amsgrad(true)).unwrap();
    assert!(adam.state_tensors().unwrap().is_empty(), "no state before the first step");
    set_grad(&p, &[2.0, -4.0]);
    adam.step().unwrap();
    let state = adam.state_tensors().unwrap();
    assert_eq!(keys(&state), ["m/p/step", "m/p/exp_avg", "m/p/exp_avg_sq", "m/p/max_exp_avg_sq"]);
    let step = &state[0].1;
    assert_eq!((step.kind(), step.dim(), step.int64_value(&[])), (Kind::Int64, 0, 1));
    // m = (1 − 0.9) g, v = (1 − 0.999) g², v̂ = v.
    let vals = |i: usize| Vec::<f64>::try_from(state[i].1.to_kind(Kind::Double)).unwrap();
    assert_near(&vals(1), &[0.2, -0.4]);
    assert_near(&vals(2), &[0.004, 0.016]);
    assert_near(&vals(3), &[0.004, 0.016]);
    assert_eq!(state[1].1.kind(), Kind::Float);

    let config = RmsPropConfig::new(0.1).with_alpha(0.5).with_momentum(0.9).with_centered(true);
    let mut rms = RmsProp::new(vec![p.clone()], config).unwrap();
    set_grad(&p, &[2.0, -4.0]);
    rms.step().unwrap();
    rms.step().unwrap();
    let state = rms.state_tensors().unwrap();
    assert_eq!(keys(&state), ["m/p/step", "m/p/square_avg", "m/p/momentum_buffer", "m/p/grad_avg"]);
    assert_eq!(state[0].1.int64_value(&[]), 2);
    // Same g twice with α = 0.5: s = 0.75 g², a = 0.75 g.
    let vals = |i: usize| Vec::<f64>::try_from(state[i].1.to_kind(Kind::Double)).unwrap();
    assert_near(&vals(1), &[3.0, 12.0]);
    assert_near(&vals(3), &[1.5, -3.0]);

    let mut sgd = Sgd::new(vec![p.clone()], SgdConfig::new(0.1).with_momentum(0.9)).unwrap();
    set_grad(&p, &[2.0, -4.0]);
    sgd.step().unwrap();
    let state = sgd.state_tensors().unwrap();
    assert_eq!(keys(&state), ["m/p/momentum_buffer"]);
    assert_near(&Vec::<f64>::try_from(state[0].1.to_kind(Kind::Double)).unwrap(), &[2.0, -4.0]);
}

#[test]
fn state_tensors_are_copies() {
    let (_s, p) = param(&[1.0]);
    let mut opt = Sgd::new(vec![p.clone()], SgdConfig::new(0.1).with_momentum(0.9)).unwrap();
    set_grad(&p, &[1.0]);
    opt.step().unwrap();
    let before = opt.state_tensors().unwrap();
    opt.step().unwrap();
    assert_eq!(f64::try_from(&before[0].1).unwrap(), 1.0, "a snapshot, not a view of the buffer");
    assert_eq!(f32::try_from(&opt.state_tensors().unwrap()[0].1).unwrap(), 1.9);
}

fn shallow(m: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    m.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect()
}

/// An Adam state for `m/p` (2 elements) after one step, as a map.
fn adam_state(amsgrad: bool) -> (Store, Variable, BTreeMap<String, Tensor>) {
    let (s, p) = param(&[1.0, 2.0]);
    let mut opt = Adam::new(vec![p.clone()], AdamConfig::new(0.1).with_amsgrad(amsgrad)).unwrap();
    set_grad(&p, &[1.0, 1.0]);
    opt.step().unwrap();
    (s, p, as_map(opt.state_tensors().unwrap()))
}

#[test]
fn strict_loading_lists_every_difference_and_changes_nothing() {
    let (_s, p, good) = adam_state(false);
    let mut opt = Adam::new(vec![p.clone()], AdamConfig::new(0.1)).unwrap();
    set_grad(&p, &[3.0, 3.0]);
    opt.step().unwrap();
    let before = opt.state_tensors().unwrap();

    let mut bad = shallow(&good);
    bad.remove("m/p/exp_avg_sq");
    bad.insert("m/p/exp_avg".into(), Tensor::zeros([3], (Kind::Float, Device::Cpu)));
    bad.insert("m/p/max_exp_avg_sq".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)));
    bad.insert("other/v/step".into(), Tensor::from(1i64));
    bad.insert("m/p/step".into(), Tensor::from_slice(&[1i64]));
    let e = opt.load_state_tensors(&bad).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "adam: state does not match the variables: missing (1): m/p/exp_avg_sq; \
         unexpected (2): m/p/max_exp_avg_sq, other/v/step; \
         shape mismatches (1): m/p/exp_avg: variable [2], state [3]; \
         step counts that are not an integral scalar in [0, 2147483647] (1): m/p/step: [1] Int64 tensor"
    );
    let after = opt.state_tensors().unwrap();
    assert!(before.iter().zip(&after).all(|((_, a), (_, b))| a.equal(b)), "state changed on error");

    for step in [Tensor::from(1.5f64), Tensor::from(-1i64), Tensor::from(true), Tensor::from(3e9f64)] {
        let mut bad = shallow(&good);
        bad.insert("m/p/step".into(), step);
        let e = opt.load_state_tensors(&bad).unwrap_err();
        assert!(e.to_string().contains("step counts that are not an integral scalar"), "{e}");
    }
    // Values with a domain are checked: finite in the variable's kind, squares' averages >= 0.
    let cases: [(&str, Tensor, &str); 4] = [
        (
            "m/p/exp_avg_sq",
            Tensor::from_slice(&[-1.0f32, 0.5]),
            "m/p/exp_avg_sq: negative values in a running average of squares",
        ),
        (
            "m/p/exp_avg",
            Tensor::from_slice(&[f32::NAN, 0.5]),
            "m/p/exp_avg: the values in Float holds 1 non-finite values",
        ),
        ("m/p/exp_avg", Tensor::from_slice(&[1i64, 2]), "m/p/exp_avg: kind Int64 for a Float variable"),
        ("m/p/exp_avg", Tensor::new(), "m/p/exp_avg: an undefined tensor"),
    ];
    for (key, value, want) in cases {
        let mut bad = shallow(&good);
        bad.insert(key.into(), value);
        let e = opt.load_state_tensors(&bad).unwrap_err();
        assert!(e.to_string().contains(&format!("invalid values (1): {want}")), "{e}");
    }
    // AMSGrad needs its maximum.
    let mut ams = Adam::new(vec![p.clone()], AdamConfig::new(0.1).with_amsgrad(true)).unwrap();
    let e = ams.load_state_tensors(&good).unwrap_err();
    assert!(e.to_string().ends_with("missing (1): m/p/max_exp_avg_sq"), "{e}");
    // Plain SGD has no slot at all; RMSProp without momentum has no momentum buffer.
    let mut sgd = Sgd::new(vec![p.clone()], SgdConfig::new(0.1)).unwrap();
    let e = sgd.load_state_tensors(&good).unwrap_err();
    assert!(e.to_string().starts_with("sgd: state does not match the variables: unexpected (3): "), "{e}");
    let mut rms = RmsProp::new(vec![p.clone()], RmsPropConfig::new(0.1)).unwrap();
    let extra = BTreeMap::from([
        ("m/p/step".to_string(), Tensor::from(1i64)),
        ("m/p/square_avg".to_string(), Tensor::zeros([2], (Kind::Float, Device::Cpu))),
        ("m/p/momentum_buffer".to_string(), Tensor::zeros([2], (Kind::Float, Device::Cpu))),
    ]);
    let e = rms.load_state_tensors(&extra).unwrap_err();
    assert!(e.to_string().ends_with("unexpected (1): m/p/momentum_buffer"), "{e}");
}

#[test]
fn loading_converts_kinds_and_accepts_a_pytorch_float_step() {
    let (_s, p, good) = adam_state(false);
    // PyTorch keeps `step` as a float32 scalar; a state in f64 is converted to the variable's f32.
    let torch_like: BTreeMap<String, Tensor> = good
        .iter()
        .map(|(k, t)| {
            (k.clone(), if k.ends_with("/step") { Tensor::from(1.0f32) } else { t.to_kind(Kind::Double) })
        })
        .collect();
    let mut opt = Adam::new(vec![p.clone()], AdamConfig::new(0.1)).unwrap();
    opt.load_state_tensors(&torch_like).unwrap();
    let state = opt.state_tensors().unwrap();
    assert_eq!(state[0].1.kind(), Kind::Int64);
    assert_eq!(state[0].1.int64_value(&[]), 1);
    for (k, t) in &state[1..] {
        assert_eq!(t.kind(), Kind::Float, "{k}");
        assert!(t.equal(&good[k]), "{k}");
    }
}

#[test]
fn unstepped_variables_stay_without_state() {
    let (store, p) = param(&[1.0]);
    let q = {
        let mut t = store.root().child("n").unwrap().var("q", &[1]).create().unwrap();
        tch::no_grad(|| t.copy_(&Tensor::from_slice(&[1.0f32])));
        store.get("n/q").unwrap()
    };
    let config = AdamConfig::new(1.0).with_betas(0.5, 0.5).with_eps(1e-30);
    let mut a = Adam::new(vec![p.clone(), q.clone()], config.clone()).unwrap();
    set_grad(&p, &[1.0]);
    a.step().unwrap();
    let state = a.state_tensors().unwrap();
    assert_eq!(keys(&state), ["m/p/step", "m/p/exp_avg", "m/p/exp_avg_sq"]);

    // Loading into an optimizer whose q has state removes that state: q starts afresh.
    let mut b = Adam::new(vec![p.clone(), q.clone()], config).unwrap();
    set_grad(&q, &[-5.0]);
    b.step().unwrap();
    assert_eq!(b.state_tensors().unwrap().len(), 6);
    b.load_state_tensors(&as_map(state)).unwrap();
    assert_eq!(keys(&b.state_tensors().unwrap()), ["m/p/step", "m/p/exp_avg", "m/p/exp_avg_sq"]);
    // q's next update is a first one (t = 1): it moves by exactly lr, whatever came before.
    let q0 = values(&q)[0];
    b.zero_grad();
    set_grad(&q, &[1.0]);
    b.step().unwrap();
    assert_near(&values(&q), &[q0 - 1.0]);
    // An empty map clears every state.
    b.load_state_tensors(&BTreeMap::new()).unwrap();
    assert!(b.state_tensors().unwrap().is_empty());
}
