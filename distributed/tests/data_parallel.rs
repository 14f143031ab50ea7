//! DataParallel across 2 real processes: after N SGD-with-momentum steps the variables equal (1e-6) those
//! of one process trained on the concatenated batches and are bit-identical across ranks; the
//! broadcast from rank 0 overrides a differently seeded rank 1; `no_sync` accumulation matches
//! one process's accumulation; checkpoints are written by rank 0 and restored everywhere; a
//! layout mismatch is an error on every rank. The binary re-executes itself per rank.

mod common;

use anyhow::{ensure, Result};
use couplet_distributed::{DataParallel, DataParallelConfig, ProcessGroup, Store};
use couplet_modules::{Activation, Error, Mlp, MlpConfig, Mode, Module, Optimizer, Sgd, SgdConfig};
use std::sync::Arc;
use std::time::Duration;
use tch::{Kind, Tensor};

const TIMEOUT: Duration = Duration::from_secs(30);
const STEPS: i64 = 6;
/// Rows of the global batch; each of the 2 ranks takes half.
const GLOBAL: i64 = 8;

fn join() -> Result<Arc<ProcessGroup>> {
    let (rank, world, port) = common::rank_env();
    let store = if rank == 0 {
        Store::server("127.0.0.1", port, world, TIMEOUT)?
    } else {
        Store::client("127.0.0.1", port, TIMEOUT)?
    };
    Ok(Arc::new(ProcessGroup::gloo(&store, rank, world, TIMEOUT)?))
}

/// A built MLP 3 → 16 → 16 → 2 initialised from `seed`, with its store.
fn model(seed: i64, sizes: &[i64]) -> Result<(couplet_modules::Store, Mlp)> {
    tch::manual_seed(seed);
    let store = couplet_modules::Store::cpu();
    let mlp = Mlp::new(&store.root(), MlpConfig::new(sizes).with_activation(Activation::Tanh))?;
    let _ = mlp.forward_t(&Tensor::zeros([1, 3], (Kind::Float, tch::Device::Cpu)), Mode::Eval)?;
    Ok((store, mlp))
}

/// The global batch of `step` (deterministic, no RNG): inputs `[GLOBAL, 3]`, targets `[GLOBAL, 2]`.
fn batch(step: i64) -> (Tensor, Tensor) {
    let i = Tensor::arange(GLOBAL * 3, (Kind::Float, tch::Device::Cpu)).view([GLOBAL, 3]);
    let x = ((i * 0.37) + step as f64 * 1.3).sin();
    let y = Tensor::cat(
        &[x.sum_dim_intlist(1, true, Kind::Float).tanh(), x.prod_dim_int(1, true, Kind::Float)],
        1,
    );
    (x, y)
}

/// Rows of `rank`'s shard of a global batch (contiguous halves).
fn shard(t: &Tensor, rank: usize, world: usize) -> Tensor {
    let n = t.size()[0] / world as i64;
    t.narrow(0, rank as i64 * n, n)
}

fn loss(mlp: &Mlp, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok((mlp.forward_t(x, Mode::Train)? - y).square().mean(Kind::Float))
}

fn flat(mlp: &Mlp) -> Result<Tensor> {
    let parts: Vec<Tensor> = mlp.variables()?.iter().map(|v| v.tensor().detach().flatten(0, -1)).collect();
    Ok(Tensor::cat(&parts, 0))
}

/// Trains a reference in this one process on the whole global batches (`micro` backward
/// passes of the global batch's consecutive halves per step when accumulating).
fn reference(accumulate: bool) -> Result<Tensor> {
    let (_store, mlp) = model(0, &[16, 16, 2])?;
    // SGD with momentum: unlike Adam, its step scales with the gradient, so a sum in place of
    // the average shows.
    let mut opt = Sgd::new(mlp.trainable_variables()?, SgdConfig::new(0.2).with_momentum(0.9))?;
    for step in 0..STEPS {
        opt.zero_grad();
        if accumulate {
            for micro in 0..2 {
                let (x, y) = batch(step * 2 + micro);
                loss(&mlp, &x, &y)?.backward();
            }
        } else {
            let (x, y) = batch(step);
            loss(&mlp, &x, &y)?.backward();
        }
        opt.step()?;
    }
    flat(&mlp)
}

