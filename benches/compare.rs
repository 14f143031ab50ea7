//! The couplet half of the PyTorch comparison: times every case that has a PyTorch
//! counterpart (see `common::cases`) and writes the per-case median, in seconds, as JSON.
//! `scripts/bench/compare.sh` runs it and `scripts/bench/pytorch_bench.py` in alternation
//! and prints the table of ratios (see BENCHMARKS.md).
//!
//! `cargo bench --bench compare -- [--out FILE] [--min-time SECS] [--min-iters N] [--filter TEXT]`
//!
//! Each case is built, run twice untimed (warm-up), then run until it has taken at least
//! `--min-time` seconds (default 0.3) and `--min-iters` iterations (default 3, at most 1000).
//! Without `--bench` (as under `cargo test --all-targets`) it only runs each case of the
//! smallest shape and the attention cases once, to prove they work.

mod common;

use common::cases::{attention_cases, rnn_cases, Case};
use std::time::{Duration, Instant};

struct Args {
    bench: bool,
    out: Option<String>,
    min_time: Duration,
    min_iters: usize,
    filter: Option<String>,
}

fn parse_args() -> Args {
    let mut args =
        Args { bench: false, out: None, min_time: Duration::from_millis(300), min_iters: 3, filter: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => args.bench = true,
            "--out" => args.out = Some(value("--out")),
            "--min-time" => {
                args.min_time = Duration::from_secs_f64(value("--min-time").parse().expect("--min-time SECS"))
            }
            "--min-iters" => args.min_iters = value("--min-iters").parse().expect("--min-iters N"),
            "--filter" => args.filter = Some(value("--filter")),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Median wall time of one iteration of `case`, in seconds.
fn time(case: &Case, args: &Args) -> f64 {
    let mut run = case.build();
    run();
    run();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 1000 && (times.len() < args.min_iters || start.elapsed() < args.min_time) {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}

fn main() {
    let args = parse_args();
    let threads = common::pin_threads();
    let cases: Vec<Case> = rnn_cases()
        .into_iter()
        .chain(attention_cases())
        .filter(|c| c.compare && args.filter.as_ref().map_or(true, |f| c.name().contains(f.as_str())))
        .collect();
    if !args.bench {
        let smallest = common::SHAPES[0].label();
        for case in cases.iter().filter(|c| c.group == "attention" || c.id.ends_with(&smallest)) {
            case.build()();
        }
        println!("compare: smoke run passed; `cargo bench --bench compare` measures");
        return;
    }
    let mut medians = serde_json::Map::new();
    for case in &cases {
        let median = time(case, &args);
        eprintln!("{:<50} {:>10.3} ms", case.name(), median * 1e3);
        medians.insert(case.name(), median.into());
    }
    let lengths: serde_json::Map<String, serde_json::Value> =
        common::SHAPES.iter().map(|s| (s.label(), common::lengths(*s).iter().sum::<i64>().into())).collect();
    let report = serde_json::json!({
        "framework": "couplet",
        "threads": threads,
        "lengths_sum": lengths,
        "medians_s": medians,
    });
    let text = serde_json::to_string_pretty(&report).expect("json");
    match &args.out {
        Some(path) => std::fs::write(path, text).expect("write --out"),
        None => println!("{text}"),
    }
}
