//! Monotonic attention mechanisms (Raffel et al. 2017), TF Addons'
//! `BahdanauMonotonicAttention` and `LuongMonotonicAttention`: a Bahdanau or Luong score plus
//! a learned scalar bias, through a sigmoid (with optional pre-sigmoid noise) into the
//! stopping probabilities of [`monotonic_attention`], which moves on from the previous step's
//! alignments.

use crate::mechanism::{
    check_memory, context, AttentionMechanism, AttentionMemory, BahdanauAttention, BahdanauConfig,
    LuongAttention, LuongConfig,
};
use crate::monotonic::{monotonic_attention, MonotonicMode};
use crate::probability::ProbabilityFn;
use couplet_modules::{Error, Initializer, Mode, Module, Result, Scope, TorchContext};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// The monotonic part of a [`MonotonicAttention`]'s configuration (TF Addons' arguments of
/// the same names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonotonicConfig {
    /// Standard deviation `σ` (finite, >= 0) of the Gaussian noise added to the scores before
    /// the sigmoid in [`Mode::Train`] (it pushes training towards discrete decisions); no noise
    /// in [`Mode::Eval`]. Default 0.
    pub sigmoid_noise: f64,
    /// Seed of the noise: the mechanism draws it from one ChaCha8 stream seeded with this
    /// value at construction, so two mechanisms built alike draw the same noise. Default 0.
    pub sigmoid_noise_seed: u64,
    /// Initial value (finite) of the score bias `attention_score_bias` (TF recommends a
    /// negative value for long memories). Default 0.
    pub score_bias_init: f64,
    /// How [`monotonic_attention`] computes the alignments. Default
    /// [`MonotonicMode::Parallel`] (TF's default); [`MonotonicMode::Hard`] uses the hard
    /// sigmoid `p = [score > 0]` for decoding.
    pub mode: MonotonicMode,
}

impl Default for MonotonicConfig {
    fn default() -> Self {
        MonotonicConfig {
            sigmoid_noise: 0.0,
            sigmoid_noise_seed: 0,
            score_bias_init: 0.0,
            mode: MonotonicMode::Parallel,
        }
    }
}

impl MonotonicConfig {
    /// The defaults in `mode`.
    pub fn new(mode: MonotonicMode) -> Self {
        MonotonicConfig { mode, ..Default::default() }
    }
    /// Sets the pre-sigmoid noise's standard deviation and seed.
    pub fn with_sigmoid_noise(mut self, sigmoid_noise: f64, seed: u64) -> Self {
        self.sigmoid_noise = sigmoid_noise;
        self.sigmoid_noise_seed = seed;
        self
    }
    /// Sets the score bias' initial value.
    pub fn with_score_bias_init(mut self, score_bias_init: f64) -> Self {
        self.score_bias_init = score_bias_init;
        self
    }
    /// Sets the mode.
    pub fn with_mode(mut self, mode: MonotonicMode) -> Self {
        self.mode = mode;
        self
    }
}

/// Monotonic attention over the score of an inner mechanism `M` (Bahdanau or Luong). One step,
/// with the previous alignments `prev [B, N]` (one-hot at slot 0 before the first step):
///
/// 1. `e = score(query, keys) + r` (`M`'s score, `r` the learned scalar
///    `attention_score_bias`), plus `σ · N(0, 1)` noise in [`Mode::Train`] when `σ > 0`;
/// 2. `p = sigmoid(e)` (in [`MonotonicMode::Hard`]: `p = [e > 0]`), and `p = 0` at masked
///    slots (TF masks the score with `-inf`);
/// 3. `alignments = monotonic_attention(p, prev, mode)`, `context = Σ_n α_n v_n`.
///
/// Alignments sum to at most 1 (the rest is the chance of moving past the last slot) and are
/// zero before the previous step's position. Use it in an
/// [`AttentionDecoderCore`](crate::AttentionDecoderCore), whose state carries the previous
/// alignments from step to step; [`AttentionMechanism::attend`] alone is the first step (from
/// slot 0, no noise).
///
/// Variables: the inner mechanism's, in its scope under this one
/// (`bahdanau_monotonic_attention/bahdanau_attention/…`,
/// `luong_monotonic_attention/luong_attention/…`), then `…/attention_score_bias []`.
pub struct MonotonicAttention<M> {
    scope: Scope,
    config: MonotonicConfig,
    inner: M,
    score_bias: Tensor,
    noise: Mutex<ChaCha8Rng>,
}

