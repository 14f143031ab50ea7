use super::*;
use crate::{Error, Initializer, Linear, LinearConfig, Module, Store, Variable};
use std::collections::BTreeMap;
use tch::Tensor;
use tch::{Device, Kind};

/// A small model: `gan/generator/linear` (3 → 2), `gan/generator/linear_1` (2 → 4) and a
/// non-trainable `gan/count`.
struct Model {
    a: Linear,
    b: Linear,
}

fn model(store: &Store) -> Model {
    let gan = store.root().child("gan").unwrap();
    let g = gan.child("generator").unwrap();
    let a = Linear::new(&g, LinearConfig::new(2).with_input_size(3)).unwrap();
    let b = Linear::new(&g, LinearConfig::new(4).with_input_size(2)).unwrap();
    let _ =
        gan.var("count", &[1]).init(Initializer::Constant { value: 7.0 }).trainable(false).create().unwrap();
    Model { a, b }
}

fn names(vars: &[Variable]) -> Vec<String> {
    vars.iter().map(|v| v.name().to_string()).collect()
}

fn snapshot(store: &Store) -> Vec<Tensor> {
    store.variables().iter().map(|v| v.tensor().copy()).collect()
}

fn perturb(store: &Store) {
    tch::no_grad(|| {
        for v in store.variables() {
            let _ = v.tensor().shallow_clone().uniform_(-5.0, 5.0);
        }
    });
}

fn assert_same(store: &Store, expected: &[Tensor]) {
    for (v, e) in store.variables().iter().zip(expected) {
        assert!(v.tensor().equal(e), "{} differs", v.name());
    }
}

fn checkpoint_path(err: &Error) -> &Path {
    match err {
        Error::Checkpoint { path, .. } => path,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn round_trip_is_bit_identical() {
    tch::manual_seed(0);
    let dir = TestDir::new("ckpt_round_trip");
    let path = dir.join("model.safetensors");
    let store = Store::cpu();
    let _m = model(&store);
    let saved = snapshot(&store);
    save(&store, &path).unwrap();
    perturb(&store);
    assert!(!store.variables()[0].tensor().equal(&saved[0]), "perturbing changed the values");
    let report = restore(&store, &path).unwrap();
    assert_same(&store, &saved);
    assert_eq!(
        report.restored,
        [
            "gan/generator/linear/w",
            "gan/generator/linear/b",
            "gan/generator/linear_1/w",
            "gan/generator/linear_1/b",
            "gan/count"
        ]
    );
    assert!(report.missing.is_empty() && report.unexpected.is_empty() && report.metadata.is_empty());
}

#[test]
fn restores_into_a_fresh_store_built_by_the_same_code() {
    tch::manual_seed(1);
    let dir = TestDir::new("ckpt_fresh");
    let path = dir.join("model.safetensors");
    let store = Store::cpu();
    let m = model(&store);
    let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
    let y = m.b.forward(&m.a.forward(&x).unwrap()).unwrap();
    save(&store, &path).unwrap();

    tch::manual_seed(2);
    let fresh = Store::cpu();
    let m2 = model(&fresh);
    assert!(!m2.a.w().unwrap().equal(m.a.w().unwrap()), "a different seed gives other values");
    restore(&fresh, &path).unwrap();
    assert_same(&fresh, &snapshot(&store));
    // The modules keep working on the restored values, gradients included.
    let y2 = m2.b.forward(&m2.a.forward(&x).unwrap()).unwrap();
    assert!(y2.equal(&y));
    y2.sum(Kind::Float).backward();
    assert!(m2.a.w().unwrap().grad().defined());
    assert!(m2.a.w().unwrap().requires_grad());
}

#[test]
fn a_module_saves_and_restores_only_its_variables() {
    let dir = TestDir::new("ckpt_module");
    let path = dir.join("a.safetensors");
    let store = Store::cpu();
    let m = model(&store);
    let module: &dyn Module = &m.a;
    save(module, &path).unwrap();
    let keys: Vec<_> = load(&path).unwrap().into_keys().collect();
    assert_eq!(keys, ["gan/generator/linear/b", "gan/generator/linear/w"]);

    let fresh = Store::cpu();
    let m2 = model(&fresh);
    let b_before = m2.b.w().unwrap().copy();
    // Strict restore of the module: the file holds exactly its variables.
    let report = restore(&m2.a, &path).unwrap();
    assert_eq!(report.restored, ["gan/generator/linear/w", "gan/generator/linear/b"]);
    assert!(m2.a.w().unwrap().equal(m.a.w().unwrap()));
    assert!(m2.b.w().unwrap().equal(&b_before), "the other module is untouched");
    // The whole store against the module's file is a strict mismatch.
    assert!(restore(&fresh, &path).is_err());
    // A plain list of variables works too.
    let vars = m.b.variables().unwrap();
    save(vars.as_slice(), &path).unwrap();
    restore(&vars, &path).unwrap();
}

#[test]
fn strict_mismatch_lists_every_difference_and_writes_nothing() {
    let dir = TestDir::new("ckpt_strict");
    let path = dir.join("a.safetensors");
    let src = Store::cpu();
    let s = src.root().child("linear").unwrap();
    let _ = s.var("w", &[3, 2]).create().unwrap();
    let _ = s.var("b", &[2]).init(Initializer::Ones).create().unwrap();
    let _ = src.root().child("extra").unwrap().var("v", &[1]).create().unwrap();
    let _ = src.root().child("extra2").unwrap().var("v", &[1]).create().unwrap();
    save(&src, &path).unwrap();

    let dst = Store::cpu();
    let d = dst.root().child("linear").unwrap();
    let _ = d.var("w", &[2, 3]).create().unwrap();
    let _ = d.var("b", &[2]).create().unwrap();
    let _ = dst.root().child("other").unwrap().var("u", &[4]).create().unwrap();
    let e = restore(&dst, &path).unwrap_err();
    assert_eq!(checkpoint_path(&e), path);
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint {}: does not match the variables: missing in file (1): other/u; \
             unexpected in file (2): extra/v, extra2/v; \
             shape mismatches (1): linear/w: variable [2, 3], file [3, 2]",
            path.display()
        )
    );
    assert_eq!(dst.get("linear/b").unwrap().tensor().sum(Kind::Float).double_value(&[]), 0.0);

    // Allowing missing and unexpected still refuses the shape mismatch, and only lists it.
    let e = restore_with(&dst, &path, &RestoreOptions::partial()).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "does not match the variables: shape mismatches (1): linear/w: variable [2, 3], file [3, 2]"
        ),
        "{e}"
    );
    // Allowing only missing variables still lists the unexpected tensors.
    let e = restore_with(&dst, &path, &RestoreOptions::strict().with_allow_missing(true)).unwrap_err();
    assert!(e.to_string().contains("unexpected in file (2): extra/v, extra2/v;"), "{e}");
    assert!(!e.to_string().contains("missing"), "{e}");
}

