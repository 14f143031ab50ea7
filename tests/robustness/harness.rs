//! Runs robustness cases in child processes and counts the outcomes.
//!
//! The parent re-executes this test binary with `COUPLET_ROBUSTNESS_CHILD=start..end` and the
//! filter `robustness_child`; the child runs cases `start..end` in order, printing
//! `@@start i` before and `@@done i outcome message` after each. A child that dies without
//! `@@done` aborted on case `i`; one silent for [`CASE_TIMEOUT`] hung on it and is killed.
//! Either way the parent records the failure and starts a new child at `i + 1`. Children run
//! under an address-space limit, so a runaway allocation fails (or aborts) instead of eating
//! the machine's memory.

use couplet::Error;
use std::io::{BufRead, BufReader, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// What a case must give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Bad input: a typed error. `Ok` is an accepted bad input.
    Error,
    /// Valid input (or padding hidden by a mask): `Ok` with finite floating-point outputs.
    Ok,
    /// A typed error, or `Ok` with finite outputs when `finite_inputs`.
    Either,
}

/// One case: a name (the function and the input class), what it must give, and the call.
pub struct Case {
    pub name: String,
    pub expect: Expect,
    /// Whether every input value is finite (then a non-finite output is a failure).
    pub finite_inputs: bool,
    pub run: Box<dyn Fn() -> couplet::Result<Vec<Tensor>>>,
}

impl Case {
    pub fn new(
        name: impl Into<String>,
        expect: Expect,
        finite_inputs: bool,
        run: impl Fn() -> couplet::Result<Vec<Tensor>> + 'static,
    ) -> Self {
        Case { name: name.into(), expect, finite_inputs, run: Box::new(run) }
    }
}

/// How a case ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// `Ok` with finite (or unchecked integer / huge) outputs.
    Ok,
    /// A typed couplet error naming a module.
    Typed,
    Panic,
    Abort,
    Hang,
    /// `Ok` with NaN or infinite outputs from finite inputs.
    NonFinite,
    /// `Ok` for an input that must be refused.
    Accepted,
    /// An error for an input that must be accepted.
    Refused,
    /// An error whose module name is empty.
    Unnamed,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::Typed,
        Outcome::Panic,
        Outcome::Abort,
        Outcome::Hang,
        Outcome::NonFinite,
        Outcome::Accepted,
        Outcome::Refused,
        Outcome::Unnamed,
    ];

    fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| format!("{o:?}") == s)
    }

    fn is_failure(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Typed)
    }
}

/// Per case: at most this long (debug build, on a loaded machine).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Children run at most this many cases each (a crash restarts at the next one anyway).
const BATCH: usize = 400;

/// Address-space limit of a child, in KiB (`ulimit -v`): libtorch needs about 1 GiB mapped.
const CHILD_MEMORY_KIB: u64 = 6 * 1024 * 1024;

const CHILD_ENV: &str = "COUPLET_ROBUSTNESS_CHILD";
/// Which case list the child builds (`classes` or `selftest`).
const SUITE_ENV: &str = "COUPLET_ROBUSTNESS_SUITE";

fn module_of(e: &Error) -> String {
    match e {
        Error::Shape { module, .. }
        | Error::InvalidArgument { module, .. }
        | Error::NotBuilt { module }
        | Error::Config { module, .. }
        | Error::Untraceable { module, .. }
        | Error::Torch { module, .. } => module.clone(),
        Error::Checkpoint { path, .. } => path.display().to_string(),
        Error::Distributed { op, .. } => op.clone(),
        other => other.to_string(),
    }
}

/// Whether every defined floating-point output is finite; outputs too large to check (a
/// stride-0 expansion) and integer outputs pass.
fn finite(outputs: &[Tensor]) -> bool {
    outputs.iter().all(|t| {
        if !t.defined() || !t.is_floating_point() || t.numel() > 1 << 24 {
            return true;
        }
        t.f_isfinite().and_then(|f| f.f_all()).and_then(|a| a.f_int64_value(&[])).map_or(true, |v| v == 1)
    })
}

fn run_case(case: &Case) -> (Outcome, String) {
    match catch_unwind(AssertUnwindSafe(|| (case.run)())) {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (Outcome::Panic, msg)
        }
        Ok(Err(e)) if module_of(&e).is_empty() => (Outcome::Unnamed, e.to_string()),
        Ok(Err(e)) if case.expect == Expect::Ok => (Outcome::Refused, e.to_string()),
        Ok(Err(e)) => (Outcome::Typed, e.to_string()),
        Ok(Ok(_)) if case.expect == Expect::Error => (Outcome::Accepted, String::new()),
        Ok(Ok(out)) if case.finite_inputs && !finite(&out) => (Outcome::NonFinite, String::new()),
        Ok(Ok(_)) => (Outcome::Ok, String::new()),
    }
}

