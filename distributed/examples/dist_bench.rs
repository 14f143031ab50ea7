//! couplet's half of `scripts/bench/dist_bench.sh`: run under torchrun, it times Gloo
//! all-reduces of 1 KB to 64 MB (f32, sum) and the data-parallel step of the MLP example's model,
//! printing one JSON object per line on rank 0.
//!
//! ```sh
//! .venv/bin/torchrun --nproc-per-node 2 --no-python target/release/examples/dist_bench allreduce
//! .venv/bin/torchrun --nproc-per-node 2 --no-python target/release/examples/dist_bench mlp
//! ```

use couplet_distributed::{DataParallel, DataParallelConfig, ProcessGroup, ReduceOp};
use couplet_modules::{Activation, Adam, AdamConfig, Mlp, MlpConfig, Mode, Module, Optimizer, Store};
use std::sync::Arc;
use std::time::Instant;
use tch::{Kind, Tensor};

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// Median seconds of `iters` all-reduces of `bytes` bytes, after 3 warm-up calls.
fn time_all_reduce(group: &ProcessGroup, bytes: i64, iters: usize) -> couplet_modules::Result<f64> {
    let mut t = Tensor::ones([bytes / 4], (Kind::Float, tch::Device::Cpu));
    for _ in 0..3 {
        group.all_reduce(&mut t, ReduceOp::Sum)?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        group.barrier()?;
        let start = Instant::now();
        group.all_reduce(&mut t, ReduceOp::Sum)?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Median seconds of a training step (forward, backward with gradient averaging, Adam) of the
/// MLP example's model on a 128-row global batch split over the ranks.
fn time_mlp_step(group: Arc<ProcessGroup>, steps: usize) -> couplet_modules::Result<f64> {
    tch::manual_seed(0);
    let store = Store::cpu();
    let mlp = Mlp::new(&store.root(), MlpConfig::new(&[64, 64, 1]).with_activation(Activation::Tanh))?;
    let rows = 128 / group.world_size() as i64;
    let x = Tensor::rand([rows, 1], (Kind::Float, tch::Device::Cpu));
    let _ = mlp.forward_t(&x, Mode::Eval)?;
    let mut dp = DataParallel::new(group, mlp.variables()?, DataParallelConfig::default())?;
    let mut adam = Adam::new(mlp.trainable_variables()?, AdamConfig::new(1e-3))?;
    let mut times = Vec::with_capacity(steps);
    for step in 0..steps + 10 {
        let start = Instant::now();
        let loss = (mlp.forward_t(&x, Mode::Train)? - (&x * 3.0).sin()).square().mean(Kind::Float);
        adam.zero_grad();
        dp.backward(&loss)?;
        adam.step()?;
        if step >= 10 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

fn main() -> couplet_modules::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "allreduce".into());
    let group = Arc::new(ProcessGroup::from_env()?);
    let world = group.world_size();
    match mode.as_str() {
        "allreduce" => {
            for bytes in [1i64 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20] {
                let iters = if bytes >= 16 << 20 { 10 } else { 50 };
                let secs = time_all_reduce(&group, bytes, iters)?;
                if group.rank() == 0 {
                    // nccl-tests' bus bandwidth of an all-reduce: 2 (n - 1) / n · bytes / time.
                    let bus = 2.0 * (world as f64 - 1.0) / world as f64 * bytes as f64 / secs / 1e9;
                    println!("{{\"impl\": \"couplet\", \"bytes\": {bytes}, \"world\": {world}, \"seconds\": {secs:e}, \"bus_gb_s\": {bus:.4}}}");
                }
            }
        }
        "mlp" => {
            let secs = time_mlp_step(group.clone(), 200)?;
            if group.rank() == 0 {
                println!("{{\"impl\": \"couplet\", \"mlp_step_ms\": {:.4}, \"world\": {world}}}", secs * 1e3);
            }
        }
        other => eprintln!("unknown mode {other}: allreduce or mlp"),
    }
    Ok(())
}
