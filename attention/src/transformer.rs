//! [`TransformerEncoderLayer`]: self-attention and a feed-forward block with residual
//! connections and layer normalisation (Vaswani et al. 2017), as PyTorch's
//! `nn.TransformerEncoderLayer` (batch first), whose state dicts it loads.

use crate::multi_head::{AttentionMasks, MultiHeadAttention, MultiHeadAttentionConfig};
use couplet_modules::{
    Activation, Dropout, DropoutConfig, Error, LayerNorm, LayerNormConfig, Linear, LinearConfig, Mode,
    Module, Result, Scope, TorchContext,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::Tensor;

/// Configuration of a [`TransformerEncoderLayer`]. Defaults are PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransformerEncoderLayerConfig {
    /// Model size `E` (> 0). Default 512.
    pub d_model: i64,
    /// Number of attention heads (> 0, divides `d_model`). Default 8.
    pub nhead: i64,
    /// Hidden size `F` of the feed-forward block (> 0). Default 2048.
    pub dim_feedforward: i64,
    /// Dropout rate (in `[0, 1)`) on the attention weights, after the feed-forward
    /// activation, and on both residual branches, in [`Mode::Train`] only. Default 0.1.
    pub dropout: f64,
    /// Activation of the feed-forward block. Default [`Activation::Relu`] (PyTorch also
    /// offers [`Activation::Gelu`]).
    pub activation: Activation,
    /// Layer normalisation epsilon (finite, >= 0). Default `1e-5`.
    pub layer_norm_eps: f64,
    /// Pre-norm (`x + block(norm(x))`) instead of post-norm (`norm(x + block(x))`, the
    /// original Transformer). Default `false`.
    pub norm_first: bool,
    /// Whether the linear layers (attention projections included) and layer norms have
    /// biases/offsets. Default `true`.
    pub bias: bool,
}

impl Default for TransformerEncoderLayerConfig {
    fn default() -> Self {
        TransformerEncoderLayerConfig {
            d_model: 512,
            nhead: 8,
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Activation::Relu,
            layer_norm_eps: 1e-5,
            norm_first: false,
            bias: true,
        }
    }
}

impl TransformerEncoderLayerConfig {
    /// A layer of model size `d_model` with `nhead` heads, every other field at PyTorch's
    /// default.
    pub fn new(d_model: i64, nhead: i64) -> Self {
        TransformerEncoderLayerConfig { d_model, nhead, ..Default::default() }
    }
    /// Sets the feed-forward hidden size.
    pub fn with_dim_feedforward(mut self, dim_feedforward: i64) -> Self {
        self.dim_feedforward = dim_feedforward;
        self
    }
    /// Sets the dropout rate.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }
    /// Sets the feed-forward activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    /// Sets the layer normalisation epsilon.
    pub fn with_layer_norm_eps(mut self, eps: f64) -> Self {
        self.layer_norm_eps = eps;
        self
    }
    /// Sets pre-norm (`true`) or post-norm (`false`).
    pub fn with_norm_first(mut self, norm_first: bool) -> Self {
        self.norm_first = norm_first;
        self
    }
    /// Sets whether linear layers and norms have biases.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// A Transformer encoder layer on `x [B, L, E]` (batch first), PyTorch's
/// `nn.TransformerEncoderLayer(batch_first=True)`:
/// - post-norm (default): `x = norm1(x + drop(sa(x)))`, then `x = norm2(x + drop(ff(x)))`;
/// - pre-norm (`norm_first`): `x = x + drop(sa(norm1(x)))`, then `x = x + drop(ff(norm2(x)))`;
///
/// where `sa` is [`MultiHeadAttention`] self-attention under the masks and
/// `ff(x) = linear2(drop(activation(linear1(x))))`. Dropout acts in [`Mode::Train`] only
/// (libtorch's generator). A query row with no key to attend gets a zero attention output
/// (PyTorch: NaN).
///
/// Variables, in the scope `transformer_encoder_layer`: `multi_head_attention/…`,
/// `linear1/w [E, F]`, `linear1/b`, `linear2/w [F, E]`, `linear2/b`, `norm1/scale`,
/// `norm1/offset`, `norm2/scale`, `norm2/offset` (`[E]`).
pub struct TransformerEncoderLayer {
    scope: Scope,
    config: TransformerEncoderLayerConfig,
    self_attn: MultiHeadAttention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    dropout: Dropout,
}

impl std::fmt::Debug for TransformerEncoderLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformerEncoderLayer")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl TransformerEncoderLayer {
    /// Builds the layer (eagerly) in a child scope `transformer_encoder_layer` (or `.._1`, …)
    /// of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if a size is not positive, `nhead` does not divide `d_model`, the
    /// dropout rate is outside `[0, 1)`, or `layer_norm_eps` is negative or not finite.
    pub fn new(parent: &Scope, config: TransformerEncoderLayerConfig) -> Result<Self> {
        let scope = parent.child("transformer_encoder_layer")?;
        let c = &config;
        if c.dim_feedforward <= 0 {
            return Err(Error::config(
                scope.path(),
                format!("dim_feedforward must be > 0, got {}", c.dim_feedforward),
            ));
        }
        let mha = MultiHeadAttentionConfig::new(c.d_model, c.nhead).with_dropout(c.dropout).with_bias(c.bias);
        let self_attn = MultiHeadAttention::new(&scope, mha)?;
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
        let (norm1, norm2) = (norm("norm1")?, norm("norm2")?);
        let dropout = Dropout::new(&scope, DropoutConfig::new(c.dropout))?;
        Ok(TransformerEncoderLayer { scope, config, self_attn, linear1, linear2, norm1, norm2, dropout })
    }