/// Each rank trains on its shard; rank 1 starts from another seed (the broadcast fixes it).
fn train(accumulate: bool, bucket_bytes: usize) -> Result<()> {
    let group = join()?;
    let (rank, world) = (group.rank(), group.world_size());
    let (_store, mlp) = model(rank as i64 * 17, &[16, 16, 2])?;
    let mut dp = DataParallel::new(
        group.clone(),
        mlp.variables()?,
        DataParallelConfig::default().with_bucket_bytes(bucket_bytes),
    )?;
    // SGD with momentum: unlike Adam, its step scales with the gradient, so a sum in place of
    // the average shows.
    let mut opt = Sgd::new(mlp.trainable_variables()?, SgdConfig::new(0.2).with_momentum(0.9))?;
    for step in 0..STEPS {
        opt.zero_grad();
        if accumulate {
            let (x, y) = batch(step * 2);
            let l = loss(&mlp, &shard(&x, rank, world), &shard(&y, rank, world))?;
            dp.no_sync(|dp| dp.backward(&l))?;
            let (x, y) = batch(step * 2 + 1);
            dp.backward(&loss(&mlp, &shard(&x, rank, world), &shard(&y, rank, world))?)?;
        } else {
            let (x, y) = batch(step);
            dp.backward(&loss(&mlp, &shard(&x, rank, world), &shard(&y, rank, world))?)?;
        }
        opt.step()?;
    }
    let mine = flat(&mlp)?;
    let all = group.all_gather(&mine)?;
    ensure!(all.get(0).equal(&all.get(1)), "rank {rank}: variables differ across ranks");
    let expected = reference(accumulate)?;
    let diff = (&mine - &expected).abs().max().double_value(&[]);
    ensure!(diff <= 1e-6, "rank {rank}: max |data parallel - one process| = {diff:e}");
    // The steps moved the variables (the comparison is not between two initial states).
    let (_s, start) = model(0, &[16, 16, 2])?;
    let moved = (&mine - flat(&start)?).abs().max().double_value(&[]);
    ensure!(moved > 1e-3, "variables barely moved ({moved:e})");
    println!("rank {rank}: {} buckets, max diff {diff:e}, moved {moved:e}", dp.num_buckets());
    Ok(())
}

fn checkpoints() -> Result<()> {
    let group = join()?;
    let dir = std::path::PathBuf::from(std::env::var("COUPLET_TEST_DIR")?);
    let (_store, mlp) = model(group.rank() as i64, &[16, 2])?;
    let dp = DataParallel::new(group.clone(), mlp.variables()?, DataParallelConfig::default())?;
    let before = flat(&mlp)?;
    let path = dir.join("dp.safetensors");
    dp.save_checkpoint(&mlp, &path)?;
    ensure!(path.is_file(), "rank {}: no checkpoint after save", group.rank());
    tch::no_grad(|| {
        for v in mlp.variables().unwrap() {
            let _ = v.tensor().shallow_clone().zero_();
        }
    });
    dp.restore_checkpoint(&mlp, &path)?;
    ensure!(flat(&mlp)?.equal(&before), "rank {}: restore differs", group.rank());
    // Rank 0 cannot write into a missing folder: every rank gets an error.
    let e = dp.save_checkpoint(&mlp, dir.join("missing/dp.safetensors")).unwrap_err();
    match group.rank() {
        0 => ensure!(matches!(e, Error::Checkpoint { .. }), "{e:?}"),
        _ => ensure!(e.to_string().contains("rank 0 failed"), "{e}"),
    }
    Ok(())
}

fn mismatch() -> Result<()> {
    let group = join()?;
    let sizes: &[i64] = if group.rank() == 0 { &[16, 2] } else { &[8, 2] };
    let (_store, mlp) = model(0, sizes)?;
    let e = DataParallel::new(group, mlp.variables()?, DataParallelConfig::default()).err();
    let e = e.ok_or_else(|| anyhow::anyhow!("different layouts were accepted"))?;
    ensure!(matches!(e, Error::Config { .. }) && e.to_string().contains("holds different variables"), "{e}");
    Ok(())
}

fn child(scenario: &str) -> Result<()> {
    match scenario {
        "train" => train(false, 25 * 1024 * 1024),
        // 256-byte buckets: every variable gets its own bucket or shares a small one.
        "train_small_buckets" => train(false, 256),
        "accumulate" => train(true, 25 * 1024 * 1024),
        "checkpoints" => checkpoints(),
        "mismatch" => mismatch(),
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

fn two(scenario: &str) {
    common::assert_all_ok(scenario, &common::run(scenario, 2, Duration::from_secs(120)));
}

fn main() {
    common::main(
        child,
        &[
            ("two_ranks_equal_one_process_on_the_global_batch", || two("train")),
            ("small_buckets_give_the_same_result", || two("train_small_buckets")),
            ("no_sync_accumulates_like_one_process", || two("accumulate")),
            ("checkpoints_are_written_by_rank_0_and_restored_everywhere", || {
                let dir = std::env::temp_dir().join(format!("couplet-dp-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let ranks = [0, 1];
                let children = common::spawn(
                    "checkpoints",
                    &ranks,
                    2,
                    common::free_port(),
                    &[("COUPLET_TEST_DIR", dir.display().to_string())],
                );
                let outcomes = common::collect(children, Duration::from_secs(60));
                let _ = std::fs::remove_dir_all(&dir);
                common::assert_all_ok("checkpoints", &outcomes);
            }),
            ("different_layouts_are_an_error_on_every_rank", || two("mismatch")),
        ],
    );
}
