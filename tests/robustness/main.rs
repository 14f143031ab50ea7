//! Robustness: bad input gives a typed couplet `Error` or a finite, correct result, never a
//! panic, an abort, a hang, a silent NaN or an accepted bad input.
//!
//! - [`api`]: proptest over random shapes, ranks, kinds and values of the public API, in
//!   process (`catch_unwind` reports a panic with its inputs, and proptest shrinks it).
//! - [`classes`]: for each public function and constructor, inputs from every class of bad
//!   input (undefined, empty, rank 0..5, every dtype, stride-0 expansions of 2^40 elements,
//!   NaN/inf values and configurations, sizes near `i64::MAX`, corrupt files, non-finite
//!   padding under masks), each case run in a child process (this test binary re-executed) so
//!   that an abort or a hang (a timeout) counts as a failure. The parent prints the counts.
//!
//! CI runs a fixed seed (`PROPTEST_RNG_SEED`, set by `.ci/run`) and the default case counts;
//! `COUPLET_ROBUSTNESS_CASES=N` runs `N` proptest cases per property (default 48) and `N / 8`
//! random cases per target of the class suite (on top of its fixed grid) locally.

mod api;
mod classes;
mod harness;

/// The child side of [`classes`] and of the harness self-test: runs the cases named by
/// `COUPLET_ROBUSTNESS_CHILD` and reports each on stdout; does nothing in a normal test run.
#[test]
fn robustness_child() {
    harness::child_main(&[("classes", &classes::cases), ("selftest", &selftest_cases)]);
}

#[test]
fn every_class_of_bad_input_is_a_typed_error_or_a_finite_result() {
    let report = harness::parent_main("classes", &classes::cases(), harness::CASE_TIMEOUT);
    assert!(
        report.failures.is_empty(),
        "{} failures:\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
}

/// One case of each failure the harness must count (and two that pass).
fn selftest_cases() -> Vec<harness::Case> {
    use harness::{Case, Expect};
    use tch::Tensor;
    vec![
        Case::new("ok", Expect::Either, true, || Ok(vec![Tensor::from(1.0f32)])),
        Case::new("typed", Expect::Error, true, || Err(couplet::Error::invalid("m", "no"))),
        Case::new("panic", Expect::Either, true, || panic!("boom")),
        Case::new("abort", Expect::Either, true, || std::process::abort()),
        Case::new("hang", Expect::Either, true, || {
            std::thread::sleep(std::time::Duration::from_secs(30));
            Ok(vec![])
        }),
        Case::new("nan", Expect::Either, true, || Ok(vec![Tensor::from(f32::NAN)])),
        Case::new("accepted", Expect::Error, true, || Ok(vec![])),
        Case::new("refused", Expect::Ok, true, || Err(couplet::Error::invalid("m", "no"))),
        Case::new("after the abort and the hang", Expect::Either, true, || Ok(vec![])),
    ]
}

#[test]
fn the_harness_counts_panics_aborts_hangs_and_wrong_results() {
    let report = harness::parent_main("selftest", &selftest_cases(), std::time::Duration::from_secs(3));
    let counts: Vec<usize> = ["Ok", "Typed", "Panic", "Abort", "Hang", "NonFinite", "Accepted", "Refused"]
        .iter()
        .map(|o| report.count(o))
        .collect();
    assert_eq!(counts, [2, 1, 1, 1, 1, 1, 1, 1], "{:?}", report.failures);
}
