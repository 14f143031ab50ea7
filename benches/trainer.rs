//! The training harness's overhead per step: the mlp example's model (1 → 64 → 64 → 1 tanh
//! MLP, Adam, batches of 128 drawn from a per-step generator) trained for 500 steps by a
//! hand-written loop and by `Trainer::train` with its default hooks (summaries every 100
//! steps, a step counter, a checkpoint of the model and Adam at the end of each call; no
//! logging to the terminal). Both continue from where the previous iteration stopped. See
//! BENCHMARKS.md.
//!
//! `cargo bench --bench trainer -- --sample-size 10 --warm-up-time 1 --measurement-time 3`

#[allow(dead_code)]
#[path = "../examples/mlp.rs"]
mod mlp;

use couplet::tch::Device;
use couplet::train::{mse, RunConfig, Trainer};
use couplet::{Mode, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion};

const STEPS: u64 = 500;

fn harness(c: &mut Criterion) {
    couplet::tch::set_num_threads(1);
    let mut group = c.benchmark_group("mlp_500_steps");
    let mut hand = mlp::model(0, Device::Cpu).expect("model");
    let mut step = 0u64;
    group.bench_function("hand_written_loop", |b| {
        b.iter(|| {
            for _ in 0..STEPS {
                step += 1;
                let (x, y) = mlp::batch(0, step, Device::Cpu);
                let loss =
                    mse(&hand.module().forward_t(&x, Mode::Train).expect("forward"), &y).expect("loss");
                let optimizer = hand.optimizer_mut();
                optimizer.zero_grad();
                loss.backward();
                optimizer.step().expect("step");
            }
        })
    });
    let dir = std::env::temp_dir().join(format!("couplet-bench-trainer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RunConfig::new(&dir).with_log_step_count_steps(0);
    let mut trainer = Trainer::new(mlp::model(0, Device::Cpu).expect("model"), config).expect("trainer");
    let mut max_steps = 0u64;
    group.bench_function("trainer", |b| {
        b.iter(|| {
            max_steps += STEPS;
            trainer.train(mlp::input_fn(0, Device::Cpu), Some(max_steps), vec![]).expect("train");
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, harness);
criterion_main!(benches);
