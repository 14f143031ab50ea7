//! A small launcher for multi-process tests: the test binary re-executes itself once per rank
//! with `COUPLET_TEST_SCENARIO`, `RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` set
//! (torchrun's variables), waits for every rank within a deadline (killing stragglers), and
//! collects exit statuses and output.
//!
//! Each test binary is `harness = false`: its `main` is [`main`] with its scenario runner and
//! cases (a child runs that rank's scenario, the parent runs the cases).

#![allow(dead_code)] // each test binary uses a different part of the launcher

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What one rank of a scenario saw.
#[derive(Debug)]
pub struct Outcome {
    pub rank: usize,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }
}

/// The scenario this process was launched to run as one rank, if it is a child.
pub fn child_scenario() -> Option<String> {
    std::env::var("COUPLET_TEST_SCENARIO").ok()
}

/// A port no one listens on right now (the OS's choice for an ephemeral bind).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Starts `ranks` of a `world_size`-process `scenario` with torchrun's variables on `port`.
pub fn spawn(
    scenario: &str,
    ranks: &[usize],
    world_size: usize,
    port: u16,
    extra: &[(&str, String)],
) -> Vec<(usize, Child)> {
    ranks
        .iter()
        .map(|&rank| {
            let mut command = Command::new(std::env::current_exe().expect("test binary path"));
            command
                .env("COUPLET_TEST_SCENARIO", scenario)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world_size.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env_remove("TORCHELASTIC_USE_AGENT_STORE")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in extra {
                command.env(k, v);
            }
            (rank, command.spawn().expect("spawn a rank"))
        })
        .collect()
}

/// Waits for every child until `deadline` from now, killing those still running then.
pub fn collect(children: Vec<(usize, Child)>, deadline: Duration) -> Vec<Outcome> {
    let end = Instant::now() + deadline;
    children
        .into_iter()
        .map(|(rank, mut child)| {
            let status = loop {
                match child.try_wait().expect("poll a rank") {
                    Some(status) => break Some(status),
                    None if Instant::now() >= end => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            let mut stdout = String::new();
            let mut stderr = String::new();
            if let Some(mut out) = child.stdout.take() {
                let _ = out.read_to_string(&mut stdout);
            }
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            Outcome { rank, status, stdout, stderr }
        })
        .collect()
}

/// Runs every rank of `scenario` on a free port and returns their outcomes.
pub fn run(scenario: &str, world_size: usize, deadline: Duration) -> Vec<Outcome> {
    let ranks: Vec<usize> = (0..world_size).collect();
    collect(spawn(scenario, &ranks, world_size, free_port(), &[]), deadline)
}

/// Panics with every rank's output unless all of them exited successfully.
pub fn assert_all_ok(scenario: &str, outcomes: &[Outcome]) {
    if outcomes.iter().all(Outcome::ok) {
        return;
    }
    let mut report = format!("scenario {scenario} failed:\n");
    for o in outcomes {
        report += &format!(
            "--- rank {} ({}):\nstdout: {}\nstderr: {}\n",
            o.rank,
            match o.status {
                Some(s) => s.to_string(),
                None => "killed at the deadline".into(),
            },
            o.stdout,
            o.stderr
        );
    }
    panic!("{report}");
}

/// This rank as torchrun describes it: `(rank, world_size, port)`.
pub fn rank_env() -> (usize, usize, u16) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the launcher"));
    (var("RANK").parse().unwrap(), var("WORLD_SIZE").parse().unwrap(), var("MASTER_PORT").parse().unwrap())
}

/// A multi-process test binary's `main`: as a child, runs this rank's scenario with `child`
/// (exiting non-zero with the error on failure); as the parent, runs `cases` ([`run_cases`]).
pub fn main(child: fn(&str) -> anyhow::Result<()>, cases: &[(&str, fn())]) {
    if let Some(scenario) = child_scenario() {
        if let Err(e) = child(&scenario) {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    run_cases(cases);
}

/// Runs a list of named cases as a test harness: every case runs even when one fails, then the
/// process exits non-zero if any did. `COUPLET_TEST_FILTER` (or the first non-flag argument)
/// keeps only the cases whose name contains it.
pub fn run_cases(cases: &[(&str, fn())]) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let start = Instant::now();
        match std::panic::catch_unwind(case) {
            Ok(()) => println!("test {name} ... ok ({:.1}s)", start.elapsed().as_secs_f64()),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}
