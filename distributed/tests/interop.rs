//! One couplet process (rank 0, hosting the store) and one Python `torch.distributed` process
//! (rank 1, `init_process_group("cpu:gloo", "tcp://…")`, tests/interop_peer.py) join one Gloo
//! group and run the same collectives: both must see the same, hand-computed results.
//! Needs the project's venv (`.venv/bin/python` with torch 2.13.0).

use couplet_distributed::{torch_default_group_store, ProcessGroup, ReduceOp, Store};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tch::Tensor;

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn couplet_and_torch_distributed_share_a_group() {
    let python = python();
    assert!(python.is_file(), "{} is missing: run scripts/setup-libtorch.sh", python.display());
    let timeout = Duration::from_secs(30);
    // The server waits for its peer, so start Python (whose client retries) first.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let peer = Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop_peer.py"))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python peer");
    let store = Store::server("127.0.0.1", port, 2, timeout).expect("host the store");
    let store = torch_default_group_store(&store, "cpu").unwrap();
    let group = ProcessGroup::gloo(&store, 0, 2, timeout).expect("join the Python peer's group");

    let mut f32 = Tensor::from_slice(&[1.0f32, 2.0, 0.25]);
    group.all_reduce(&mut f32, ReduceOp::Sum).unwrap();
    let mut f64 = Tensor::from_slice(&[1e-3f64, 2.0, -4.0, 0.5]).view([2, 2]);
    group.all_reduce(&mut f64, ReduceOp::Sum).unwrap();
    let mut i64 = Tensor::from_slice(&[3i64, 5, -(1i64 << 41)]);
    group.all_reduce(&mut i64, ReduceOp::Max).unwrap();
    let mut b = Tensor::from_slice(&[9.0f32, -9.0, 0.5]);
    group.broadcast(&mut b, 0).unwrap();
    let gathered = group.all_gather(&Tensor::from_slice(&[1i64, 2])).unwrap();
    group.barrier().unwrap();

    let out = peer.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python peer failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    let list = |key: &str| -> Vec<f64> {
        seen[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    };

    // Hand-computed: couplet's value + Python's value.
    let f32_sum = vec![11.0, 22.0, 30.75];
    let f64_sum = vec![2e-3, 0.0, 0.0, 8.5];
    let i64_max = vec![7.0, 5.0, (1u64 << 40) as f64];
    assert_eq!(values(&f32), f32_sum);
    assert_eq!(list("f32"), f32_sum);
    assert_eq!(values(&f64), f64_sum);
    assert_eq!(list("f64"), f64_sum);
    assert_eq!(values(&i64), i64_max);
    assert_eq!(list("i64_max"), i64_max);
    assert_eq!(list("broadcast"), vec![9.0, -9.0, 0.5]);
    assert_eq!(values(&gathered), vec![1.0, 2.0, 100.0, 200.0]);
    assert_eq!(list("all_gather"), vec![1.0, 2.0, 100.0, 200.0]);
}
