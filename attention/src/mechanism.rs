//! Attention mechanisms for decoders: dot, Luong (multiplicative) and Bahdanau (additive)
//! scores over a memory whose keys are computed once per memory, not once per step.

use crate::probability::ProbabilityFn;
use crate::softmax::{check_mask, zero_masked_rows};
use couplet_modules::{Error, Initializer, Linear, LinearConfig, Mode, Module, Result, Scope, TorchContext};
use couplet_rnn::{sequence_mask, Lengths};
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
///
/// A decoder prepares the memory once ([`AttentionMechanism::prepare`] or
/// [`AttentionMechanism::prepare_with_lengths`]) and then scores one query per step against
/// the keys computed there.
///
/// ```
/// use couplet_attention::{AttentionMechanism, LuongAttention, LuongConfig};
/// use couplet_modules::Store;
/// use tch::{Device, Kind, Tensor};
/// # fn main() -> couplet_modules::Result<()> {
/// let store = Store::cpu();
/// let luong = LuongAttention::new(&store.root(), LuongConfig::new(4))?;
/// let memory = Tensor::randn([2, 5, 6], (Kind::Float, Device::Cpu));
/// let prepared = luong.prepare_with_lengths(&memory, &[5i64, 3])?; // keys [2, 5, 4], once
/// for _step in 0..3 {
///     let query = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
///     let (context, alignments) = luong.attend(&query, &prepared)?;
///     assert_eq!(context.size(), [2, 6]);
///     assert_eq!(alignments.double_value(&[1, 4]), 0.0); // past row 1's length
/// }
/// # Ok(())
/// # }
/// ```
pub trait AttentionMechanism: Module {
    /// Zeroes `memory [B, N, Dm]` where the mask (bool `[B, N]`, true = valid) is false and
    /// computes the keys `[B, N, U]` once. Without a mask, `values` is `memory` itself (it
    /// shares its storage).
    ///
    /// # Errors
    /// [`Error::Shape`] when the memory is not rank 3 or the mask is not bool `[B, N]`; errors
    /// of the key layer (a memory size other than the first call's) pass through.
    fn prepare(&self, memory: &Tensor, mask: Option<&Tensor>) -> Result<AttentionMemory>;

    /// Like [`AttentionMechanism::prepare`] with the mask `n < lengths[b]` (TF's
    /// `memory_sequence_length`): rows past each length are zeroed in the values and the keys,
    /// and get zero alignment. `lengths` is a `[B]` integer tensor or a slice of `i64`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the mechanism when the memory is not rank 3 or there are not `B`
    /// lengths; [`Error::InvalidArgument`] for a length outside `0..=N`.
    fn prepare_with_lengths<'a>(
        &self,
        memory: &Tensor,
        lengths: impl Into<Lengths<'a>>,
    ) -> Result<AttentionMemory>
    where
        Self: Sized,
    {
        let mask = lengths_mask(self.name(), memory, lengths.into())?;
        self.prepare(memory, Some(&mask))
    }

    /// Raw scores `[B, N]` of `query [B, Dq]` against the memory's keys, which are not
    /// recomputed (masking is applied by [`AttentionMechanism::attend`]).
    ///
    /// # Errors
    /// [`Error::Shape`] naming the mechanism when the query is not `[B, Dq]` for this
    /// mechanism's `Dq`, or the memory's tensors disagree in rank, batch or slots.
    fn score(&self, query: &Tensor, memory: &AttentionMemory) -> Result<Tensor>;

    /// Alignments (softmax of the masked scores, or the mechanism's
    /// [`ProbabilityFn`]) and the context `Σ α v`: returns `(context [B, Dm], alignments
    /// [B, N])`. Rows with no valid slot give zeros.
    ///
    /// # Errors
    /// As [`AttentionMechanism::score`].
    fn attend(&self, query: &Tensor, memory: &AttentionMemory) -> Result<(Tensor, Tensor)> {
        attend_with(self.name(), ProbabilityFn::Softmax, &self.score(query, memory)?, memory)
    }

    /// The alignments `[B, N]` a decoder state holds before its first step (TF Addons'
    /// `initial_alignments`), for `memory`'s `B` rows and `N` slots in its values' kind:
    /// zeros by default; one-hot at slot 0 for monotonic mechanisms, whose first step starts
    /// there.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the mechanism if the memory's values are not `[B, N, Dm]`.
    fn initial_alignments(&self, memory: &AttentionMemory) -> Result<Tensor> {
        let v = memory.values.size();
        if v.len() != 3 {
            return Err(Error::shape(self.name(), "memory values", "[B, N, Dm]", v));
        }
        Tensor::f_zeros([v[0], v[1]], (memory.values.kind(), memory.values.device())).ctx(self.name())
    }

    /// One decoder step's attention: as [`AttentionMechanism::attend`], given the previous
    /// step's alignments `previous [B, N]` (the state's, starting from
    /// [`AttentionMechanism::initial_alignments`]) and the mode. The default ignores both;
    /// monotonic mechanisms move on from `previous` and add their pre-sigmoid noise in
    /// [`Mode::Train`] only.
    ///
    /// # Errors
    /// As [`AttentionMechanism::attend`]; a mechanism that reads `previous` reports one that
    /// is not `[B, N]` of the memory's kind as [`Error::Shape`].
    fn attend_step(
        &self,
        query: &Tensor,
        memory: &AttentionMemory,
        previous: &Tensor,
        mode: Mode,
    ) -> Result<(Tensor, Tensor)> {
        let _ = (previous, mode);
        self.attend(query, memory)
    }
}

