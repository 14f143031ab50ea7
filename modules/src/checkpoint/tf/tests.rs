use super::*;
use crate::checkpoint::TestDir;
use crate::{Linear, LinearConfig, Store};
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

fn sample() -> Vec<(&'static str, Tensor)> {
    vec![
        ("a/float", Tensor::arange(6, (Kind::Float, CPU)).reshape([2, 3]) / 4),
        ("a/double", Tensor::from_slice(&[1.5f64, -2.25, 1e-300])),
        ("b/int32", Tensor::from_slice(&[7i32, -8])),
        ("b/int64", Tensor::from_slice(&[i64::MAX, i64::MIN, 0]).reshape([3, 1])),
        ("c/bool", Tensor::from_slice(&[true, false, true])),
        ("c/half", Tensor::from_slice(&[0.5f32, 2.0]).to_kind(Kind::Half)),
        ("d/scalar", Tensor::from(3.0f64)),
        ("d/empty", Tensor::zeros([0, 4], (Kind::Float, CPU))),
    ]
}

fn write_sample(dir: &TestDir) -> std::path::PathBuf {
    let mut w = TfCheckpointWriter::new();
    for (name, t) in sample() {
        w.add(name, &t).unwrap();
    }
    w.write(dir.join("model.ckpt-3")).unwrap()
}

#[test]
fn written_tensors_read_back_with_dtype_shape_and_values() {
    let dir = TestDir::new("tf-roundtrip");
    let prefix = write_sample(&dir);
    let ckpt = TfCheckpoint::open(&prefix).unwrap();
    let names: Vec<_> = ckpt.names().collect();
    let mut expected: Vec<_> = sample().iter().map(|(n, _)| *n).collect();
    expected.sort();
    assert_eq!(names, expected);
    for (name, t) in sample() {
        let info = ckpt.info(name).unwrap();
        assert_eq!(info.shape, t.size(), "{name}");
        assert_eq!(info.dtype.kind(), Some(t.kind()), "{name}");
        let back = ckpt.tensor(name).unwrap();
        assert_eq!(back.kind(), t.kind());
        assert!(back.equal(&t), "{name}: {back:?}");
    }
    // `.index` in the path is accepted too.
    assert!(TfCheckpoint::open(dir.join("model.ckpt-3.index")).unwrap().contains("a/float"));
}

#[test]
fn a_corrupt_or_truncated_data_file_names_the_file_and_the_tensor() {
    let dir = TestDir::new("tf-corrupt");
    let prefix = write_sample(&dir);
    let data = dir.join("model.ckpt-3.data-00000-of-00001");
    let bytes = std::fs::read(&data).unwrap();
    let ckpt = TfCheckpoint::open(&prefix).unwrap();
    // a/double is the first tensor in key order: its first byte.
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    std::fs::write(&data, &bad).unwrap();
    let e = ckpt.tensor("a/double").unwrap_err().to_string();
    assert!(e.contains("data-00000-of-00001") && e.contains("\"a/double\"") && e.contains("CRC-32C"), "{e}");
    assert!(ckpt.tensor("a/float").is_ok(), "other tensors are intact");
    std::fs::write(&data, &bytes[..bytes.len() - 3]).unwrap();
    let e = ckpt.tensor("d/scalar").unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = ckpt.tensor("nope").unwrap_err().to_string();
    assert!(e.contains("no tensor \"nope\""), "{e}");
}

#[test]
fn a_corrupt_index_is_an_error_naming_the_index() {
    let dir = TestDir::new("tf-corrupt-index");
    let prefix = write_sample(&dir);
    let index = dir.join("model.ckpt-3.index");
    let bytes = std::fs::read(&index).unwrap();
    for at in [3, bytes.len() / 3] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        std::fs::write(&index, &bad).unwrap();
        let e = TfCheckpoint::open(&prefix).unwrap_err().to_string();
        assert!(e.contains("model.ckpt-3.index") && e.contains("CRC-32C"), "{e}");
    }
    std::fs::write(&index, &bytes[..bytes.len() - 10]).unwrap();
    assert!(matches!(TfCheckpoint::open(&prefix), Err(crate::Error::Checkpoint { .. })));
    std::fs::remove_file(&index).unwrap();
    assert!(TfCheckpoint::open(&prefix).unwrap_err().to_string().contains("cannot read"));
}

