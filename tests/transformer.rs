//! TransformerEncoderLayer against PyTorch's `nn.TransformerEncoderLayer` (batch first, eval)
//! with state dicts loaded from `scripts/fixtures/transformer.py`: post-norm and pre-norm,
//! ReLU and GELU, key-padding and causal masks; TransformerEncoder against
//! `nn.TransformerEncoder` (two pre-norm layers and a final norm); TransformerDecoderLayer
//! against `nn.TransformerDecoderLayer` (causal target, padded memory).

mod common;

use common::{assert_close, load_fixture};
use couplet::attention::{
    AttentionMasks, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer,
    TransformerEncoderLayerConfig,
};
use couplet::{Activation, Mode, Store};
use std::collections::HashMap;

#[test]
fn encoder_layer_matches_pytorch_with_loaded_state_dicts() {
    let fx = load_fixture("transformer");
    let cases = [
        ("post", false, Activation::Relu, false, false),
        ("post_kpm", false, Activation::Relu, true, false),
        ("post_causal", false, Activation::Relu, false, true),
        ("pre_gelu_kpm_causal", true, Activation::Gelu, true, true),
    ];
    for (case, norm_first, activation, kpm, causal) in cases {
        let prefix = format!("{case}/");
        let state: HashMap<String, tch::Tensor> = fx
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .map(|k| (k.clone(), fx.get(&k)))
            .collect();
        let store = Store::cpu();
        let config = TransformerEncoderLayerConfig::new(8, 2)
            .with_dim_feedforward(16)
            .with_dropout(0.0)
            .with_activation(activation)
            .with_norm_first(norm_first);
        let layer = TransformerEncoderLayer::new(&store.root(), config).unwrap();
        layer.load_torch(&state, &prefix).unwrap();
        let key_mask = fx.get(&format!("{prefix}key_mask"));
        let masks = AttentionMasks { key_mask: kpm.then_some(&key_mask), causal, need_weights: false };
        let y = layer.forward_t(&fx.get(&format!("{prefix}x")), &masks, Mode::Eval).unwrap();
        println!("{case}");
        assert_close(&y, &fx.get(&format!("{prefix}y")), 1e-5);
    }
}

#[test]
fn load_torch_checks_every_entry_before_copying() {
    let fx = load_fixture("transformer");
    let mut state: HashMap<String, tch::Tensor> =
        fx.keys().into_iter().filter(|k| k.starts_with("post/")).map(|k| (k.clone(), fx.get(&k))).collect();
    let store = Store::cpu();
    let layer = TransformerEncoderLayer::new(
        &store.root(),
        TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16).with_dropout(0.0),
    )
    .unwrap();
    let before: Vec<tch::Tensor> = store.variables().iter().map(|v| v.tensor().copy()).collect();
    state.insert("post/norm2.bias".into(), tch::Tensor::zeros([7], (tch::Kind::Float, tch::Device::Cpu)));
    let e = layer.load_torch(&state, "post/").unwrap_err();
    assert!(e.to_string().contains("norm2"), "{e}");
    for (v, b) in store.variables().iter().zip(&before) {
        assert!(v.tensor().equal(b), "{} changed", v.name());
    }
}

#[test]
fn encoder_stack_matches_pytorch_transformer_encoder() {
    let fx = load_fixture("transformer");
    let state: HashMap<String, tch::Tensor> = fx
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("encoder/"))
        .map(|k| (k.clone(), fx.get(&k)))
        .collect();
    let store = Store::cpu();
    let layer = TransformerEncoderLayerConfig::new(8, 2)
        .with_dim_feedforward(16)
        .with_dropout(0.0)
        .with_norm_first(true);
    let encoder = TransformerEncoder::new(&store.root(), layer, 2, true).unwrap();
    encoder.load_torch(&state, "encoder/").unwrap();
    let key_mask = fx.get("encoder/key_mask");
    let masks = AttentionMasks { key_mask: Some(&key_mask), causal: true, need_weights: false };
    let y = encoder.forward_t(&fx.get("encoder/x"), &masks, Mode::Eval).unwrap();
    assert_close(&y, &fx.get("encoder/y"), 1e-5);
    // A missing entry (the last one read) leaves every variable as it was.
    let mut broken = state;
    broken.remove("encoder/norm.bias");
    for v in store.variables() {
        let _ = tch::no_grad(|| v.tensor().shallow_clone().fill_(0.5));
    }
    let zeroed: Vec<tch::Tensor> = store.variables().iter().map(|v| v.tensor().copy()).collect();
    let e = encoder.load_torch(&broken, "encoder/").unwrap_err();
    assert!(e.to_string().contains("encoder/norm.bias"), "{e}");
    for (v, z) in store.variables().iter().zip(&zeroed) {
        assert!(v.tensor().equal(z), "{} changed", v.name());
    }
}

#[test]
fn decoder_layer_matches_pytorch_with_causal_target_and_padded_memory() {
    let fx = load_fixture("transformer");
    for (case, norm_first, activation) in
        [("dec_post", false, Activation::Relu), ("dec_pre_gelu", true, Activation::Gelu)]
    {
        let prefix = format!("{case}/");
        let state: HashMap<String, tch::Tensor> = fx
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .map(|k| (k.clone(), fx.get(&k)))
            .collect();
        let store = Store::cpu();
        let config = TransformerEncoderLayerConfig::new(8, 2)
            .with_dim_feedforward(16)
            .with_dropout(0.0)
            .with_activation(activation)
            .with_norm_first(norm_first);
        let layer = TransformerDecoderLayer::new(&store.root(), config).unwrap();
        layer.load_torch(&state, &prefix).unwrap();
        let memory_mask = fx.get(&format!("{prefix}memory_mask"));
        let causal = AttentionMasks { key_mask: None, causal: true, need_weights: false };
        let y = layer
            .forward_t(
                &fx.get(&format!("{prefix}tgt")),
                &fx.get(&format!("{prefix}memory")),
                &causal,
                Some(&memory_mask),
                Mode::Eval,
            )
            .unwrap();
        println!("{case}");
        assert_close(&y, &fx.get(&format!("{prefix}y")), 1e-5);
    }
}
