//! [`TransformerDecoderLayer`]: masked self-attention, attention over an encoder's memory and a
//! feed-forward block, each with a residual connection and layer normalisation, as PyTorch's
//! `nn.TransformerDecoderLayer` (batch first), whose state dicts it loads.

use crate::multi_head::{AttentionMasks, MultiHeadAttention, MultiHeadAttentionConfig};
use crate::transformer::{restoring, TorchLoader, TransformerEncoderLayerConfig};
use couplet_modules::{
    Dropout, DropoutConfig, Error, LayerNorm, LayerNormConfig, Linear, LinearConfig, Mode, Module, Result,
    Scope, TorchContext,
};
use std::collections::HashMap;
use tch::Tensor;

/// A Transformer decoder layer on `tgt [B, Lt, E]` and `memory [B, Ls, E]`, PyTorch's
/// `nn.TransformerDecoderLayer(batch_first=True)`, configured by the same
/// [`TransformerEncoderLayerConfig`] as the encoder layer:
/// - post-norm: `x = norm1(x + drop(sa(x)))`, `x = norm2(x + drop(ca(x, memory)))`,
///   `x = norm3(x + drop(ff(x)))`;
/// - pre-norm: `x = x + drop(sa(norm1(x)))`, `x = x + drop(ca(norm2(x), memory))`,
///   `x = x + drop(ff(norm3(x)))`;
///
/// with `sa` the self-attention under the target masks, `ca` the attention over the memory
/// under the memory's key mask, `ff(x) = linear2(drop(activation(linear1(x))))`. Dropout acts
/// in [`Mode::Train`] only.
///
/// Variables, in the scope `transformer_decoder_layer`: `multi_head_attention/…` (self),
/// `multi_head_attention_1/…` (over the memory), `linear1`, `linear2`, `norm1`, `norm2`,
/// `norm3`.
pub struct TransformerDecoderLayer {
    scope: Scope,
    config: TransformerEncoderLayerConfig,
    self_attn: MultiHeadAttention,
    cross_attn: MultiHeadAttention,
    linear1: Linear,
    linear2: Linear,
    norms: [LayerNorm; 3],
    dropout: Dropout,
}

