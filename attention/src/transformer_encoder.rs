//! [`TransformerEncoder`]: a stack of [`TransformerEncoderLayer`]s with an optional final
//! layer norm, as PyTorch's `nn.TransformerEncoder`, whose state dicts it loads.

use crate::multi_head::AttentionMasks;
use crate::transformer::{restoring, TransformerEncoderLayer, TransformerEncoderLayerConfig};
use couplet_modules::{Error, LayerNorm, LayerNormConfig, Mode, Module, Result, Scope, TorchContext};
use std::collections::HashMap;
use tch::Tensor;

/// `num_layers` encoder layers of one configuration applied in turn to `x [B, L, E]`, then
/// (with `final_norm`) a [`LayerNorm`] `norm` over `E` (PyTorch's `norm` argument, usual with
/// pre-norm layers). Layers are in the scope `transformer_encoder`, named
/// `transformer_encoder_layer`, `transformer_encoder_layer_1`, …
///
/// PyTorch's `enable_nested_tensor` fast path (evaluation with a key padding mask) writes
/// zeros at padded positions; couplet computes them like any other position (as PyTorch does
/// with `enable_nested_tensor=False`). Outputs at unpadded positions agree either way.
pub struct TransformerEncoder {
    scope: Scope,
    layers: Vec<TransformerEncoderLayer>,
    norm: Option<LayerNorm>,
}

impl std::fmt::Debug for TransformerEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformerEncoder")
            .field("scope", &self.scope.path())
            .field("num_layers", &self.layers.len())
            .field("final_norm", &self.norm.is_some())
            .finish()
    }
}

impl TransformerEncoder {
    /// Builds `num_layers` (>= 1) layers of `layer` in a child scope `transformer_encoder`
    /// of `parent`, and the final norm (epsilon `layer.layer_norm_eps`) when `final_norm`.
    ///
    /// # Errors
    /// [`Error::Config`] for `num_layers = 0` or any [`TransformerEncoderLayer::new`] error.
    pub fn new(
        parent: &Scope,
        layer: TransformerEncoderLayerConfig,
        num_layers: usize,
        final_norm: bool,
    ) -> Result<Self> {
        let scope = parent.child("transformer_encoder")?;
        if num_layers == 0 {
            return Err(Error::config(scope.path(), "num_layers must be >= 1, got 0"));
        }
        let layers = (0..num_layers)
            .map(|_| TransformerEncoderLayer::new(&scope, layer.clone()))
            .collect::<Result<Vec<_>>>()?;
        let norm = if final_norm {
            let config =
                LayerNormConfig::new().with_normalized_shape(&[layer.d_model]).with_eps(layer.layer_norm_eps);
            Some(LayerNorm::named(&scope, "norm", config)?)
        } else {
            None
        };
        Ok(TransformerEncoder { scope, layers, norm })
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[TransformerEncoderLayer] {
        &self.layers
    }

    /// Applies every layer to `x [B, L, E]` under `masks`, then the final norm: `[B, L, E]`.
    ///
    /// # Errors
    /// As [`TransformerEncoderLayer::forward_t`].
    pub fn forward_t(&self, x: &Tensor, masks: &AttentionMasks, mode: Mode) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for layer in &self.layers {
            x = layer.forward_t(&x, masks, mode)?;
        }
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }

    /// Copies a PyTorch `nn.TransformerEncoder` state dict in: layer `i` from
    /// `{prefix}layers.{i}.` (as [`TransformerEncoderLayer::load_torch`]) and the final norm
    /// from `{prefix}norm.weight` / `norm.bias`. If any entry is missing or mis-shaped, every
    /// variable is restored to its value before the call.
    ///
    /// # Errors
    /// The first [`TransformerEncoderLayer::load_torch`] error, or [`Error::InvalidArgument`] /
    /// [`Error::Shape`] for the final norm's entries.
    pub fn load_torch(&self, state_dict: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        restoring(self, || self.load_all(state_dict, prefix))
    }

    fn load_all(&self, state_dict: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        let module = self.scope.path();
        for (i, layer) in self.layers.iter().enumerate() {
            layer.load_torch(state_dict, &format!("{prefix}layers.{i}."))?;
        }
        let Some(norm) = &self.norm else { return Ok(()) };
        for (dst, name) in [(norm.scale()?, "weight"), (norm.offset()?, "bias")] {
            let Some(dst) = dst else { continue };
            let key = format!("{prefix}norm.{name}");
            let src = state_dict
                .get(&key)
                .ok_or_else(|| Error::invalid(module, format!("state dict has no entry {key}")))?;
            if src.size() != dst.size() {
                return Err(Error::shape(
                    norm.name(),
                    "PyTorch norm parameter",
                    format!("{:?}", dst.size()),
                    src.size(),
                ));
            }
            tch::no_grad(|| dst.shallow_clone().f_copy_(src)).ctx(module)?;
        }
        Ok(())
    }
}

impl Module for TransformerEncoder {
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

    #[test]
    fn stacks_layers_and_checks_its_config() {
        let store = Store::cpu();
        let layer = TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16).with_dropout(0.0);
        let enc = TransformerEncoder::new(&store.root(), layer.clone(), 2, true).unwrap();
        let x = Tensor::randn([2, 3, 8], (tch::Kind::Float, tch::Device::Cpu));
        let none = AttentionMasks::default();
        let y = enc.forward_t(&x, &none, Mode::Eval).unwrap();
        let by_hand = enc.layers()[1]
            .forward_t(&enc.layers()[0].forward_t(&x, &none, Mode::Eval).unwrap(), &none, Mode::Eval)
            .unwrap();
        let by_hand = by_hand.layer_norm([8i64].as_slice(), None::<Tensor>, None::<Tensor>, 1e-5, false);
        assert!(y.allclose(&by_hand, 1e-5, 1e-5, false));
        assert_eq!(enc.variables().unwrap().len(), 2 * 16 + 2);
        let e = TransformerEncoder::new(&store.root(), layer, 0, false).unwrap_err();
        assert!(e.to_string().contains("num_layers must be >= 1"), "{e}");
    }
}