/// `(context [B, Dm], alignments [B, N])` of `scores [B, N]` under `memory`'s mask through
/// `probability`, for [`AttentionMechanism::attend`].
fn attend_with(
    module: &str,
    probability: ProbabilityFn,
    scores: &Tensor,
    memory: &AttentionMemory,
) -> Result<(Tensor, Tensor)> {
    check_memory(module, memory)?;
    let alignments = probability.apply(module, scores, memory.mask.as_ref())?;
    Ok((context(module, &alignments, memory)?, alignments))
}

/// The context `Σ_n α_n v_n`, `[B, Dm]`, of `alignments [B, N]` over `memory`'s values.
pub(crate) fn context(module: &str, alignments: &Tensor, memory: &AttentionMemory) -> Result<Tensor> {
    alignments
        .f_unsqueeze(1)
        .and_then(|a| a.f_bmm(&memory.values))
        .and_then(|c| c.f_squeeze_dim(1))
        .ctx(module)
}

/// The mask `[B, N]` (bool, on `memory`'s device, true = `n < lengths[b]`) of a memory
/// `[B, N, Dm]` with the given lengths, for [`AttentionMechanism::prepare`] (the free form of
/// [`AttentionMechanism::prepare_with_lengths`], usable through `dyn AttentionMechanism`).
///
/// # Errors
/// [`Error::Shape`] naming `memory_mask` when the memory is not rank 3 or there are not `B`
/// lengths; [`Error::InvalidArgument`] for a length outside `0..=N`.
pub fn memory_mask<'a>(memory: &Tensor, lengths: impl Into<Lengths<'a>>) -> Result<Tensor> {
    lengths_mask("memory_mask", memory, lengths.into())
}

fn lengths_mask(module: &str, memory: &Tensor, lengths: Lengths) -> Result<Tensor> {
    couplet_modules::util::check_defined(module, "memory", memory)?;
    let m = memory.size();
    if m.len() != 3 {
        return Err(Error::shape(module, "memory", "[B, N, Dm]", m));
    }
    let values = lengths.validate(module, m[0], m[1])?;
    sequence_mask(&values, Some(m[1]))?.f_to_device(memory.device()).ctx(module)
}

/// Checks that a prepared memory's values `[B, N, Dm]`, keys `[B, N, U]` and mask
/// (bool `[B, N]`) agree.
pub(crate) fn check_memory(module: &str, memory: &AttentionMemory) -> Result<()> {
    let v = memory.values.size();
    if v.len() != 3 {
        return Err(Error::shape(module, "memory values", "[B, N, Dm]", v));
    }
    let k = memory.keys.size();
    if k.len() != 3 || k[..2] != v[..2] {
        return Err(Error::shape(module, "memory keys", format!("[{}, {}, U]", v[0], v[1]), k));
    }
    match &memory.mask {
        Some(mask) => check_mask(module, mask, v[0], v[1]),
        None => Ok(()),
    }
}

