//! TransformerDecoder against PyTorch's `nn.TransformerDecoder` (batch first, eval) with state
//! dicts loaded from `scripts/fixtures/transformer.py` (cases `decoder_*`): two pre-norm GELU
//! layers and a final LayerNorm, and three post-norm ReLU layers without one; causal target
//! with its own key padding, padded memory.

mod common;

use common::{assert_close, load_fixture};
use couplet::attention::{AttentionMasks, TransformerDecoder, TransformerEncoderLayerConfig};
use couplet::{Activation, Mode, Store};
use std::collections::HashMap;

fn state(prefix: &str) -> HashMap<String, tch::Tensor> {
    let fx = load_fixture("transformer");
    fx.keys().into_iter().filter(|k| k.starts_with(prefix)).map(|k| (k.clone(), fx.get(&k))).collect()
}

fn decoder(
    store: &Store,
    norm_first: bool,
    activation: Activation,
    layers: usize,
    norm: bool,
) -> TransformerDecoder {
    let layer = TransformerEncoderLayerConfig::new(8, 2)
        .with_dim_feedforward(16)
        .with_dropout(0.0)
        .with_activation(activation)
        .with_norm_first(norm_first);
    TransformerDecoder::new(&store.root(), layer, layers, norm).unwrap()
}

#[test]
fn decoder_stack_matches_pytorch_transformer_decoder() {
    let fx = load_fixture("transformer");
    for (case, norm_first, activation, layers, norm) in [
        ("decoder_pre_norm", true, Activation::Gelu, 2, true),
        ("decoder_post", false, Activation::Relu, 3, false),
    ] {
        let prefix = format!("{case}/");
        let store = Store::cpu();
        let dec = decoder(&store, norm_first, activation, layers, norm);
        dec.load_torch(&state(&prefix), &prefix).unwrap();
        let tgt_mask = fx.get(&format!("{prefix}tgt_mask"));
        let memory_mask = fx.get(&format!("{prefix}memory_mask"));
        let masks = AttentionMasks { key_mask: Some(&tgt_mask), causal: true, need_weights: false };
        let y = dec
            .forward_t(
                &fx.get(&format!("{prefix}tgt")),
                &fx.get(&format!("{prefix}memory")),
                &masks,
                Some(&memory_mask),
                Mode::Eval,
            )
            .unwrap();
        println!("{case}");
        assert_close(&y, &fx.get(&format!("{prefix}y")), 1e-5);
    }
}

#[test]
fn a_failed_load_leaves_every_variable_as_it_was() {
    let store = Store::cpu();
    let dec = decoder(&store, true, Activation::Gelu, 2, true);
    for v in store.variables() {
        let _ = tch::no_grad(|| v.tensor().shallow_clone().fill_(0.5));
    }
    let before: Vec<tch::Tensor> = store.variables().iter().map(|v| v.tensor().copy()).collect();
    // The final norm is read last: the layers were copied before its entry is found missing.
    let mut broken = state("decoder_pre_norm/");
    broken.remove("decoder_pre_norm/norm.bias");
    let e = dec.load_torch(&broken, "decoder_pre_norm/").unwrap_err();
    assert!(e.to_string().contains("state dict has no entry decoder_pre_norm/norm.bias"), "{e}");
    // A mis-shaped entry of the second layer.
    let mut broken = state("decoder_pre_norm/");
    broken.insert(
        "decoder_pre_norm/layers.1.norm3.weight".into(),
        tch::Tensor::zeros([7], (tch::Kind::Float, tch::Device::Cpu)),
    );
    let e = dec.load_torch(&broken, "decoder_pre_norm/").unwrap_err();
    assert!(matches!(e, couplet::Error::Shape { .. }) && e.to_string().contains("norm3"), "{e}");
    for (v, b) in store.variables().iter().zip(&before) {
        assert!(v.tensor().equal(b), "{} changed", v.name());
    }
}
