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
//!   trainer steps in this process (which goes first alternates too), with the ratio of the
//!   total times, its 95% bootstrap interval over the rounds, and the median round ratio.
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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
/// each round's ratio, the ratio of the total times with its bootstrap interval, and the
/// median round ratio.
fn alternating() {
    let Some(rounds) =
        std::env::var("COUPLET_TRAINER_ROUNDS").ok().and_then(|r| r.parse::<usize>().ok()).filter(|&r| r > 0)
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
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Which runs first alternates (ABBA), so that what one leaves behind (the trainer's
        // background event writer, its end-of-call checkpoint) falls on both alike.
        let (h, t) = if round % 2 == 0 {
            let h = hand_steps(&mut hand, &mut step, 500, false);
            (h, trainer_steps(&mut trainer, &mut max_steps, 500))
        } else {
            let t = trainer_steps(&mut trainer, &mut max_steps, 500);
            (hand_steps(&mut hand, &mut step, 500, false), t)
        };
        let ratio = t.as_secs_f64() / h.as_secs_f64();
        println!(
            "round {round:2}: hand {:.1} ms, trainer {:.1} ms, ratio {ratio:.4}",
            h.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3
        );
        ratios.push(ratio);
        times.push((h.as_secs_f64(), t.as_secs_f64()));
    }
    let sum_ratio = |rounds: &[(f64, f64)]| {
        rounds.iter().map(|r| r.1).sum::<f64>() / rounds.iter().map(|r| r.0).sum::<f64>()
    };
    // A percentile bootstrap over the rounds (pairs resampled together, a fixed seed): the
    // 95% interval of the ratio of total times.
    let mut rng = StdRng::seed_from_u64(1);
    let mut resampled: Vec<f64> = (0..4000)
        .map(|_| {
            let draw: Vec<(f64, f64)> = (0..rounds).map(|_| times[rng.gen_range(0..rounds)]).collect();
            sum_ratio(&draw)
        })
        .collect();
    resampled.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    println!(
        "over {rounds} rounds: trainer / hand total time {:.4} (95% bootstrap interval {:.4}..{:.4}), median round ratio {:.4}",
        sum_ratio(&times),
        resampled[100],
        resampled[3899],
        ratios[rounds / 2]
    );
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