#[test]
fn partial_restore_reports_what_it_skipped() {
    let dir = TestDir::new("ckpt_partial");
    let path = dir.join("a.safetensors");
    let src = Store::cpu();
    let s = src.root().child("enc").unwrap();
    let _ = s.var("w", &[2]).init(Initializer::Constant { value: 3.0 }).create().unwrap();
    let _ = s.var("old", &[1]).create().unwrap();
    save_with_metadata(&src, &path, &BTreeMap::from([("epoch".to_string(), "4".to_string())])).unwrap();

    let dst = Store::cpu();
    let d = dst.root().child("enc").unwrap();
    let _ = d.var("w", &[2]).create().unwrap();
    let _ = d.var("new", &[3]).init(Initializer::Ones).create().unwrap();
    let report = restore_with(&dst, &path, &RestoreOptions::partial()).unwrap();
    assert_eq!(
        report,
        RestoreReport {
            restored: vec!["enc/w".into()],
            missing: vec!["enc/new".into()],
            unexpected: vec!["enc/old".into()],
            metadata: BTreeMap::from([("epoch".to_string(), "4".to_string())]),
        }
    );
    assert_eq!(Vec::<f32>::try_from(dst.get("enc/w").unwrap().tensor()).unwrap(), [3.0, 3.0]);
    assert_eq!(Vec::<f32>::try_from(dst.get("enc/new").unwrap().tensor()).unwrap(), [1.0, 1.0, 1.0]);
}

