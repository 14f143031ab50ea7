//! `MultiAttentionDecoderCore` against TF Addons' `AttentionWrapper` over a list of two
//! mechanisms (`LuongAttention(scale)` and `BahdanauAttention(normalize)`, one attention layer
//! each, input feeding), transcribed and run with TF 2.21 ops by
//! `scripts/fixtures/tf_seq2seq.py` (`tests/fixtures/tf/multi_attention`): every step's
//! concatenated attention, both alignment histories and the final cell state, in f64 to 1e-9,
//! stepped by hand and unrolled by `dynamic_rnn`.

use couplet::attention::{
    memory_mask, AttentionMechanism, BahdanauAttention, BahdanauConfig, DecoderAttention, LuongAttention,
    LuongConfig, MultiAttentionDecoderCore, MultiAttentionOptions,
};
use couplet::checkpoint::tf::{module_variable, TfCheckpoint};
use couplet::rnn::{dynamic_rnn, RnnCore, UnrollOptions, VanillaRnn, VanillaRnnConfig};
use couplet::{Mode, Module, Store};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn close(actual: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes");
    let gap = (actual - expected).abs().max().double_value(&[]);
    assert!(gap <= 1e-9, "{what}: max |couplet - TF| = {gap:e}");
}

fn set(module: &impl Module, leaf: &str, value: &Tensor) {
    let v = module_variable(module, leaf).unwrap();
    tch::no_grad(|| v.shallow_clone().copy_(value));
}

#[test]
fn two_mechanisms_match_tf_addons_attention_wrapper() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/multi_attention/expected");
    let want = TfCheckpoint::open(path).unwrap();
    let w = |name: &str| want.tensor(name).unwrap();
    let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
    let root = store.root();
    let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Double, Device::Cpu));

    let cell = VanillaRnn::new(&root, VanillaRnnConfig::new(4).with_input_size(2 + 5)).unwrap();
    for leaf in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        set(&cell, leaf, &w(leaf));
    }
    let luong = LuongAttention::new(&root, LuongConfig::new(4).with_scale(true)).unwrap();
    let _build = luong.prepare(&zeros(&[1, 1, 3]), None).unwrap();
    set(&luong, "memory_layer/w", &w("luong_memory_kernel"));
    set(&luong, "attention_g", &w("luong_g"));
    let bahdanau = BahdanauAttention::new(&root, BahdanauConfig::new(4).with_normalize(true)).unwrap();
    let built = bahdanau.prepare(&zeros(&[1, 1, 2]), None).unwrap();
    let _build = bahdanau.score(&zeros(&[1, 4]), &built).unwrap();
    for (leaf, name) in [
        ("memory_layer/w", "bahdanau_memory_kernel"),
        ("query_layer/w", "bahdanau_query_kernel"),
        ("attention_v", "bahdanau_v"),
        ("attention_g", "bahdanau_g"),
        ("attention_b", "bahdanau_b"),
    ] {
        set(&bahdanau, leaf, &w(name));
    }
    let options = MultiAttentionOptions { alignment_history: true, ..Default::default() };
    let core = MultiAttentionDecoderCore::new(
        &root,
        Box::new(cell),
        vec![
            DecoderAttention::new(Box::new(luong), Some(3)).with_memory_size(Some(3)),
            DecoderAttention::new(Box::new(bahdanau), Some(2)).with_memory_size(Some(2)),
        ],
        options,
    )
    .unwrap();
    for k in 0..2 {
        let layer = core.attention_layer(k).unwrap();
        tch::no_grad(|| layer.w().unwrap().shallow_clone().copy_(&w(&format!("attention_layer_{k}"))));
    }
    assert_eq!(core.output_shape(), [5]);

    let (memory0, memory1) = (w("memory0"), w("memory1"));
    let lengths = |name: &str| Vec::<i64>::try_from(&w(name)).unwrap();
    let mask0 = memory_mask(&memory0, &lengths("lengths0")[..]).unwrap();
    let mask1 = memory_mask(&memory1, &lengths("lengths1")[..]).unwrap();
    let initial = core
        .initial_state_with_memories(&[(&memory0, Some(&mask0)), (&memory1, Some(&mask1))], Some(3))
        .unwrap();
    let inputs = w("inputs");
    let outputs = w("outputs");

    // By hand, one step at a time.
    let mut state = initial.clone();
    for t in 0..3 {
        let (out, next) = core.step(&inputs.get(t), &state, Mode::Eval).unwrap();
        close(&out, &outputs.get(t), &format!("output, step {t}"));
        state = next;
    }
    close(&core.alignment_history(&state, 0).unwrap(), &w("alignments_0"), "alignments 0");
    close(&core.alignment_history(&state, 1).unwrap(), &w("alignments_1"), "alignments 1");
    let cell_state = core.cell_state(&state).unwrap();
    close(cell_state.h().unwrap(), &w("final_h"), "final cell state");
    close(&core.alignments(&state, 1).unwrap(), &w("alignments_1").get(2), "last alignments 1");
    close(&core.attention(&state).unwrap(), &outputs.get(2), "last attention");

    // Unrolled by dynamic_rnn (batch-major inputs [B, T, 2]).
    let batch_major = inputs.transpose(0, 1);
    let (out, last) =
        dynamic_rnn(&core, &batch_major, &UnrollOptions::eval().with_initial_state(&initial)).unwrap();
    close(&out.transpose(0, 1), &outputs, "dynamic_rnn outputs");
    close(&core.alignment_history(&last, 0).unwrap(), &w("alignments_0"), "dynamic_rnn alignments 0");
}
