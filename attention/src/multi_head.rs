//! Multi-head attention (Vaswani et al. 2017) through libtorch's fused
//! `scaled_dot_product_attention`.

use crate::softmax::{masked_softmax, zero_masked_rows};
use couplet_modules::{Error, Linear, LinearConfig, Mode, Module, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Configuration of [`MultiHeadAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MultiHeadAttentionConfig {
    /// Model size `E` (query size and output size; > 0). Default 1.
    pub embed_dim: i64,
    /// Number of heads `h`; must divide `embed_dim`. Default 1.
    pub num_heads: i64,
    /// Key feature size `Ek`. Default `None` = `embed_dim`.
    pub kdim: Option<i64>,
    /// Value feature size `Ev`. Default `None` = `embed_dim`.
    pub vdim: Option<i64>,
    /// Dropout rate on the attention weights, applied in [`Mode::Train`] only; in [0, 1). Default 0.
    pub dropout: f64,
    /// Whether the four projections have biases. Default true.
    pub bias: bool,
}

impl Default for MultiHeadAttentionConfig {
    fn default() -> Self {
        MultiHeadAttentionConfig {
            embed_dim: 1,
            num_heads: 1,
            kdim: None,
            vdim: None,
            dropout: 0.0,
            bias: true,
        }
    }
}

impl MultiHeadAttentionConfig {
    /// `num_heads` heads over a model of size `embed_dim`.
    pub fn new(embed_dim: i64, num_heads: i64) -> Self {
        MultiHeadAttentionConfig { embed_dim, num_heads, ..Default::default() }
    }
    /// Sets the key feature size.
    pub fn with_kdim(mut self, kdim: i64) -> Self {
        self.kdim = Some(kdim);
        self
    }
    /// Sets the value feature size.
    pub fn with_vdim(mut self, vdim: i64) -> Self {
        self.vdim = Some(vdim);
        self
    }
    /// Sets the attention dropout rate.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }
    /// Sets whether the projections have biases.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// Masks and options of one [`MultiHeadAttention::forward_t`] call.
#[derive(Debug, Default)]
pub struct AttentionMasks<'a> {
    /// Bool `[B, Lk]`, **true = attend** (couplet's convention everywhere; PyTorch's
    /// `key_padding_mask` is the negation). It may live on any device (it is moved to the
    /// query's).
    pub key_mask: Option<&'a Tensor>,
    /// Query `i` attends only keys `j <= i` (top-left aligned, as PyTorch's `is_causal`).
    pub causal: bool,
    /// Also return the attention weights averaged over heads, `[B, Lq, Lk]` (computed
    /// without the fused kernel).
    pub need_weights: bool,
}

/// Multi-head attention: `query [B, Lq, E]`, `key [B, Lk, Ek]`, `value [B, Lk, Ev]` →
/// `[B, Lq, E]`. Projections are [`Linear`]s named `query`, `key`, `value`, `output` in the
/// scope `multi_head_attention` (weights `[in, out]`, Sonnet layout; see
/// [`MultiHeadAttention::load_torch`] for PyTorch's `nn.MultiheadAttention` weights).
///
/// A query row that may attend no key (every key masked) gives a zero output row and zero
/// weights, where PyTorch returns NaN.
///
/// Variables: `multi_head_attention/{query,key,value,output}/w` (`[E, E]`, `[Ek, E]`,
/// `[Ev, E]`, `[E, E]`) and, with biases, `…/b [E]`.
pub struct MultiHeadAttention {
    scope: Scope,
    config: MultiHeadAttentionConfig,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
}

impl std::fmt::Debug for MultiHeadAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiHeadAttention")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl MultiHeadAttention {
    /// Builds the module (eagerly) in a child scope `multi_head_attention` of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if a size is not positive, `num_heads` does not divide `embed_dim`,
    /// or `dropout` is outside [0, 1).
    pub fn new(parent: &Scope, config: MultiHeadAttentionConfig) -> Result<Self> {
        let scope = parent.child("multi_head_attention")?;
        let module = scope.path();
        let (e, h) = (config.embed_dim, config.num_heads);
        let (kd, vd) = (config.kdim.unwrap_or(e), config.vdim.unwrap_or(e));
        if e <= 0 || h <= 0 || kd <= 0 || vd <= 0 {
            return Err(Error::config(
                module,
                format!("embed_dim, num_heads, kdim and vdim must be > 0, got {e}, {h}, {kd}, {vd}"),
            ));
        }
        if e % h != 0 {
            return Err(Error::config(module, format!("num_heads ({h}) must divide embed_dim ({e})")));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::config(module, format!("dropout must be in [0, 1), got {}", config.dropout)));
        }
        let lin = |name: &str, input: i64| {
            Linear::named(&scope, name, LinearConfig::new(e).with_input_size(input).with_bias(config.bias))
        };
        let (query, key, value, output) =
            (lin("query", e)?, lin("key", kd)?, lin("value", vd)?, lin("output", e)?);
        Ok(MultiHeadAttention { scope, config, query, key, value, output })
    }

    /// The configuration.
    pub fn config(&self) -> &MultiHeadAttentionConfig {
        &self.config
    }

    /// Copies PyTorch `nn.MultiheadAttention` weights in: `q_weight [E, E]`, `k_weight [E, Ek]`,
    /// `v_weight [E, Ev]` (PyTorch's `in_proj_weight [3E, E]` split in three along dim 0, or
    /// `q_proj_weight`, `k_proj_weight`, `v_proj_weight` when `kdim`/`vdim` differ from `E`),
    /// `in_bias [3E]` (`in_proj_bias`), `out_weight [E, E]` and `out_bias [E]`
    /// (`out_proj.weight`, `out_proj.bias`). PyTorch's weights are `[out, in]`; they are stored
    /// transposed (`[in, out]`). Nothing is copied unless every tensor fits.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the projection if a tensor's shape differs from the module's,
    /// or a bias is given to a module without biases (or missing from one with them).
    pub fn load_torch(
        &self,
        q_weight: &Tensor,
        k_weight: &Tensor,
        v_weight: &Tensor,
        in_bias: Option<&Tensor>,
        out_weight: &Tensor,
        out_bias: Option<&Tensor>,
    ) -> Result<()> {
        let module = self.scope.path();
        let e = self.config.embed_dim;
        let in_biases = match in_bias {
            Some(b) if b.size() == [3 * e] => b.f_split(e, 0).ctx(module)?.into_iter().map(Some).collect(),
            Some(b) => return Err(Error::shape(module, "in_proj_bias", format!("[{}]", 3 * e), b.size())),
            None => vec![None, None, None],
        };
        let layers = [&self.query, &self.key, &self.value, &self.output];
        let weights = [q_weight, k_weight, v_weight, out_weight];
        let biases: Vec<Option<Tensor>> =
            in_biases.into_iter().chain([out_bias.map(Tensor::shallow_clone)]).collect();
        let mut copies = Vec::with_capacity(8);
        for ((layer, w), b) in layers.into_iter().zip(weights).zip(&biases) {
            let dst = layer.w()?;
            let (i, o) = (dst.size()[0], dst.size()[1]);
            if w.size() != [o, i] {
                return Err(Error::shape(layer.name(), "PyTorch weight", format!("[{o}, {i}]"), w.size()));
            }
            copies.push((dst, w.f_tr().ctx(module)?));
            match (layer.b()?, b) {
                (Some(dst), Some(b)) if b.size() == dst.size() => copies.push((dst, b.shallow_clone())),
                (None, None) => {}
                (dst, b) => {
                    let expected = dst.map_or("absent (the module has no biases)".to_string(), |d| {
                        format!("{:?}", d.size())
                    });
                    let actual = b.as_ref().map_or("absent".to_string(), |b| format!("{:?}", b.size()));
                    return Err(Error::Shape {
                        module: layer.name().to_string(),
                        what: "PyTorch bias".into(),
                        expected,
                        actual,
                    });
                }
            }
        }
        for (dst, src) in copies {
            tch::no_grad(|| dst.shallow_clone().f_copy_(&src)).ctx(module)?;
        }
        Ok(())
    }

    fn check_input(
        &self,
        what: &str,
        x: &Tensor,
        batch: Option<i64>,
        len: Option<i64>,
        size: i64,
    ) -> Result<()> {
        couplet_modules::util::check_defined(self.scope.path(), what, x)?;
        let s = x.size();
        let ok = s.len() == 3
            && batch.map_or(true, |b| s[0] == b)
            && len.map_or(true, |l| s[1] == l)
            && s[2] == size;
        if !ok {
            let b = batch.map_or("B".to_string(), |b| b.to_string());
            let l = len.map_or("L".to_string(), |l| l.to_string());
            return Err(Error::shape(self.scope.path(), what, format!("[{b}, {l}, {size}]"), s));
        }
        self.scope.check_kind(what, x)
    }

    /// The per-head projections `[B, h, L, d]` of query, key and value. Self-attention (the
    /// three are one tensor) takes one packed `[E, 3E]` product, as PyTorch's `in_proj` does.
    fn project(&self, query: &Tensor, key: &Tensor, value: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let same = |a: &Tensor, b: &Tensor| {
            a.data_ptr() == b.data_ptr() && a.size() == b.size() && a.stride() == b.stride()
        };
        if !(same(query, key) && same(query, value)) {
            let q = self.heads(&self.query.forward(query)?)?;
            let k = self.heads(&self.key.forward(key)?)?;
            let v = self.heads(&self.value.forward(value)?)?;
            return Ok((q, k, v));
        }
        let module = self.scope.path();
        let layers = [&self.query, &self.key, &self.value];
        let weights = layers.iter().map(|l| l.w().map(Tensor::shallow_clone)).collect::<Result<Vec<_>>>()?;
        let w = Tensor::f_cat(&weights, 1).ctx(module)?;
        let s = query.size();
        let x = query.f_reshape([s[0] * s[1], s[2]]).ctx(module)?;
        let packed = match (self.query.b()?, self.key.b()?, self.value.b()?) {
            (Some(bq), Some(bk), Some(bv)) => Tensor::f_cat(&[bq, bk, bv], 0).and_then(|b| b.f_addmm(&x, &w)),
            _ => x.f_matmul(&w),
        }
        .ctx(module)?;
        let (e, h) = (self.config.embed_dim, self.config.num_heads);
        // [B·L, 3E] → [3, B, h, L, d]
        let qkv = packed
            .f_view([s[0], s[1], 3, h, e / h])
            .and_then(|t| t.f_permute([2, 0, 3, 1, 4]))
            .ctx(module)?;
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        Ok((q, k, v))
    }

    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.size();
        let h = self.config.num_heads;
        x.f_view([s[0], s[1], h, s[2] / h]).and_then(|t| t.f_transpose(1, 2)).ctx(self.scope.path())
    }

    /// Attends `query [B, Lq, E]` over `key [B, Lk, Ek]` / `value [B, Lk, Ev]`: returns
    /// `(output [B, Lq, E], weights)` with `weights [B, Lq, Lk]` (mean over heads) when
    /// `masks.need_weights`, else `None`. Scores are `q kᵀ / √(E / h)` per head (PyTorch's).
    ///
    /// In [`Mode::Train`] the attention weights are dropped out with the configured rate
    /// (libtorch's RNG); [`Mode::Eval`] is deterministic. The returned weights are those
    /// before dropout (Keras's choice; PyTorch returns the dropped-out ones).
    ///
    /// A query row with no key to attend (every key masked, or `Lk = 0`) gives a zero output
    /// row and zero weights, and zero gradients; PyTorch gives NaN there.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module when a rank, batch, length, feature size or kind
    /// differs (`"multi_head_attention: key must be [2, L, 8], got [3, 4, 8]"`), or the key
    /// mask is not a bool `[B, Lk]`.
    pub fn forward_t(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        masks: &AttentionMasks,
        mode: Mode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let module = self.scope.path();
        let c = &self.config;
        self.check_input("query", query, None, None, c.embed_dim)?;
        let (b, lq) = (query.size()[0], query.size()[1]);
        self.check_input("key", key, Some(b), None, c.kdim.unwrap_or(c.embed_dim))?;
        let lk = key.size()[1];
        self.check_input("value", value, Some(b), Some(lk), c.vdim.unwrap_or(c.embed_dim))?;
        let device = query.device();
        // mask [B | 1, 1, Lq | 1, Lk], true = attend.
        let mut mask: Option<Tensor> = None;
        if let Some(km) = masks.key_mask {
            couplet_modules::util::check_defined(module, "key mask", km)?;
            if km.kind() != Kind::Bool || km.size() != [b, lk] {
                return Err(Error::Shape {
                    module: module.to_string(),
                    what: "key mask".into(),
                    expected: format!("a bool tensor [{b}, {lk}]"),
                    actual: format!("{:?} {:?}", km.kind(), km.size()),
                });
            }
            mask = Some(km.f_to_device(device).and_then(|m| m.f_view([b, 1, 1, lk])).ctx(module)?);
        }
        // Masked keys and values are zeroed with a select before the projections, so a NaN or
        // infinity in padding never reaches a score or the output (a softmax weight of 0
        // times NaN is NaN).
        let (key, value) = match masks.key_mask {
            Some(km) => (zero_masked_rows(module, key, km)?, zero_masked_rows(module, value, km)?),
            None => (key.shallow_clone(), value.shallow_clone()),
        };
        let (key, value) = (&key, &value);
        // A causal mask alone leaves every query at least key 0: the fused kernel applies it
        // itself (`is_causal`, which also lets it pick the flash kernel on GPU).
        let fused_causal = masks.causal && mask.is_none() && lk > 0 && !masks.need_weights;
        if masks.causal && !fused_causal {
            let causal =
                Tensor::f_ones([lq, lk], (Kind::Bool, device)).and_then(|t| t.f_tril(0)).ctx(module)?;
            mask = Some(match mask {
                Some(m) => m.f_logical_and(&causal).ctx(module)?,
                None => causal.f_view([1, 1, lq, lk]).ctx(module)?,
            });
        }
        if lk == 0 && mask.is_none() {
            // No key at all: every query row is fully masked.
            mask = Some(Tensor::f_zeros([1, 1, 1, 0], (Kind::Bool, device)).ctx(module)?);
        }
        // Whether each query row may attend some key, [B | 1, 1, Lq | 1, 1].
        let attends = mask.as_ref().map(|m| m.f_any_dim(-1, true)).transpose().ctx(module)?;
        let (q, k, v) = self.project(query, key, value)?;
        let p = if mode.is_training() { c.dropout } else { 0.0 };
        let (context, weights) = if masks.need_weights {
            let d = (c.embed_dim / c.num_heads) as f64;
            let scores = q
                .f_matmul(&k.f_transpose(-2, -1).ctx(module)?)
                .ctx(module)?
                .f_div_scalar(d.sqrt())
                .ctx(module)?;
            // Fully masked rows get zero weights here (never NaN).
            let (w, _) = masked_softmax(module, &scores, mask.as_ref())?;
            let dropped = w.f_dropout(p, mode.is_training()).ctx(module)?;
            (dropped.f_matmul(&v).ctx(module)?, Some(w.f_mean_dim(1, false, w.kind()).ctx(module)?))
        } else {
            // Fully masked rows attend every key inside the kernel (and are zeroed below), so
            // no kernel ever sees a row without keys: no NaN forward or backward.
            let safe = match (&mask, &attends) {
                (Some(m), Some(a)) => Some(m.f_logical_or(&a.f_logical_not().ctx(module)?).ctx(module)?),
                _ => None,
            };
            let out = Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                safe.as_ref(),
                p,
                fused_causal,
                None,
                false,
            )
            .ctx(module)?;
            (out, None)
        };
        let context =
            context.f_transpose(1, 2).and_then(|t| t.f_reshape([b, lq, c.embed_dim])).ctx(module)?;
        let mut out = self.output.forward(&context)?;
        if let Some(a) = &attends {
            // Rows with no key to attend: a zero output row (after the output projection).
            let zero = Tensor::f_zeros([], (out.kind(), device)).ctx(module)?;
            out = a.f_squeeze_dim(1).and_then(|a| out.f_where_self(&a, &zero)).ctx(module)?;
        }
        Ok((out, weights))
    }
}

impl Module for MultiHeadAttention {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The query, key, value and output projections, in that order.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.query, &self.key, &self.value, &self.output]
    }
}
