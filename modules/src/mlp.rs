//! `Mlp`: a stack of [`Linear`] layers with an activation between them (Sonnet's
//! `snt.nets.MLP`).

use crate::activation::Activation;
use crate::dropout::{check_rate, dropout};
use crate::error::{Error, Result};
use crate::init::Initializer;
use crate::linear::{Linear, LinearConfig};
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::check_keys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Configuration of an [`Mlp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MlpConfig {
    /// Output size of each layer, first to last (non-empty, every entry > 0). Default empty,
    /// which [`Mlp::new`] refuses: set it with [`MlpConfig::new`].
    pub output_sizes: Vec<i64>,
    /// Input size of the first layer. `Some(I)` creates every variable at construction;
    /// `None` (default) creates them from the first input's last dimension.
    pub input_size: Option<i64>,
    /// Activation applied after every layer but the last. Default [`Activation::Relu`].
    pub activation: Activation,
    /// Whether the last layer's output is activated too. Default `false`.
    pub activate_final: bool,
    /// Whether every layer has a bias. Default `true`.
    pub with_bias: bool,
    /// Dropout rate in `[0, 1)` applied, in [`Mode::Train`] only, to the pre-activation of
    /// every activated layer (dropout before the activation, as Sonnet v2). Default 0.
    pub dropout_rate: f64,
    /// Initializers by variable name (`"w"`, `"b"`), given to every layer. Defaults as in
    /// [`LinearConfig`].
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`, `"b"`), given to every layer. Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            output_sizes: Vec::new(),
            input_size: None,
            activation: Activation::Relu,
            activate_final: false,
            with_bias: true,
            dropout_rate: 0.0,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl MlpConfig {
    /// A config with the given layer output sizes and every other field at its default.
    pub fn new(output_sizes: &[i64]) -> Self {
        MlpConfig { output_sizes: output_sizes.to_vec(), ..Default::default() }
    }
    /// Sets the first layer's input size, so variables are created at construction.
    pub fn with_input_size(mut self, input_size: i64) -> Self {
        self.input_size = Some(input_size);
        self
    }
    /// Sets the activation between layers.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    /// Sets whether the last layer is activated.
    pub fn with_activate_final(mut self, activate_final: bool) -> Self {
        self.activate_final = activate_final;
        self
    }
    /// Sets whether the layers have biases.
    pub fn with_bias(mut self, with_bias: bool) -> Self {
        self.with_bias = with_bias;
        self
    }
    /// Sets the dropout rate of the hidden activations (training only).
    pub fn with_dropout_rate(mut self, rate: f64) -> Self {
        self.dropout_rate = rate;
        self
    }
    /// Overrides the initializer of variable `name` (`"w"` or `"b"`) in every layer.
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to variable `name` (`"w"` or `"b"`) in every layer.
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

/// A multi-layer perceptron: `x [.., I]` → `[.., output_sizes.last()]`.
///
/// Layer `i` is a [`Linear`] in scope `{mlp}/linear_{i}`, so its variables are
/// `mlp/linear_0/w`, `mlp/linear_0/b`, `mlp/linear_1/w`, … exactly as in Sonnet.
/// Each hidden layer computes `h = act(dropout(h W + b))` (dropout in training only), the
/// last one `y = h W + b`, or `act(dropout(h W + b))` with `activate_final` — Sonnet v2's
/// order: dropout precedes the activation and applies wherever the activation does.
pub struct Mlp {
    scope: Scope,
    config: MlpConfig,
    layers: Vec<Linear>,
}

impl std::fmt::Debug for Mlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mlp").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl Mlp {
    /// Builds an `Mlp` in a new child scope `mlp` (or `mlp_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for empty `output_sizes`, a non-positive size, a dropout rate
    /// outside `[0, 1)`, or an initializer/regularizer key other than `w` (and `b` with
    /// biases).
    pub fn new(parent: &Scope, config: MlpConfig) -> Result<Self> {
        Self::named(parent, "mlp", config)
    }

    /// Like [`Mlp::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: MlpConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        let sizes = &config.output_sizes;
        if sizes.is_empty() || sizes.iter().any(|&s| s <= 0) {
            return Err(Error::config(
                module,
                format!("output_sizes must be non-empty with every entry > 0, got {sizes:?}"),
            ));
        }
        if let Some(i) = config.input_size.filter(|&i| i <= 0) {
            return Err(Error::config(module, format!("input_size must be > 0, got {i}")));
        }
        check_rate(module, "dropout_rate", config.dropout_rate)?;
        let valid: &[&str] = if config.with_bias { &["w", "b"] } else { &["w"] };
        check_keys(module, "initializers", config.initializers.keys(), valid)?;
        check_keys(module, "regularizers", config.regularizers.keys(), valid)?;
        // With a known input size every layer is built now, in order; without one, every
        // layer waits for the first input, so variables are still created in layer order.
        let input_sizes = std::iter::once(config.input_size).chain(sizes.iter().map(|&s| Some(s)));
        let layers = sizes
            .iter()
            .zip(input_sizes)
            .enumerate()
            .map(|(i, (&output_size, input_size))| {
                let linear = LinearConfig {
                    output_size,
                    input_size: config.input_size.and(input_size),
                    with_bias: config.with_bias,
                    initializers: config.initializers.clone(),
                    regularizers: config.regularizers.clone(),
                };
                Linear::named(&scope, &format!("linear_{i}"), linear)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { scope, config, layers })
    }

    /// The configuration.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// The last layer's output size.
    pub fn output_size(&self) -> i64 {
        self.layers.last().map_or(0, Linear::output_size)
    }

    /// Applies the layers: `x [.., I]` → `[.., O]`. The first call of a lazy `Mlp`
    /// creates every layer's variables. Dropout (if any) is applied in [`Mode::Train`] only.
    ///
    /// # Errors
    /// [`Error::Shape`] (from the first layer, named `mlp/linear_0`) if `x` is a scalar, its
    /// last dimension differs from `I`, or its kind differs from the store's.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let last = self.layers.len() - 1;
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last || self.config.activate_final {
                h = dropout(self.scope.path(), &h, self.config.dropout_rate, mode)?;
                h = self.config.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}

impl Module for Mlp {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The layers, in order: the MLP is built when they are.
    fn children(&self) -> Vec<&dyn Module> {
        self.layers.iter().map(|l| l as &dyn Module).collect()
    }
}

impl Forward for Mlp {
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        Mlp::forward_t(self, x, mode)
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
    fn sonnet_names_and_lazy_build() {
        let store = Store::cpu();
        let mlp = Mlp::new(&store.root(), MlpConfig::new(&[4, 3, 2])).unwrap();
        assert!(!mlp.is_built());
        assert!(store.is_empty(), "nothing is created before the first input");
        assert!(matches!(mlp.variables(), Err(Error::NotBuilt { .. })));
        let y = mlp.forward_t(&Tensor::randn([5, 6], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap();
        assert_eq!(y.size(), [5, 2]);
        assert!(mlp.is_built());
        assert_eq!(
            names(mlp.variables().unwrap()),
            [
                "mlp/linear_0/w",
                "mlp/linear_0/b",
                "mlp/linear_1/w",
                "mlp/linear_1/b",
                "mlp/linear_2/w",
                "mlp/linear_2/b"
            ]
        );
        let shapes: Vec<_> = mlp.layers().iter().map(|l| l.w().unwrap().size()).collect();
        assert_eq!(shapes, [[6, 4], [4, 3], [3, 2]]);
        assert_eq!(mlp.output_size(), 2);
        // A second MLP in the same parent gets its own scope; without biases only `w`s exist.
        let mlp2 =
            Mlp::new(&store.root(), MlpConfig::new(&[3, 1]).with_input_size(2).with_bias(false)).unwrap();
        assert!(mlp2.is_built());
        assert_eq!(names(mlp2.variables().unwrap()), ["mlp_1/linear_0/w", "mlp_1/linear_1/w"]);
    }

    #[test]
    fn equals_its_linears_applied_by_hand() {
        let store = Store::cpu();
        let config = MlpConfig::new(&[5, 3]).with_activation(Activation::Tanh);
        let mlp = Mlp::new(&store.root(), config).unwrap();
        let x = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
        let y = mlp.forward_t(&x, Mode::Eval).unwrap();
        let [l0, l1] = mlp.layers() else { panic!("two layers") };
        let (w0, b0) = (l0.w().unwrap(), l0.b().unwrap().unwrap());
        let (w1, b1) = (l1.w().unwrap(), l1.b().unwrap().unwrap());
        let want = (x.matmul(w0) + b0).tanh().matmul(w1) + b1;
        assert!(y.allclose(&want, 1e-6, 1e-6, false));
        // activate_final applies tanh to the output too.
        let fin = Mlp::new(
            &store.root(),
            MlpConfig::new(&[1])
                .with_input_size(2)
                .with_activate_final(true)
                .with_activation(Activation::Tanh),
        )
        .unwrap();
        let layer = &fin.layers()[0];
        let want = (x.matmul(layer.w().unwrap()) + layer.b().unwrap().unwrap()).tanh();
        assert!(fin.forward_t(&x, Mode::Eval).unwrap().allclose(&want, 1e-6, 1e-6, false));
    }

    #[test]
    fn relu_by_default_and_hand_numbers() {
        let store = Store::cpu();
        let config = MlpConfig::new(&[2, 1])
            .with_input_size(2)
            .with_initializer("w", Initializer::Constant { value: 1.0 })
            .with_initializer("b", Initializer::Constant { value: -1.0 });
        let mlp = Mlp::new(&store.root(), config).unwrap();
        let x = Tensor::from_slice(&[3.0f32, 1.0, -2.0, 0.5]).view([2, 2]);
        // Row 0: h = relu(4 - 1) = [3, 3], y = 6 - 1 = 5. Row 1: h = relu(-1.5 - 1) = 0, y = -1.
        let y = Vec::<f32>::try_from(mlp.forward_t(&x, Mode::Eval).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(y, [5.0, -1.0]);
        let fin =
            Mlp::new(&store.root(), MlpConfig { activate_final: true, ..mlp.config().clone() }).unwrap();
        let y = Vec::<f32>::try_from(fin.forward_t(&x, Mode::Eval).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(y, [5.0, 0.0]);
    }

    #[test]
    fn dropout_only_on_hidden_units_in_training() {
        let store = Store::cpu();
        let n = 2000;
        let config = MlpConfig::new(&[n, n])
            .with_input_size(1)
            .with_dropout_rate(0.5)
            .with_initializer("w", Initializer::Ones)
            .with_initializer("b", Initializer::Zeros);
        let mlp = Mlp::new(&store.root(), config).unwrap();
        // Make the last layer the identity so the output shows the dropped hidden units.
        tch::no_grad(|| {
            mlp.layers()[1].w().unwrap().shallow_clone().copy_(&Tensor::eye(n, (Kind::Float, Device::Cpu)))
        });
        let x = Tensor::ones([1, 1], (Kind::Float, Device::Cpu));
        let eval = mlp.forward_t(&x, Mode::Eval).unwrap();
        assert!(eval.equal(&Tensor::ones([1, n], (Kind::Float, Device::Cpu))), "eval is deterministic");
        assert!(eval.equal(&mlp.forward_t(&x, Mode::Eval).unwrap()));
        tch::manual_seed(11);
        let train = mlp.forward_t(&x, Mode::Train).unwrap();
        let zeros = train.eq(0.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        let twos = train.eq(2.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        // 2000 Bernoulli(0.5) draws: standard error 0.011.
        assert!((zeros - 0.5).abs() < 0.05, "zeroed fraction {zeros}");
        assert_eq!(zeros + twos, 1.0, "kept units are scaled by 1 / (1 - 0.5)");
        // The output layer is dropped only when it is activated (Sonnet v2).
        let plain =
            Mlp::new(&store.root(), MlpConfig::new(&[n]).with_input_size(1).with_dropout_rate(0.5)).unwrap();
        assert!(plain.forward_t(&x, Mode::Train).unwrap().equal(&plain.forward_t(&x, Mode::Eval).unwrap()));
        let activated = Mlp::new(
            &store.root(),
            MlpConfig::new(&[n])
                .with_input_size(1)
                .with_dropout_rate(0.5)
                .with_activate_final(true)
                .with_initializer("w", Initializer::Ones),
        )
        .unwrap();
        let dropped = activated.forward_t(&x, Mode::Train).unwrap().eq(0.0).to_kind(Kind::Double);
        assert!((dropped.mean(Kind::Double).double_value(&[]) - 0.5).abs() < 0.05);
    }

    #[test]
    fn initializers_and_regularizers_reach_every_layer() {
        let store = Store::cpu();
        let config = MlpConfig::new(&[2, 3])
            .with_input_size(2)
            .with_initializer("w", Initializer::Constant { value: 0.5 })
            .with_regularizer("w", Regularizer::L1 { scale: 1.0 });
        let mlp = Mlp::new(&store.root(), config).unwrap();
        // L1: 0.5 * (2·2 + 2·3) = 5.
        assert_eq!(mlp.regularization_loss().unwrap().double_value(&[]), 5.0);
    }

    #[test]
    fn config_and_input_errors() {
        let store = Store::cpu();
        let root = store.root();
        for sizes in [&[][..], &[3, 0]] {
            let e = Mlp::new(&root, MlpConfig::new(sizes)).unwrap_err();
            assert!(e.to_string().contains("output_sizes must be non-empty"), "{e}");
        }
        let e = Mlp::new(&root, MlpConfig::new(&[2]).with_dropout_rate(1.0)).unwrap_err();
        assert!(e.to_string().contains("dropout_rate must be in [0, 1)"), "{e}");
        let e =
            Mlp::new(&root, MlpConfig::new(&[2]).with_bias(false).with_initializer("b", Initializer::Ones))
                .unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let mlp = Mlp::new(&root, MlpConfig::new(&[2]).with_input_size(3)).unwrap();
        let e = mlp.forward_t(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), format!("{}/linear_0: input must be [.., 3], got [1, 4]", mlp.name()));
    }

    #[test]
    fn serde_defaults() {
        let c: MlpConfig = serde_json::from_str(r#"{"output_sizes": [4, 2], "activation": "gelu"}"#).unwrap();
        assert_eq!(c, MlpConfig::new(&[4, 2]).with_activation(Activation::Gelu));
        assert_eq!(c.activation, Activation::Gelu);
        assert!(c.with_bias && !c.activate_final && c.dropout_rate == 0.0);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Mlp>();
    }
}
