//! Failures end within the timeout with typed errors, never a hang or an abort: a peer killed
//! mid-training, a peer that never arrives (at the store, at the group), wrong ranks, world
//! sizes, ports, tensors. Multi-process cases re-execute this binary per rank (see `common`).

mod common;

use anyhow::{ensure, Result};
use couplet_distributed::{ProcessGroup, ReduceOp, Store};
use couplet_modules::Error;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// The group timeout of the multi-process failure cases.
const TIMEOUT: Duration = Duration::from_secs(4);
/// How long past the timeout a survivor may take to report the error.
const SLACK: Duration = Duration::from_secs(6);

fn is_distributed(e: &Error, op: &str) -> bool {
    matches!(e, Error::Distributed { op: o, .. } if o == op)
}

/// The killed rank (the last) joins, all-reduces once, then SIGKILLs itself; the survivors'
/// next all-reduce must fail within the timeout with a `Distributed` error.
fn killed_peer() -> Result<()> {
    let (rank, world, port) = common::rank_env();
    let store = if rank == 0 {
        Store::server("127.0.0.1", port, world, TIMEOUT)?
    } else {
        Store::client("127.0.0.1", port, TIMEOUT)?
    };
    let group = ProcessGroup::gloo(&store, rank, world, TIMEOUT)?;
    let mut t = Tensor::from_slice(&[1.0f32]);
    group.all_reduce(&mut t, ReduceOp::Sum)?;
    ensure!(Vec::<f32>::try_from(&t)? == [world as f32]);
    if rank == world - 1 {
        let pid = std::process::id().to_string();
        std::process::Command::new("kill").args(["-9", &pid]).status()?;
        std::thread::sleep(Duration::from_secs(60));
        anyhow::bail!("survived SIGKILL");
    }
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let e = group.all_reduce(&mut t, ReduceOp::Sum).unwrap_err();
    let took = start.elapsed();
    ensure!(is_distributed(&e, "all_reduce"), "not a Distributed error: {e:?}");
    ensure!(took < TIMEOUT + SLACK, "the error took {took:?}");
    println!("rank {rank}: {e} after {took:?}");
    Ok(())
}

/// Only rank 0 of 2 starts: hosting the store fails after its timeout.
fn store_alone() -> Result<()> {
    let (_, world, port) = common::rank_env();
    let start = Instant::now();
    let e = Store::server("127.0.0.1", port, world, Duration::from_secs(2)).unwrap_err();
    let took = start.elapsed();
    ensure!(is_distributed(&e, "store"), "{e:?}");
    ensure!(e.to_string().contains(&format!("hosting 127.0.0.1:{port}")), "{e}");
    ensure!(took >= Duration::from_millis(1900) && took < Duration::from_secs(2) + SLACK, "took {took:?}");
    println!("{e}");
    Ok(())
}

/// Both ranks reach the store, but rank 1 never joins the group: rank 0's rendezvous fails
/// within the timeout.
fn group_alone() -> Result<()> {
    let (rank, world, port) = common::rank_env();
    if rank == 1 {
        let _store = Store::client("127.0.0.1", port, TIMEOUT)?;
        std::thread::sleep(TIMEOUT + SLACK + SLACK);
        return Ok(());
    }
    let store = Store::server("127.0.0.1", port, world, TIMEOUT)?;
    let start = Instant::now();
    let e = ProcessGroup::gloo(&store, 0, world, TIMEOUT).unwrap_err();
    let took = start.elapsed();
    ensure!(is_distributed(&e, "gloo"), "{e:?}");
    ensure!(took < TIMEOUT + SLACK, "took {took:?}");
    println!("{e}");
    Ok(())
}

