//! The `serve` example under a bounded load on 127.0.0.1: a tiny checkpoint is trained, the
//! server is started as a process on a free port, concurrent clients translate (answers are
//! the same batched or alone), bad requests get 4xx and leave it healthy, a full queue gets
//! 503, and SIGTERM ends it cleanly.

#[allow(dead_code)]
#[path = "../examples/serve/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../examples/seq2seq/main.rs"]
mod seq2seq;

use clap::Parser;
use client::{request, translate, Server};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MODEL: [&str; 6] = ["--embed-dim", "8", "--encoder-hidden", "8", "--decoder-hidden", "16"];
const TEXTS: [&str; 6] =
    ["4 Mar 17", "12.10.92", "Saturday, March 4th 2017", "03/04/2017", "1 may 99", "7.8.1990"];

/// Trains the smallest model a few steps into the run folder `dir/checkpoints` (seconds).
fn train(dir: &Path) -> PathBuf {
    let checkpoints = dir.join("checkpoints");
    let c = checkpoints.to_str().unwrap();
    let mut argv = vec!["seq2seq", "--device", "cpu", "--quiet", "--steps", "6", "--eval-every", "3"];
    argv.extend(["--train-size", "300", "--valid-size", "20", "--test-size", "20", "--samples", "0"]);
    argv.extend(MODEL);
    argv.extend(["--logdir", c]);
    seq2seq::run(&seq2seq::Args::try_parse_from(argv).unwrap()).unwrap();
    checkpoints
}

/// The `serve` example binary of this build profile, (re)built by cargo.
fn serve_binary() -> PathBuf {
    let profile_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let mut build = std::process::Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "--example", "serve"]).current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "cargo build --example serve failed");
    profile_dir.join("examples/serve")
}

fn start(binary: &Path, checkpoints: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<String> = ["--addr", "127.0.0.1:0", "--device", "cpu", "--checkpoint-dir"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(checkpoints.to_str().unwrap().to_string());
    args.extend(MODEL.iter().chain(extra).map(|s| s.to_string()));
    Server::start(binary, &args)
}

fn healthy(base: &str) {
    let (status, body) = request("GET", &format!("{base}/health"), "text/plain", "");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
}

#[test]
fn serves_batches_refuses_bad_requests_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("couplet-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let checkpoints = train(&dir);
    let binary = serve_binary();
    let server = start(
        &binary,
        &checkpoints,
        &["--max-batch", "8", "--max-wait-ms", "20", "--max-body-bytes", "2048"],
    );
    let base = server.base.clone();
    healthy(&base);

    // Each text alone: the reference answers.
    let alone: Vec<serde_json::Value> = TEXTS
        .iter()
        .map(|t| {
            let (status, body) = translate(&base, &json!({ "texts": [t], "beam_width": 2 }));
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["batch_texts"], 1);
            body["translations"][0].clone()
        })
        .collect();
    // 8 clients × 6 requests: every answer is 200, the same as alone, and some were batched.
    let report = client::load(&base, 8, 6, &TEXTS, 2);
    assert_eq!(report.statuses.get(&200), Some(&48), "{:?}", report.statuses);
    assert!(report.answers.iter().any(|a| a["batch_texts"].as_u64().unwrap() > 1), "no request was batched");
    let (status, body) = translate(&base, &json!({ "texts": TEXTS, "beam_width": 2 }));
    assert_eq!(status, 200, "{body}");
    for (got, want) in body["translations"].as_array().unwrap().iter().zip(&alone) {
        assert_eq!(got["text"], want["text"]);
        let (g, w) = (got["score"].as_f64().unwrap(), want["score"].as_f64().unwrap());
        assert!((g - w).abs() < 1e-4 && g <= 0.0, "batched score {g} vs alone {w}");
    }

    // Bad requests: 4xx with a JSON error, never a crash.
    let url = format!("{base}/translate");
    let cases: [(&str, String, u16); 9] = [
        ("application/json", "{\"texts\": [\"4 Mar".into(), 400),
        ("application/json", json!({ "texts": 5 }).to_string(), 422),
        ("application/json", json!({ "texts": ["4 Mar 17"], "extra": 1 }).to_string(), 422),
        ("application/json", json!({ "texts": [] }).to_string(), 422),
        ("application/json", json!({ "texts": [""] }).to_string(), 422),
        ("application/json", json!({ "texts": ["4 Mar 17"], "beam_width": 0 }).to_string(), 422),
        ("application/json", json!({ "texts": ["x".repeat(3000)] }).to_string(), 413),
        ("application/json", json!({ "texts": ["y".repeat(65)] }).to_string(), 422),
        ("text/plain", json!({ "texts": ["4 Mar 17"] }).to_string(), 415),
    ];
    for (content_type, body, want) in &cases {
        let (status, answer) = request("POST", &url, content_type, body);
        assert_eq!(status, *want, "{body:.80} → {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    }
    let (status, body) = translate(&base, &json!({ "texts": ["4 März 17 €", "4 Mar 17"] }));
    assert_eq!(status, 422);
    assert_eq!(body["unknown"], json!(["ä", "€"]), "{body}");
    assert!(body["error"].as_str().unwrap().contains("unknown characters"), "{body}");
    assert_eq!(request("GET", &format!("{base}/nope"), "text/plain", "").0, 404);
    healthy(&base);
    let (status, body) = translate(&base, &json!({ "texts": ["4 Mar 17"], "beam_width": 2 }));
    assert_eq!((status, &body["translations"][0]), (200, &alone[0]));

    let (exit, stderr) = server.terminate(Duration::from_secs(30));
    assert!(exit.success(), "{exit:?}: {stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");

    // A queue of one request and no batching: a burst of 24 gets 503s, the rest are served.
    let server = start(
        &binary,
        &checkpoints,
        &["--max-batch", "1", "--max-wait-ms", "0", "--queue", "1", "--beam-width", "4"],
    );
    let report = client::load(&server.base, 24, 1, &TEXTS, 4);
    assert!(report.statuses.get(&503).is_some_and(|&n| n > 0), "{:?}", report.statuses);
    assert_eq!(report.statuses.values().sum::<usize>(), 24);
    assert_eq!(report.statuses.keys().copied().collect::<Vec<_>>(), [200, 503], "{:?}", report.statuses);
    healthy(&server.base);
    let (exit, stderr) = server.terminate(Duration::from_secs(30));
    assert!(exit.success(), "{exit:?}: {stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
