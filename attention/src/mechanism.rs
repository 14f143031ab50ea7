//! Attention mechanisms for decoders: dot, Luong (multiplicative) and Bahdanau (additive)
//! scores over a memory whose keys are computed once per memory, not once per step.

use crate::softmax::{check_mask, masked_softmax};
use couplet_modules::{Error, Initializer, Linear, LinearConfig, Module, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A memory prepared for attention by [`AttentionMechanism::prepare`].
#[derive(Debug)]
pub struct AttentionMemory {
    /// The memory, with rows past each row's length zeroed: `[B, N, Dm]`.
    pub values: Tensor,
    /// The keys the scores compare queries with: `[B, N, U]`.
    pub keys: Tensor,
    /// Which slots may be attended, bool `[B, N]`; `None` when every slot may.
    pub mask: Option<Tensor>,
}

impl Clone for AttentionMemory {
    fn clone(&self) -> Self {
        AttentionMemory {
            values: self.values.shallow_clone(),
            keys: self.keys.shallow_clone(),
            mask: self.mask.as_ref().map(Tensor::shallow_clone),
        }
    }
}

/// Scores a query against a prepared memory.
pub trait AttentionMechanism: Module {
    /// Zeroes `memory [B, N, Dm]` past the mask (bool `[B, N]`, true = valid) and computes the
    /// keys once.
    ///
    /// # Errors
    /// [`Error::Shape`] when the memory is not rank 3 or the mask is not bool `[B, N]`.
    fn prepare(&self, memory: &Tensor, mask: Option<&Tensor>) -> Result<AttentionMemory>;

    /// Raw scores `[B, N]` of `query [B, Dq]` against the memory's keys (masking is applied
    /// by [`AttentionMechanism::attend`]).
    fn score(&self, query: &Tensor, memory: &AttentionMemory) -> Result<Tensor>;

    /// Alignments (softmax of the masked scores) and the context `Σ α v`:
    /// returns `(context [B, Dm], alignments [B, N])`. Rows with no valid slot give zeros.
    fn attend(&self, query: &Tensor, memory: &AttentionMemory) -> Result<(Tensor, Tensor)> {
        let module = self.name();
        let scores = self.score(query, memory)?;
        let (alignments, _) = masked_softmax(module, &scores, memory.mask.as_ref())?;
        let context = alignments
            .f_unsqueeze(1)
            .and_then(|a| a.f_bmm(&memory.values))
            .and_then(|c| c.f_squeeze_dim(1))
            .ctx(module)?;
        Ok((context, alignments))
    }
}

/// Checks the memory and mask, and zeroes masked rows: returns `(values, mask)`.
fn zero_masked(module: &str, memory: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
    let m = memory.size();
    if m.len() != 3 {
        return Err(Error::shape(module, "memory", "[B, N, Dm]", m));
    }
    let Some(mask) = mask else { return Ok((memory.shallow_clone(), None)) };
    check_mask(module, mask, m[0], m[1])?;
    let values =
        memory.f_mul(&mask.f_unsqueeze(-1).ctx(module)?.f_to_kind(memory.kind()).ctx(module)?).ctx(module)?;
    Ok((values, Some(mask.shallow_clone())))
}

/// Checks `query [B, size]` against a memory of batch `B`.
fn check_query(module: &str, query: &Tensor, memory: &AttentionMemory, size: i64) -> Result<()> {
    let b = memory.values.size()[0];
    if query.size() != [b, size] {
        return Err(Error::shape(module, "query", format!("[{b}, {size}]"), query.size()));
    }
    Ok(())
}

/// Dot-product score `qᵀ k` with the memory itself as keys (no variables).
#[derive(Debug)]
pub struct DotAttention {
    scope: Scope,
}

impl DotAttention {
    /// A dot-product mechanism in a child scope `dot_attention` of `parent`.
    pub fn new(parent: &Scope) -> Result<Self> {
        Ok(DotAttention { scope: parent.child("dot_attention")? })
    }
}

impl Module for DotAttention {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl AttentionMechanism for DotAttention {
    fn prepare(&self, memory: &Tensor, mask: Option<&Tensor>) -> Result<AttentionMemory> {
        let (values, mask) = zero_masked(self.name(), memory, mask)?;
        Ok(AttentionMemory { keys: values.shallow_clone(), values, mask })
    }
    fn score(&self, query: &Tensor, memory: &AttentionMemory) -> Result<Tensor> {
        check_query(self.name(), query, memory, memory.keys.size()[2])?;
        memory
            .keys
            .f_bmm(&query.f_unsqueeze(2).ctx(self.name())?)
            .and_then(|s| s.f_squeeze_dim(2))
            .ctx(self.name())
    }
}

/// Configuration of [`LuongAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LuongConfig {
    /// Key size `U` (must equal the query size). Default 1.
    pub num_units: i64,
    /// Multiply scores by a learned scalar `attention_g` (init 1.0; TF's `scale=True`). Default false.
    pub scale: bool,
}

impl Default for LuongConfig {
    fn default() -> Self {
        LuongConfig { num_units: 1, scale: false }
    }
}

impl LuongConfig {
    /// `num_units` keys, no scale.
    pub fn new(num_units: i64) -> Self {
        LuongConfig { num_units, ..Default::default() }
    }
    /// Sets whether scores are scaled by a learned scalar.
    pub fn with_scale(mut self, scale: bool) -> Self {
        self.scale = scale;
        self
    }
}

/// Luong's multiplicative score (TF `LuongAttention`): keys `k = memory W` (`memory_layer`, no
/// bias), score `g · qᵀ k` with `g` learned when `scale` is set, else 1. Variables:
/// `luong_attention/memory_layer/w [Dm, U]`, `luong_attention/attention_g []`.
pub struct LuongAttention {
    scope: Scope,
    config: LuongConfig,
    memory_layer: Linear,
    g: Option<Tensor>,
}

impl LuongAttention {
    /// A Luong mechanism in a child scope `luong_attention` of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `num_units <= 0`.
    pub fn new(parent: &Scope, config: LuongConfig) -> Result<Self> {
        let scope = parent.child("luong_attention")?;
        if config.num_units <= 0 {
            return Err(Error::config(
                scope.path(),
                format!("num_units must be > 0, got {}", config.num_units),
            ));
        }
        let memory_layer =
            Linear::named(&scope, "memory_layer", LinearConfig::new(config.num_units).with_bias(false))?;
        let g = if config.scale {
            Some(scope.var("attention_g", &[]).init(Initializer::Ones).create()?)
        } else {
            None
        };
        Ok(LuongAttention { scope, config, memory_layer, g })
    }

    /// The configuration.
    pub fn config(&self) -> &LuongConfig {
        &self.config
    }
}

impl Module for LuongAttention {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.memory_layer.is_built()
    }
}

