//! `VanillaRnn`: the Elman RNN cell `h' = act(W_ih x + b_ih + W_hh h + b_hh)` in PyTorch's
//! layout (`torch.nn.RNN`, TF's `BasicRNNCell`, Sonnet's `VanillaRNN`).

use crate::cell::{
    affine, check_many_inputs, check_projected, check_sizes, check_step_input, check_variable_keys,
    export_params, input_size_from_dict, load_params, tensor_state, tile, yes, zero_state, StateDict,
    TorchWeights, VarMaker,
};
use crate::core::{InputProjection, RnnCore};
use crate::state::{State, StateSize};
use crate::torch_cell::{TorchCellKind, TorchCellWeights};
use couplet_modules::{
    util::build_once, Error, Initializer, Mode, Module, Regularizer, Result, Scope, TorchContext,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// The activation of a [`VanillaRnn`] (PyTorch's `nonlinearity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nonlinearity {
    /// `tanh` (default).
    #[default]
    Tanh,
    /// `relu`.
    Relu,
}

/// Configuration of a [`VanillaRnn`] cell. Deserialising needs `hidden_size`; every other
/// field has the default documented on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VanillaRnnConfig {
    /// Number of units `H` (> 0). Required.
    pub hidden_size: i64,
    /// Input size `I` (> 0). `Some(I)` creates the variables at construction; `None`
    /// (default) creates them from the first input's last dimension.
    #[serde(default)]
    pub input_size: Option<i64>,
    /// Whether to create `bias_ih` and `bias_hh`. Default `true`.
    #[serde(default = "yes")]
    pub with_bias: bool,
    /// The activation. Default [`Nonlinearity::Tanh`].
    #[serde(default)]
    pub activation: Nonlinearity,
    /// Learn the initial state (Sonnet): variable `initial_h [1, H]` (zeros), repeated to the
    /// batch by `initial_state`. Default `false`.
    #[serde(default)]
    pub trainable_initial_state: bool,
    /// Initializers by variable name (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`,
    /// `initial_h`). Default: U(−1/√H, 1/√H) (PyTorch), `initial_h` zeros.
    #[serde(default)]
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name. Default none.
    #[serde(default)]
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl VanillaRnnConfig {
    /// A config with `hidden_size` units and every other field at its default.
    pub fn new(hidden_size: i64) -> Self {
        VanillaRnnConfig {
            hidden_size,
            input_size: None,
            with_bias: true,
            activation: Nonlinearity::Tanh,
            trainable_initial_state: false,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
    /// Sets the input size, so variables are created at construction.
    pub fn with_input_size(mut self, input_size: i64) -> Self {
        self.input_size = Some(input_size);
        self
    }
    /// Sets whether `bias_ih` and `bias_hh` exist.
    pub fn with_bias(mut self, with_bias: bool) -> Self {
        self.with_bias = with_bias;
        self
    }
    /// Sets the activation.
    pub fn with_activation(mut self, activation: Nonlinearity) -> Self {
        self.activation = activation;
        self
    }
    /// Turns the learned initial state on or off.
    pub fn with_trainable_initial_state(mut self, trainable: bool) -> Self {
        self.trainable_initial_state = trainable;
        self
    }
    /// Overrides the initializer of variable `name`.
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to variable `name`.
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }

    /// The names of the variables this config creates, in creation order.
    pub fn variable_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.trainable_initial_state {
            names.push("initial_h");
        }
        names.extend(["weight_ih", "weight_hh"]);
        if self.with_bias {
            names.extend(["bias_ih", "bias_hh"]);
        }
        names
    }
}

/// A vanilla (Elman) RNN cell: `h' = act(W_ih x + b_ih + W_hh h + b_hh)`, `act` tanh or relu.
///
/// Input `x [B, I]`, state `State::Tensor(h [B, H])`, output `h' [B, H]`. Variables in scope
/// `vanilla_rnn` (creation order): `initial_h [1, H]` (with a trainable initial state,
/// created at construction), `weight_ih [H, I]`, `weight_hh [H, H]`, `bias_ih [H]`,
/// `bias_hh [H]`, PyTorch's names and layout.
pub struct VanillaRnn {
    scope: Scope,
    config: VanillaRnnConfig,
    initial: Option<Tensor>,
    vars: OnceLock<TorchWeights>,
}