#[test]
fn the_checkpoint_file_names_the_latest_prefix() {
    let dir = TestDir::new("tf-latest");
    assert_eq!(latest_checkpoint(&*dir).unwrap(), None);
    let prefix = write_sample(&dir);
    write_checkpoint_state(&*dir, &prefix).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("checkpoint")).unwrap().lines().next().unwrap(),
        "model_checkpoint_path: \"model.ckpt-3\""
    );
    assert_eq!(latest_checkpoint(&*dir).unwrap(), Some(prefix));
    std::fs::write(dir.join("checkpoint"), "model_checkpoint_path: \"gone\"\n").unwrap();
    assert!(latest_checkpoint(&*dir).unwrap_err().to_string().contains("gone.index"));
    std::fs::write(dir.join("checkpoint"), "all_model_checkpoint_paths: \"x\"\n").unwrap();
    assert!(latest_checkpoint(&*dir).is_err());
}

#[test]
fn the_writer_refuses_bad_names_and_kinds() {
    let mut w = TfCheckpointWriter::new();
    let t = Tensor::zeros([2], (Kind::Float, CPU));
    assert!(w.add("", &t).is_err());
    w.add("x", &t).unwrap();
    assert!(w.add("x", &t).unwrap_err().to_string().contains("twice"));
    assert!(w.add("c", &Tensor::zeros([2], (Kind::ComplexFloat, CPU))).is_err());
}

#[test]
fn a_strict_load_lists_missing_unexpected_and_mismatched_together() {
    let dir = TestDir::new("tf-strict");
    let mut w = TfCheckpointWriter::new();
    w.add("dense/kernel", &Tensor::ones([4, 3], (Kind::Float, CPU))).unwrap();
    w.add("dense/bias", &Tensor::ones([3], (Kind::Float, CPU))).unwrap();
    w.add("other/kernel", &Tensor::ones([3, 2], (Kind::Float, CPU))).unwrap();
    w.add("global_step", &Tensor::from(7i64)).unwrap();
    let ckpt = TfCheckpoint::open(w.write(dir.join("m")).unwrap()).unwrap();
    let store = Store::new(CPU);
    let good = Linear::named(&store.root(), "good", LinearConfig::new(3)).unwrap();
    let wrong = Linear::named(&store.root(), "wrong", LinearConfig::new(5).with_input_size(3)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    loader.dense("dense", &good).unwrap();
    loader.dense("other", &wrong).unwrap();
    let e = loader.finish().unwrap_err().to_string();
    assert!(e.contains("missing [\"other/bias\"]"), "{e}");
    assert!(!e.contains("unexpected"), "{e}"); // global_step is bookkeeping, the rest was used
                                               // The lazy `good` was built from the kernel and loaded.
    assert!(good.w().unwrap().equal(&Tensor::ones([4, 3], (Kind::Float, CPU))));

    let mut loader = TfLoader::new(&ckpt);
    let mismatched =
        Linear::named(&store.root(), "mismatched", LinearConfig::new(2).with_input_size(5).with_bias(false))
            .unwrap();
    loader.dense("other", &mismatched).unwrap();
    let e = loader.finish().unwrap_err().to_string();
    assert!(e.contains("unexpected [\"dense/bias\", \"dense/kernel\"]"), "{e}");
    assert!(e.contains("shape mismatches [mismatched/w must be [5, 2], got [3, 2]]"), "{e}");
    let mut loader = TfLoader::new(&ckpt);
    loader.dense("dense", &Linear::named(&store.root(), "again", LinearConfig::new(3)).unwrap()).unwrap();
    let report = loader.finish_partial().unwrap();
    assert_eq!(report.unexpected, ["other/kernel"]);
}