impl AttentionMechanism for LuongAttention {
    fn prepare(&self, memory: &Tensor, mask: Option<&Tensor>) -> Result<AttentionMemory> {
        let (values, mask) = zero_masked(self.name(), memory, mask)?;
        let keys = self.memory_layer.forward(&values)?;
        Ok(AttentionMemory { values, keys, mask })
    }
    fn score(&self, query: &Tensor, memory: &AttentionMemory) -> Result<Tensor> {
        let module = self.name();
        check_query(module, query, memory, self.config.num_units)?;
        let s = memory
            .keys
            .f_bmm(&query.f_unsqueeze(2).ctx(module)?)
            .and_then(|s| s.f_squeeze_dim(2))
            .ctx(module)?;
        match &self.g {
            Some(g) => s.f_mul(g).ctx(module),
            None => Ok(s),
        }
    }
}

/// Configuration of [`BahdanauAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BahdanauConfig {
    /// Hidden size `U` of the score. Default 1.
    pub num_units: i64,
    /// Weight-normalise `v` (Salimans & Kingma 2016) with a learned gain `attention_g`
    /// (init `sqrt(1/U)`) and add a bias `attention_b` inside the tanh (TF's `normalize=True`).
    /// Default false.
    pub normalize: bool,
}

impl Default for BahdanauConfig {
    fn default() -> Self {
        BahdanauConfig { num_units: 1, normalize: false }
    }
}