impl std::fmt::Debug for VanillaRnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VanillaRnn").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl VanillaRnn {
    /// Builds a vanilla RNN in a new child scope `vanilla_rnn` (or `vanilla_rnn_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for `hidden_size <= 0`, `input_size <= 0`, or an
    /// initializer/regularizer key that is not one of [`VanillaRnnConfig::variable_names`].
    pub fn new(parent: &Scope, config: VanillaRnnConfig) -> Result<Self> {
        Self::named(parent, "vanilla_rnn", config)
    }

    /// Like [`VanillaRnn::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: VanillaRnnConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        check_sizes(module, config.hidden_size, config.input_size, 1)?;
        check_variable_keys(module, &config.initializers, &config.regularizers, &config.variable_names())?;
        let mut rnn = VanillaRnn { scope, config, initial: None, vars: OnceLock::new() };
        if rnn.config.trainable_initial_state {
            let h = rnn.config.hidden_size;
            rnn.initial = Some(rnn.maker().make("initial_h", &[1, h], Initializer::Zeros)?);
        }
        if let Some(i) = rnn.config.input_size {
            rnn.build(i)?;
        }
        Ok(rnn)
    }

    fn maker(&self) -> VarMaker<'_> {
        VarMaker {
            scope: &self.scope,
            initializers: &self.config.initializers,
            regularizers: &self.config.regularizers,
        }
    }

    fn build(&self, input_size: i64) -> Result<&TorchWeights> {
        build_once(&self.vars, || {
            let (h, c) = (self.config.hidden_size, &self.config);
            TorchWeights::create(&self.maker(), h, h, input_size, h, c.with_bias)
        })
    }

    fn vars(&self) -> Result<&TorchWeights> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The configuration.
    pub fn config(&self) -> &VanillaRnnConfig {
        &self.config
    }

    /// The output size `O` (each output and `h` are `[B, O]`).
    pub fn output_size(&self) -> i64 {
        self.config.hidden_size
    }

    /// Number of units `H`.
    pub fn hidden_size(&self) -> i64 {
        self.config.hidden_size
    }

    /// Input size `I`, once known.
    pub fn input_size(&self) -> Option<i64> {
        self.vars.get().map(TorchWeights::input_size)
    }

    fn project(&self, inputs: &Tensor, input_size: i64) -> Result<Tensor> {
        let module = self.scope.path();
        let v = self.build(input_size)?;
        let bias = v.bias.as_ref().map(|(bi, bh)| bi.f_add(bh)).transpose().ctx(module)?;
        affine(module, inputs, &v.weight_ih, bias.as_ref())
    }

    /// Loads PyTorch weights `weight_ih{suffix} [H, I]`, `weight_hh{suffix} [H, H]`,
    /// `bias_ih{suffix}`, `bias_hh{suffix} [H]` (with a bias), e.g. `suffix = "_l0"` for
    /// `torch.nn.RNN`, `""` for `torch.nn.RNNCell`; copied in place without gradient. Other
    /// keys are ignored, as is `initial_h`. A lazy cell is built from `weight_ih`'s shape.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] listing every missing key and every shape mismatch;
    /// nothing is copied then.
    pub fn load_torch<D: StateDict + ?Sized>(&self, state_dict: &D, suffix: &str) -> Result<()> {
        let module = self.scope.path();
        let v = match self.vars.get() {
            Some(v) => v,
            None => self.build(input_size_from_dict(
                module,
                state_dict,
                &format!("weight_ih{suffix}"),
                self.hidden_size(),
            )?)?,
        };
        load_params(module, state_dict, suffix, &v.params())
    }

    /// PyTorch's state dict of this cell: `(name + suffix, tensor)` for `weight_ih`,
    /// `weight_hh`, `bias_ih`, `bias_hh` (with a bias). The tensors are detached and share
    /// storage with the variables.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy cell.
    pub fn torch_state_dict(&self, suffix: &str) -> Result<Vec<(String, Tensor)>> {
        Ok(export_params(&self.vars()?.params(), suffix))
    }
}

