//! `BatchNorm`: batch normalisation with moving statistics (Ioffe & Szegedy 2015; Sonnet v1's
//! `snt.BatchNorm`, PyTorch's `nn.BatchNorm1d/2d/3d`).

use crate::error::{Error, Result, TorchContext};
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::{build_once, check_keys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// Where the channel dimension of an input is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// `[B, C, ..]`: channels at dimension 1 (PyTorch, NCHW). The default.
    #[default]
    ChannelsFirst,
    /// `[B, .., C]`: channels last (TensorFlow, NHWC).
    ChannelsLast,
}

/// Configuration of a [`BatchNorm`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchNormConfig {
    /// Number of channels `C` (> 0). `Some(C)` creates the variables at construction;
    /// `None` (default) takes `C` from the first input.
    pub num_channels: Option<i64>,
    /// Where the channel dimension is. Default [`DataFormat::ChannelsFirst`].
    pub data_format: DataFormat,
    /// Whether to multiply by the learned `scale` (γ). Default `true`.
    pub create_scale: bool,
    /// Whether to add the learned `offset` (β). Default `true`.
    pub create_offset: bool,
    /// Added to the variance before the square root (finite, >= 0). Default `1e-5`
    /// (PyTorch; Sonnet v1 used `1e-3`).
    pub eps: f64,
    /// Decay of the moving statistics, in `[0, 1]`:
    /// `moving = decay_rate * moving + (1 - decay_rate) * batch`. Default `0.9`, which is
    /// PyTorch's default `momentum = 0.1` (`momentum = 1 - decay_rate`; Sonnet v1 used 0.999).
    pub decay_rate: f64,
    /// Whether evaluation ([`Mode::Eval`]) normalises with the batch's own statistics instead
    /// of the moving ones (Sonnet v1's `test_local_stats`); the moving statistics are then
    /// neither used nor updated. Default `false`.
    pub test_local_stats: bool,
    /// Initializers by variable name (`"scale"`, `"offset"`, `"moving_mean"`,
    /// `"moving_variance"`). Defaults: ones, zeros, zeros, ones.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"scale"`, `"offset"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            num_channels: None,
            data_format: DataFormat::ChannelsFirst,
            create_scale: true,
            create_offset: true,
            eps: 1e-5,
            decay_rate: 0.9,
            test_local_stats: false,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl BatchNormConfig {
    /// A config with every field at its default (channels first, sizes from the first input).
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the number of channels, so variables are created at construction.
    pub fn with_num_channels(mut self, num_channels: i64) -> Self {
        self.num_channels = Some(num_channels);
        self
    }
    /// Sets where the channel dimension is.
    pub fn with_data_format(mut self, data_format: DataFormat) -> Self {
        self.data_format = data_format;
        self
    }
    /// Sets whether the learned `scale` is used.
    pub fn with_create_scale(mut self, create_scale: bool) -> Self {
        self.create_scale = create_scale;
        self
    }
    /// Sets whether the learned `offset` is used.
    pub fn with_create_offset(mut self, create_offset: bool) -> Self {
        self.create_offset = create_offset;
        self
    }
    /// Sets `eps`.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Sets the decay rate of the moving statistics (`1 - momentum` in PyTorch terms).
    pub fn with_decay_rate(mut self, decay_rate: f64) -> Self {
        self.decay_rate = decay_rate;
        self
    }
    /// Sets whether evaluation uses the batch's own statistics.
    pub fn with_test_local_stats(mut self, test_local_stats: bool) -> Self {
        self.test_local_stats = test_local_stats;
        self
    }
    /// Overrides the initializer of variable `name` (`"scale"`, `"offset"`, `"moving_mean"`
    /// or `"moving_variance"`).
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to variable `name` (`"scale"` or `"offset"`).
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

struct BatchNormVars {
    scale: Option<Tensor>,
    offset: Option<Tensor>,
    moving_mean: Tensor,
    moving_variance: Tensor,
}

/// Batch normalisation over every dimension but the channel one: for `x [B, C, ..]`
/// (channels first) or `x [B, .., C]` (channels last), each channel `c` is normalised as
/// `y = (x - mean_c) / sqrt(var_c + eps) * scale_c + offset_c`, `y` of `x`'s shape.
///
/// Variables, in creation order: trainable `scale [C]` (γ, ones) and `offset [C]` (β, zeros),
/// and non-trainable `moving_mean [C]` (zeros) and `moving_variance [C]` (ones), the layout
/// of PyTorch's `weight`, `bias`, `running_mean`, `running_var` (PyTorch's
/// `num_batches_tracked` is not kept: it only matters for `momentum = None`).
///
/// - [`Mode::Train`]: `mean` and the biased `var` are the batch's; then, in place and outside
///   the autograd graph, `moving_mean = d * moving_mean + (1 - d) * mean` and
///   `moving_variance = d * moving_variance + (1 - d) * var_unbiased` with `d = decay_rate`.
///   The **unbiased** batch variance (`n / (n - 1)` times the biased one, `n` values per
///   channel) is what PyTorch stores; TensorFlow and Sonnet store the biased one.
/// - [`Mode::Eval`]: the moving statistics are used (and not changed), unless
///   `test_local_stats` asks for the batch's statistics.
///
/// Runs libtorch's fused `batch_norm`; channels-last inputs give the same numbers as the
/// channels-first transposed input.
pub struct BatchNorm {
    scope: Scope,
    config: BatchNormConfig,
    vars: OnceLock<BatchNormVars>,
}

impl std::fmt::Debug for BatchNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchNorm").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl BatchNorm {
    /// Builds a `BatchNorm` in a new child scope `batch_norm` (or `batch_norm_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `num_channels` is not positive, `eps` is negative or not finite,
    /// `decay_rate` is outside `[0, 1]`, or an initializer/regularizer key names no variable
    /// of the module.
    pub fn new(parent: &Scope, config: BatchNormConfig) -> Result<Self> {
        Self::named(parent, "batch_norm", config)
    }

    /// Like [`BatchNorm::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: BatchNormConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        if let Some(c) = config.num_channels.filter(|&c| c <= 0) {
            return Err(Error::config(module, format!("num_channels must be > 0, got {c}")));
        }
        if !(config.eps.is_finite() && config.eps >= 0.0) {
            return Err(Error::config(module, format!("eps must be finite and >= 0, got {}", config.eps)));
        }
        if !(0.0..=1.0).contains(&config.decay_rate) {
            return Err(Error::config(
                module,
                format!("decay_rate must be in [0, 1], got {}", config.decay_rate),
            ));
        }
        let mut trainable = Vec::new();
        if config.create_scale {
            trainable.push("scale");
        }
        if config.create_offset {
            trainable.push("offset");
        }
        check_keys(module, "regularizers", config.regularizers.keys(), &trainable)?;
        let mut all = trainable;
        all.extend(["moving_mean", "moving_variance"]);
        check_keys(module, "initializers", config.initializers.keys(), &all)?;
        let batch_norm = BatchNorm { scope, config, vars: OnceLock::new() };
        if let Some(c) = batch_norm.config.num_channels {
            batch_norm.build(c)?;
        }
        Ok(batch_norm)
    }

    fn build(&self, channels: i64) -> Result<&BatchNormVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let var = |name: &str, default: Initializer, trainable: bool| {
                self.scope
                    .var(name, &[channels])
                    .init(c.initializers.get(name).cloned().unwrap_or(default))
                    .trainable(trainable)
                    .regularizer(c.regularizers.get(name).cloned())
                    .create()
            };
            let scale = if c.create_scale { Some(var("scale", Initializer::Ones, true)?) } else { None };
            let offset = if c.create_offset { Some(var("offset", Initializer::Zeros, true)?) } else { None };
            let moving_mean = var("moving_mean", Initializer::Zeros, false)?;
            let moving_variance = var("moving_variance", Initializer::Ones, false)?;
            Ok(BatchNormVars { scale, offset, moving_mean, moving_variance })
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }

    /// Number of channels `C`, once known.
    pub fn num_channels(&self) -> Option<i64> {
        self.vars.get().map(|v| v.moving_mean.size()[0])
    }

    fn built(&self) -> Result<&BatchNormVars> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The scale `γ [C]` (`None` without `create_scale`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `BatchNorm`.
    pub fn scale(&self) -> Result<Option<&Tensor>> {
        self.built().map(|v| v.scale.as_ref())
    }

    /// The offset `β [C]` (`None` without `create_offset`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `BatchNorm`.
    pub fn offset(&self) -> Result<Option<&Tensor>> {
        self.built().map(|v| v.offset.as_ref())
    }

    /// The moving mean `[C]` (PyTorch's `running_mean`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `BatchNorm`.
    pub fn moving_mean(&self) -> Result<&Tensor> {
        self.built().map(|v| &v.moving_mean)
    }

    /// The moving variance `[C]` (PyTorch's `running_var`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `BatchNorm`.
    pub fn moving_variance(&self) -> Result<&Tensor> {
        self.built().map(|v| &v.moving_variance)
    }

    fn pattern(&self, channels: &str) -> String {
        match self.config.data_format {
            DataFormat::ChannelsFirst => format!("[B, {channels}, ..]"),
            DataFormat::ChannelsLast => format!("[B, .., {channels}]"),
        }
    }

    /// Normalises `x [B, C, ..]` (channels first) or `x [B, .., C]` (channels last), giving a
    /// tensor of `x`'s shape; see [`BatchNorm`] for what each `mode` does. The first call of a
    /// lazy `BatchNorm` creates the variables from `x`'s channel dimension.
    ///
    /// # Errors
    /// - [`Error::Shape`] if `x` has rank below 2, a channel dimension other than `C`
    ///   (`"batch_norm: input must be [B, 4, ..], got [8, 5]"`) or of size 0, or a kind other
    ///   than the store's.
    /// - [`Error::InvalidArgument`] if training sees only one value per channel (e.g. `[1, C]`:
    ///   the unbiased variance would be NaN; PyTorch raises too), or batch statistics are
    ///   asked of an input with no value per channel.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let module = self.scope.path();
        let size = x.size();
        let known = self.num_channels();
        let channels = known.map_or_else(|| "C".to_string(), |c| c.to_string());
        if size.len() < 2 {
            return Err(Error::shape(module, "input", self.pattern(&channels), size));
        }
        let axis = match self.config.data_format {
            DataFormat::ChannelsFirst => 1,
            DataFormat::ChannelsLast => size.len() - 1,
        };
        let c = size[axis];
        if known.is_some_and(|k| k != c) || c == 0 {
            let channels = if c == 0 { "C > 0".to_string() } else { channels };
            return Err(Error::shape(module, "input", self.pattern(&channels), size));
        }
        self.scope.check_kind("input", x)?;
        let per_channel: i64 = size.iter().product::<i64>() / c;
        let batch_stats = mode.is_training() || self.config.test_local_stats;
        if mode.is_training() && per_channel == 1 {
            return Err(Error::invalid(
                module,
                format!(
                    "training needs more than 1 value per channel to estimate the variance, got input {size:?}"
                ),
            ));
        }
        if batch_stats && per_channel == 0 {
            return Err(Error::invalid(
                module,
                format!("batch statistics need at least 1 value per channel, got input {size:?}"),
            ));
        }
        let vars = self.build(c)?;
        let moving = match (mode, batch_stats) {
            (Mode::Eval, true) => (None, None),
            _ => (Some(&vars.moving_mean), Some(&vars.moving_variance)),
        };
        let channel_axis = axis as i64;
        let input =
            if axis == 1 { x.shallow_clone() } else { x.f_movedim([channel_axis], [1]).ctx(module)? };
        let y = input
            .f_batch_norm(
                vars.scale.as_ref(),
                vars.offset.as_ref(),
                moving.0,
                moving.1,
                batch_stats,
                1.0 - self.config.decay_rate,
                self.config.eps,
                true,
            )
            .ctx(module)?;
        if axis == 1 {
            Ok(y)
        } else {
            y.f_movedim([1], [channel_axis]).ctx(module)
        }
    }
}

