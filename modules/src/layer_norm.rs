//! `LayerNorm`: normalisation over the trailing dimensions of each example (Ba et al. 2016;
//! Sonnet v2's `snt.LayerNorm`, PyTorch's `nn.LayerNorm`).

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

/// Configuration of a [`LayerNorm`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LayerNormConfig {
    /// Number of trailing dimensions `k` normalised over (>= 1). Default 1: the last
    /// dimension only. With `k = 2`, `x [B, T, H, W]` is normalised over each `[H, W]` block.
    pub num_axes: usize,
    /// The normalised shape (the trailing `k` dimensions of every input, each > 0). `Some`
    /// creates the variables at construction and must have `num_axes` entries
    /// ([`LayerNormConfig::with_normalized_shape`] sets both); `None` (default) takes it from
    /// the first input.
    pub normalized_shape: Option<Vec<i64>>,
    /// Whether to multiply by the learned `scale` (γ). Default `true`.
    pub create_scale: bool,
    /// Whether to add the learned `offset` (β). Default `true`.
    pub create_offset: bool,
    /// Added to the variance before the square root (finite, >= 0). Default `1e-5`, as
    /// PyTorch and Sonnet v2.
    pub eps: f64,
    /// Initializers by variable name (`"scale"`, `"offset"`). Defaults: `scale` ones,
    /// `offset` zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"scale"`, `"offset"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for LayerNormConfig {
    fn default() -> Self {
        LayerNormConfig {
            num_axes: 1,
            normalized_shape: None,
            create_scale: true,
            create_offset: true,
            eps: 1e-5,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl LayerNormConfig {
    /// A config normalising over the last dimension, every field at its default.
    pub fn new() -> Self {
        Self::default()
    }
    /// Normalises over the trailing `num_axes` dimensions, sizes taken from the first input.
    pub fn with_num_axes(mut self, num_axes: usize) -> Self {
        self.num_axes = num_axes;
        self.normalized_shape = None;
        self
    }
    /// Normalises over trailing dimensions of exactly `shape` (sets `num_axes` to its
    /// length), creating the variables at construction.
    pub fn with_normalized_shape(mut self, shape: &[i64]) -> Self {
        self.num_axes = shape.len();
        self.normalized_shape = Some(shape.to_vec());
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
    /// Overrides the initializer of variable `name` (`"scale"` or `"offset"`).
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

struct LayerNormVars {
    shape: Vec<i64>,
    scale: Option<Tensor>,
    offset: Option<Tensor>,
}

/// Layer normalisation: for `x [.., D1, .., Dk]`, each example's trailing block is
/// normalised to zero mean and unit (biased) variance, then scaled and shifted:
/// `y = (x - mean) / sqrt(var + eps) * scale + offset`, with `scale` and `offset` of the
/// normalised shape `[D1, .., Dk]` (as PyTorch's `weight` and `bias`; Sonnet v2 gives them
/// the channel dimension's shape only). `y` has `x`'s shape. Runs libtorch's fused
/// `layer_norm`. The same in training and evaluation.
pub struct LayerNorm {
    scope: Scope,
    config: LayerNormConfig,
    vars: OnceLock<LayerNormVars>,
}

impl std::fmt::Debug for LayerNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerNorm").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl LayerNorm {
    /// Builds a `LayerNorm` in a new child scope `layer_norm` (or `layer_norm_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `num_axes` is 0, `normalized_shape` has a non-positive entry or
    /// a length other than `num_axes`, `eps` is negative or not finite, or an
    /// initializer/regularizer key names no variable of the module.
    pub fn new(parent: &Scope, config: LayerNormConfig) -> Result<Self> {
        Self::named(parent, "layer_norm", config)
    }

    /// Like [`LayerNorm::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: LayerNormConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        if config.num_axes == 0 {
            return Err(Error::config(module, "num_axes must be >= 1, got 0"));
        }
        if let Some(shape) = &config.normalized_shape {
            if shape.len() != config.num_axes || shape.iter().any(|&d| d <= 0) {
                return Err(Error::config(
                    module,
                    format!(
                        "normalized_shape must have num_axes = {} entries, each > 0, got {shape:?}",
                        config.num_axes
                    ),
                ));
            }
        }
        if !(config.eps.is_finite() && config.eps >= 0.0) {
            return Err(Error::config(module, format!("eps must be finite and >= 0, got {}", config.eps)));
        }
        let mut valid = Vec::new();
        if config.create_scale {
            valid.push("scale");
        }
        if config.create_offset {
            valid.push("offset");
        }
        check_keys(module, "initializers", config.initializers.keys(), &valid)?;
        check_keys(module, "regularizers", config.regularizers.keys(), &valid)?;
        let layer_norm = LayerNorm { scope, config, vars: OnceLock::new() };
        if let Some(shape) = layer_norm.config.normalized_shape.clone() {
            layer_norm.build(shape)?;
        }
        Ok(layer_norm)
    }

    fn build(&self, shape: Vec<i64>) -> Result<&LayerNormVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let var = |name: &str, default: Initializer| {
                self.scope
                    .var(name, &shape)
                    .init(c.initializers.get(name).cloned().unwrap_or(default))
                    .regularizer(c.regularizers.get(name).cloned())
                    .create()
            };
            let scale = if c.create_scale { Some(var("scale", Initializer::Ones)?) } else { None };
            let offset = if c.create_offset { Some(var("offset", Initializer::Zeros)?) } else { None };
            Ok(LayerNormVars { shape: shape.clone(), scale, offset })
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LayerNormConfig {
        &self.config
    }

    /// The normalised shape `[D1, .., Dk]`, once known.
    pub fn normalized_shape(&self) -> Option<&[i64]> {
        self.vars.get().map(|v| v.shape.as_slice())
    }

    /// The scale `γ` of the normalised shape (`None` without `create_scale`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `LayerNorm`.
    pub fn scale(&self) -> Result<Option<&Tensor>> {
        self.built().map(|v| v.scale.as_ref())
    }

    /// The offset `β` of the normalised shape (`None` without `create_offset`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `LayerNorm`.
    pub fn offset(&self) -> Result<Option<&Tensor>> {
        self.built().map(|v| v.offset.as_ref())
    }

    fn built(&self) -> Result<&LayerNormVars> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// Normalises `x [.., D1, .., Dk]` over its trailing `k = num_axes` dimensions, giving a
    /// tensor of `x`'s shape. The first call of a lazy `LayerNorm` creates `scale` and
    /// `offset` of shape `[D1, .., Dk]` from `x`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has rank below `k`, trailing dimensions other than the
    /// normalised shape (`"layer_norm: input must be [.., 3, 4], got [2, 3, 5]"`) or a zero
    /// trailing dimension, or a kind other than the store's.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let module = self.scope.path();
        let size = x.size();
        let k = self.config.num_axes;
        let expected = |shape: &[i64]| {
            let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
            format!("[.., {}]", dims.join(", "))
        };
        if size.len() < k {
            let want = match self.normalized_shape() {
                Some(shape) => expected(shape),
                None => format!("of rank >= {k}"),
            };
            return Err(Error::shape(module, "input", want, size));
        }
        let trailing = &size[size.len() - k..];
        match self.normalized_shape() {
            Some(shape) if shape != trailing => {
                return Err(Error::shape(module, "input", expected(shape), size));
            }
            None if trailing.contains(&0) => {
                let want = format!("of rank >= {k} with non-zero trailing dimensions");
                return Err(Error::shape(module, "input", want, size));
            }
            _ => {}
        }
        self.scope.check_kind("input", x)?;
        let vars = self.build(trailing.to_vec())?;
        x.f_layer_norm(&vars.shape, vars.scale.as_ref(), vars.offset.as_ref(), self.config.eps, true)
            .ctx(module)
    }
}

