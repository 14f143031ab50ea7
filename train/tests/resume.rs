//! The resume proof: a training run killed with SIGKILL at random steps (25 times) and
//! resumed each time ends with the same variables and optimizer state as a run that was
//! never interrupted, bit for bit on the CPU, and its events files (read back, with
//! TensorBoard's purge after each `SessionLog` START) hold every step's summaries exactly
//! once, with the uninterrupted run's values.
//!
//! The training runs are child processes: this test binary re-runs itself with
//! `COUPLET_RESUME_CHILD=<model_dir>` on the `child` test, which trains the two-optimizer,
//! dropout model of `trainer_common` to step 120 (a checkpoint every 4 steps, summaries every
//! step), printing `resume-step <n>` after each step.

mod trainer_common;

use couplet_modules::checkpoint;
use couplet_train::hooks::Hook;
use couplet_train::summary::events_files;
use couplet_train::{RunConfig, StepOutput, Trainer};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use trainer_common::{input_fn, scalars, TempDir, TwoStep};

const STEPS: u64 = 120;
const KILLS: usize = 25;
const ENV: &str = "COUPLET_RESUME_CHILD";

/// Flushes the summaries of each finished step (as a writer whose `flush_secs` just
/// passed: so the steps after the last checkpoint are on disk when the kill comes and only
/// the `SessionLog` START keeps them from counting twice), prints the step and slows the run
/// a little, so kills land mid-run.
struct Announce;

impl Hook for Announce {
    fn after_step(
        &mut self,
        ctx: &mut couplet_train::RunContext,
        _output: &StepOutput,
    ) -> couplet_modules::Result<()> {
        ctx.summary.flush()?;
        let mut out = std::io::stdout().lock();
        // A closed pipe (the parent stopped reading) must not end training.
        let _ = writeln!(out, "resume-step {}", ctx.global_step);
        let _ = out.flush();
        std::thread::sleep(std::time::Duration::from_millis(2));
        Ok(())
    }
}

/// The child's training run (a no-op in a normal test run).
#[test]
fn child() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let config = RunConfig::new(dir)
        .with_seed(11)
        .with_save_checkpoints_steps(4)
        .with_keep_checkpoint_max(Some(2))
        .with_save_summary_steps(1)
        .with_log_step_count_steps(0);
    let mut trainer = Trainer::new(TwoStep::new(5), config).unwrap();
    trainer.train(input_fn, Some(STEPS), vec![Box::new(Announce)]).unwrap();
    println!("resume-done");
}

/// Starts the child on `dir`; kills it with SIGKILL once it reports step `kill_at` (if given).
/// Returns the last step it reported.
fn run_child(dir: &Path, kill_at: Option<u64>) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env(ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last = 0;
    let mut done = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(step) = line.strip_prefix("resume-step ") {
            last = step.parse().unwrap();
            if kill_at.is_some_and(|k| last >= k) {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        done |= line == "resume-done";
    }
    let status = child.wait().unwrap();
    if kill_at.is_none() {
        assert!(status.success() && done, "the child failed: {status}");
    }
    last
}

#[test]
fn sigkilled_runs_resume_to_the_same_variables_and_events() {
    if std::env::var(ENV).is_ok() {
        return;
    }
    let reference = TempDir::new("resume-reference");
    assert_eq!(run_child(&reference.0, None), STEPS);

    let killed = TempDir::new("resume-killed");
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut kills = 0;
    let mut resumed_from = Vec::new();
    while kills < KILLS {
        let manager = couplet_modules::CheckpointManager::new(&killed.0, None).unwrap();
        let from = manager.latest_step().unwrap().unwrap_or(0);
        resumed_from.push(from);
        assert!(from < STEPS - 8, "the kills must land before the end: resumed from {from}");
        // 1 to 8 steps past the checkpoint: across checkpoints (every 4), in saves, between.
        let kill_at = rng.gen_range(from + 1..=from + 8);
        let reached = run_child(&killed.0, Some(kill_at));
        assert!(reached >= kill_at.min(STEPS), "the child stopped early at {reached}");
        kills += 1;
    }
    assert_eq!(run_child(&killed.0, None), STEPS);
    assert!(
        resumed_from.iter().filter(|&&s| s > 0).count() >= 10,
        "most runs resumed from a checkpoint: {resumed_from:?}"
    );

    let last = |dir: &Path| {
        let manager = couplet_modules::CheckpointManager::new(dir, None).unwrap();
        checkpoint::load(manager.path_for(STEPS)).unwrap()
    };
    let (a, b) = (last(&reference.0), last(&killed.0));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(
        a.keys().any(|k| k.starts_with("optimizer/adam/"))
            && a.keys().any(|k| k.starts_with("optimizer/sgd/"))
    );
    for (name, x) in &a {
        assert!(x.equal(&b[name]), "{name} differs after {KILLS} kills");
    }

    let (want, got) = (scalars(&reference.0), scalars(&killed.0));
    for tag in ["train/first", "train/second"] {
        let steps: Vec<i64> = got.iter().filter(|s| s.0 == tag).map(|s| s.1).collect();
        assert_eq!(steps, (1..=STEPS as i64).collect::<Vec<_>>(), "{tag}: every step exactly once, in order");
    }
    assert_eq!(got, want, "the resumed run's summaries are the uninterrupted run's");
    assert!(events_files(&killed.0).unwrap().len() > KILLS, "one events file per run");
}