impl BahdanauConfig {
    /// `num_units` hidden units, not normalised.
    pub fn new(num_units: i64) -> Self {
        BahdanauConfig { num_units, ..Default::default() }
    }
    /// Sets weight normalisation.
    pub fn with_normalize(mut self, normalize: bool) -> Self {
        self.normalize = normalize;
        self
    }
}

struct BahdanauNorm {
    g: Tensor,
    b: Tensor,
}

/// Bahdanau's additive score (TF `BahdanauAttention`): keys `k = memory W_k`
/// (`memory_layer`), score `vᵀ tanh(k + q W_q)` (`query_layer`), or with `normalize`
/// `(g v/‖v‖)ᵀ tanh(k + q W_q + b)`. Variables: `bahdanau_attention/memory_layer/w [Dm, U]`,
/// `query_layer/w [Dq, U]`, `attention_v [U]` (Glorot uniform), and with `normalize`
/// `attention_g []`, `attention_b [U]`.
pub struct BahdanauAttention {
    scope: Scope,
    config: BahdanauConfig,
    memory_layer: Linear,
    query_layer: Linear,
    v: Tensor,
    norm: Option<BahdanauNorm>,
}

impl BahdanauAttention {
    /// A Bahdanau mechanism in a child scope `bahdanau_attention` of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `num_units <= 0`.
    pub fn new(parent: &Scope, config: BahdanauConfig) -> Result<Self> {
        let scope = parent.child("bahdanau_attention")?;
        let u = config.num_units;
        if u <= 0 {
            return Err(Error::config(scope.path(), format!("num_units must be > 0, got {u}")));
        }
        let memory_layer = Linear::named(&scope, "memory_layer", LinearConfig::new(u).with_bias(false))?;
        let query_layer = Linear::named(&scope, "query_layer", LinearConfig::new(u).with_bias(false))?;
        let v = scope.var("attention_v", &[u]).init(Initializer::GlorotUniform).create()?;
        let norm = if config.normalize {
            let g = scope
                .var("attention_g", &[])
                .init(Initializer::Constant { value: (1.0 / u as f64).sqrt() })
                .create()?;
            let b = scope.var("attention_b", &[u]).create()?;
            Some(BahdanauNorm { g, b })
        } else {
            None
        };
        Ok(BahdanauAttention { scope, config, memory_layer, query_layer, v, norm })
    }

    /// The configuration.
    pub fn config(&self) -> &BahdanauConfig {
        &self.config
    }
}

impl Module for BahdanauAttention {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.memory_layer.is_built() && self.query_layer.is_built()
    }
}