    /// The configuration.
    pub fn config(&self) -> &TransformerEncoderLayerConfig {
        &self.config
    }

    /// The self-attention module.
    pub fn self_attn(&self) -> &MultiHeadAttention {
        &self.self_attn
    }

    fn self_attention(&self, x: &Tensor, masks: &AttentionMasks, mode: Mode) -> Result<Tensor> {
        let inner = AttentionMasks { key_mask: masks.key_mask, causal: masks.causal, need_weights: false };
        let (y, _) = self.self_attn.forward_t(x, x, x, &inner, mode)?;
        self.dropout.forward_t(&y, mode)
    }

    fn feed_forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.config.activation.apply(&self.linear1.forward(x)?)?;
        let y = self.linear2.forward(&self.dropout.forward_t(&h, mode)?)?;
        self.dropout.forward_t(&y, mode)
    }

    /// Applies the layer to `x [B, L, E]`, giving `[B, L, E]`. `masks.key_mask` (bool
    /// `[B, L]`, **true = attend**, the negation of PyTorch's `src_key_padding_mask`) hides
    /// padding keys; `masks.causal` lets position `i` attend `j <= i` only (PyTorch's
    /// `is_causal` with the square subsequent mask); `masks.need_weights` is ignored.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the attention module if `x` is not `[B, L, E]` of the store's
    /// kind or the key mask is not a bool `[B, L]`; [`Error::InvalidArgument`] if `x` is
    /// undefined.
    pub fn forward_t(&self, x: &Tensor, masks: &AttentionMasks, mode: Mode) -> Result<Tensor> {
        let module = self.scope.path();
        couplet_modules::util::check_defined(module, "input", x)?;
        let add = |a: &Tensor, b: &Tensor| a.f_add(b).ctx(module);
        if self.config.norm_first {
            let x = add(x, &self.self_attention(&self.norm1.forward(x)?, masks, mode)?)?;
            add(&x, &self.feed_forward(&self.norm2.forward(&x)?, mode)?)
        } else {
            let x = self.norm1.forward(&add(x, &self.self_attention(x, masks, mode)?)?)?;
            self.norm2.forward(&add(&x, &self.feed_forward(&x, mode)?)?)
        }
    }

    /// Copies a PyTorch `nn.TransformerEncoderLayer` state dict in: the entries
    /// `{prefix}self_attn.in_proj_weight`, `self_attn.in_proj_bias`, `self_attn.out_proj.weight`,
    /// `self_attn.out_proj.bias`, `linear1.weight`, `linear1.bias`, `linear2.weight`,
    /// `linear2.bias`, `norm1.weight`, `norm1.bias`, `norm2.weight`, `norm2.bias` (the biases
    /// only with `bias`). PyTorch's linear weights `[out, in]` are stored transposed. If an
    /// entry is missing or has another shape, every variable keeps its value from before the
    /// call.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the layer for a missing
    /// entry; [`Error::Shape`] naming the receiving module for an entry of another shape.
    pub fn load_torch(&self, state_dict: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        restoring(self, || {
            let mut load = TorchLoader::new(self.scope.path(), state_dict, prefix, self.config.bias);
            load.attention(&self.self_attn, "self_attn", self.config.d_model)?;
            load.linear(&self.linear1, "linear1")?;
            load.linear(&self.linear2, "linear2")?;
            load.norm(&self.norm1, "norm1")?;
            load.norm(&self.norm2, "norm2")?;
            load.finish()
        })
    }
}

