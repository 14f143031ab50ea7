//! # serve_load: latency and throughput of the `serve` example, with and without batching
//!
//! Trains a model of the seq2seq example's default size for a few steps (in `--dir`/seq2seq) (the cost of a
//! decode does not depend on how well the model is trained), then starts the `serve` binary
//! built beside this one twice on 127.0.0.1 — request batching on (`--max-batch 32
//! --max-wait-ms 3`) and off (`--max-batch 1`) — and drives each with the same bounded load:
//! `--clients` concurrent clients sending `--requests` requests each, one text per request.
//! Prints p50/p99 latency and requests per second as a Markdown table.
//!
//! ```sh
//! cargo build --release --example serve --example serve_load
//! target/release/examples/serve_load --clients 16 --requests 40
//! ```

#[allow(dead_code)]
#[path = "serve/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "seq2seq/main.rs"]
mod seq2seq;

use clap::Parser;

/// Measures the serve example under a bounded load, with and without request batching.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests per client.
    #[arg(long, default_value_t = 40)]
    requests: usize,
    /// Beam width of every request.
    #[arg(long, default_value_t = 1)]
    beam_width: i64,
    /// Working folder (the checkpoint goes here).
    #[arg(long, default_value = "runs/serve_load")]
    dir: std::path::PathBuf,
}

const TEXTS: [&str; 8] = [
    "4 Mar 17",
    "12.10.92",
    "Saturday, March 4th 2017",
    "03/04/2017",
    "the 4th of march, 2017",
    "1 may 99",
    "7.8.1990",
    "2021-11-05",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // The seq2seq run folder: checkpoints, summaries and plots (serve's --checkpoint-dir).
    let checkpoints = args.dir.join("seq2seq");
    let train = seq2seq::Args::try_parse_from([
        "seq2seq",
        "--device",
        "cpu",
        "--quiet",
        "--steps",
        "20",
        "--eval-every",
        "20",
        "--train-size",
        "2000",
        "--valid-size",
        "50",
        "--test-size",
        "50",
        "--samples",
        "0",
        "--logdir",
        checkpoints.to_str().ok_or("non-UTF-8 folder")?,
    ])?;
    seq2seq::run(&train)?;
    let binary = std::env::current_exe()?.with_file_name("serve");
    println!(
        "| batching | clients × requests | p50 ms | p99 ms | requests/s | mean texts decoded with a request | statuses |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, flags) in [
        ("on (32, 3 ms)", ["--max-batch", "32", "--max-wait-ms", "3"]),
        ("off", ["--max-batch", "1", "--max-wait-ms", "0"]),
    ] {
        let mut server_args: Vec<String> =
            ["--addr", "127.0.0.1:0", "--device", "cpu", "--queue", "1024", "--checkpoint-dir"]
                .map(String::from)
                .to_vec();
        server_args.push(checkpoints.to_string_lossy().into_owned());
        server_args.extend(flags.map(String::from));
        let server = client::Server::start(&binary, &server_args);
        // Warm-up, not measured.
        client::load(&server.base, 2, 5, &TEXTS, args.beam_width);
        let r = client::load(&server.base, args.clients, args.requests, &TEXTS, args.beam_width);
        println!(
            "| {label} | {} × {} | {:.1} | {:.1} | {:.0} | {:.1} | {:?} |",
            args.clients, args.requests, r.p50_ms, r.p99_ms, r.requests_per_s, r.mean_batch, r.statuses
        );
        let (status, _) = server.terminate(std::time::Duration::from_secs(60));
        if !status.success() {
            return Err(format!("the server exited with {status}").into());
        }
    }
    Ok(())
}