#[test]
fn prefix_map_restores_a_module_saved_under_another_scope() {
    let dir = TestDir::new("ckpt_prefix");
    let path = dir.join("a.safetensors");
    let store = Store::cpu();
    let m = model(&store);
    save(&m.a, &path).unwrap();
    let fresh = Store::cpu();
    let lin =
        Linear::new(&fresh.root().child("model").unwrap(), LinearConfig::new(2).with_input_size(3)).unwrap();
    assert!(restore(&lin, &path).is_err(), "the names differ");
    let options = RestoreOptions::strict().with_prefix_map("gan/generator", "model");
    let report = restore_with(&lin, &path, &options).unwrap();
    assert_eq!(report.restored, ["model/linear/w", "model/linear/b"]);
    assert!(lin.w().unwrap().equal(m.a.w().unwrap()));
    // A mismatch names both the variable and its file key.
    let other =
        Linear::new(&fresh.root().child("model").unwrap(), LinearConfig::new(3).with_input_size(3)).unwrap();
    let options = RestoreOptions::strict().with_prefix_map("gan/generator/linear", "model_1/linear");
    let e = restore_with(&other, &path, &options).unwrap_err();
    assert!(
        e.to_string()
            .contains("model_1/linear/w (file key gan/generator/linear/w): variable [3, 3], file [3, 2]"),
        "{e}"
    );
}

#[test]
fn kinds_are_converted_to_the_variables() {
    let dir = TestDir::new("ckpt_kind");
    let path = dir.join("a.safetensors");
    let src = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
    let mut w = src.root().child("m").unwrap().var("w", &[3]).create().unwrap();
    tch::no_grad(|| w.copy_(&Tensor::from_slice(&[0.1f64, -2.5, 1e-3])));
    save(&src, &path).unwrap();
    assert_eq!(load(&path).unwrap()["m/w"].kind(), Kind::Double);

    let dst = Store::cpu();
    let w32 = dst.root().child("m").unwrap().var("w", &[3]).create().unwrap();
    restore(&dst, &path).unwrap();
    assert_eq!(w32.kind(), Kind::Float);
    assert_eq!(Vec::<f32>::try_from(&w32).unwrap(), [0.1f32, -2.5, 1e-3]);
}

#[test]
#[ignore = "needs a CUDA device: run with --ignored where one is present"]
fn moves_values_across_devices() {
    assert!(tch::Cuda::is_available(), "this test needs a CUDA device");
    let dir = TestDir::new("ckpt_device");
    let path = dir.join("a.safetensors");
    let gpu = Store::new(Device::Cuda(0));
    let m = model(&gpu);
    save(&gpu, &path).unwrap();
    let cpu = Store::cpu();
    let m2 = model(&cpu);
    restore(&cpu, &path).unwrap();
    assert!(m2.a.w().unwrap().equal(&m.a.w().unwrap().to_device(Device::Cpu)));
    perturb(&gpu);
    restore(&gpu, &path).unwrap();
    assert_eq!(m.a.w().unwrap().device(), Device::Cuda(0));
    assert!(m.a.w().unwrap().to_device(Device::Cpu).equal(m2.a.w().unwrap()));
}