impl Module for LayerNorm {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl Forward for LayerNorm {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
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

    #[test]
    fn normalises_one_two_three_by_hand() {
        let store = Store::cpu();
        let ln = LayerNorm::new(&store.root(), LayerNormConfig::new()).unwrap();
        // mean 2, biased variance 2/3: (x - 2) / sqrt(2/3 + 1e-5) = [-1.2247, 0, 1.2247].
        let y = ln.forward(&Tensor::from_slice(&[1.0f32, 2.0, 3.0])).unwrap();
        assert_values(&y, &[-1.2247, 0.0, 1.2247]);
        // Each row on its own: a shifted, doubled row gives the same result.
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 12.0, 14.0, 16.0]).view([2, 3]);
        assert_values(&ln.forward(&x).unwrap(), &[-1.2247, 0.0, 1.2247, -1.2247, 0.0, 1.2247]);
    }

    #[test]
    fn two_trailing_axes_with_scale_and_offset_by_hand() {
        let store = Store::cpu();
        let ln = LayerNorm::new(
            &store.root(),
            LayerNormConfig::new()
                .with_num_axes(2)
                .with_initializer("scale", Initializer::Constant { value: 2.0 })
                .with_initializer("offset", Initializer::Constant { value: 1.0 }),
        )
        .unwrap();
        // One [2, 2] block: mean 2.5, variance 1.25, normalised ±1.5/√1.25 = ±1.3416,
        // ±0.5/√1.25 = ±0.4472; then 2 y + 1.
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 2, 2]);
        let y = ln.forward(&x).unwrap();
        assert_eq!(y.size(), [1, 2, 2]);
        assert_values(&y, &[-1.6833, 0.1056, 1.8944, 3.6833]);
        assert_eq!(ln.normalized_shape(), Some(&[2i64, 2][..]));
        assert_eq!(ln.scale().unwrap().unwrap().size(), [2, 2]);
    }

    #[test]
    fn lazy_variables_have_pinned_names_and_are_trainable() {
        let store = Store::cpu();
        let ln = LayerNorm::new(&store.root(), LayerNormConfig::new()).unwrap();
        assert!(!ln.is_built());
        assert!(matches!(ln.variables(), Err(Error::NotBuilt { .. })));
        assert!(matches!(ln.scale(), Err(Error::NotBuilt { .. })));
        let _ = ln.forward(&Tensor::randn([4, 6], (Kind::Float, Device::Cpu))).unwrap();
        let _ = ln.forward(&Tensor::randn([2, 3, 6], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(names(ln.variables().unwrap()), ["layer_norm/scale", "layer_norm/offset"]);
        assert_eq!(names(ln.trainable_variables().unwrap()), ["layer_norm/scale", "layer_norm/offset"]);
        assert!(ln.non_trainable_variables().unwrap().is_empty());
        assert_values(ln.scale().unwrap().unwrap(), &[1.0; 6]);
        assert_values(ln.offset().unwrap().unwrap(), &[0.0; 6]);
        let second = LayerNorm::new(&store.root(), LayerNormConfig::new()).unwrap();
        assert_eq!(second.name(), "layer_norm_1");
    }

    #[test]
    fn eager_from_normalized_shape() {
        let store = Store::cpu();
        let ln =
            LayerNorm::new(&store.root(), LayerNormConfig::new().with_normalized_shape(&[3, 4])).unwrap();
        assert!(ln.is_built());
        assert_eq!(store.variable_names(), ["layer_norm/scale", "layer_norm/offset"]);
        assert_eq!(ln.offset().unwrap().unwrap().size(), [3, 4]);
        assert_eq!(ln.config().num_axes, 2);
    }

    #[test]
    fn without_scale_and_offset_there_are_no_variables_but_the_shape_is_pinned() {
        let store = Store::cpu();
        let config = LayerNormConfig::new().with_create_scale(false).with_create_offset(false);
        let ln = LayerNorm::new(&store.root(), config).unwrap();
        let y = ln.forward(&Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3])).unwrap();
        assert_values(&y, &[-1.2247, 0.0, 1.2247]);
        assert!(ln.is_built());
        assert!(ln.variables().unwrap().is_empty());
        assert_eq!(ln.scale().unwrap(), None);
        let e = ln.forward(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "layer_norm: input must be [.., 3], got [1, 4]");
    }

    #[test]
    fn shape_and_kind_errors_name_the_module() {
        let store = Store::cpu();
        let ln = LayerNorm::new(&store.root(), LayerNormConfig::new().with_num_axes(2)).unwrap();
        let f = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        let e = ln.forward(&f(&[5])).unwrap_err();
        assert_eq!(e.to_string(), "layer_norm: input must be of rank >= 2, got [5]");
        let e = ln.forward(&f(&[2, 0, 4])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert!(!ln.is_built(), "a refused input builds nothing");
        let _ = ln.forward(&f(&[2, 3, 4])).unwrap();
        let e = ln.forward(&f(&[2, 3, 5])).unwrap_err();
        assert_eq!(e.to_string(), "layer_norm: input must be [.., 3, 4], got [2, 3, 5]");
        assert!(matches!(e, Error::Shape { .. }));
        let e = ln.forward(&f(&[4])).unwrap_err();
        assert_eq!(e.to_string(), "layer_norm: input must be [.., 3, 4], got [4]");
        let e = ln.forward(&Tensor::zeros([3, 4], (Kind::Double, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "layer_norm: input kind must be Float, got Double");
        // Rank equal to num_axes is one example, as in PyTorch.
        assert_eq!(ln.forward(&f(&[3, 4])).unwrap().size(), [3, 4]);
    }

    #[test]
    fn config_errors() {
        let store = Store::cpu();
        let root = store.root();
        let e = LayerNorm::new(&root, LayerNormConfig::new().with_num_axes(0)).unwrap_err();
        assert_eq!(e.to_string(), "layer_norm: bad configuration: num_axes must be >= 1, got 0");
        let e = LayerNorm::new(&root, LayerNormConfig::new().with_normalized_shape(&[3, 0])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer_norm_1: bad configuration: normalized_shape must have num_axes = 2 entries, each > 0, \
             got [3, 0]"
        );
        let config = LayerNormConfig { normalized_shape: Some(vec![3, 4]), ..Default::default() };
        assert!(matches!(LayerNorm::new(&root, config), Err(Error::Config { .. })));
        let e = LayerNorm::new(&root, LayerNormConfig::new().with_eps(-1.0)).unwrap_err();
        assert!(e.to_string().ends_with("eps must be finite and >= 0, got -1"), "{e}");
        let config =
            LayerNormConfig::new().with_create_offset(false).with_initializer("offset", Initializer::Ones);
        let e = LayerNorm::new(&root, config).unwrap_err();
        assert!(
            e.to_string().contains("unknown initializers key \"offset\"; valid keys: [\"scale\"]"),
            "{e}"
        );
    }

    #[test]
    fn gradients_reach_scale_and_offset() {
        let store = Store::cpu();
        let ln = LayerNorm::new(&store.root(), LayerNormConfig::new()).unwrap();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 3.0, 2.0, 1.0]).view([2, 3]);
        ln.forward(&x).unwrap().sum(Kind::Float).backward();
        // d Σy / d offset = number of rows; d Σy / d scale = Σ over rows of x̂ = 0.
        assert_values(&ln.offset().unwrap().unwrap().grad(), &[2.0, 2.0, 2.0]);
        assert_values(&ln.scale().unwrap().unwrap().grad(), &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn config_round_trips_through_json_with_defaults() {
        let config: LayerNormConfig = serde_json::from_str(r#"{"num_axes": 2}"#).unwrap();
        assert_eq!(config, LayerNormConfig::new().with_num_axes(2));
        assert_eq!(config.eps, 1e-5);
        assert!(config.create_scale && config.create_offset);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<LayerNorm>();
    }
}