/// Checks the memory and mask, and zeroes masked rows: returns `(values, mask)`.
fn zero_masked(module: &str, memory: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
    couplet_modules::util::check_floating(module, "memory", memory)?;
    let m = memory.size();
    if m.len() != 3 {
        return Err(Error::shape(module, "memory", "[B, N, Dm]", m));
    }
    let Some(mask) = mask else { return Ok((memory.shallow_clone(), None)) };
    check_mask(module, mask, m[0], m[1])?;
    let values = zero_masked_rows(module, memory, mask)?;
    Ok((values, Some(mask.shallow_clone())))
}

/// Checks `query [B, size]` against a memory of batch `B` and the keys' kind.
fn check_query(module: &str, query: &Tensor, memory: &AttentionMemory, size: i64) -> Result<()> {
    check_memory(module, memory)?;
    let b = memory.values.size()[0];
    if query.size() != [b, size] {
        return Err(Error::shape(module, "query", format!("[{b}, {size}]"), query.size()));
    }
    if query.kind() != memory.keys.kind() {
        return Err(Error::shape(module, "query kind", format!("{:?}", memory.keys.kind()), query.kind()));
    }
    Ok(())
}

/// Checks that the keys have `units` features.
fn check_keys_size(module: &str, memory: &AttentionMemory, units: i64) -> Result<()> {
    let k = memory.keys.size();
    if k[2] != units {
        return Err(Error::shape(module, "memory keys", format!("[{}, {}, {units}]", k[0], k[1]), k));
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
        check_memory(self.name(), memory)?;
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
    /// How scores become alignments (TF's `probability_fn`). Default [`ProbabilityFn::Softmax`].
    pub probability_fn: ProbabilityFn,
}

impl Default for LuongConfig {
    fn default() -> Self {
        LuongConfig { num_units: 1, scale: false, probability_fn: ProbabilityFn::Softmax }
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
    /// Sets the probability function.
    pub fn with_probability_fn(mut self, probability_fn: ProbabilityFn) -> Self {
        self.probability_fn = probability_fn;
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

impl std::fmt::Debug for LuongAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuongAttention")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
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
    /// The memory layer (`g` is created with the mechanism).
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.memory_layer]
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
        check_keys_size(module, memory, self.config.num_units)?;
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
    /// Alignments through the configured [`ProbabilityFn`], and the context.
    fn attend(&self, query: &Tensor, memory: &AttentionMemory) -> Result<(Tensor, Tensor)> {
        attend_with(self.name(), self.config.probability_fn, &self.score(query, memory)?, memory)
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
    /// How scores become alignments (TF's `probability_fn`). Default [`ProbabilityFn::Softmax`].
    pub probability_fn: ProbabilityFn,
}

impl Default for BahdanauConfig {
    fn default() -> Self {
        BahdanauConfig { num_units: 1, normalize: false, probability_fn: ProbabilityFn::Softmax }
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
    /// Sets the probability function.
    pub fn with_probability_fn(mut self, probability_fn: ProbabilityFn) -> Self {
        self.probability_fn = probability_fn;
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

impl std::fmt::Debug for BahdanauAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BahdanauAttention")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
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
    /// The memory and query layers.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.memory_layer, &self.query_layer]
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
        check_memory(module, memory)?;
        check_keys_size(module, memory, self.config.num_units)?;
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
    /// Alignments through the configured [`ProbabilityFn`], and the context.
    fn attend(&self, query: &Tensor, memory: &AttentionMemory) -> Result<(Tensor, Tensor)> {
        attend_with(self.name(), self.config.probability_fn, &self.score(query, memory)?, memory)
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
        // Children's variables first (Module::variables), then the mechanism's own.
        assert_eq!(names, ["luong_attention/memory_layer/w", "luong_attention/attention_g"]);
        assert!(luong.is_built(), "built: from its children");
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
