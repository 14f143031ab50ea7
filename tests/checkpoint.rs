//! Checkpoint interchange with Python's `safetensors` and PyTorch.
mod common;

use common::{assert_close, fixture_path, load_fixture};
use couplet::checkpoint::{self, CheckpointManager};
use couplet::{Initializer, Linear, LinearConfig, Module, Store};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// A fresh folder under the system's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("couplet-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_pytorch_checkpoint_restores_into_a_linear() {
    // scripts/fixtures/checkpoint.py: `linear/w` [3, 2] float64, `linear/b` [2] float32.
    let store = Store::cpu();
    let lin = Linear::new(&store.root(), LinearConfig::new(2).with_input_size(3)).unwrap();
    let report = checkpoint::restore(&lin, fixture_path("checkpoint")).unwrap();
    assert_eq!(report.restored, ["linear/w", "linear/b"]);
    assert_eq!(report.metadata.get("step").map(String::as_str), Some("7"));

    let w = lin.w().unwrap();
    assert_eq!((w.kind(), w.size()), (Kind::Float, vec![3, 2]));
    // The values torch printed when writing the fixture (nn.Linear(3, 2) weight, transposed).
    let expected_w = Tensor::from_slice(&[
        -0.004322517663240433f64,
        -0.4248946011066437,
        0.3097158372402191,
        -0.2223689705133438,
        -0.4751853346824646,
        0.15482072532176971,
    ])
    .view([3, 2]);
    assert_close(w, &expected_w, 1e-7);
    let fixture = load_fixture("checkpoint");
    assert!(w.equal(&fixture.get("linear/w").to_kind(Kind::Float)), "float64 rounded to float32");
    let b = lin.b().unwrap().unwrap();
    let expected_b = Tensor::from_slice(&[-0.011439144611358643f64, 0.45777493715286255]);
    assert!(b.equal(&expected_b.to_kind(Kind::Float)));

    // The layer computes with the restored values: y = x w + b, worked in float64.
    let x = Tensor::from_slice(&[1.0f32, -2.0, 0.5]).view([1, 3]);
    let y = lin.forward(&x).unwrap();
    let y0 =
        -0.004322517663240433 - 2.0 * 0.3097158372402191 + 0.5 * -0.4751853346824646 - 0.011439144611358643;
    let y1 =
        -0.4248946011066437 - 2.0 * -0.2223689705133438 + 0.5 * 0.15482072532176971 + 0.45777493715286255;
    assert_close(&y, &Tensor::from_slice(&[y0, y1]).view([1, 2]), 1e-6);
}

#[test]
fn a_saved_checkpoint_has_a_valid_safetensors_header() {
    let dir = TempDir::new("checkpoint_header");
    let store = Store::cpu();
    let g = store.root().child("gan").unwrap().child("generator").unwrap();
    let lin = Linear::new(
        &g,
        LinearConfig::new(2)
            .with_input_size(3)
            .with_initializer("w", Initializer::Constant { value: 0.5 })
            .with_initializer("b", Initializer::Constant { value: -1.5 }),
    )
    .unwrap();
    let manager = CheckpointManager::new(&dir.0, Some(2)).unwrap();
    let path = manager.save(&lin, 42).unwrap();
    assert_eq!(path, dir.0.join("ckpt-00000042.safetensors"));

    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "data starts 8-byte aligned");
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut keys: Vec<_> = header.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["__metadata__", "gan/generator/linear/b", "gan/generator/linear/w"]);
    // The step, and the CRC-32C of each tensor's bytes (values computed independently with a
    // bitwise CRC-32C in Python, checked against the standard "123456789" -> e3069283:
    // b = two f32 -1.5, w = six f32 0.5).
    let checksums = r#"{"gan/generator/linear/b":"e1cf28aa","gan/generator/linear/w":"87f5d343"}"#;
    assert_eq!(header["__metadata__"], serde_json::json!({"step": "42", "couplet.crc32c": checksums}));
    let b = &header["gan/generator/linear/b"];
    let w = &header["gan/generator/linear/w"];
    assert_eq!((&b["dtype"], &b["shape"]), (&serde_json::json!("F32"), &serde_json::json!([2])));
    assert_eq!((&w["dtype"], &w["shape"]), (&serde_json::json!("F32"), &serde_json::json!([3, 2])));
    // Same element size, so by name: b then w, back to back, ending at the end of the file.
    assert_eq!(b["data_offsets"], serde_json::json!([0, 8]));
    assert_eq!(w["data_offsets"], serde_json::json!([8, 32]));
    assert_eq!(bytes.len(), 8 + n + 32);
    let data = &bytes[8 + n..];
    assert_eq!(data[..4], (-1.5f32).to_le_bytes());
    assert_eq!(data[8..12], 0.5f32.to_le_bytes());

    // tch's own reader (the safetensors crate) agrees.
    let read = Tensor::read_safetensors(&path).unwrap();
    assert_eq!(read.len(), 2);
    let fresh = Store::new(Device::Cpu);
    let lin2 = Linear::new(&fresh.root(), LinearConfig::new(2).with_input_size(3)).unwrap();
    let options = checkpoint::RestoreOptions::strict().with_prefix_map("gan/generator", "");
    checkpoint::restore_with(&lin2, &path, &options).unwrap();
    assert_eq!(lin2.variables().unwrap().len(), 2);
    assert!(lin2.w().unwrap().equal(lin.w().unwrap()));
}