/// Runs `load` and, if it fails, puts every variable of `module` back as it was.
pub(crate) fn restoring(module: &dyn Module, load: impl FnOnce() -> Result<()>) -> Result<()> {
    let name = module.name();
    let variables = module.variables()?;
    let before: Vec<Tensor> = tch::no_grad(|| {
        variables
            .iter()
            .map(|v| v.tensor().f_zeros_like().and_then(|mut t| t.f_copy_(v.tensor()).map(|()| t)))
            .collect::<std::result::Result<_, _>>()
    })
    .ctx(name)?;
    let result = load();
    if result.is_err() {
        for (v, old) in variables.iter().zip(&before) {
            tch::no_grad(|| v.tensor().shallow_clone().f_copy_(old)).ctx(name)?;
        }
    }
    result
}

/// Reads a PyTorch state dict's entries `{prefix}{name}` into couplet modules: linear layers
/// and layer norms are checked and queued ([`TorchLoader::finish`] copies them), attention
/// modules are loaded at once (through [`MultiHeadAttention::load_torch`]).
pub(crate) struct TorchLoader<'a> {
    module: &'a str,
    state_dict: &'a HashMap<String, Tensor>,
    prefix: &'a str,
    bias: bool,
    copies: Vec<(Tensor, Tensor)>,
}

impl<'a> TorchLoader<'a> {
    pub(crate) fn new(
        module: &'a str,
        state_dict: &'a HashMap<String, Tensor>,
        prefix: &'a str,
        bias: bool,
    ) -> Self {
        TorchLoader { module, state_dict, prefix, bias, copies: Vec::new() }
    }