/// TF Addons' `BahdanauMonotonicAttention`.
pub type BahdanauMonotonicAttention = MonotonicAttention<BahdanauAttention>;
/// TF Addons' `LuongMonotonicAttention`.
pub type LuongMonotonicAttention = MonotonicAttention<LuongAttention>;

impl<M: Module> std::fmt::Debug for MonotonicAttention<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonotonicAttention")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .field("inner", &self.inner.name())
            .finish()
    }
}

impl MonotonicAttention<BahdanauAttention> {
    /// A Bahdanau monotonic mechanism in a child scope `bahdanau_monotonic_attention` of
    /// `parent`, scoring with a [`BahdanauAttention`] of `score` (its `probability_fn` must stay
    /// softmax: the monotonic probability replaces it).
    ///
    /// # Errors
    /// [`Error::Config`] naming the mechanism for a `sigmoid_noise` that is negative or not
    /// finite, a `score_bias_init` that is not finite, or a `probability_fn` other than
    /// softmax; errors of [`BahdanauAttention::new`].
    pub fn new(parent: &Scope, score: BahdanauConfig, config: MonotonicConfig) -> Result<Self> {
        let scope = parent.child("bahdanau_monotonic_attention")?;
        check_config(&scope, score.probability_fn, &config)?;
        let inner = BahdanauAttention::new(&scope, score)?;
        Self::build(scope, inner, config)
    }
}

impl MonotonicAttention<LuongAttention> {
    /// A Luong monotonic mechanism in a child scope `luong_monotonic_attention` of `parent`,
    /// scoring with a [`LuongAttention`] of `score` (its `probability_fn` must stay softmax).
    ///
    /// # Errors
    /// As the Bahdanau constructor; errors of [`LuongAttention::new`].
    pub fn new(parent: &Scope, score: LuongConfig, config: MonotonicConfig) -> Result<Self> {
        let scope = parent.child("luong_monotonic_attention")?;
        check_config(&scope, score.probability_fn, &config)?;
        let inner = LuongAttention::new(&scope, score)?;
        Self::build(scope, inner, config)
    }
}

fn check_config(scope: &Scope, probability_fn: ProbabilityFn, config: &MonotonicConfig) -> Result<()> {
    let module = scope.path();
    if !(config.sigmoid_noise.is_finite() && config.sigmoid_noise >= 0.0) {
        return Err(Error::config(
            module,
            format!("sigmoid_noise must be finite and >= 0, got {}", config.sigmoid_noise),
        ));
    }
    if !config.score_bias_init.is_finite() {
        return Err(Error::config(
            module,
            format!("score_bias_init must be finite, got {}", config.score_bias_init),
        ));
    }
    if probability_fn != ProbabilityFn::Softmax {
        return Err(Error::config(
            module,
            format!(
                "the monotonic probability replaces the score's probability_fn: leave it at softmax, got {probability_fn:?}"
            ),
        ));
    }
    Ok(())
}

impl<M: AttentionMechanism> MonotonicAttention<M> {
    fn build(scope: Scope, inner: M, config: MonotonicConfig) -> Result<Self> {
        let score_bias = scope
            .var("attention_score_bias", &[])
            .init(Initializer::Constant { value: config.score_bias_init })
            .create()?;
        let noise = Mutex::new(ChaCha8Rng::seed_from_u64(config.sigmoid_noise_seed));
        Ok(MonotonicAttention { scope, config, inner, score_bias, noise })
    }

    /// The monotonic configuration.
    pub fn config(&self) -> &MonotonicConfig {
        &self.config
    }

    /// The inner (scoring) mechanism.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The score bias `attention_score_bias []`.
    pub fn score_bias(&self) -> &Tensor {
        &self.score_bias
    }

    /// `σ · N(0, 1)` noise `[b, n]` from the mechanism's stream (Box–Muller on the host, one
    /// normal per pair of uniforms), in `kind` on `device`.
    fn noise(&self, b: i64, n: i64, kind: Kind, device: Device) -> Result<Tensor> {
        let mut rng = self.noise.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let draws: Vec<f64> = (0..b * n)
            .map(|_| {
                let u1: f64 = 1.0 - rng.gen::<f64>();
                let u2: f64 = rng.gen();
                self.config.sigmoid_noise * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect();
        Tensor::from_slice(&draws)
            .f_view([b, n])
            .and_then(|t| t.f_to_kind(kind))
            .and_then(|t| t.f_to_device(device))
            .ctx(self.name())
    }
}

impl<M: AttentionMechanism> Module for MonotonicAttention<M> {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The inner mechanism (the score bias is created with the mechanism).
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.inner]
    }
}

