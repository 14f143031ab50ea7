//! Every collective across 2–4 real processes on 127.0.0.1 (Gloo over TCP), against
//! hand-computed results for f32, f64 and i64 and for empty tensors, blocking and async.
//! The binary re-executes itself once per rank (see `common`).

mod common;

use anyhow::{ensure, Result};
use couplet_distributed::{ProcessGroup, ReduceOp, Store};
use std::time::Duration;
use tch::{Kind, Tensor};

const TIMEOUT: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(90);

/// This rank's store (rank 0 hosts it) and Gloo group.
fn join() -> Result<(Store, ProcessGroup)> {
    let (rank, world, port) = common::rank_env();
    let store = if rank == 0 {
        Store::server("127.0.0.1", port, world, TIMEOUT)?
    } else {
        Store::client("127.0.0.1", port, TIMEOUT)?
    };
    let group = ProcessGroup::gloo(&store, rank, world, TIMEOUT)?;
    ensure!(group.rank() == rank && group.world_size() == world);
    Ok((store, group))
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Rank r of 3 holds `[r + 1, -2 (r + 1), 0.5 (r + 1)]` (i64: `[r + 1, -2 (r + 1), 1e12 (r + 1)]`).
fn rank_tensor(rank: usize, kind: Kind) -> Tensor {
    let r = rank as f64 + 1.0;
    let third = if kind == Kind::Int64 { 1e12 * r } else { 0.5 * r };
    Tensor::from_slice(&[r, -2.0 * r, third]).to_kind(kind)
}

/// Hand-computed reductions of `rank_tensor` over ranks 0, 1, 2.
fn expected(op: ReduceOp, kind: Kind) -> Vec<f64> {
    let int = kind == Kind::Int64;
    match op {
        // 1+2+3, -2-4-6, 0.5+1+1.5 (or 1e12 · 6)
        ReduceOp::Sum => vec![6.0, -12.0, if int { 6e12 } else { 3.0 }],
        ReduceOp::Avg => vec![2.0, -4.0, 1.0],
        // 1·2·3, (-2)(-4)(-6), 0.5·1·1.5 (i64: 1e12 · 2e12 · 3e12 wraps, so not used)
        ReduceOp::Product => vec![6.0, -48.0, 0.75],
        ReduceOp::Min => vec![1.0, -6.0, if int { 1e12 } else { 0.5 }],
        ReduceOp::Max => vec![3.0, -2.0, if int { 3e12 } else { 1.5 }],
    }
}

fn all_reduce_every_op_and_kind() -> Result<()> {
    let (_store, group) = join()?;
    for kind in [Kind::Float, Kind::Double, Kind::Int64] {
        for op in [ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Product, ReduceOp::Min, ReduceOp::Max] {
            if kind == Kind::Int64 && matches!(op, ReduceOp::Avg | ReduceOp::Product) {
                continue;
            }
            let mut t = rank_tensor(group.rank(), kind);
            group.all_reduce(&mut t, op)?;
            ensure!(t.kind() == kind, "{op:?} {kind:?}: kind became {:?}", t.kind());
            ensure!(values(&t) == expected(op, kind), "{op:?} {kind:?}: got {:?}", values(&t));
        }
    }
    // i64 products, small enough not to wrap: 1 · 2 · 3 and (-1)(-2)(-3).
    let r = group.rank() as i64 + 1;
    let mut t = Tensor::from_slice(&[r, -r]);
    group.all_reduce(&mut t, ReduceOp::Product)?;
    ensure!(Vec::<i64>::try_from(&t)? == [6, -6], "i64 product {t}");
    // An average of an integer tensor is refused before c10d sees it.
    let mut t = Tensor::from_slice(&[r]);
    let e = group.all_reduce(&mut t, ReduceOp::Avg).unwrap_err().to_string();
    ensure!(e.contains("ReduceOp::Avg needs a floating kind, got Int64"), "{e}");
    // A 2-D tensor keeps its shape.
    let mut t = Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu)) * (group.rank() as f64 + 1.0);
    group.all_reduce(&mut t, ReduceOp::Sum)?;
    ensure!(t.size() == [2, 3] && values(&t) == vec![6.0; 6], "2-D sum {t}");
    Ok(())
}

