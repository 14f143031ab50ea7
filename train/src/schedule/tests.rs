//! Hand-worked values, TensorFlow-only options and typed errors (the PyTorch comparisons are
//! in `train/tests/schedule_torch.rs`).

use super::*;
use couplet_modules::{Linear, LinearConfig, Module, Sgd, SgdConfig, Store};

fn lr(s: &Schedule, step: i64) -> f64 {
    s.learning_rate(step).unwrap()
}

fn near(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn hand_worked_values() {
    assert_eq!(lr(&Schedule::constant(0.3).unwrap(), 12345), 0.3);
    // 0.1 * 0.5^(6 / 4) = 0.1 * 0.35355339...; staircase: 0.1 * 0.5^1.
    let smooth = Schedule::exponential_decay(0.1, 4, 0.5, false).unwrap();
    near(lr(&smooth, 6), 0.1 * 0.5f64.sqrt().powi(3));
    let stairs = Schedule::exponential_decay(0.1, 4, 0.5, true).unwrap();
    assert_eq!((lr(&stairs, 3), lr(&stairs, 4), lr(&stairs, 7), lr(&stairs, 8)), (0.1, 0.05, 0.05, 0.025));
    // Piecewise: 1.0 up to 10 inclusive, 0.5 up to 20, then 0.1.
    let p = Schedule::piecewise_constant(vec![10, 20], vec![1.0, 0.5, 0.1]).unwrap();
    let got: Vec<f64> = [0, 10, 11, 20, 21, 99].iter().map(|&s| lr(&p, s)).collect();
    assert_eq!(got, vec![1.0, 1.0, 0.5, 0.5, 0.1, 0.1]);
    // Polynomial to an end rate: (1 - 0.1) * (1 - 5/10)^2 + 0.1 = 0.325.
    let poly = Schedule::polynomial(1.0, 10, 0.1, 2.0, false).unwrap();
    near(lr(&poly, 5), 0.325);
    near(lr(&poly, 10), 0.1);
    near(lr(&poly, 50), 0.1);
    // Cosine: half-way through the decay the rate is the mean of peak and end.
    let c = Schedule::cosine_with_warmup(0.0, 1.0, 4, 10, 0.2).unwrap();
    near(lr(&c, 0), 0.0);
    near(lr(&c, 2), 0.5);
    near(lr(&c, 4), 1.0);
    near(lr(&c, 9), 0.6);
    near(lr(&c, 14), 0.2);
    // No warm-up starts at the peak.
    near(lr(&Schedule::cosine_with_warmup(0.0, 1.0, 0, 10, 0.0).unwrap(), 0), 1.0);
}

#[test]
fn polynomial_cycle_restarts_each_period() {
    // TensorFlow's cycle: decay_steps * ceil(step / decay_steps), 1 at step 0.
    let s = Schedule::polynomial(1.0, 10, 0.0, 1.0, true).unwrap();
    near(lr(&s, 0), 1.0);
    near(lr(&s, 5), 0.5);
    near(lr(&s, 10), 0.0);
    // Step 15: period 20, 1 - 15/20.
    near(lr(&s, 15), 0.25);
    // Step 25: period 30.
    near(lr(&s, 25), 1.0 - 25.0 / 30.0);
}

#[test]
fn bad_settings_and_steps_are_typed_errors() {
    let config = |r: Result<Schedule>| match r {
        Err(Error::Config { message, .. }) => message,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(config(Schedule::constant(f64::NAN)), "lr must be finite and >= 0, got NaN");
    assert_eq!(config(Schedule::constant(-0.1)), "lr must be finite and >= 0, got -0.1");
    assert_eq!(config(Schedule::exponential_decay(0.1, 0, 0.5, false)), "decay_steps must be >= 1, got 0");
    assert_eq!(config(Schedule::exponential_decay(0.1, 1, 0.0, false)), "rate must be finite and > 0, got 0");
    assert_eq!(
        config(Schedule::exponential_decay(0.1, 1, f64::INFINITY, false)),
        "rate must be finite and > 0, got inf"
    );
    assert!(config(Schedule::piecewise_constant(vec![1, 2], vec![1.0, 2.0])).contains("one more value"));
    assert!(
        config(Schedule::piecewise_constant(vec![2, 2], vec![1.0, 2.0, 3.0])).contains("strictly increase")
    );
    assert_eq!(
        config(Schedule::piecewise_constant(vec![1], vec![1.0, f64::NAN])),
        "values[1] must be finite and >= 0, got NaN"
    );
    assert_eq!(config(Schedule::polynomial(0.1, 10, 0.0, 0.0, false)), "power must be finite and > 0, got 0");
    assert_eq!(
        config(Schedule::polynomial(0.1, 10, -1.0, 1.0, false)),
        "end must be finite and >= 0, got -1"
    );
    assert_eq!(
        config(Schedule::cosine_with_warmup(0.0, 1.0, -1, 10, 0.0)),
        "warmup_steps must be >= 0, got -1"
    );
    assert_eq!(config(Schedule::cosine_with_warmup(0.0, 1.0, 1, 0, 0.0)), "decay_steps must be >= 1, got 0");
    // A value built by hand is checked when used.
    let hand = Schedule::Constant { lr: f64::NAN };
    assert!(matches!(hand.learning_rate(0), Err(Error::Config { .. })));
    let s = Schedule::constant(0.1).unwrap();
    let e = s.learning_rate(-1).unwrap_err();
    assert_eq!(e.to_string(), "schedule: the global step must be >= 0, got -1");
    // Growth past f64::MAX is an error, not an infinite rate.
    let grow = Schedule::exponential_decay(1.0, 1, 10.0, false).unwrap();
    assert!(lr(&grow, 300) > 1e299);
    assert!(matches!(grow.learning_rate(400), Err(Error::Config { .. })));
}

#[test]
fn apply_sets_an_optimizers_rate_and_leaves_it_on_error() {
    let store = Store::cpu();
    let layer = Linear::new(&store.root(), LinearConfig::new(1).with_input_size(1)).unwrap();
    let mut opt = Sgd::new(layer.variables().unwrap(), SgdConfig::new(1.0)).unwrap();
    let s = Schedule::exponential_decay(0.1, 1, 0.5, false).unwrap();
    assert_eq!(s.apply(&mut opt, 2).unwrap(), 0.025);
    assert_eq!(opt.learning_rate(), 0.025);
    assert!(s.apply(&mut opt, -3).is_err());
    assert_eq!(opt.learning_rate(), 0.025);
}

#[test]
fn schedules_round_trip_through_json() {
    let s = Schedule::cosine_with_warmup(0.0, 1.0, 4, 10, 0.2).unwrap();
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Schedule>(&text).unwrap(), s);
}