impl Module for VanillaRnn {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl RnnCore for VanillaRnn {
    /// One step: `input [B, I]`, `State::Tensor(h [B, H])` → `(h' [B, H],
    /// State::Tensor(h'))`. The first call of a lazy cell creates its variables.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the core if the input is not `[B, I]` of the store's kind, or
    /// the state is not `State::Tensor([B, H])` of that kind.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let i = check_step_input(&self.scope, input, self.input_size())?;
        let projected = self.project(input, i)?;
        self.step_projected(&projected, state, mode)
    }

    /// `[O]`: [`VanillaRnn::output_size`].
    fn output_shape(&self) -> Vec<i64> {
        vec![self.output_size()]
    }

    fn state_size(&self) -> StateSize {
        StateSize::vector(self.config.hidden_size)
    }

    /// Zeros, or the learned `initial_h` repeated to `batch_size` rows.
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        match &self.initial {
            Some(h0) => Ok(State::Tensor(tile(&self.scope, h0, batch_size)?)),
            None => zero_state(&self.scope, &self.state_size(), batch_size),
        }
    }

    /// One `RnnTanh` or `RnnRelu` layer; `None` for an `input_size` other than the cell's.
    fn torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        if input_size <= 0 || self.input_size().is_some_and(|i| i != input_size) {
            return Ok(None);
        }
        let kind = match self.config.activation {
            Nonlinearity::Tanh => TorchCellKind::RnnTanh,
            Nonlinearity::Relu => TorchCellKind::RnnRelu,
        };
        let v = self.build(input_size)?;
        Ok(Some(vec![TorchCellWeights::new(kind, v, None)]))
    }

    /// The cell's [`InputProjection`] (`W_ih x` and the additive biases, for every step at once).
    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for VanillaRnn {
    /// `inputs [.., I]` → `W_ih x + b_ih + b_hh` `[.., H]`.
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        let i = check_many_inputs(&self.scope, inputs, self.input_size())?;
        self.project(inputs, i)
    }

    fn step_projected(&self, projected: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let module = self.scope.path();
        let v = self.vars()?;
        let h = self.hidden_size();
        let batch = check_projected(&self.scope, projected, h)?;
        let h_prev = tensor_state(&self.scope, state, batch, h)?;
        let pre = v.weight_hh.f_tr().and_then(|w| projected.f_addmm(h_prev, &w)).ctx(module)?;
        let h_new = match self.config.activation {
            Nonlinearity::Tanh => pre.f_tanh(),
            Nonlinearity::Relu => pre.f_relu(),
        }
        .ctx(module)?;
        Ok((h_new.shallow_clone(), State::Tensor(h_new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;
    use tch::{Device, Kind};

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn vals(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn variable_names_and_shapes() {
        let store = Store::cpu();
        let config = VanillaRnnConfig::new(6).with_input_size(4).with_trainable_initial_state(true);
        let rnn = VanillaRnn::new(&store.root(), config).unwrap();
        let got: Vec<(String, Vec<i64>)> =
            store.variables().iter().map(|v| (v.name().to_string(), v.tensor().size())).collect();
        let s = |n: &str, v: &[i64]| (n.to_string(), v.to_vec());
        assert_eq!(
            got,
            [
                s("vanilla_rnn/initial_h", &[1, 6]),
                s("vanilla_rnn/weight_ih", &[6, 4]),
                s("vanilla_rnn/weight_hh", &[6, 6]),
                s("vanilla_rnn/bias_ih", &[6]),
                s("vanilla_rnn/bias_hh", &[6])
            ]
        );
        assert_eq!((rnn.output_size(), rnn.state_size()), (6, StateSize::vector(6)));
    }

    #[test]
    fn hand_worked_tanh_and_relu() {
        // I = H = 1, w_ih = 2, w_hh = -1, b_ih = 0.25, b_hh = -0.5; x = 1, h = 3:
        // pre = 2 + 0.25 - 3 - 0.5 = -1.25.
        for (act, want) in [(Nonlinearity::Tanh, (-1.25f64).tanh()), (Nonlinearity::Relu, 0.0)] {
            let store = Store::cpu();
            let config = VanillaRnnConfig::new(1)
                .with_input_size(1)
                .with_activation(act)
                .with_initializer("weight_ih", Initializer::Constant { value: 2.0 })
                .with_initializer("weight_hh", Initializer::Constant { value: -1.0 })
                .with_initializer("bias_ih", Initializer::Constant { value: 0.25 })
                .with_initializer("bias_hh", Initializer::Constant { value: -0.5 });
            let rnn = VanillaRnn::new(&store.root(), config).unwrap();
            let x = Tensor::ones([1, 1], CPU);
            let (y, _) = rnn.step(&x, &State::Tensor(x.shallow_clone() * 3.0), Mode::Eval).unwrap();
            assert!((y.double_value(&[0, 0]) - want).abs() < 1e-6, "{act:?}");
        }
    }

    #[test]
    fn step_and_projected_step_agree_and_lazy_build() {
        let store = Store::cpu();
        let rnn = VanillaRnn::new(&store.root(), VanillaRnnConfig::new(4)).unwrap();
        assert!(!rnn.is_built());
        let xs = Tensor::randn([2, 3, 5], CPU);
        let projected = rnn.project_inputs(&xs).unwrap();
        assert_eq!(rnn.input_size(), Some(5));
        let s = State::Tensor(Tensor::randn([3, 4], CPU));
        let (ya, _) = rnn.step(&xs.get(1), &s, Mode::Eval).unwrap();
        let (yb, _) = rnn.step_projected(&projected.get(1), &s, Mode::Eval).unwrap();
        assert!(ya.allclose(&yb, 1e-6, 1e-6, false));
        let e = rnn.step(&xs.get(1), &State::Empty, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "vanilla_rnn: state must be State::Tensor([3, 4]), got State::Empty");
    }

    #[test]
    fn trainable_initial_state_is_tiled_and_a_variable() {
        let store = Store::cpu();
        let config = VanillaRnnConfig::new(2).with_trainable_initial_state(true);
        let rnn = VanillaRnn::new(&store.root(), config).unwrap();
        let State::Tensor(h) = rnn.initial_state(3).unwrap() else { panic!("tensor state") };
        assert_eq!(h.size(), [3, 2]);
        assert_eq!(vals(&h), [0.0; 6]);
        rnn.step(&Tensor::ones([3, 1], CPU), &State::Tensor(h), Mode::Train)
            .unwrap()
            .0
            .sum(Kind::Float)
            .backward();
        let g = store.get("vanilla_rnn/initial_h").unwrap().tensor().grad();
        assert_eq!(g.size(), [1, 2]);
        assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        let names: Vec<String> = rnn.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names[0], "vanilla_rnn/initial_h");
    }

    #[test]
    fn torch_state_dict_round_trip() {
        let store = Store::cpu();
        let a = VanillaRnn::new(&store.root(), VanillaRnnConfig::new(4).with_input_size(3)).unwrap();
        let dict: std::collections::BTreeMap<String, Tensor> =
            a.torch_state_dict("").unwrap().into_iter().collect();
        let b = VanillaRnn::new(&store.root(), VanillaRnnConfig::new(4).with_input_size(3)).unwrap();
        b.load_torch(&dict, "").unwrap();
        for ((_, x), (_, y)) in a.torch_state_dict("").unwrap().iter().zip(b.torch_state_dict("").unwrap()) {
            assert!(x.equal(&y));
        }
        let c = VanillaRnn::new(&store.root(), VanillaRnnConfig::new(4).with_input_size(2)).unwrap();
        let e = c.load_torch(&dict, "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "vanilla_rnn_2: load_torch: shape mismatches [weight_ih must be [4, 2], got [4, 3]]"
        );
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<VanillaRnn>();
    }
}