fn sum_over_any_world_size() -> Result<()> {
    let (_store, group) = join()?;
    let w = group.world_size() as f64;
    let mut t = Tensor::from_slice(&[group.rank() as f64, 1.0]);
    group.all_reduce(&mut t, ReduceOp::Sum)?;
    // 0 + 1 + … + (w - 1) = w (w - 1) / 2, and w ones.
    ensure!(values(&t) == [w * (w - 1.0) / 2.0, w], "world {w}: {t}");
    Ok(())
}

fn broadcast_from_a_root() -> Result<()> {
    let (_store, group) = join()?;
    for kind in [Kind::Float, Kind::Double, Kind::Int64] {
        let mut t =
            Tensor::from_slice(&[group.rank() as f64 * 10.0, -1.0 - group.rank() as f64]).to_kind(kind);
        group.broadcast(&mut t, 1)?;
        ensure!(values(&t) == [10.0, -2.0], "{kind:?}: {t}");
    }
    let mut t = Tensor::from_slice(&[1.0f32]);
    let e = group.broadcast(&mut t, 3).unwrap_err().to_string();
    ensure!(e.contains("root must be a rank in 0..3, got 3"), "{e}");
    Ok(())
}

fn all_gather_in_rank_order() -> Result<()> {
    let (_store, group) = join()?;
    let r = group.rank() as f64;
    for kind in [Kind::Float, Kind::Double, Kind::Int64] {
        let out = group.all_gather(&Tensor::from_slice(&[r, 10.0 * r]).to_kind(kind))?;
        ensure!(out.size() == [3, 2] && out.kind() == kind, "{kind:?}: {:?}", out.size());
        ensure!(values(&out) == [0.0, 0.0, 1.0, 10.0, 2.0, 20.0], "{kind:?}: {out}");
    }
    let mut wrong = Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu));
    let e = group.all_gather_async(&Tensor::from_slice(&[1.0f32, 2.0]), &mut wrong).unwrap_err().to_string();
    ensure!(e.contains("output must be [3, 2], got [2, 2]"), "{e}");
    Ok(())
}

fn reduce_scatter_rows() -> Result<()> {
    let (_store, group) = join()?;
    let r = group.rank() as f64;
    for kind in [Kind::Float, Kind::Double, Kind::Int64] {
        // Row i of rank r is [i + r, i · r]; summed over r = 0, 1, 2: [3 i + 3, 3 i].
        let input = Tensor::from_slice(&[r, 0.0, 1.0 + r, r, 2.0 + r, 2.0 * r]).view([3, 2]).to_kind(kind);
        let out = group.reduce_scatter(&input, ReduceOp::Sum)?;
        let i = r;
        ensure!(out.size() == [2] && values(&out) == [3.0 * i + 3.0, 3.0 * i], "{kind:?} sum: {out}");
        let out = group.reduce_scatter(&input, ReduceOp::Max)?;
        // max over r of [i + r, i · r] = [i + 2, 2 i]
        ensure!(values(&out) == [i + 2.0, 2.0 * i], "{kind:?} max: {out}");
    }
    let input = Tensor::from_slice(&[r, r, r]).view([3, 1]);
    let out = group.reduce_scatter(&input, ReduceOp::Avg)?;
    ensure!(values(&out) == [1.0], "avg: {out}");
    let e = group.reduce_scatter(&Tensor::zeros([2, 1], (Kind::Float, tch::Device::Cpu)), ReduceOp::Sum);
    let e = e.unwrap_err().to_string();
    ensure!(e.contains("input must be [3, ...], got [2, 1]"), "{e}");
    Ok(())
}

fn empty_tensors() -> Result<()> {
    let (_store, group) = join()?;
    for kind in [Kind::Float, Kind::Double, Kind::Int64] {
        let mut t = Tensor::zeros([0], (kind, tch::Device::Cpu));
        group.all_reduce(&mut t, ReduceOp::Sum)?;
        ensure!(t.size() == [0], "{kind:?} all_reduce: {:?}", t.size());
        let mut t = Tensor::zeros([2, 0], (kind, tch::Device::Cpu));
        group.broadcast(&mut t, 2)?;
        ensure!(t.size() == [2, 0], "{kind:?} broadcast");
        let out = group.all_gather(&Tensor::zeros([0], (kind, tch::Device::Cpu)))?;
        ensure!(out.size() == [3, 0], "{kind:?} all_gather: {:?}", out.size());
        let out = group.reduce_scatter(&Tensor::zeros([3, 0], (kind, tch::Device::Cpu)), ReduceOp::Sum)?;
        ensure!(out.size() == [0], "{kind:?} reduce_scatter: {:?}", out.size());
    }
    // The group still works after the empty collectives.
    let mut t = Tensor::from_slice(&[1.0f32]);
    group.all_reduce(&mut t, ReduceOp::Sum)?;
    ensure!(values(&t) == [3.0]);
    Ok(())
}