impl<M: AttentionMechanism> AttentionMechanism for MonotonicAttention<M> {
    /// The inner mechanism's preparation (errors name it).
    fn prepare(&self, memory: &Tensor, mask: Option<&Tensor>) -> Result<AttentionMemory> {
        self.inner.prepare(memory, mask)
    }

    /// The inner mechanism's score plus the score bias, `[B, N]` (no noise).
    fn score(&self, query: &Tensor, memory: &AttentionMemory) -> Result<Tensor> {
        self.inner.score(query, memory)?.f_add(&self.score_bias).ctx(self.name())
    }

    /// The first step: [`AttentionMechanism::attend_step`] from
    /// [`AttentionMechanism::initial_alignments`] in [`Mode::Eval`].
    fn attend(&self, query: &Tensor, memory: &AttentionMemory) -> Result<(Tensor, Tensor)> {
        let start = self.initial_alignments(memory)?;
        self.attend_step(query, memory, &start, Mode::Eval)
    }

    /// One-hot at slot 0, `[B, N]` (TF Addons' dirac initial alignments).
    fn initial_alignments(&self, memory: &AttentionMemory) -> Result<Tensor> {
        let module = self.name();
        check_memory(module, memory)?;
        let v = memory.values.size();
        Tensor::f_zeros([v[0]], (Kind::Int64, memory.values.device()))
            .and_then(|z| z.f_one_hot(v[1]))
            .and_then(|h| h.f_to_kind(memory.values.kind()))
            .ctx(module)
    }