impl AttentionMechanism for BahdanauAttention {
    fn prepare(&self, memory: &Tensor, mask: Option<&Tensor>) -> Result<AttentionMemory> {
        let (values, mask) = zero_masked(self.name(), memory, mask)?;
        let keys = self.memory_layer.forward(&values)?;
        Ok(AttentionMemory { values, keys, mask })
    }
    fn score(&self, query: &Tensor, memory: &AttentionMemory) -> Result<Tensor> {
        let module = self.name();
        let b = memory.values.size()[0];
        if query.dim() != 2 || query.size()[0] != b {
            return Err(Error::shape(module, "query", format!("[{b}, Dq]"), query.size()));
        }
        let pq = self.query_layer.forward(query)?.f_unsqueeze(1).ctx(module)?;
        let mut hidden = memory.keys.f_add(&pq).ctx(module)?;
        let v = match &self.norm {
            Some(n) => {
                hidden = hidden.f_add(&n.b).ctx(module)?;
                let norm = self.v.f_norm().ctx(module)?;
                self.v.f_div(&norm).and_then(|v| v.f_mul(&n.g)).ctx(module)?
            }
            None => self.v.shallow_clone(),
        };
        hidden.f_tanh().and_then(|h| h.f_matmul(&v)).ctx(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;

    fn set(t: &Tensor, v: &[f32]) {
        tch::no_grad(|| t.shallow_clone().copy_(&Tensor::from_slice(v).view(t.size().as_slice())));
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn luong_score_is_g_q_w_k() {
        let store = Store::cpu();
        let luong = LuongAttention::new(&store.root(), LuongConfig::new(2).with_scale(true)).unwrap();
        let memory = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 2, 2]);
        let prepared = luong.prepare(&memory, None).unwrap();
        set(luong.memory_layer.w().unwrap(), &[1.0, 0.0, 0.0, 2.0]);
        let prepared =
            AttentionMemory { keys: luong.memory_layer.forward(&prepared.values).unwrap(), ..prepared };
        set(luong.g.as_ref().unwrap(), &[2.0]);
        let q = Tensor::from_slice(&[1.0f32, 0.5]).view([1, 2]);
        // keys [[1, 4], [3, 8]]; q·k = [3, 7]; times g = 2.
        close(&values(&luong.score(&q, &prepared).unwrap()), &[6.0, 14.0]);
        let names: Vec<_> = luong.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["luong_attention/attention_g", "luong_attention/memory_layer/w"]);
        let e =
            luong.score(&Tensor::zeros([1, 3], (tch::Kind::Float, tch::Device::Cpu)), &prepared).unwrap_err();
        assert_eq!(e.to_string(), "luong_attention: query must be [1, 2], got [1, 3]");
    }

    #[test]
    fn bahdanau_score_is_v_tanh_keys_plus_query() {
        let store = Store::cpu();
        for normalize in [false, true] {
            let att = BahdanauAttention::new(&store.root(), BahdanauConfig::new(2).with_normalize(normalize))
                .unwrap();
            let memory = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([1, 2, 2]);
            let q = Tensor::from_slice(&[1.0f32]).view([1, 1]);
            let _ = att.prepare(&memory, None).unwrap();
            let _ = att.score(&q, &att.prepare(&memory, None).unwrap()).unwrap();
            set(att.memory_layer.w().unwrap(), &[1.0, 0.0, 0.0, 1.0]);
            set(att.query_layer.w().unwrap(), &[0.5, -0.5]);
            set(&att.v, &[1.0, 2.0]);
            let prepared = att.prepare(&memory, None).unwrap();
            let s = values(&att.score(&q, &prepared).unwrap());
            if normalize {
                set(&att.norm.as_ref().unwrap().g, &[1.0]);
                set(&att.norm.as_ref().unwrap().b, &[0.1, 0.0]);
                let s = values(&att.score(&q, &prepared).unwrap());
                // (tanh(1.6) + 2 tanh(-0.5)) / √5, (tanh(0.6) + 2 tanh(0.5)) / √5.
                close(&s, &[-0.0011474428055702455, 0.6535060186998238]);
            } else {
                // tanh(1.5) + 2 tanh(-0.5), tanh(0.5) + 2 tanh(0.5).
                close(&s, &[-0.019086060875153077, 1.3863514717800292]);
            }
        }
    }

    #[test]
    fn masked_rows_are_zeroed_before_keys_and_never_attended() {
        let store = Store::cpu();
        let dot = DotAttention::new(&store.root()).unwrap();
        let memory = Tensor::from_slice(&[1.0f32, 1.0, 5.0, 5.0, 2.0, 2.0, 3.0, 3.0]).view([2, 2, 2]);
        let mask = Tensor::from_slice(&[true, false, false, false]).view([2, 2]);
        let prepared = dot.prepare(&memory, Some(&mask)).unwrap();
        close(&values(&prepared.values), &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let q = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0]).view([2, 2]);
        let (context, alignments) = dot.attend(&q, &prepared).unwrap();
        close(&values(&alignments), &[1.0, 0.0, 0.0, 0.0]);
        close(&values(&context), &[1.0, 1.0, 0.0, 0.0]);
        let e = dot.prepare(&memory.get(0), None).unwrap_err();
        assert_eq!(e.to_string(), "dot_attention: memory must be [B, N, Dm], got [2, 2]");
    }
}