    fn get(&self, name: &str) -> Result<&'a Tensor> {
        let key = format!("{}{name}", self.prefix);
        self.state_dict
            .get(&key)
            .ok_or_else(|| Error::invalid(self.module, format!("state dict has no entry {key}")))
    }

    fn bias(&self, name: &str) -> Result<Option<&'a Tensor>> {
        if self.bias {
            self.get(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `{name}.in_proj_weight [3E, E]`, `in_proj_bias`, `out_proj.weight`, `out_proj.bias`.
    pub(crate) fn attention(&self, mha: &MultiHeadAttention, name: &str, e: i64) -> Result<()> {
        let in_w = self.get(&format!("{name}.in_proj_weight"))?;
        if in_w.size() != [3 * e, e] {
            return Err(Error::shape(mha.name(), "in_proj_weight", format!("[{}, {e}]", 3 * e), in_w.size()));
        }
        let qkv = in_w.f_split(e, 0).ctx(self.module)?;
        mha.load_torch(
            &qkv[0],
            &qkv[1],
            &qkv[2],
            self.bias(&format!("{name}.in_proj_bias"))?,
            self.get(&format!("{name}.out_proj.weight"))?,
            self.bias(&format!("{name}.out_proj.bias"))?,
        )
    }

    /// `{name}.weight [out, in]` (stored transposed) and `{name}.bias`.
    pub(crate) fn linear(&mut self, layer: &Linear, name: &str) -> Result<()> {
        let w = self.get(&format!("{name}.weight"))?;
        let dst = layer.w()?;
        let (i, o) = (dst.size()[0], dst.size()[1]);
        if w.size() != [o, i] {
            return Err(Error::shape(layer.name(), "PyTorch weight", format!("[{o}, {i}]"), w.size()));
        }
        self.copies.push((dst.shallow_clone(), w.f_tr().ctx(self.module)?));
        if let (Some(dst), Some(b)) = (layer.b()?, self.bias(&format!("{name}.bias"))?) {
            if b.size() != dst.size() {
                return Err(Error::shape(
                    layer.name(),
                    "PyTorch bias",
                    format!("{:?}", dst.size()),
                    b.size(),
                ));
            }
            self.copies.push((dst.shallow_clone(), b.shallow_clone()));
        }
        Ok(())
    }

    /// `{name}.weight` and `{name}.bias` of a layer norm.
    pub(crate) fn norm(&mut self, norm: &LayerNorm, name: &str) -> Result<()> {
        let parts = [
            (norm.scale()?, Some(self.get(&format!("{name}.weight"))?)),
            (norm.offset()?, self.bias(&format!("{name}.bias"))?),
        ];
        for (dst, src) in parts {
            if let (Some(dst), Some(src)) = (dst, src) {
                if src.size() != dst.size() {
                    return Err(Error::shape(
                        norm.name(),
                        "PyTorch norm parameter",
                        format!("{:?}", dst.size()),
                        src.size(),
                    ));
                }
                self.copies.push((dst.shallow_clone(), src.shallow_clone()));
            }
        }
        Ok(())
    }

    /// Copies the queued linear and norm parameters.
    pub(crate) fn finish(self) -> Result<()> {
        for (dst, src) in self.copies {
            tch::no_grad(|| dst.shallow_clone().f_copy_(&src)).ctx(self.module)?;
        }
        Ok(())
    }
}

impl Module for TransformerEncoderLayer {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The attention, the two linear layers and the two norms, in that order.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.self_attn, &self.linear1, &self.linear2, &self.norm1, &self.norm2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;
    use tch::{Device, Kind};

    fn layer(store: &Store, config: TransformerEncoderLayerConfig) -> TransformerEncoderLayer {
        TransformerEncoderLayer::new(&store.root(), config).unwrap()
    }

    #[test]
    fn variables_and_shapes() {
        let store = Store::cpu();
        let l = layer(&store, TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16));
        let y = l
            .forward_t(
                &Tensor::randn([3, 5, 8], (Kind::Float, Device::Cpu)),
                &AttentionMasks::default(),
                Mode::Eval,
            )
            .unwrap();
        assert_eq!(y.size(), [3, 5, 8]);
        let names: Vec<String> = l.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names.len(), 16);
        assert!(names.contains(&"transformer_encoder_layer/linear1/w".to_string()), "{names:?}");
        assert!(names.contains(&"transformer_encoder_layer/norm2/offset".to_string()), "{names:?}");
    }

    #[test]
    fn dropout_acts_in_training_only() {
        let store = Store::cpu();
        let l = layer(
            &store,
            TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16).with_dropout(0.5),
        );
        let x = Tensor::randn([2, 4, 8], (Kind::Float, Device::Cpu));
        let none = AttentionMasks::default();
        let e1 = l.forward_t(&x, &none, Mode::Eval).unwrap();
        assert!(e1.equal(&l.forward_t(&x, &none, Mode::Eval).unwrap()), "evaluation is deterministic");
        assert!(!e1.allclose(&l.forward_t(&x, &none, Mode::Train).unwrap(), 1e-4, 1e-4, false));
        let store = Store::cpu();
        let l0 = layer(
            &store,
            TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16).with_dropout(0.0),
        );
        assert!(l0
            .forward_t(&x, &none, Mode::Train)
            .unwrap()
            .equal(&l0.forward_t(&x, &none, Mode::Eval).unwrap()));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let store = Store::cpu();
        let e = TransformerEncoderLayer::new(&store.root(), TransformerEncoderLayerConfig::new(8, 3))
            .unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("must divide"), "{e}");
        let e = TransformerEncoderLayer::new(
            &store.root(),
            TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(0),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dim_feedforward must be > 0"), "{e}");
        let l = layer(&store, TransformerEncoderLayerConfig::new(8, 2).with_dim_feedforward(16));
        let none = AttentionMasks::default();
        let e = l
            .forward_t(&Tensor::zeros([2, 4, 6], (Kind::Float, Device::Cpu)), &none, Mode::Eval)
            .unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = l.forward_t(&Tensor::new(), &none, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let e = l.load_torch(&HashMap::new(), "").unwrap_err();
        assert!(e.to_string().contains("state dict has no entry self_attn.in_proj_weight"), "{e}");
    }
}