fn child(scenario: &str) -> Result<()> {
    match scenario {
        "killed" => killed_peer(),
        "store_alone" => store_alone(),
        "group_alone" => group_alone(),
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

fn killed_peer_case() {
    let outcomes = common::run("killed", 3, Duration::from_secs(60));
    let (survivors, victim) = outcomes.split_at(outcomes.len() - 1);
    common::assert_all_ok("killed (survivors)", survivors);
    assert!(!victim[0].ok(), "the killed rank exited cleanly: {}", victim[0].stdout);
}

fn store_alone_case() {
    let port = common::free_port();
    let outcomes = common::collect(common::spawn("store_alone", &[0], 2, port, &[]), Duration::from_secs(30));
    common::assert_all_ok("store_alone", &outcomes);
}

fn group_alone_case() {
    let outcomes = common::run("group_alone", 2, Duration::from_secs(40));
    common::assert_all_ok("group_alone", &outcomes[..1]);
}

/// Bad arguments, checked in this one process (a world of 1 needs no peers).
fn bad_arguments() {
    let timeout = Duration::from_secs(10);
    // Ports: a client needs one; a port in use cannot be hosted; no server there is an error.
    let e = Store::client("127.0.0.1", 0, timeout).unwrap_err();
    assert_eq!(e.to_string(), "distributed/store: a client needs the server's port, got 0");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = Store::server("127.0.0.1", port, 1, timeout).unwrap_err();
    assert!(
        is_distributed(&e, "store") && e.to_string().contains(&format!("hosting 127.0.0.1:{port}")),
        "{e}"
    );
    drop(taken);
    let start = Instant::now();
    let e = Store::client("127.0.0.1", common::free_port(), Duration::from_secs(1)).unwrap_err();
    assert!(is_distributed(&e, "store") && e.to_string().contains("connecting to 127.0.0.1:"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(1) + SLACK, "{:?}", start.elapsed());
    let e = Store::server("", 0, 1, timeout).unwrap_err();
    assert_eq!(e.to_string(), "distributed/store: host must not be empty");
    let e = Store::server("127.0.0.1", 0, 0, timeout).unwrap_err();
    assert_eq!(e.to_string(), "distributed/store: world size must be at least 1, got 0");
    let e = Store::server("127.0.0.1", 0, 1, Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("timeout must be at least 1 ms"), "{e}");

    // Ranks and world sizes.
    let store = Store::server("127.0.0.1", 0, 1, timeout).unwrap();
    assert_ne!(store.port(), 0);
    let e = ProcessGroup::gloo(&store, 1, 1, timeout).unwrap_err();
    assert_eq!(e.to_string(), "distributed/gloo: rank must be in 0..1 (the world size), got 1");
    let e = ProcessGroup::gloo(&store, 0, 0, timeout).unwrap_err();
    assert_eq!(e.to_string(), "distributed/gloo: world size must be at least 1, got 0");
    let e = ProcessGroup::gloo(&store, 0, usize::MAX, timeout).unwrap_err();
    assert!(e.to_string().contains("is too large"), "{e}");

    // Tensors: kind, layout, definedness; a world of one reduces to itself.
    let group = ProcessGroup::gloo(&store, 0, 1, timeout).unwrap();
    let mut t = Tensor::from_slice(&[true, false]);
    let e = group.all_reduce(&mut t, ReduceOp::Sum).unwrap_err();
    assert!(
        e.to_string().starts_with("distributed/all_reduce: tensor has kind Bool; collectives take"),
        "{e}"
    );
    let mut t = Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu)).transpose(0, 1);
    let e = group.all_reduce(&mut t, ReduceOp::Sum).unwrap_err();
    assert!(e.to_string().contains("tensor must be dense and contiguous"), "{e}");
    let mut t = Tensor::new();
    let e = group.broadcast(&mut t, 0).unwrap_err();
    assert_eq!(e.to_string(), "distributed/broadcast: tensor is undefined");
    let mut t = Tensor::from_slice(&[2.5f64, -1.0]);
    group.all_reduce(&mut t, ReduceOp::Avg).unwrap();
    assert_eq!(Vec::<f64>::try_from(&t).unwrap(), [2.5, -1.0]);
    let e =
        group.all_gather_async(&t, &mut Tensor::zeros([1, 2], (Kind::Float, tch::Device::Cpu))).unwrap_err();
    assert!(e.to_string().contains("output must have kind Double on Cpu, got Float on Cpu"), "{e}");
    let e = ProcessGroup::nccl(&store, 0, 1, timeout).unwrap_err();
    assert!(is_distributed(&e, "nccl"), "{e}");
}

fn main() {
    common::main(
        child,
        &[
            ("bad_arguments", bad_arguments),
            ("killed_peer_gives_survivors_an_error", killed_peer_case),
            ("store_without_peers_times_out", store_alone_case),
            ("group_without_peers_times_out", group_alone_case),
        ],
    );
}