/// The child: runs the cases of `COUPLET_ROBUSTNESS_CHILD=start..end`, if set.
pub fn child_main(suites: &[(&str, &dyn Fn() -> Vec<Case>)]) {
    let Ok(range) = std::env::var(CHILD_ENV) else { return };
    let suite = std::env::var(SUITE_ENV).unwrap_or_default();
    let cases = suites.iter().find(|(name, _)| *name == suite).expect("a known suite").1;
    let (start, end) = range.split_once("..").expect("start..end");
    let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
    // Panics are reported through @@done lines; the default hook would flood stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let cases = cases();
    let mut out = std::io::stdout().lock();
    for (i, case) in cases.iter().enumerate().take(end).skip(start) {
        writeln!(out, "@@start {i}").unwrap();
        out.flush().unwrap();
        let (outcome, msg) = run_case(case);
        let msg = msg.replace('\n', " ");
        writeln!(out, "@@done {i} {outcome:?} {msg}").unwrap();
        out.flush().unwrap();
    }
}

/// Runs one child over `start..end`; returns the outcomes it reported and where it stopped.
fn run_child(
    suite: &str,
    timeout: Duration,
    start: usize,
    end: usize,
    outcomes: &mut [Option<(Outcome, String)>],
) -> usize {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CHILD_MEMORY_KIB} 2>/dev/null; exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["--exact", "robustness_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, format!("{start}..{end}"))
        .env(SUITE_ENV, suite)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the test binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("@@") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut current = start;
    let mut last = Instant::now();
    loop {
        match rx.recv_timeout(timeout.saturating_sub(last.elapsed())) {
            Ok(line) => {
                last = Instant::now();
                let mut parts = line.splitn(4, ' ');
                let (tag, i) = (parts.next().unwrap_or(""), parts.next().and_then(|i| i.parse().ok()));
                match (tag, i) {
                    ("@@start", Some(i)) => current = i,
                    ("@@done", Some(i)) => {
                        let outcome = parts.next().and_then(Outcome::parse).unwrap_or(Outcome::Panic);
                        outcomes[i] = Some((outcome, parts.next().unwrap_or("").to_string()));
                        current = i + 1;
                        if current == end {
                            let _ = child.wait();
                            let _ = reader.join();
                            return end;
                        }
                    }
                    _ => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                outcomes[current] = Some((Outcome::Hang, format!("no result in {timeout:?}")));
                let _ = reader.join();
                return current + 1;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| format!("{s}")).unwrap_or_default();
                let _ = reader.join();
                if current < end {
                    outcomes[current] = Some((Outcome::Abort, status));
                    return current + 1;
                }
                return end;
            }
        }
    }
}

/// The counts of each outcome and the failures (outcome, case name, message).
pub struct Report {
    counts: std::collections::BTreeMap<Outcome, usize>,
    pub failures: Vec<String>,
}

impl Report {
    /// How many cases ended with the outcome named `name` (`Ok`, `Typed`, `Panic`, …).
    pub fn count(&self, name: &str) -> usize {
        Outcome::parse(name).and_then(|o| self.counts.get(&o)).copied().unwrap_or(0)
    }
}

/// The parent: runs every case of `suite` in children (two at a time), prints the counts and
/// returns them with every failure.
pub fn parent_main(suite: &str, cases: &[Case], timeout: Duration) -> Report {
    let n = cases.len();
    let started = Instant::now();
    let run_range = |start: usize, end: usize| {
        let mut outcomes: Vec<Option<(Outcome, String)>> = vec![None; n];
        let mut i = start;
        while i < end {
            i = run_child(suite, timeout, i, (i + BATCH).min(end), &mut outcomes);
        }
        outcomes
    };
    let (left, right) = std::thread::scope(|s| {
        let left = s.spawn(|| run_range(0, n / 2));
        let right = s.spawn(|| run_range(n / 2, n));
        (left.join().expect("runner thread"), right.join().expect("runner thread"))
    });
    let outcomes: Vec<Option<(Outcome, String)>> =
        left.into_iter().zip(right).map(|(a, b)| a.or(b)).collect();
    let mut counts = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for (case, outcome) in cases.iter().zip(&outcomes) {
        let (o, msg) = outcome.clone().unwrap_or((Outcome::Abort, "never reported".into()));
        *counts.entry(o).or_insert(0usize) += 1;
        if o.is_failure() {
            failures.push(format!("{o:?}: {} ({msg})", case.name));
        }
    }
    let report = Report { counts, failures };
    let c = |name: &str| report.count(name);
    println!(
        "robustness ({suite}): {n} cases in {:.1} s: {} typed errors, {} finite results; {} panics, \
         {} aborts, {} hangs, {} silent non-finite, {} accepted bad inputs, {} refused valid inputs, \
         {} unnamed errors",
        started.elapsed().as_secs_f64(),
        c("Typed"),
        c("Ok"),
        c("Panic"),
        c("Abort"),
        c("Hang"),
        c("NonFinite"),
        c("Accepted"),
        c("Refused"),
        c("Unnamed"),
    );
    report
}

/// Float outputs of a result, for the finiteness check.
pub fn outs(ts: &[&Tensor]) -> Vec<Tensor> {
    ts.iter().map(|t| t.shallow_clone()).collect()
}

/// The kinds every tensor argument is tried with.
pub const KINDS: [Kind; 10] = [
    Kind::Float,
    Kind::Double,
    Kind::Half,
    Kind::BFloat16,
    Kind::Int64,
    Kind::Int,
    Kind::Int8,
    Kind::Uint8,
    Kind::Bool,
    Kind::ComplexFloat,
];