fn barrier_waits_for_everyone() -> Result<()> {
    let (store, group) = join()?;
    if group.rank() == 0 {
        std::thread::sleep(Duration::from_millis(500));
    }
    store.add("arrived", 1)?;
    group.barrier()?;
    // Every rank counted itself before the barrier, so every rank now sees all of them.
    let arrived = store.add("arrived", 0)?;
    ensure!(arrived == 3, "rank {} saw {arrived} arrivals after the barrier", group.rank());
    Ok(())
}

fn async_handles() -> Result<()> {
    let (store, group) = join()?;
    let r = group.rank() as f64 + 1.0;
    let mut a = Tensor::from_slice(&[r]);
    let mut b = Tensor::from_slice(&[2.0 * r, 4.0 * r]);
    let mut c = Tensor::from_slice(&[r as f32]);
    let mut out = Tensor::zeros([3, 1], (Kind::Double, tch::Device::Cpu));
    let works = [
        group.all_reduce_async(&mut a, ReduceOp::Sum)?,
        group.all_reduce_async(&mut b, ReduceOp::Avg)?,
        group.broadcast_async(&mut c, 2)?,
        group.all_gather_async(&Tensor::from_slice(&[r]), &mut out)?,
    ];
    for work in works {
        work.wait()?;
    }
    ensure!(values(&a) == [6.0] && values(&b) == [4.0, 8.0] && values(&c) == [3.0], "{a} {b} {c}");
    ensure!(values(&out) == [1.0, 2.0, 3.0], "{out}");
    // A collective whose last peer arrives late is not completed until then.
    let mut late = Tensor::from_slice(&[1i64]);
    if group.rank() == 2 {
        store.get("others-checked")?;
        group.all_reduce(&mut late, ReduceOp::Sum)?;
    } else {
        let work = group.all_reduce_async(&mut late, ReduceOp::Sum)?;
        std::thread::sleep(Duration::from_millis(300));
        ensure!(!work.is_completed()?, "completed before rank 2 joined");
        if store.add("checked", 1)? == 2 {
            store.set("others-checked", b"1")?;
        }
        work.wait_timeout(TIMEOUT)?;
    }
    ensure!(Vec::<i64>::try_from(&late)? == [3], "{late}");
    let work = group.barrier_async()?;
    work.wait()?;
    Ok(())
}

fn child(scenario: &str) -> Result<()> {
    match scenario {
        "all_reduce" => all_reduce_every_op_and_kind(),
        "sum" => sum_over_any_world_size(),
        "broadcast" => broadcast_from_a_root(),
        "all_gather" => all_gather_in_rank_order(),
        "reduce_scatter" => reduce_scatter_rows(),
        "empty" => empty_tensors(),
        "barrier" => barrier_waits_for_everyone(),
        "async" => async_handles(),
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

fn three(scenario: &str) {
    common::assert_all_ok(scenario, &common::run(scenario, 3, DEADLINE));
}

fn main() {
    common::main(
        child,
        &[
            ("all_reduce_every_op_and_kind", || three("all_reduce")),
            ("sum_over_2_and_4_processes", || {
                for world in [2, 4] {
                    common::assert_all_ok("sum", &common::run("sum", world, DEADLINE));
                }
            }),
            ("broadcast_from_a_root", || three("broadcast")),
            ("all_gather_in_rank_order", || three("all_gather")),
            ("reduce_scatter_rows", || three("reduce_scatter")),
            ("empty_tensors", || three("empty")),
            ("barrier_waits_for_everyone", || three("barrier")),
            ("async_handles", || three("async")),
        ],
    );
}
