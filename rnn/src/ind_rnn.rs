//! `IndRnn`: the independently recurrent cell `h' = act(x W + u ⊙ h + b)` (Li et al. 2018;
//! TF Addons' `IndRNNCell`).

use crate::cell::{
    check_many_inputs, check_projected, check_sizes, check_step_input, check_variable_keys, tensor_state,
    VarMaker,
};
use crate::core::{InputProjection, RnnCore};
use crate::state::{State, StateSize};
use crate::vanilla::Nonlinearity;
use couplet_modules::{
    util::build_once, Error, Initializer, Mode, Module, Regularizer, Result, Scope, TorchContext,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// Configuration of an [`IndRnn`] cell. Deserialising needs `hidden_size`; every other field
/// has the default documented on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndRnnConfig {
    /// Number of units `H` (> 0). Required.
    pub hidden_size: i64,
    /// Input size `I` (> 0). `Some(I)` creates the variables at construction; `None`
    /// (default) creates them from the first input's last dimension.
    #[serde(default)]
    pub input_size: Option<i64>,
    /// The activation. Default [`Nonlinearity::Tanh`] (TF Addons; the paper uses ReLU).
    #[serde(default)]
    pub activation: Nonlinearity,
    /// Initializers by variable name (`kernel`, `recurrent_kernel`, `bias`). Defaults as TF
    /// Addons: `kernel` Glorot uniform, `recurrent_kernel` uniform on `[-0.05, 0.05)` (Keras'
    /// `"uniform"`), `bias` zeros.
    #[serde(default)]
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name. Default none.
    #[serde(default)]
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl IndRnnConfig {
    /// A config with `hidden_size` units and every other field at its default.
    pub fn new(hidden_size: i64) -> Self {
        IndRnnConfig {
            hidden_size,
            input_size: None,
            activation: Nonlinearity::Tanh,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
    /// Sets the input size, so variables are created at construction.
    pub fn with_input_size(mut self, input_size: i64) -> Self {
        self.input_size = Some(input_size);
        self
    }
    /// Sets the activation.
    pub fn with_activation(mut self, activation: Nonlinearity) -> Self {
        self.activation = activation;
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
}

const VARIABLES: [&str; 3] = ["kernel", "recurrent_kernel", "bias"];

struct IndRnnVars {
    kernel: Tensor,
    recurrent: Tensor,
    bias: Tensor,
}

/// An IndRNN cell: each unit has one recurrent weight, `h' = act(x W + u ⊙ h + b)`, so units
/// only see their own past (long memories with ReLU and `|u| <= 1`; stack cells to mix units).
///
/// Input `x [B, I]`, state `State::Tensor(h [B, H])`, output `h' [B, H]`. Variables in scope
/// `ind_rnn`, TF Addons' names and layout: `kernel [I, H]`, `recurrent_kernel [H]`,
/// `bias [H]`.
pub struct IndRnn {
    scope: Scope,
    config: IndRnnConfig,
    vars: OnceLock<IndRnnVars>,
}

impl std::fmt::Debug for IndRnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndRnn").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl IndRnn {
    /// Builds an IndRNN cell in a new child scope `ind_rnn` (or `ind_rnn_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for `hidden_size <= 0`, `input_size <= 0`, or an
    /// initializer/regularizer key other than `kernel`, `recurrent_kernel`, `bias`.
    pub fn new(parent: &Scope, config: IndRnnConfig) -> Result<Self> {
        let scope = parent.child("ind_rnn")?;
        let module = scope.path();
        check_sizes(module, config.hidden_size, config.input_size, 1)?;
        check_variable_keys(module, &config.initializers, &config.regularizers, &VARIABLES)?;
        let cell = IndRnn { scope, config, vars: OnceLock::new() };
        if let Some(i) = cell.config.input_size {
            cell.build(i)?;
        }
        Ok(cell)
    }

    fn build(&self, input_size: i64) -> Result<&IndRnnVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let h = c.hidden_size;
            let maker =
                VarMaker { scope: &self.scope, initializers: &c.initializers, regularizers: &c.regularizers };
            Ok(IndRnnVars {
                kernel: maker.make("kernel", &[input_size, h], Initializer::GlorotUniform)?,
                recurrent: maker.make(
                    "recurrent_kernel",
                    &[h],
                    Initializer::Uniform { low: -0.05, high: 0.05 },
                )?,
                bias: maker.make("bias", &[h], Initializer::Zeros)?,
            })
        })
    }

    fn vars(&self) -> Result<&IndRnnVars> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The configuration.
    pub fn config(&self) -> &IndRnnConfig {
        &self.config
    }

    /// Input size `I`, once known.
    pub fn input_size(&self) -> Option<i64> {
        self.vars.get().map(|v| v.kernel.size()[0])
    }

    fn project(&self, inputs: &Tensor, input_size: i64) -> Result<Tensor> {
        let v = self.build(input_size)?;
        inputs.f_matmul(&v.kernel).and_then(|p| p.f_add(&v.bias)).ctx(self.scope.path())
    }
}

