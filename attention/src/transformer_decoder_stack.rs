//! [`TransformerDecoder`]: a stack of [`TransformerDecoderLayer`]s with an optional final
//! layer norm, as PyTorch's `nn.TransformerDecoder`, whose state dicts it loads.

use crate::multi_head::AttentionMasks;
use crate::transformer::{restoring, TorchLoader, TransformerEncoderLayerConfig};
use crate::transformer_decoder::TransformerDecoderLayer;
use couplet_modules::{Error, LayerNorm, LayerNormConfig, Mode, Module, Result, Scope};
use std::collections::HashMap;
use tch::Tensor;

/// `num_layers` decoder layers of one configuration applied in turn to `tgt [B, Lt, E]`, each
/// attending the same `memory [B, Ls, E]`, then (with `final_norm`) a [`LayerNorm`] `norm`
/// over `E` (PyTorch's `norm` argument, usual with pre-norm layers): PyTorch's
/// `nn.TransformerDecoder(batch_first=True)`. Layers are in the scope `transformer_decoder`,
/// named `transformer_decoder_layer`, `transformer_decoder_layer_1`, …
///
/// Variables: each layer's (see [`TransformerDecoderLayer`]), then `norm/scale`,
/// `norm/offset` (`[E]`) with the final norm.
pub struct TransformerDecoder {
    scope: Scope,
    layers: Vec<TransformerDecoderLayer>,
    norm: Option<LayerNorm>,
}

impl std::fmt::Debug for TransformerDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformerDecoder")
            .field("scope", &self.scope.path())
            .field("num_layers", &self.layers.len())
            .field("final_norm", &self.norm.is_some())
            .finish()
    }
}

impl TransformerDecoder {
    /// Builds `num_layers` (>= 1) decoder layers of `layer` in a child scope
    /// `transformer_decoder` (or `.._1`, …) of `parent`, and the final norm (epsilon
    /// `layer.layer_norm_eps`, with an offset) when `final_norm`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `transformer_decoder` for `num_layers = 0`, or any
    /// [`TransformerDecoderLayer::new`] error.
    pub fn new(
        parent: &Scope,
        layer: TransformerEncoderLayerConfig,
        num_layers: usize,
        final_norm: bool,
    ) -> Result<Self> {
        let scope = parent.child("transformer_decoder")?;
        if num_layers == 0 {
            return Err(Error::config(scope.path(), "num_layers must be >= 1, got 0"));
        }
        let layers = (0..num_layers)
            .map(|_| TransformerDecoderLayer::new(&scope, layer.clone()))
            .collect::<Result<Vec<_>>>()?;
        let norm = if final_norm {
            let config =
                LayerNormConfig::new().with_normalized_shape(&[layer.d_model]).with_eps(layer.layer_norm_eps);
            Some(LayerNorm::named(&scope, "norm", config)?)
        } else {
            None
        };
        Ok(TransformerDecoder { scope, layers, norm })
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[TransformerDecoderLayer] {
        &self.layers
    }

    /// The final norm, if any.
    pub fn norm(&self) -> Option<&LayerNorm> {
        self.norm.as_ref()
    }

    /// Applies every layer to `tgt [B, Lt, E]` with `memory [B, Ls, E]` (as
    /// [`TransformerDecoderLayer::forward_t`]: `tgt_masks` for the self-attention, its key
    /// mask bool `[B, Lt]` true = attend, `causal` for autoregressive decoding;
    /// `memory_key_mask` bool `[B, Ls]`, true = attend), then the final norm: `[B, Lt, E]`.
    ///
    /// # Errors
    /// As [`TransformerDecoderLayer::forward_t`] ([`Error::Shape`] naming an attention module
    /// for inputs that are not `[B, L, E]` of one `B` or masks that are not bool `[B, L]`;
    /// [`Error::InvalidArgument`] for an undefined input).
    pub fn forward_t(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        tgt_masks: &AttentionMasks,
        memory_key_mask: Option<&Tensor>,
        mode: Mode,
    ) -> Result<Tensor> {
        let mut x = tgt.shallow_clone();
        for layer in &self.layers {
            x = layer.forward_t(&x, memory, tgt_masks, memory_key_mask, mode)?;
        }
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }

    /// Copies a PyTorch `nn.TransformerDecoder` state dict in: layer `i` from
    /// `{prefix}layers.{i}.` (as [`TransformerDecoderLayer::load_torch`]) and the final norm
    /// from `{prefix}norm.weight [E]` / `norm.bias [E]`. If any entry is missing or
    /// mis-shaped, every variable keeps its value from before the call.
    ///
    /// # Errors
    /// The first [`TransformerDecoderLayer::load_torch`] error, or [`Error::InvalidArgument`]
    /// naming `transformer_decoder` for a missing final-norm entry / [`Error::Shape`] naming
    /// the norm for one of another shape.
    pub fn load_torch(&self, state_dict: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        restoring(self, || {
            for (i, layer) in self.layers.iter().enumerate() {
                layer.load_torch(state_dict, &format!("{prefix}layers.{i}."))?;
            }
            let Some(norm) = &self.norm else { return Ok(()) };
            let mut load = TorchLoader::new(self.scope.path(), state_dict, prefix, true);
            load.norm(norm, "norm")?;
            load.finish()
        })
    }
}

impl Module for TransformerDecoder {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The layers in order, then the final norm.
    fn children(&self) -> Vec<&dyn Module> {
        let mut out: Vec<&dyn Module> = self.layers.iter().map(|l| l as &dyn Module).collect();
        if let Some(norm) = &self.norm {
            out.push(norm);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;
    use tch::{Device, Kind};

    #[test]
    fn stacks_layers_then_the_norm_and_checks_its_config() {
        let store = Store::cpu();
        let layer = TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16).with_dropout(0.0);
        let dec = TransformerDecoder::new(&store.root(), layer.clone(), 2, true).unwrap();
        let tgt = Tensor::randn([2, 3, 8], (Kind::Float, Device::Cpu));
        let memory = Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu));
        let causal = AttentionMasks { key_mask: None, causal: true, need_weights: false };
        let y = dec.forward_t(&tgt, &memory, &causal, None, Mode::Eval).unwrap();
        let [l0, l1] = dec.layers() else { panic!("two layers") };
        let by_hand = l0.forward_t(&tgt, &memory, &causal, None, Mode::Eval).unwrap();
        let by_hand = l1.forward_t(&by_hand, &memory, &causal, None, Mode::Eval).unwrap();
        let by_hand = by_hand.layer_norm([8i64].as_slice(), None::<Tensor>, None::<Tensor>, 1e-5, false);
        assert!(y.allclose(&by_hand, 1e-5, 1e-5, false));
        let names: Vec<String> = dec.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names.len(), 2 * 26 + 2);
        assert_eq!(
            names[26], "transformer_decoder/transformer_decoder_layer_1/multi_head_attention/query/w",
            "{names:?}"
        );
        assert_eq!(names[52..], ["transformer_decoder/norm/scale", "transformer_decoder/norm/offset"]);
        let e = TransformerDecoder::new(&store.root(), layer.clone(), 0, false).unwrap_err();
        assert!(
            matches!(e, Error::Config { .. }) && e.to_string().contains("num_layers must be >= 1"),
            "{e}"
        );
        let e = dec.forward_t(&tgt, &memory.narrow(0, 0, 1), &causal, None, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = dec.forward_t(&Tensor::new(), &memory, &causal, None, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let plain = TransformerDecoder::new(&store.root(), layer, 1, false).unwrap();
        assert!(plain.norm().is_none());
        assert_eq!(plain.variables().unwrap().len(), 26);
    }
}
