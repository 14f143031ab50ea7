//! Masks select: padding that holds NaN or an infinity in masked memory slots or keys gives
//! exactly the result of zero padding (finite), for every attention module that takes a mask.
//! Before masks selected (they multiplied), `0 · inf = NaN` leaked into reads and contexts.

use couplet_attention::{
    AttentionDecoderConfig, AttentionDecoderCore, AttentionMasks, AttentionMechanism, AttentiveRead,
    BahdanauAttention, BahdanauConfig, DotAttention, LuongAttention, LuongConfig, MultiHeadAttention,
    MultiHeadAttentionConfig,
};
use couplet_modules::{Linear, LinearConfig, Mode, Store};
use couplet_rnn::{RnnCore, VanillaRnn, VanillaRnnConfig};
use tch::{Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// `[B = 2, N = 3, D = 2]` memories: row 0 has 2 valid slots, row 1 has 1; the padding is
/// `pad` (0, NaN, inf or -inf).
fn memory(pad: f32) -> Tensor {
    let v = [0.5f32, -1.0, 1.5, 0.25, pad, pad, -0.5, 2.0, pad, pad, pad, pad];
    Tensor::from_slice(&v).view([2, 3, 2])
}

const LENGTHS: [i64; 2] = [2, 1];

fn mask() -> Tensor {
    Tensor::from_slice(&[true, true, false, true, false, false]).view([2, 3])
}

/// Same values as the zero-padded run, and finite.
fn same(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.isfinite().all().int64_value(&[]), 1, "{what}: not finite: {got}");
    assert!(got.allclose(want, 1e-6, 1e-6, false), "{what}: {got} vs zero padding {want}");
}

const PADS: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

#[test]
fn attentive_read_ignores_non_finite_padding() {
    let store = Store::cpu();
    let logits = Linear::new(&store.root(), LinearConfig::new(1).with_input_size(4)).unwrap();
    let read = AttentiveRead::new(&store.root(), logits).unwrap();
    let query = Tensor::from_slice(&[1.0f32, -1.0, 0.5, 2.0]).view([2, 2]);
    let want = read.forward_t(&memory(0.0), &query, Some(&mask()), Mode::Eval).unwrap();
    for pad in PADS {
        let got = read.forward_t(&memory(pad), &query, Some(&mask()), Mode::Eval).unwrap();
        same(&format!("attentive read, pad {pad}"), &got.read, &want.read);
        same(&format!("attentive weights, pad {pad}"), &got.weights, &want.weights);
    }
}

fn check_mechanism<M: AttentionMechanism>(m: &M) {
    let query = Tensor::from_slice(&[1.0f32, -1.0, 0.5, 2.0]).view([2, 2]);
    let zero = m.prepare_with_lengths(&memory(0.0), &LENGTHS).unwrap();
    let (want, want_a) = m.attend(&query, &zero).unwrap();
    for pad in PADS {
        let prepared = m.prepare_with_lengths(&memory(pad), &LENGTHS).unwrap();
        same(&format!("{} values, pad {pad}", m.name()), &prepared.values, &zero.values);
        let (context, alignments) = m.attend(&query, &prepared).unwrap();
        same(&format!("{} context, pad {pad}", m.name()), &context, &want);
        same(&format!("{} alignments, pad {pad}", m.name()), &alignments, &want_a);
    }
}

#[test]
fn mechanisms_prepared_with_lengths_ignore_non_finite_padding() {
    let store = Store::cpu();
    check_mechanism(&DotAttention::new(&store.root()).unwrap());
    check_mechanism(&LuongAttention::new(&store.root(), LuongConfig::new(2).with_scale(true)).unwrap());
    check_mechanism(
        &BahdanauAttention::new(&store.root(), BahdanauConfig::new(3).with_normalize(true)).unwrap(),
    );
}

#[test]
fn the_attention_decoder_core_ignores_non_finite_padding() {
    let store = Store::cpu();
    let cell = VanillaRnn::new(&store.root(), VanillaRnnConfig::new(2).with_input_size(3)).unwrap();
    let mechanism = LuongAttention::new(&store.root(), LuongConfig::new(2)).unwrap();
    let dec = AttentionDecoderCore::new(
        &store.root(),
        Box::new(cell),
        Box::new(mechanism),
        AttentionDecoderConfig::new(2),
    )
    .unwrap();
    let x = Tensor::from_slice(&[1.0f32, 0.5]).view([2, 1]);
    let s0 = dec.initial_state_with_memory_lengths(&memory(0.0), &LENGTHS, None).unwrap();
    let (want, _) = dec.step(&x, &s0, Mode::Eval).unwrap();
    for pad in PADS {
        let s = dec.initial_state_with_memory_lengths(&memory(pad), &LENGTHS, None).unwrap();
        let (got, s1) = dec.step(&x, &s, Mode::Eval).unwrap();
        same(&format!("decoder output, pad {pad}"), &got, &want);
        let (again, _) = dec.step(&x, &s1, Mode::Eval).unwrap();
        assert_eq!(again.isfinite().all().int64_value(&[]), 1, "second step, pad {pad}");
    }
}

#[test]
fn multi_head_attention_ignores_non_finite_masked_keys_and_values() {
    tch::manual_seed(0);
    let store = Store::cpu();
    let mha = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(2, 2)).unwrap();
    let query = Tensor::randn([2, 4, 2], CPU);
    for need_weights in [false, true] {
        let masks = AttentionMasks { key_mask: Some(&mask()), need_weights, ..Default::default() };
        let (want, want_w) = mha.forward_t(&query, &memory(0.0), &memory(0.0), &masks, Mode::Eval).unwrap();
        for pad in PADS {
            let (got, w) = mha.forward_t(&query, &memory(pad), &memory(pad), &masks, Mode::Eval).unwrap();
            same(&format!("multi-head output, pad {pad}, weights {need_weights}"), &got, &want);
            if let (Some(w), Some(want_w)) = (w, &want_w) {
                same(&format!("multi-head weights, pad {pad}"), &w, want_w);
            }
        }
    }
}