impl Module for IndRnn {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl RnnCore for IndRnn {
    /// One step: `input [B, I]`, `State::Tensor(h [B, H])` → `(h' [B, H], State::Tensor(h'))`.
    /// The first call of a lazy cell creates its variables.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the core if the input is not `[B, I]` of the store's kind, or
    /// the state is not `State::Tensor([B, H])` of that kind.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let i = check_step_input(&self.scope, input, self.input_size())?;
        let projected = self.project(input, i)?;
        self.step_projected(&projected, state, mode)
    }

    /// `[H]`.
    fn output_shape(&self) -> Vec<i64> {
        vec![self.config.hidden_size]
    }

    fn state_size(&self) -> StateSize {
        StateSize::vector(self.config.hidden_size)
    }

    /// The cell's [`InputProjection`] (`x W + b` for every step at once).
    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for IndRnn {
    /// `inputs [.., I]` → `x W + b` `[.., H]`.
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        let i = check_many_inputs(&self.scope, inputs, self.input_size())?;
        self.project(inputs, i)
    }

    fn step_projected(&self, projected: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let module = self.scope.path();
        let v = self.vars()?;
        let h = self.config.hidden_size;
        let batch = check_projected(&self.scope, projected, h)?;
        let h_prev = tensor_state(&self.scope, state, batch, h)?;
        let pre = h_prev.f_mul(&v.recurrent).and_then(|r| r.f_add(projected)).ctx(module)?;
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
    use crate::{dynamic_rnn, UnrollOptions};
    use couplet_modules::Store;
    use tch::{Device, Kind};

    fn set(t: &Tensor, values: &[f32]) {
        tch::no_grad(|| t.shallow_clone().copy_(&Tensor::from_slice(values).view(t.size().as_slice())));
    }

    #[test]
    fn steps_by_hand() {
        // I = 1, H = 2, relu: kernel [1, 2] = [[1, 2]], u = [0.5, -1], b = [0.1, 0].
        let store = Store::cpu();
        let cell = IndRnn::new(
            &store.root(),
            IndRnnConfig::new(2).with_input_size(1).with_activation(Nonlinearity::Relu),
        )
        .unwrap();
        let v = cell.vars().unwrap();
        set(&v.kernel, &[1.0, 2.0]);
        set(&v.recurrent, &[0.5, -1.0]);
        set(&v.bias, &[0.1, 0.0]);
        let x = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2, 1]);
        let (out, last) = dynamic_rnn(&cell, &x, &UnrollOptions::eval()).unwrap();
        // t0: relu([1.1, 2]) = [1.1, 2]; t1: relu([2.1 + 0.55, 4 - 2]) = [2.65, 2].
        let got = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap();
        let want = [1.1f32, 2.0, 2.65, 2.0];
        assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{got:?}");
        assert!(last.h().unwrap().equal(&out.select(1, 1)));
        let names: Vec<String> = cell.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["ind_rnn/kernel", "ind_rnn/recurrent_kernel", "ind_rnn/bias"]);
    }

    #[test]
    fn unroll_with_lengths_equals_the_step_loop() {
        let store = Store::cpu();
        let cell = IndRnn::new(&store.root(), IndRnnConfig::new(3)).unwrap();
        let x = Tensor::randn([2, 4, 5], (Kind::Float, Device::Cpu));
        let (out, last) = dynamic_rnn(&cell, &x, &UnrollOptions::eval().with_lengths(&[4, 2])).unwrap();
        let mut h = cell.initial_state(2).unwrap();
        for t in 0..4 {
            let (y, next) = cell.step(&x.select(1, t), &h, Mode::Eval).unwrap();
            assert!(out.get(0).get(t).allclose(&y.get(0), 1e-6, 1e-6, false), "step {t}");
            if t < 2 {
                assert!(out.get(1).get(t).allclose(&y.get(1), 1e-6, 1e-6, false), "step {t}");
            }
            if t == 1 {
                assert!(last.h().unwrap().get(1).allclose(&y.get(1), 1e-6, 1e-6, false));
            }
            h = next;
        }
    }

    #[test]
    fn errors_name_the_cell() {
        let store = Store::cpu();
        assert!(matches!(
            IndRnn::new(&store.root(), IndRnnConfig::new(0)).unwrap_err(),
            Error::Config { .. }
        ));
        let e = IndRnn::new(&store.root(), IndRnnConfig::new(2).with_initializer("w", Initializer::Ones))
            .unwrap_err();
        assert!(e.to_string().contains("w"), "{e}");
        let cell = IndRnn::new(&store.root(), IndRnnConfig::new(2).with_input_size(3)).unwrap();
        let s = cell.initial_state(1).unwrap();
        let e = cell.step(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)), &s, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }) && e.to_string().starts_with("ind_rnn_2: input"), "{e}");
        let e = cell
            .step(&Tensor::zeros([1, 3], (Kind::Float, Device::Cpu)), &State::Empty, Mode::Eval)
            .unwrap_err();
        assert!(e.to_string().contains("state"), "{e}");
    }
}
