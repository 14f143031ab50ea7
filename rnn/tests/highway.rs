//! `HighwayCore` (Sonnet v1) under `dynamic_rnn` with lengths and an initial state, against
//! the float64 reference of `scripts/fixtures/highway.py`.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{assert_close, load_fixture};
use couplet_modules::{Error, Mode, Module, Store};
use couplet_rnn::{dynamic_rnn, HighwayCore, HighwayCoreConfig, RnnCore, Route, State, UnrollOptions};
use tch::{Device, Kind, Tensor};

#[test]
fn highway_core_matches_the_reference_on_every_route_it_takes() {
    let f = load_fixture("highway");
    let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
    let core = HighwayCore::new(&store.root(), HighwayCoreConfig::new(3, 2).with_input_size(2)).unwrap();
    let names: Vec<_> = core.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
    let expected = ["w_h", "w_t", "u_h_0", "b_h_0", "u_t_0", "b_t_0", "u_h_1", "b_h_1", "u_t_1", "b_t_1"];
    assert_eq!(names, expected.map(|n| format!("highway_core/{n}")));
    for v in core.variables().unwrap() {
        tch::no_grad(|| v.tensor().shallow_clone().copy_(&f.get(v.name().rsplit('/').next().unwrap())));
    }
    let lengths = Vec::<i64>::try_from(f.get("lengths")).unwrap();
    let s0 = State::Tensor(f.get("s0"));
    let options = UnrollOptions::train().with_lengths(&lengths).with_initial_state(&s0);
    let (out, state) = dynamic_rnn(&core, &f.get("x"), &options).unwrap();
    assert_close(&out, &f.get("out"), 1e-10);
    assert_close(state.h().unwrap(), &f.get("s"), 1e-10);
    // Stepping without the projection gives the same numbers.
    let x = f.get("x");
    let (mut s, mut outs) = (s0.clone(), Vec::new());
    for t in 0..4 {
        let (o, next) =
            core.step(&x.select(1, t).narrow(0, 0, 1), &s.narrow_rows(0, 1).unwrap(), Mode::Eval).unwrap();
        outs.push(o);
        s = State::cat_rows(&[next, s.narrow_rows(1, 2).unwrap()]).unwrap();
    }
    assert_close(&Tensor::stack(&outs, 1), &f.get("out").narrow(0, 0, 1), 1e-10);
    let route = couplet_rnn::unroll_route(&core, &x, &options).unwrap();
    assert_eq!(route, Route::Loop);
}

#[test]
fn a_lazy_highway_core_builds_at_its_first_step_and_errors_are_typed() {
    let store = Store::cpu();
    let core = HighwayCore::new(&store.root(), HighwayCoreConfig::new(4, 1)).unwrap();
    assert!(!core.is_built());
    let x = Tensor::zeros([2, 5, 3], (Kind::Float, Device::Cpu));
    let (out, _) = dynamic_rnn(&core, &x, &UnrollOptions::eval()).unwrap();
    assert_eq!(out.size(), [2, 5, 4]);
    assert!(core.is_built());
    let e = dynamic_rnn(&core, &Tensor::zeros([2, 5, 6], (Kind::Float, Device::Cpu)), &UnrollOptions::eval())
        .unwrap_err();
    assert_eq!(e.to_string(), "highway_core: inputs must be [.., 3], got [2, 5, 6]");
    let e = HighwayCore::new(&store.root(), HighwayCoreConfig::new(4, 0)).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert!(e.to_string().ends_with("num_layers must be in 1..=65536, got 0"), "{e}");
    let e = HighwayCore::new(&store.root(), HighwayCoreConfig::new(4, 1 << 40)).unwrap_err();
    assert!(e.to_string().ends_with("num_layers must be in 1..=65536, got 1099511627776"), "{e}");
    let e = HighwayCore::new(&store.root(), HighwayCoreConfig::new(0, 1)).unwrap_err();
    assert!(e.to_string().ends_with("hidden_size must be > 0, got 0"), "{e}");
}
