//! Helpers shared by the integration tests: PyTorch fixtures and tolerant comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tch::{Kind, Tensor};

/// Path of a committed fixture file, the workspace's `tests/fixtures/{name}.safetensors`
/// (this module is shared by the root crate's tests and, by `#[path]`, the member crates'
/// parity tests, so `cargo test -p couplet-rnn` alone runs them).
pub fn fixture_path(name: &str) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = if manifest.join("tests/fixtures").is_dir() {
        manifest
    } else {
        manifest.parent().map_or_else(|| manifest.clone(), PathBuf::from)
    };
    workspace.join("tests/fixtures").join(format!("{name}.safetensors"))
}

/// Loads `tests/fixtures/{name}.safetensors`, written by `scripts/fixtures/{name}.py`
/// with torch 2.13.0.
pub fn load_fixture(name: &str) -> Fixture {
    let path = fixture_path(name);
    let tensors = Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    Fixture { name: name.to_string(), tensors: tensors.into_iter().collect() }
}

/// The tensors of one fixture file, by name.
pub struct Fixture {
    name: String,
    tensors: HashMap<String, Tensor>,
}

impl Fixture {
    /// The tensor called `key`; panics with the fixture's name if missing.
    pub fn get(&self, key: &str) -> Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("fixture {} has no tensor {key:?}", self.name))
            .shallow_clone()
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.tensors.keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// Asserts `actual` and `expected` have the same shape and agree within `tol`
/// (absolute + relative), printing the largest difference otherwise.
#[track_caller]
pub fn assert_close(actual: &Tensor, expected: &Tensor, tol: f64) {
    assert_eq!(actual.size(), expected.size(), "shapes differ");
    let a = actual.to_kind(Kind::Double).to_device(tch::Device::Cpu);
    let e = expected.to_kind(Kind::Double).to_device(tch::Device::Cpu);
    let diff = (&a - &e).abs();
    let bound = e.abs() * tol + tol;
    let worst = (&diff - &bound).max().double_value(&[]);
    assert!(
        worst <= 0.0,
        "tensors differ: max |a - e| = {:.3e} (tol {tol:.1e})\nactual: {a}\nexpected: {e}",
        diff.max().double_value(&[])
    );
}

/// Serialises the tests of one test binary that draw from libtorch's random generator.
///
/// That generator is process-wide and the test harness runs tests on parallel threads, so a
/// seeded test that draws while another test draws gets a different sequence. Every test of a
/// binary that draws (and relies on `tch::manual_seed`) holds this guard for its whole body;
/// a failed test does not poison it for the others.
pub fn rng_guard() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
