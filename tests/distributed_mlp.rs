//! The MLP example under PyTorch's torchrun with 2 CPU processes (`--distributed`) trains to the
//! same result as one process with the same global batch (both print the final validation MSE).
//! Uses the example binary that a full `cargo test` builds (`cargo build --example mlp_distributed` first when
//! running this test alone) and `.venv/bin/torchrun`.

use std::path::PathBuf;
use std::process::Command;

fn example() -> PathBuf {
    // target/<profile>/deps/distributed_mlp-… → target/<profile>/examples/mlp_distributed
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|p| p.parent()).unwrap().join("examples/mlp_distributed")
}

fn final_mse(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("final validation mse "))
        .map(|rest| rest.split(';').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn two_processes_under_torchrun_match_one_process() {
    let mlp = example();
    assert!(
        mlp.is_file(),
        "{} is missing: build it with `cargo build --example mlp_distributed`",
        mlp.display()
    );
    let torchrun = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/torchrun");
    let args = ["--steps", "60", "--seed", "3", "--device", "cpu"];
    let one = Command::new(&mlp).args(args).output().unwrap();
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let two = Command::new(&torchrun)
        .args([
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            &port.to_string(),
            "--no-python",
        ])
        .arg(&mlp)
        .args(args)
        .arg("--distributed")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&two.stdout);
    assert!(two.status.success(), "torchrun failed:\n{stdout}\n{}", String::from_utf8_lossy(&two.stderr));
    let (one, two) = (final_mse(&String::from_utf8_lossy(&one.stdout)), final_mse(&stdout));
    assert_eq!(one.len(), 1);
    assert_eq!(two.len(), 1, "only rank 0 reports: {stdout}");
    // The MSE is printed to 6 decimals; averaging two half-batch means rounds differently.
    assert!((one[0] - two[0]).abs() <= 2e-6 + 1e-4 * one[0], "one process {} vs two {}", one[0], two[0]);
}
