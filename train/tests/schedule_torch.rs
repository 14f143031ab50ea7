//! Schedules against `torch.optim.lr_scheduler` (fixtures from `scripts/fixtures/schedules.py`,
//! torch 2.13.0): the rate a training loop sees at each of the first 40 steps.

use couplet_train::schedule::Schedule;
use std::collections::BTreeMap;

fn fixtures() -> BTreeMap<String, serde_json::Value> {
    let text = include_str!("fixtures/schedules.json");
    serde_json::from_str(text).unwrap()
}

fn rates(name: &str) -> Vec<f64> {
    let f = fixtures();
    f[name]
        .as_array()
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Compares the schedule's rates at steps `range` with torch's (relative 1e-9: torch's
/// recursive forms round differently from the closed forms).
fn assert_matches(schedule: &Schedule, torch: &[f64], range: std::ops::Range<usize>) {
    for step in range {
        let ours = schedule.learning_rate(step as i64).unwrap();
        let theirs = torch[step];
        assert!(
            (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1e-3),
            "step {step}: ours {ours}, torch {theirs}"
        );
    }
}

#[test]
fn exponential_decay_is_exponential_lr_and_its_staircase_is_step_lr() {
    let s = Schedule::exponential_decay(0.1, 1, 0.9, false).unwrap();
    assert_matches(&s, &rates("exponential_lr_gamma_0.9"), 0..40);
    let s = Schedule::exponential_decay(0.1, 5, 0.5, true).unwrap();
    assert_matches(&s, &rates("step_lr_5_gamma_0.5"), 0..40);
}

#[test]
fn piecewise_constant_is_multistep_lr_one_step_earlier() {
    // torch changes the rate at a milestone m; TensorFlow's boundary b holds up to b inclusive.
    let s = Schedule::piecewise_constant(vec![2, 9, 19], vec![0.1, 0.01, 0.001, 0.0001]).unwrap();
    assert_matches(&s, &rates("multistep_lr_3_10_20_gamma_0.1"), 0..40);
}

#[test]
fn polynomial_is_polynomial_lr() {
    let s = Schedule::polynomial(0.1, 20, 0.0, 2.0, false).unwrap();
    assert_matches(&s, &rates("polynomial_lr_20_power_2"), 0..40);
    let s = Schedule::polynomial(0.1, 25, 0.0, 1.0, false).unwrap();
    assert_matches(&s, &rates("polynomial_lr_25_power_1"), 0..40);
}

#[test]
fn cosine_with_warmup_is_linear_lr_then_cosine_annealing_lr() {
    // Warm-up: LinearLR from 0.1 * base to base over 5 steps.
    let s = Schedule::cosine_with_warmup(0.01, 0.1, 5, 20, 0.001).unwrap();
    let warmup = rates("linear_lr_0.1_to_1_over_5");
    assert_matches(&s, &warmup, 0..6);
    // Decay: CosineAnnealingLR(T_max = 20, eta_min = 0.001) shifted by the warm-up; torch's
    // cosine is periodic past T_max, ours holds `end`, so compare its first period.
    let cosine = rates("cosine_annealing_20_eta_0.001");
    for (t, theirs) in cosine.iter().enumerate().take(21) {
        let ours = s.learning_rate(5 + t as i64).unwrap();
        assert!((ours - theirs).abs() <= 1e-9, "t {t}: ours {ours}, torch {theirs}");
    }
    assert_eq!(s.learning_rate(26).unwrap(), 0.001);
    assert_eq!(s.learning_rate(1_000_000).unwrap(), 0.001);
}