impl Module for BatchNorm {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl Forward for BatchNorm {
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        BatchNorm::forward_t(self, x, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    fn assert_values(actual: &Tensor, expected: &[f32]) {
        let a = values(actual);
        assert_eq!(a.len(), expected.len(), "{a:?} vs {expected:?}");
        for (x, e) in a.iter().zip(expected) {
            assert!((x - e).abs() < 1e-4, "{a:?} vs {expected:?}");
        }
    }

    fn names(vars: Vec<crate::Variable>) -> Vec<String> {
        vars.iter().map(|v| v.name().to_string()).collect()
    }

    /// `[4, 2]`: channel 0 is `[1, 2, 3, 6]` (mean 3, biased variance 3.5, unbiased 14/3),
    /// channel 1 is `[0, 0, 2, 2]` (mean 1, biased variance 1, unbiased 4/3).
    fn batch() -> Tensor {
        Tensor::from_slice(&[1.0f32, 0.0, 2.0, 0.0, 3.0, 2.0, 6.0, 2.0]).view([4, 2])
    }

    /// `batch()` normalised with its own statistics, in the same `[4, 2]` layout.
    const BATCH_NORMALISED: [f32; 8] = [-1.0690, -1.0, -0.5345, -1.0, 0.0, 1.0, 1.6036, 1.0];

    #[test]
    fn variables_have_pinned_names_and_moving_statistics_are_not_trainable() {
        let store = Store::cpu();
        let bn = BatchNorm::new(&store.root(), BatchNormConfig::new()).unwrap();
        assert!(matches!(bn.variables(), Err(Error::NotBuilt { .. })));
        assert!(matches!(bn.moving_mean(), Err(Error::NotBuilt { .. })));
        let _ = bn.forward_t(&batch(), Mode::Train).unwrap();
        assert_eq!(
            names(bn.variables().unwrap()),
            ["batch_norm/scale", "batch_norm/offset", "batch_norm/moving_mean", "batch_norm/moving_variance"]
        );
        assert_eq!(names(bn.trainable_variables().unwrap()), ["batch_norm/scale", "batch_norm/offset"]);
        assert_eq!(
            names(bn.non_trainable_variables().unwrap()),
            ["batch_norm/moving_mean", "batch_norm/moving_variance"]
        );
        assert_eq!(bn.num_channels(), Some(2));
        assert_values(bn.scale().unwrap().unwrap(), &[1.0, 1.0]);
        assert_values(bn.offset().unwrap().unwrap(), &[0.0, 0.0]);
    }

    #[test]
    fn training_normalises_with_batch_statistics_and_updates_moving_ones_by_hand() {
        let store = Store::cpu();
        let bn = BatchNorm::new(&store.root(), BatchNormConfig::new()).unwrap();
        let y = bn.forward_t(&batch(), Mode::Train).unwrap();
        assert_values(&y, &BATCH_NORMALISED);
        // 0.9 * 0 + 0.1 * mean; 0.9 * 1 + 0.1 * unbiased variance (PyTorch's rule).
        assert_values(bn.moving_mean().unwrap(), &[0.3, 0.1]);
        assert_values(bn.moving_variance().unwrap(), &[0.9 + 1.4 / 3.0, 0.9 + 0.4 / 3.0]);
        // A second step decays again: 0.9 * 0.3 + 0.1 * 3 = 0.57.
        let _ = bn.forward_t(&batch(), Mode::Train).unwrap();
        assert_values(bn.moving_mean().unwrap(), &[0.57, 0.19]);
    }

    #[test]
    fn eval_uses_and_keeps_the_moving_statistics() {
        let store = Store::cpu();
        let config = BatchNormConfig::new()
            .with_decay_rate(0.5)
            .with_initializer("scale", Initializer::Constant { value: 2.0 })
            .with_initializer("offset", Initializer::Constant { value: 1.0 });
        let bn = BatchNorm::new(&store.root(), config).unwrap();
        let _ = bn.forward_t(&batch(), Mode::Train).unwrap();
        // moving_mean = 0.5 * [3, 1] = [1.5, 0.5]; moving_variance = 0.5 + 0.5 * [14/3, 4/3].
        let (mean, var): ([f32; 2], [f32; 2]) = ([1.5, 0.5], [0.5 + 7.0 / 3.0, 0.5 + 2.0 / 3.0]);
        assert_values(bn.moving_mean().unwrap(), &mean);
        let x = Tensor::from_slice(&[3.0f32, 2.0]).view([1, 2]);
        let y = bn.forward_t(&x, Mode::Eval).unwrap();
        let expected: Vec<f32> =
            (0..2).map(|c| 2.0 * ([3.0, 2.0][c] - mean[c]) / (var[c] + 1e-5).sqrt() + 1.0).collect();
        assert_values(&y, &expected);
        assert_values(bn.moving_mean().unwrap(), &mean);
        assert_values(bn.moving_variance().unwrap(), &var);
        // Through the `Forward` trait too.
        assert_values(&bn.forward_t(&x, Mode::Eval).unwrap(), &expected);
    }

    #[test]
    fn test_local_stats_uses_batch_statistics_in_eval_without_updating() {
        let store = Store::cpu();
        let bn = BatchNorm::new(&store.root(), BatchNormConfig::new().with_test_local_stats(true)).unwrap();
        let y = bn.forward_t(&batch(), Mode::Eval).unwrap();
        assert_values(&y, &BATCH_NORMALISED);
        assert_values(bn.moving_mean().unwrap(), &[0.0, 0.0]);
        assert_values(bn.moving_variance().unwrap(), &[1.0, 1.0]);
        // A single example is fine in evaluation: its biased variance is 0.
        let y = bn.forward_t(&Tensor::from_slice(&[5.0f32, -1.0]).view([1, 2]), Mode::Eval).unwrap();
        assert_values(&y, &[0.0, 0.0]);
    }

    #[test]
    fn no_gradient_flows_into_the_moving_statistics() {
        let store = Store::cpu();
        let bn = BatchNorm::new(&store.root(), BatchNormConfig::new()).unwrap();
        let x = batch().set_requires_grad(true);
        let y = bn.forward_t(&x, Mode::Train).unwrap();
        (&y * &y).sum(Kind::Float).backward();
        for stat in [bn.moving_mean().unwrap(), bn.moving_variance().unwrap()] {
            assert!(!stat.requires_grad());
            assert!(!stat.grad().defined());
        }
        assert!(bn.scale().unwrap().unwrap().grad().defined());
        assert!(x.grad().defined());
    }

    #[test]
    fn channels_last_gives_the_numbers_of_channels_first_on_the_transposed_input() {
        tch::manual_seed(3);
        let store = Store::cpu();
        let first = BatchNorm::new(&store.root(), BatchNormConfig::new()).unwrap();
        let last =
            BatchNorm::new(&store.root(), BatchNormConfig::new().with_data_format(DataFormat::ChannelsLast))
                .unwrap();
        let x = Tensor::randn([4, 3, 5, 2], (Kind::Float, Device::Cpu)) * 2.0 + 1.0;
        let x_last = x.permute([0, 2, 3, 1]);
        for mode in [Mode::Train, Mode::Train, Mode::Eval] {
            let y = first.forward_t(&x, mode).unwrap();
            let y_last = last.forward_t(&x_last, mode).unwrap();
            assert_eq!(y_last.size(), [4, 5, 2, 3]);
            assert!(y_last.allclose(&y.permute([0, 2, 3, 1]), 1e-6, 1e-6, false));
        }
        assert!(last.moving_mean().unwrap().allclose(first.moving_mean().unwrap(), 1e-6, 1e-6, false));
        assert!(last.moving_variance().unwrap().allclose(
            first.moving_variance().unwrap(),
            1e-6,
            1e-6,
            false
        ));
        assert_eq!(last.num_channels(), Some(3));
    }

    #[test]
    fn a_single_value_per_channel_cannot_train() {
        let store = Store::cpu();
        let bn = BatchNorm::new(&store.root(), BatchNormConfig::new()).unwrap();
        let one = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]);
        let e = bn.forward_t(&one, Mode::Train).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "batch_norm: training needs more than 1 value per channel to estimate the variance, got input \
             [1, 3]"
        );
        assert!(!bn.is_built(), "a refused input builds nothing");
        // With spatial dimensions a batch of one has several values per channel.
        assert_eq!(
            bn.forward_t(&one.view([1, 3, 1]).repeat([1, 1, 2]), Mode::Train).unwrap().size(),
            [1, 3, 2]
        );
        // Evaluation with the moving statistics is fine.
        assert_eq!(bn.forward_t(&one, Mode::Eval).unwrap().size(), [1, 3]);
        let local =
            BatchNorm::new(&store.root(), BatchNormConfig::new().with_test_local_stats(true)).unwrap();
        let e = local.forward_t(&Tensor::zeros([0, 3], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap_err();
        assert_eq!(
            e.to_string(),
            "batch_norm_1: batch statistics need at least 1 value per channel, got input [0, 3]"
        );
    }

    #[test]
    fn shape_and_kind_errors_name_the_module() {
        let store = Store::cpu();
        let f = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        let bn = BatchNorm::new(&store.root(), BatchNormConfig::new()).unwrap();
        let e = bn.forward_t(&f(&[4]), Mode::Train).unwrap_err();
        assert_eq!(e.to_string(), "batch_norm: input must be [B, C, ..], got [4]");
        let e = bn.forward_t(&f(&[4, 0]), Mode::Train).unwrap_err();
        assert_eq!(e.to_string(), "batch_norm: input must be [B, C > 0, ..], got [4, 0]");
        let _ = bn.forward_t(&f(&[8, 4]), Mode::Train).unwrap();
        let e = bn.forward_t(&f(&[8, 5]), Mode::Train).unwrap_err();
        assert_eq!(e.to_string(), "batch_norm: input must be [B, 4, ..], got [8, 5]");
        assert!(matches!(e, Error::Shape { .. }));
        let e = bn.forward_t(&Tensor::zeros([8, 4], (Kind::Double, Device::Cpu)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "batch_norm: input kind must be Float, got Double");
        let last = BatchNorm::new(
            &store.root(),
            BatchNormConfig::new().with_num_channels(3).with_data_format(DataFormat::ChannelsLast),
        )
        .unwrap();
        let e = last.forward_t(&f(&[2, 3, 5, 4]), Mode::Train).unwrap_err();
        assert_eq!(e.to_string(), "batch_norm_1: input must be [B, .., 3], got [2, 3, 5, 4]");
    }

    #[test]
    fn eager_and_optional_variables() {
        let store = Store::cpu();
        let config =
            BatchNormConfig::new().with_num_channels(3).with_create_scale(false).with_create_offset(false);
        let bn = BatchNorm::new(&store.root(), config).unwrap();
        assert!(bn.is_built());
        assert_eq!(store.variable_names(), ["batch_norm/moving_mean", "batch_norm/moving_variance"]);
        assert_eq!(bn.scale().unwrap(), None);
        assert!(bn.trainable_variables().unwrap().is_empty());
        assert_eq!(bn.moving_variance().unwrap().size(), [3]);
    }

    #[test]
    fn config_errors() {
        let store = Store::cpu();
        let root = store.root();
        let e = BatchNorm::new(&root, BatchNormConfig::new().with_num_channels(0)).unwrap_err();
        assert_eq!(e.to_string(), "batch_norm: bad configuration: num_channels must be > 0, got 0");
        let e = BatchNorm::new(&root, BatchNormConfig::new().with_decay_rate(1.5)).unwrap_err();
        assert_eq!(e.to_string(), "batch_norm_1: bad configuration: decay_rate must be in [0, 1], got 1.5");
        let e = BatchNorm::new(&root, BatchNormConfig::new().with_eps(f64::NAN)).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let config = BatchNormConfig::new().with_regularizer("moving_mean", Regularizer::L2 { scale: 1.0 });
        let e = BatchNorm::new(&root, config).unwrap_err();
        assert!(e.to_string().contains("unknown regularizers key \"moving_mean\""), "{e}");
        let config =
            BatchNormConfig::new().with_initializer("moving_variance", Initializer::Constant { value: 4.0 });
        let bn = BatchNorm::new(&root, config.with_num_channels(2)).unwrap();
        assert_values(bn.moving_variance().unwrap(), &[4.0, 4.0]);
    }

    #[test]
    fn config_reads_from_json_with_defaults() {
        let config: BatchNormConfig = serde_json::from_str(r#"{"data_format": "channels_last"}"#).unwrap();
        assert_eq!(config, BatchNormConfig::new().with_data_format(DataFormat::ChannelsLast));
        assert_eq!((config.eps, config.decay_rate, config.test_local_stats), (1e-5, 0.9, false));
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<BatchNorm>();
    }
}
