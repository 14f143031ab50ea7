//! The training harness's overhead per step: the mlp example's model (1 → 64 → 64 → 1 tanh
//! MLP, Adam, batches of 128 drawn from a per-step generator) trained by a hand-written loop
//! and by `Trainer::train` with its default hooks (summaries every 100 steps, a step
//! counter, a checkpoint of the model and Adam at the end of each call; no logging to the
//! terminal). Every run continues from where the previous one stopped. See BENCHMARKS.md.
//!
//! - `per_step/hand_written_loop`: one criterion iteration is one step of the hand loop.
//! - `per_step/hand_written_loop_reseeded`: the same with the trainer's per-step
//!   `manual_seed(step_seed(seed, step))`, the price of bit-identical resumption.
//! - `per_step/trainer`: one iteration is one step of a `Trainer::train` call of that many
//!   steps, timed from the first hook's `begin` to its `end` (every step with every hook;
//!   the per-call work around it, the final checkpoint, is timed by the next one).
//! - `per_call/trainer_500_steps`: a whole `train` call of 500 steps, final checkpoint
//!   (written with fsync) included.
//!
//! - With `COUPLET_TRAINER_ROUNDS=R`, first R rounds alternating 500 hand steps and 500
//!   trainer steps in this process, with the median ratio.
//!
//! `COUPLET_TRAINER_ROUNDS=21 cargo bench --bench trainer -- --sample-size 20 --warm-up-time 2 --measurement-time 5`

#[allow(dead_code)]
#[path = "../examples/mlp.rs"]
mod mlp;

use couplet::tch::Device;
use couplet::train::hooks::{Hook, RunContext};
use couplet::train::{mse, step_seed, RunConfig, Trainer};
use couplet::{Mode, Optimizer, Result};
use criterion::{criterion_group, Criterion};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Times a `train` call from its first hook's `begin` to its `end`.
struct Timer<'a> {
    started: Option<Instant>,
    elapsed: &'a Cell<Duration>,
}

impl Hook for Timer<'_> {
    fn begin(&mut self, _ctx: &mut RunContext) -> Result<()> {
        self.started = Some(Instant::now());
        Ok(())
    }
    fn end(&mut self, _ctx: &mut RunContext) -> Result<()> {
        if let Some(started) = self.started {
            self.elapsed.set(started.elapsed());
        }
        Ok(())
    }
}

type MlpModel = couplet::train::Supervised<couplet::Mlp, couplet::Adam>;

/// `n` steps of the hand-written loop after step `step` (advanced), optionally reseeding
/// libtorch's generator per step as the trainer does; their time.
fn hand_steps(hand: &mut MlpModel, step: &mut u64, n: u64, reseed: bool) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        *step += 1;
        if reseed {
            couplet::tch::manual_seed(step_seed(0, *step) as i64);
        }
        let (x, y) = mlp::batch(0, *step, Device::Cpu);
        let prediction = hand.module().forward_t(&x, Mode::Train).expect("forward");
        let loss = mse(&prediction, &y).expect("loss");
        let optimizer = hand.optimizer_mut();
        optimizer.zero_grad();
        loss.backward();
        optimizer.step().expect("step");
    }
    started.elapsed()
}

/// `n` steps of `trainer` after `max_steps` (advanced), timed by a [`Timer`] hook.
fn trainer_steps(trainer: &mut Trainer<MlpModel>, max_steps: &mut u64, n: u64) -> Duration {
    *max_steps += n;
    let elapsed = Cell::new(Duration::ZERO);
    let timer: Box<dyn Hook + '_> = Box::new(Timer { started: None, elapsed: &elapsed });
    trainer.train(mlp::input_fn(0, Device::Cpu), Some(*max_steps), vec![timer]).expect("train");
    elapsed.get()
}

/// With `COUPLET_TRAINER_ROUNDS=R` set: R rounds alternating 500 steps of the hand loop and
/// 500 of the trainer in this process (a machine's load drifts over both alike), printing
/// each round's ratio and the median ratio.
fn alternating() {
    let Some(rounds) = std::env::var("COUPLET_TRAINER_ROUNDS").ok().and_then(|r| r.parse::<usize>().ok())
    else {
        return;
    };
    couplet::tch::set_num_threads(1);
    let dir = std::env::temp_dir().join(format!("couplet-bench-trainer-alt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RunConfig::new(&dir).with_log_step_count_steps(0);
    let mut trainer = Trainer::new(mlp::model(0, Device::Cpu).expect("model"), config).expect("trainer");
    let mut hand = mlp::model(0, Device::Cpu).expect("model");
    let (mut step, mut max_steps) = (0u64, 0u64);
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let h = hand_steps(&mut hand, &mut step, 500, false);
        let t = trainer_steps(&mut trainer, &mut max_steps, 500);
        let ratio = t.as_secs_f64() / h.as_secs_f64();
        println!(
            "round {round:2}: hand {:.1} ms, trainer {:.1} ms, ratio {ratio:.4}",
            h.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median trainer / hand ratio over {rounds} rounds: {:.4}", ratios[rounds / 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn harness(c: &mut Criterion) {
    couplet::tch::set_num_threads(1);
    let mut group = c.benchmark_group("per_step");
    for reseed in [false, true] {
        let name = if reseed { "hand_written_loop_reseeded" } else { "hand_written_loop" };
        let mut hand = mlp::model(0, Device::Cpu).expect("model");
        let mut step = 0u64;
        group
            .bench_function(name, |b| b.iter_custom(|iters| hand_steps(&mut hand, &mut step, iters, reseed)));
    }
    let dir = std::env::temp_dir().join(format!("couplet-bench-trainer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RunConfig::new(&dir).with_log_step_count_steps(0);
    let mut trainer = Trainer::new(mlp::model(0, Device::Cpu).expect("model"), config).expect("trainer");
    let mut max_steps = 0u64;
    group.bench_function("trainer", |b| {
        b.iter_custom(|iters| trainer_steps(&mut trainer, &mut max_steps, iters))
    });
    group.finish();
    let mut group = c.benchmark_group("per_call");
    group.bench_function("trainer_500_steps", |b| {
        b.iter(|| {
            max_steps += 500;
            trainer.train(mlp::input_fn(0, Device::Cpu), Some(max_steps), vec![]).expect("train");
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, harness);

fn main() {
    alternating();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