#[test]
fn truncated_garbage_and_missing_files_are_checkpoint_errors() {
    let dir = TestDir::new("ckpt_corrupt");
    let path = dir.join("a.safetensors");
    let store = Store::cpu();
    let _m = model(&store);
    save(&store, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let before = snapshot(&store);
    perturb(&store);
    let perturbed = snapshot(&store);

    let half = dir.join("half.safetensors");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let e = restore(&store, &half).unwrap_err();
    assert_eq!(checkpoint_path(&e), half);
    assert!(e.to_string().contains("truncated"), "{e}");

    // Cut inside the header too.
    std::fs::write(&half, &bytes[..20]).unwrap();
    let e = restore(&store, &half).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint at all, just text").unwrap();
    let e = restore(&store, &garbage).unwrap_err();
    assert_eq!(checkpoint_path(&e), garbage);
    assert!(e.to_string().contains("invalid safetensors file"), "{e}");

    let missing = dir.join("missing.safetensors");
    let e = restore(&store, &missing).unwrap_err();
    assert_eq!(checkpoint_path(&e), missing);
    assert!(e.to_string().contains("cannot read"), "{e}");
    assert!(matches!(load(&missing), Err(Error::Checkpoint { .. })));
    assert!(matches!(read_metadata(&garbage), Err(Error::Checkpoint { .. })));

    assert_same(&store, &perturbed);
    restore(&store, &path).unwrap();
    assert_same(&store, &before);
}

#[test]
fn unbuilt_lazy_modules_are_not_built_errors() {
    let dir = TestDir::new("ckpt_lazy");
    let path = dir.join("a.safetensors");
    let store = Store::cpu();
    let lin = Linear::new(&store.root(), LinearConfig::new(2)).unwrap();
    assert!(matches!(save(&lin, &path), Err(Error::NotBuilt { .. })));
    assert!(!path.exists());
    let built = Store::cpu();
    let lin2 = Linear::new(&built.root(), LinearConfig::new(2).with_input_size(3)).unwrap();
    save(&lin2, &path).unwrap();
    let e = restore(&lin, &path).unwrap_err();
    assert!(matches!(&e, Error::NotBuilt { module } if module == "linear"), "{e}");
}

#[test]
fn duplicate_variables_are_refused() {
    let dir = TestDir::new("ckpt_dup");
    let path = dir.join("a.safetensors");
    let store = Store::cpu();
    let m = model(&store);
    let twice = [m.a.variables().unwrap(), m.a.variables().unwrap()].concat();
    let e = save(&twice, &path).unwrap_err();
    assert!(e.to_string().ends_with("the variable gan/generator/linear/w is listed twice"), "{e}");
    assert!(!path.exists());
    save(&m.a, &path).unwrap();
    assert!(restore(&twice, &path).is_err());
}

#[test]
fn metadata_and_load_round_trip() {
    let dir = TestDir::new("ckpt_meta");
    let path = dir.join("a.safetensors");
    let store = Store::cpu();
    let m = model(&store);
    let meta =
        BTreeMap::from([("step".to_string(), "12".to_string()), ("note".to_string(), "é".to_string())]);
    save_with_metadata(&store, &path, &meta).unwrap();
    assert_eq!(read_metadata(&path).unwrap(), meta);
    let tensors = load(&path).unwrap();
    assert_eq!(tensors.len(), 5);
    assert!(tensors["gan/generator/linear_1/w"].equal(m.b.w().unwrap()));
    assert_eq!(names(&store.variables()).len(), 5);
    // Saving an empty store gives a valid, empty checkpoint.
    let empty = dir.join("empty.safetensors");
    save(&Store::cpu(), &empty).unwrap();
    assert!(load(&empty).unwrap().is_empty());
    restore(&Store::cpu(), &empty).unwrap();
}

#[test]
fn contents_are_validated_on_restore() {
    let dir = TestDir::new("ckpt_contents");
    let path = dir.join("a.safetensors");
    let store = Store::cpu();
    let w = store.root().child("m").unwrap().var("w", &[3]).create().unwrap();
    let before = snapshot(&store);

    // A flipped bit in the data region fails the checksum; skip_checksums reads it anyway.
    tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(&[1.0f32, 2.0, 3.0])));
    save(&store, &path).unwrap();
    let _ = tch::no_grad(|| w.shallow_clone().zero_());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let e = restore(&store, &path).unwrap_err();
    assert!(e.to_string().contains("m/w: checksum mismatch"), "{e}");
    assert_same(&store, &before);
    restore_with(&store, &path, &RestoreOptions::strict().with_skip_checksums(true)).unwrap();
    assert_ne!(Vec::<f32>::try_from(&w).unwrap(), [1.0, 2.0, 3.0]);

    // NaN weights (a valid checksum: they were saved so) are refused.
    let nan = [("m/w".to_string(), Tensor::from_slice(&[f32::NAN, 0.0, 0.0]))];
    save_tensors(&nan, &path, &BTreeMap::new()).unwrap();
    let e = restore(&store, &path).unwrap_err();
    assert!(e.to_string().contains("m/w: the file's values in Float holds 1 non-finite values"), "{e}");

    // f32 1e10 does not fit a Half store: inf after conversion, refused.
    let half = Store::with_kind(Device::Cpu, Kind::Half).unwrap();
    let _ = half.root().child("m").unwrap().var("w", &[3]).create().unwrap();
    let big = [("m/w".to_string(), Tensor::from_slice(&[1e10f32, 0.0, 0.0]))];
    save_tensors(&big, &path, &BTreeMap::new()).unwrap();
    let e = restore(&half, &path).unwrap_err();
    assert!(e.to_string().contains("m/w: the file's values in Half holds 1 non-finite values"), "{e}");
    assert!(restore(&store, &path).is_ok(), "fits Float");
}