impl std::fmt::Debug for TransformerDecoderLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformerDecoderLayer")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl TransformerDecoderLayer {
    /// Builds the layer (eagerly) in a child scope `transformer_decoder_layer` (or `.._1`, …)
    /// of `parent`.
    ///
    /// # Errors
    /// As [`TransformerEncoderLayer::new`](crate::TransformerEncoderLayer::new).
    pub fn new(parent: &Scope, config: TransformerEncoderLayerConfig) -> Result<Self> {
        let scope = parent.child("transformer_decoder_layer")?;
        let c = &config;
        if c.dim_feedforward <= 0 {
            return Err(Error::config(
                scope.path(),
                format!("dim_feedforward must be > 0, got {}", c.dim_feedforward),
            ));
        }
        let mha = || {
            let config =
                MultiHeadAttentionConfig::new(c.d_model, c.nhead).with_dropout(c.dropout).with_bias(c.bias);
            MultiHeadAttention::new(&scope, config)
        };
        let (self_attn, cross_attn) = (mha()?, mha()?);
        let lin = |name: &str, i: i64, o: i64| {
            Linear::named(&scope, name, LinearConfig::new(o).with_input_size(i).with_bias(c.bias))
        };
        let linear1 = lin("linear1", c.d_model, c.dim_feedforward)?;
        let linear2 = lin("linear2", c.dim_feedforward, c.d_model)?;
        let norm = |name: &str| {
            let config = LayerNormConfig::new()
                .with_normalized_shape(&[c.d_model])
                .with_eps(c.layer_norm_eps)
                .with_create_offset(c.bias);
            LayerNorm::named(&scope, name, config)
        };
        let norms = [norm("norm1")?, norm("norm2")?, norm("norm3")?];
        let dropout = Dropout::new(&scope, DropoutConfig::new(c.dropout))?;
        Ok(TransformerDecoderLayer { scope, config, self_attn, cross_attn, linear1, linear2, norms, dropout })
    }

    /// The configuration.
    pub fn config(&self) -> &TransformerEncoderLayerConfig {
        &self.config
    }

    fn attend(
        &self,
        mha: &MultiHeadAttention,
        x: &Tensor,
        kv: &Tensor,
        masks: &AttentionMasks,
        mode: Mode,
    ) -> Result<Tensor> {
        let inner = AttentionMasks { key_mask: masks.key_mask, causal: masks.causal, need_weights: false };
        let (y, _) = mha.forward_t(x, kv, kv, &inner, mode)?;
        self.dropout.forward_t(&y, mode)
    }

    fn feed_forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.config.activation.apply(&self.linear1.forward(x)?)?;
        let y = self.linear2.forward(&self.dropout.forward_t(&h, mode)?)?;
        self.dropout.forward_t(&y, mode)
    }

    /// Applies the layer: `tgt [B, Lt, E]` attends itself under `tgt_masks` (its key mask bool
    /// `[B, Lt]`, true = attend; `causal` for autoregressive decoding, PyTorch's `tgt_is_causal`
    /// with the square subsequent mask) and `memory [B, Ls, E]` under `memory_key_mask` (bool
    /// `[B, Ls]`, true = attend; the negation of PyTorch's `memory_key_padding_mask`), giving
    /// `[B, Lt, E]`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming an attention module if `tgt` or `memory` is not `[B, L, E]` of
    /// the store's kind (one `B`) or a mask is not a bool `[B, L]`; [`Error::InvalidArgument`]
    /// if an input is undefined.
    pub fn forward_t(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        tgt_masks: &AttentionMasks,
        memory_key_mask: Option<&Tensor>,
        mode: Mode,
    ) -> Result<Tensor> {
        let module = self.scope.path();
        couplet_modules::util::check_defined(module, "tgt", tgt)?;
        couplet_modules::util::check_defined(module, "memory", memory)?;
        let memory_masks = AttentionMasks { key_mask: memory_key_mask, causal: false, need_weights: false };
        let add = |a: &Tensor, b: &Tensor| a.f_add(b).ctx(module);
        let [n1, n2, n3] = &self.norms;
        if self.config.norm_first {
            let h = n1.forward(tgt)?;
            let x = add(tgt, &self.attend(&self.self_attn, &h, &h, tgt_masks, mode)?)?;
            let x = add(&x, &self.attend(&self.cross_attn, &n2.forward(&x)?, memory, &memory_masks, mode)?)?;
            add(&x, &self.feed_forward(&n3.forward(&x)?, mode)?)
        } else {
            let x = n1.forward(&add(tgt, &self.attend(&self.self_attn, tgt, tgt, tgt_masks, mode)?)?)?;
            let x =
                n2.forward(&add(&x, &self.attend(&self.cross_attn, &x, memory, &memory_masks, mode)?)?)?;
            n3.forward(&add(&x, &self.feed_forward(&x, mode)?)?)
        }
    }

    /// Copies a PyTorch `nn.TransformerDecoderLayer` state dict in: `{prefix}self_attn.*`,
    /// `multihead_attn.*` (`in_proj_weight`, `in_proj_bias`, `out_proj.weight`,
    /// `out_proj.bias`), `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`, `norm3.*` (biases only
    /// with `bias`). If an entry is missing or has another shape, every variable keeps its value
    /// from before the call.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the layer for a missing entry; [`Error::Shape`] naming
    /// the receiving module for an entry of another shape.
    pub fn load_torch(&self, state_dict: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        restoring(self, || {
            let mut load = TorchLoader::new(self.scope.path(), state_dict, prefix, self.config.bias);
            load.attention(&self.self_attn, "self_attn", self.config.d_model)?;
            load.attention(&self.cross_attn, "multihead_attn", self.config.d_model)?;
            load.linear(&self.linear1, "linear1")?;
            load.linear(&self.linear2, "linear2")?;
            for (norm, name) in self.norms.iter().zip(["norm1", "norm2", "norm3"]) {
                load.norm(norm, name)?;
            }
            load.finish()
        })
    }
}

impl Module for TransformerDecoderLayer {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The self-attention, the attention over the memory, the two linear layers and the
    /// three norms, in that order.
    fn children(&self) -> Vec<&dyn Module> {
        let mut out: Vec<&dyn Module> = vec![&self.self_attn, &self.cross_attn, &self.linear1, &self.linear2];
        out.extend(self.norms.iter().map(|n| n as &dyn Module));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;
    use tch::{Device, Kind};

    #[test]
    fn shapes_variables_and_errors() {
        let store = Store::cpu();
        let config = TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16);
        let layer = TransformerDecoderLayer::new(&store.root(), config).unwrap();
        let tgt = Tensor::randn([2, 3, 8], (Kind::Float, Device::Cpu));
        let memory = Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu));
        let none = AttentionMasks::default();
        assert_eq!(layer.forward_t(&tgt, &memory, &none, None, Mode::Eval).unwrap().size(), [2, 3, 8]);
        assert_eq!(layer.variables().unwrap().len(), 2 * 8 + 4 + 6);
        let e = layer.forward_t(&tgt, &memory.narrow(0, 0, 1), &none, None, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = layer.forward_t(&tgt, &Tensor::new(), &none, None, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let e = layer.load_torch(&HashMap::new(), "").unwrap_err();
        assert!(e.to_string().contains("state dict has no entry self_attn.in_proj_weight"), "{e}");
    }
}