    /// Steps 1–3 of [`MonotonicAttention`] from `previous [B, N]`: `(context [B, Dm],
    /// alignments [B, N])`.
    fn attend_step(
        &self,
        query: &Tensor,
        memory: &AttentionMemory,
        previous: &Tensor,
        mode: Mode,
    ) -> Result<(Tensor, Tensor)> {
        let module = self.name();
        let mut score = self.score(query, memory)?;
        let (b, n) = (score.size()[0], score.size()[1]);
        couplet_modules::util::check_defined(module, "previous alignments", previous)?;
        if previous.size() != [b, n] || previous.kind() != score.kind() {
            return Err(Error::Shape {
                module: module.to_string(),
                what: "previous alignments".to_string(),
                expected: format!("{:?} [{b}, {n}]", score.kind()),
                actual: format!("{:?} {:?}", previous.kind(), previous.size()),
            });
        }
        if mode == Mode::Train && self.config.sigmoid_noise > 0.0 {
            score = score.f_add(&self.noise(b, n, score.kind(), score.device())?).ctx(module)?;
        }
        let p = match self.config.mode {
            MonotonicMode::Hard => score.f_gt(0.0).and_then(|p| p.f_to_kind(score.kind())),
            _ => score.f_sigmoid(),
        }
        .ctx(module)?;
        let p = match &memory.mask {
            Some(mask) => {
                let zero = Tensor::f_zeros([], (p.kind(), p.device())).ctx(module)?;
                p.f_where_self(mask, &zero).ctx(module)?
            }
            None => p,
        };
        let alignments = monotonic_attention(&p, previous, self.config.mode)?;
        Ok((context(module, &alignments, memory)?, alignments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
    }

    fn luong(store: &Store, config: MonotonicConfig) -> LuongMonotonicAttention {
        LuongMonotonicAttention::new(&store.root(), LuongConfig::new(3), config).unwrap()
    }

    #[test]
    fn noise_is_seeded_drawn_in_training_only_and_added_before_the_sigmoid() {
        let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
        let memory = Tensor::randn([2, 4, 3], (Kind::Double, Device::Cpu));
        let query = Tensor::randn([2, 3], (Kind::Double, Device::Cpu));
        let config = MonotonicConfig::default().with_sigmoid_noise(1.5, 7).with_score_bias_init(-0.5);
        let (a, b) = (luong(&store, config.clone()), luong(&store, config));
        // Build both memory layers, give b a's weights, then prepare.
        let _ = (a.prepare(&memory, None).unwrap(), b.prepare(&memory, None).unwrap());
        let w = couplet_modules::checkpoint::tf::module_variable(a.inner(), "memory_layer/w").unwrap();
        let wb = couplet_modules::checkpoint::tf::module_variable(b.inner(), "memory_layer/w").unwrap();
        tch::no_grad(|| wb.shallow_clone().copy_(&w));
        let (pa, pb) = (a.prepare(&memory, None).unwrap(), b.prepare(&memory, None).unwrap());
        let start = a.initial_alignments(&pa).unwrap();
        assert_eq!(values(&start), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let eval = a.attend_step(&query, &pa, &start, Mode::Eval).unwrap().1;
        let by_hand =
            monotonic_attention(&a.score(&query, &pa).unwrap().sigmoid(), &start, MonotonicMode::Parallel);
        assert!(eval.allclose(&by_hand.unwrap(), 1e-12, 1e-12, false), "eval: no noise");
        assert!(eval.equal(&a.attend(&query, &pa).unwrap().1), "attend is the first step");
        // Twin mechanisms draw the same noise; the draw is the seed's Box–Muller stream.
        let (ta, tb) = (
            a.attend_step(&query, &pa, &start, Mode::Train).unwrap().1,
            b.attend_step(&query, &pb, &start, Mode::Train).unwrap().1,
        );
        assert!(ta.allclose(&tb, 1e-12, 1e-12, false));
        assert!(!ta.allclose(&eval, 1e-3, 1e-3, false), "training adds noise");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let noise: Vec<f64> = (0..8)
            .map(|_| {
                let u1: f64 = 1.0 - rng.gen::<f64>();
                let u2: f64 = rng.gen();
                1.5 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect();
        let noisy = a.score(&query, &pa).unwrap() + Tensor::from_slice(&noise).view([2, 4]);
        let want = monotonic_attention(&noisy.sigmoid(), &start, MonotonicMode::Parallel).unwrap();
        assert!(ta.allclose(&want, 1e-12, 1e-12, false), "{ta:?} vs {want:?}");
        // The stream moves on: the next step's noise differs.
        let again = a.attend_step(&query, &pa, &start, Mode::Train).unwrap().1;
        assert!(!again.allclose(&ta, 1e-6, 1e-6, false));
    }

    #[test]
    fn variables_and_config_errors() {
        let store = Store::cpu();
        let m = BahdanauMonotonicAttention::new(
            &store.root(),
            BahdanauConfig::new(2),
            MonotonicConfig::default().with_score_bias_init(-1.0),
        )
        .unwrap();
        assert_eq!(m.score_bias().double_value(&[]), -1.0);
        let prepared = m.prepare(&Tensor::zeros([1, 2, 3], (Kind::Float, Device::Cpu)), None).unwrap();
        let _ = m.score(&Tensor::zeros([1, 5], (Kind::Float, Device::Cpu)), &prepared).unwrap();
        let names: Vec<_> = m.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(
            names,
            [
                "bahdanau_monotonic_attention/bahdanau_attention/memory_layer/w",
                "bahdanau_monotonic_attention/bahdanau_attention/query_layer/w",
                "bahdanau_monotonic_attention/bahdanau_attention/attention_v",
                "bahdanau_monotonic_attention/attention_score_bias",
            ]
        );
        let bad = |c: MonotonicConfig| {
            LuongMonotonicAttention::new(&store.root(), LuongConfig::new(2), c).unwrap_err()
        };
        let e = bad(MonotonicConfig::default().with_sigmoid_noise(-1.0, 0));
        assert!(
            matches!(e, Error::Config { .. })
                && e.to_string().contains("sigmoid_noise must be finite and >= 0"),
            "{e}"
        );
        assert!(bad(MonotonicConfig::default().with_score_bias_init(f64::NAN))
            .to_string()
            .contains("score_bias_init"));
        let e = LuongMonotonicAttention::new(
            &store.root(),
            LuongConfig::new(2).with_probability_fn(ProbabilityFn::Hardmax),
            MonotonicConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("leave it at softmax, got Hardmax"), "{e}");
        let l = luong(&store, MonotonicConfig::default());
        let memory = l.prepare(&Tensor::zeros([2, 4, 3], (Kind::Float, Device::Cpu)), None).unwrap();
        let q = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let e = l
            .attend_step(&q, &memory, &Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), Mode::Eval)
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Shape { .. }) && msg.starts_with("luong_monotonic_attention"), "{msg}");
        assert!(msg.ends_with(": previous alignments must be Float [2, 4], got Float [2, 3]"), "{msg}");
    }
}
