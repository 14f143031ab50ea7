//! The char_lm example, driven by a test: a few training steps through bucketed, prefetched
//! batches must lower the loss, and bucketing must pad less than plain batching.

#[allow(dead_code)]
#[path = "../examples/char_lm.rs"]
mod char_lm;

use clap::Parser;

#[test]
fn a_short_run_learns_and_buckets_pad_less() {
    let args = char_lm::Args::try_parse_from([
        "char_lm",
        "--quiet",
        "--steps",
        "30",
        "--corpus-lines",
        "600",
        "--max-line",
        "60",
        "--hidden",
        "32",
        "--embed-dim",
        "8",
        "--batch-size",
        "16",
        "--sample-chars",
        "30",
        "--lr",
        "0.02",
    ])
    .unwrap();
    let report = char_lm::run(&args).unwrap();
    assert!(report.last_loss < report.first_loss - 0.2, "{report:?}");
    assert!(report.padding_bucketed < report.padding_plain / 2.0, "{report:?}");
    assert!(!report.sample.is_empty());
    let bad = char_lm::Args::try_parse_from(["char_lm", "--steps", "0"]).unwrap();
    assert!(char_lm::run(&bad).is_err());
}
