//! TF attention weights (`scripts/fixtures/tf_checkpoint.py`, `tests/fixtures/tf/attention`):
//! `LuongAttention(scale)`, `BahdanauAttention(normalize)` and an `AttentionWrapper` attention
//! layer under TF Addons' variable names in a checkpoint written by TF, loaded with couplet's
//! converters; alignments and contexts must equal the script's numpy computation of TF Addons'
//! formulas to 1e-9 in f64. The converters refuse a mechanism that already prepared a memory
//! (its keys would silently keep the old weights).

use couplet::attention::tf_weights::{load_tf_attention_layer, load_tf_bahdanau, load_tf_luong};
use couplet::attention::{
    memory_mask, AttentionDecoderConfig, AttentionDecoderCore, AttentionMechanism, BahdanauAttention,
    BahdanauConfig, LuongAttention, LuongConfig,
};
use couplet::checkpoint::tf::{TfCheckpoint, TfLoader};
use couplet::rnn::{Lstm, LstmConfig};
use couplet::{Error, Store};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/attention").join(name)
}

fn close(actual: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes");
    let gap = (actual - expected).abs().max().double_value(&[]);
    assert!(gap <= 1e-9, "{what}: max |couplet - numpy| = {gap:e}");
}

fn store() -> Store {
    Store::with_kind(Device::Cpu, Kind::Double).unwrap()
}

#[test]
fn luong_and_bahdanau_match_tf_addons_formulas() {
    let ckpt = TfCheckpoint::open(path("model.ckpt")).unwrap();
    let want = TfCheckpoint::open(path("expected")).unwrap();
    let store = store();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(6).with_scale(true)).unwrap();
    let bahdanau =
        BahdanauAttention::new(&store.root(), BahdanauConfig::new(6).with_normalize(true)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_tf_luong(&mut loader, "attention_wrapper/luong_attention", &luong).unwrap();
    load_tf_bahdanau(&mut loader, "attention_wrapper/bahdanau_attention", &bahdanau).unwrap();
    let report = loader.finish_partial().unwrap();
    assert_eq!(report.unexpected, ["attention_wrapper/attention_layer/kernel"]);

    let memory = want.tensor("memory").unwrap();
    let lengths = Vec::<i64>::try_from(&want.tensor("lengths").unwrap()).unwrap();
    for (name, mechanism) in [("luong", &luong as &dyn AttentionMechanism), ("bahdanau", &bahdanau)] {
        let prepared =
            mechanism.prepare(&memory, Some(&memory_mask(&memory, &lengths[..]).unwrap())).unwrap();
        let query = want.tensor(&format!("{name}_query")).unwrap();
        let (context, alignments) = mechanism.attend(&query, &prepared).unwrap();
        close(
            &alignments,
            &want.tensor(&format!("{name}_alignments")).unwrap(),
            &format!("{name} alignments"),
        );
        close(&context, &want.tensor(&format!("{name}_context")).unwrap(), &format!("{name} context"));
    }
}

#[test]
fn a_mechanism_that_prepared_a_memory_cannot_be_loaded() {
    let ckpt = TfCheckpoint::open(path("model.ckpt")).unwrap();
    let store = store();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(6).with_scale(true)).unwrap();
    let _stale = luong.prepare(&Tensor::zeros([1, 2, 3], (Kind::Double, Device::Cpu)), None).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    let e = load_tf_luong(&mut loader, "attention_wrapper/luong_attention", &luong).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert!(e.to_string().contains("before it prepares any memory"), "{e}");
    // A wrong scope is reported, not silently skipped.
    let fresh = LuongAttention::new(&store.root(), LuongConfig::new(6)).unwrap();
    load_tf_luong(&mut loader, "attention_wrapper/luong", &fresh).unwrap();
    assert!(loader
        .finish_partial()
        .unwrap_err()
        .to_string()
        .contains("missing [\"attention_wrapper/luong/memory_layer/kernel\"]"));
}

#[test]
fn the_attention_wrappers_layer_loads_into_the_decoder() {
    let ckpt = TfCheckpoint::open(path("model.ckpt")).unwrap();
    let store = store();
    let cell = Lstm::new(&store.root(), LstmConfig::new(7)).unwrap();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(6).with_scale(true)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_tf_luong(&mut loader, "attention_wrapper/luong_attention", &luong).unwrap();
    let decoder = AttentionDecoderCore::new(
        &store.root(),
        Box::new(cell),
        Box::new(luong),
        AttentionDecoderConfig::new(4),
    )
    .unwrap();
    load_tf_attention_layer(&mut loader, "attention_wrapper", &decoder).unwrap();
    let w = store.get("attention_decoder/attention_layer/w").unwrap();
    assert!(w.tensor().equal(&ckpt.tensor("attention_wrapper/attention_layer/kernel").unwrap()));
    let plain = AttentionDecoderCore::named(
        &store.root(),
        "plain",
        Box::new(Lstm::named(&store.root(), "cell2", LstmConfig::new(7)).unwrap()),
        Box::new(LuongAttention::new(&store.root(), LuongConfig::new(6)).unwrap()),
        AttentionDecoderConfig::default().with_output_attention(false),
    )
    .unwrap();
    assert!(matches!(
        load_tf_attention_layer(&mut loader, "attention_wrapper", &plain),
        Err(Error::Config { .. })
    ));
}
