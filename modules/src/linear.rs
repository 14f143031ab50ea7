//! `Linear`: `y = x w + b` (Sonnet's `snt.Linear`).

use crate::error::{Error, Result, TorchContext};
use crate::init::{Fans, Initializer};
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::{build_once, check_keys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// Configuration of a [`Linear`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinearConfig {
    /// Number of output features `O` (> 0). Default 1.
    pub output_size: i64,
    /// Number of input features `I`. `Some(I)` creates the variables at construction;
    /// `None` (default) creates them from the first input's last dimension.
    pub input_size: Option<i64>,
    /// Whether to add the bias `b`. Default `true`.
    pub with_bias: bool,
    /// Initializers by variable name (`"w"`, `"b"`). Defaults: `w` truncated normal with
    /// `std = 1 / sqrt(I)` (Sonnet), `b` zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`, `"b"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            output_size: 1,
            input_size: None,
            with_bias: true,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl LinearConfig {
    /// A config with `output_size` outputs and every other field at its default.
    pub fn new(output_size: i64) -> Self {
        LinearConfig { output_size, ..Default::default() }
    }
    /// Sets the input size, so variables are created at construction.
    pub fn with_input_size(mut self, input_size: i64) -> Self {
        self.input_size = Some(input_size);
        self
    }
    /// Sets whether the bias is used.
    pub fn with_bias(mut self, with_bias: bool) -> Self {
        self.with_bias = with_bias;
        self
    }
    /// Overrides the initializer of variable `name` (`"w"` or `"b"`).
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to variable `name` (`"w"` or `"b"`).
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

struct LinearVars {
    w: Tensor,
    b: Option<Tensor>,
}

/// A fully connected layer: `y = x w + b` with `w [I, O]`, `b [O]`, applied to the last
/// dimension of `x [.., I]`, giving `y [.., O]`. Variables `w` and `b` as in Sonnet.
pub struct Linear {
    scope: Scope,
    config: LinearConfig,
    vars: OnceLock<LinearVars>,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl Linear {
    /// Builds a `Linear` in a new child scope `linear` (or `linear_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-positive size or an initializer/regularizer key other
    /// than `w` (and `b` with a bias).
    pub fn new(parent: &Scope, config: LinearConfig) -> Result<Self> {
        Self::named(parent, "linear", config)
    }

    /// Like [`Linear::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: LinearConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        if config.output_size <= 0 {
            return Err(Error::config(
                module,
                format!("output_size must be > 0, got {}", config.output_size),
            ));
        }
        if let Some(i) = config.input_size.filter(|&i| i <= 0) {
            return Err(Error::config(module, format!("input_size must be > 0, got {i}")));
        }
        let valid: &[&str] = if config.with_bias { &["w", "b"] } else { &["w"] };
        check_keys(module, "initializers", config.initializers.keys(), valid)?;
        check_keys(module, "regularizers", config.regularizers.keys(), valid)?;
        let linear = Linear { scope, config, vars: OnceLock::new() };
        if let Some(i) = linear.config.input_size {
            linear.build(i)?;
        }
        Ok(linear)
    }

    fn build(&self, input_size: i64) -> Result<&LinearVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let init =
                |name: &str, default: Initializer| c.initializers.get(name).cloned().unwrap_or(default);
            let shape = [input_size, c.output_size];
            let w = self
                .scope
                .var("w", &shape)
                .init(init("w", Initializer::sonnet_default(input_size)))
                .fans(Fans::from_shape(&shape))
                .regularizer(c.regularizers.get("w").cloned())
                .create()?;
            let b = if c.with_bias {
                Some(
                    self.scope
                        .var("b", &[c.output_size])
                        .init(init("b", Initializer::Zeros))
                        .regularizer(c.regularizers.get("b").cloned())
                        .create()?,
                )
            } else {
                None
            };
            Ok(LinearVars { w, b })
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LinearConfig {
        &self.config
    }

    /// Number of output features `O`.
    pub fn output_size(&self) -> i64 {
        self.config.output_size
    }

    /// Number of input features `I`, once known.
    pub fn input_size(&self) -> Option<i64> {
        self.vars.get().map(|v| v.w.size()[0])
    }

    /// The weight `w [I, O]`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `Linear`.
    pub fn w(&self) -> Result<&Tensor> {
        self.vars.get().map(|v| &v.w).ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The bias `b [O]` (`None` without a bias).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `Linear`.
    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.vars
            .get()
            .map(|v| v.b.as_ref())
            .ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// Applies the layer: `x [.., I]` → `[.., O]`. The first call of a lazy `Linear`
    /// creates `w [I, O]` and `b [O]` from `x`'s last dimension.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is a scalar, or its last dimension differs from `I`
    /// (`"linear: input must be [.., 4], got [8, 5]"`), or its kind differs from the store's.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let module = self.scope.path();
        let size = x.size();
        let Some(&last) = size.last() else {
            return Err(Error::shape(module, "input", "[.., I] with rank >= 1", size));
        };
        if let Some(i) = self.input_size() {
            if last != i {
                return Err(Error::shape(module, "input", format!("[.., {i}]"), size));
            }
        }
        self.scope.check_kind("input", x)?;
        let vars = self.build(last)?;
        match (&vars.b, size.len()) {
            (Some(b), 2) => b.f_addmm(x, &vars.w),
            // Leading dimensions folded into one: a single fused `addmm` (bias added inside
            // the GEMM) instead of a matmul and a separate pass for the bias.
            (Some(b), _) => {
                let out: Vec<i64> =
                    size[..size.len() - 1].iter().copied().chain([self.config.output_size]).collect();
                x.f_reshape([-1, last]).and_then(|x2| b.f_addmm(&x2, &vars.w)).and_then(|y| y.f_reshape(out))
            }
            (None, _) => x.f_matmul(&vars.w),
        }
        .ctx(module)
    }
}

impl Module for Linear {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl Forward for Linear {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    fn names(vars: Vec<crate::Variable>) -> Vec<String> {
        vars.iter().map(|v| v.name().to_string()).collect()
    }

    #[test]
    fn computes_x_w_plus_b_by_hand() {
        let store = Store::cpu();
        let lin = Linear::new(
            &store.root(),
            LinearConfig::new(2)
                .with_input_size(3)
                .with_initializer("w", Initializer::Constant { value: 0.5 })
                .with_initializer("b", Initializer::Constant { value: -1.0 }),
        )
        .unwrap();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, -1.0, 0.0, 1.0]).view([2, 3]);
        let y = Vec::<f32>::try_from(lin.forward(&x).unwrap().flatten(0, -1)).unwrap();
        // Row 0: 0.5 * 6 - 1 = 2; row 1: 0.5 * 0 - 1 = -1.
        assert_eq!(y, [2.0, 2.0, -1.0, -1.0]);
        // Rank 3 inputs use the last dimension.
        let y3 = lin.forward(&x.view([1, 2, 3])).unwrap();
        assert_eq!(y3.size(), [1, 2, 2]);
    }

    #[test]
    fn lazy_build_creates_variables_once() {
        let store = Store::cpu();
        let lin = Linear::new(&store.root(), LinearConfig::new(3)).unwrap();
        assert!(!lin.is_built());
        let e = lin.variables().unwrap_err();
        assert!(matches!(e, Error::NotBuilt { .. }));
        assert!(e.to_string().contains("call it on an input first"), "{e}");
        assert!(matches!(lin.w(), Err(Error::NotBuilt { .. })));
        let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let y1 = lin.forward(&x).unwrap();
        assert_eq!(store.len(), 2);
        let y2 = lin.forward(&x).unwrap();
        assert_eq!(store.len(), 2, "a second call creates no variable");
        assert!(y1.equal(&y2));
        assert_eq!(names(lin.variables().unwrap()), ["linear/w", "linear/b"]);
        assert_eq!(lin.w().unwrap().size(), [4, 3]);
        assert_eq!(lin.input_size(), Some(4));
    }

    #[test]
    fn later_input_of_another_size_is_a_shape_error() {
        let store = Store::cpu();
        let lin = Linear::new(&store.root(), LinearConfig::new(3).with_input_size(4)).unwrap();
        let e = lin.forward(&Tensor::zeros([8, 5], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "linear: input must be [.., 4], got [8, 5]");
        assert!(matches!(e, Error::Shape { .. }));
        let e = lin.forward(&Tensor::zeros([8, 4], (Kind::Double, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "linear: input kind must be Float, got Double");
        let e = lin.forward(&Tensor::from(1.0f32)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }

    #[test]
    fn config_errors_name_the_module_and_valid_keys() {
        let store = Store::cpu();
        let e = Linear::new(&store.root(), LinearConfig::new(0)).unwrap_err();
        assert_eq!(e.to_string(), "linear: bad configuration: output_size must be > 0, got 0");
        let e = Linear::new(
            &store.root(),
            LinearConfig::new(2).with_bias(false).with_initializer("b", Initializer::Ones),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "linear_1: bad configuration: unknown initializers key \"b\"; valid keys: [\"w\"]"
        );
        let e = Linear::new(
            &store.root(),
            LinearConfig::new(2).with_regularizer("u", Regularizer::L2 { scale: 1.0 }),
        )
        .unwrap_err();
        assert!(e.to_string().contains("valid keys: [\"w\", \"b\"]"), "{e}");
    }

    #[test]
    fn regularization_loss_sums_attached_penalties() {
        let store = Store::cpu();
        let lin = Linear::new(
            &store.root(),
            LinearConfig::new(2)
                .with_input_size(2)
                .with_initializer("w", Initializer::Constant { value: 2.0 })
                .with_regularizer("w", Regularizer::L2 { scale: 0.5 })
                .with_regularizer("b", Regularizer::L1 { scale: 1.0 }),
        )
        .unwrap();
        // 0.5 * (4 * 2²) + 1 * 0 = 8.
        assert_eq!(lin.regularization_loss().unwrap().double_value(&[]), 8.0);
    }

    #[test]
    fn gradients_reach_w_and_b() {
        let store = Store::cpu();
        let lin = Linear::new(&store.root(), LinearConfig::new(1).with_input_size(2)).unwrap();
        let x = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2]);
        lin.forward(&x).unwrap().sum(Kind::Float).backward();
        let gw = Vec::<f32>::try_from(lin.w().unwrap().grad().flatten(0, -1)).unwrap();
        assert_eq!(gw, [1.0, 2.0]);
        assert_eq!(lin.b().unwrap().unwrap().grad().double_value(&[0]), 1.0);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Linear>();
        send::<Store>();
        send::<Scope>();
    }
}
