//! `BatchNormLstm`: Sonnet v1's `BatchNormLSTM` (Cooijmans et al. 2016, recurrent batch
//! normalization): batch norm of the input and recurrent products (and optionally the cell),
//! with statistics per time step.

use crate::cell::{check_step_input, VarMaker};
use crate::core::RnnCore;
use crate::state::{State, StateSize};
use couplet_modules::{Error, Initializer, Mode, Module, Regularizer, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{TchError, Tensor};

/// Configuration of a [`BatchNormLstm`] (Sonnet v1 `BatchNormLSTM`'s arguments and defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormLstmConfig {
    /// Input size `I`. Required.
    pub input_size: i64,
    /// Hidden size `H`. Required.
    pub hidden_size: i64,
    /// Added to the forget gate's pre-activation. Default 1.
    #[serde(default = "one")]
    pub forget_bias: f64,
    /// Batch norm of the recurrent product `h W_h` (scaled by `gamma_h`). Default `true`.
    #[serde(default = "crate::cell::yes")]
    pub use_batch_norm_h: bool,
    /// Batch norm of the input product `x W_x` (scaled by `gamma_x`). Default `false`.
    #[serde(default)]
    pub use_batch_norm_x: bool,
    /// Batch norm of the new cell before its `tanh` (`beta_c + gamma_c ⊙ BN(c')`). Default
    /// `false`.
    #[serde(default)]
    pub use_batch_norm_c: bool,
    /// The number of time steps with their own statistics: step `t` uses statistics
    /// `min(t, max_unique_stats − 1)` (Cooijmans et al.). Default 1 (one set for every step).
    #[serde(default = "one_i64")]
    pub max_unique_stats: i64,
    /// Moving-average decay of the statistics. Default 0.999 (Sonnet's `BatchNorm`).
    #[serde(default = "decay")]
    pub decay_rate: f64,
    /// Added to the variance. Default 1e-3 (Sonnet's `BatchNorm`).
    #[serde(default = "epsilon")]
    pub epsilon: f64,
    /// Per-variable initializers by name. Default: U(−1/√H, 1/√H) for `w_gates_x`,
    /// `w_gates_h`; zeros for `b_gates` and `beta_c`; 0.1 for `gamma_h`, `gamma_x`, `gamma_c`.
    #[serde(default)]
    pub initializers: BTreeMap<String, Initializer>,
    /// Per-variable regularizers by name. Default none.
    #[serde(default)]
    pub regularizers: BTreeMap<String, Regularizer>,
}

fn one() -> f64 {
    1.0
}
fn one_i64() -> i64 {
    1
}
fn decay() -> f64 {
    0.999
}
fn epsilon() -> f64 {
    1e-3
}

impl BatchNormLstmConfig {
    /// An LSTM `input_size → hidden_size`, every other field at its default.
    pub fn new(input_size: i64, hidden_size: i64) -> Self {
        BatchNormLstmConfig {
            input_size,
            hidden_size,
            forget_bias: 1.0,
            use_batch_norm_h: true,
            use_batch_norm_x: false,
            use_batch_norm_c: false,
            max_unique_stats: 1,
            decay_rate: decay(),
            epsilon: epsilon(),
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
    /// Sets which products (and the cell) are batch-normalised.
    pub fn with_batch_norm(mut self, h: bool, x: bool, c: bool) -> Self {
        (self.use_batch_norm_h, self.use_batch_norm_x, self.use_batch_norm_c) = (h, x, c);
        self
    }
    /// Sets the number of time steps with their own statistics.
    pub fn with_max_unique_stats(mut self, n: i64) -> Self {
        self.max_unique_stats = n;
        self
    }
    /// Sets the forget bias.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Self {
        self.forget_bias = forget_bias;
        self
    }
}

/// Moving statistics of one normalised quantity: `(mean, variance)` per unique step, each
/// `[n]`, non-trainable.
type Stats = Vec<(Tensor, Tensor)>;

/// Sonnet v1's `BatchNormLSTM`. One step, with gate order `i, j, f, o` (TF's):
///
/// `gates = γ_h ⊙ BN_h(h W_h) + γ_x ⊙ BN_x(x W_x) + b` (each `BN` only when enabled, else the
/// plain product), `c' = σ(f + forget_bias) ⊙ c + σ(i) ⊙ tanh(j)`,
/// `h' = σ(o) ⊙ tanh(β_c + γ_c ⊙ BN_c(c'))` (or `tanh(c')`); output `h'`.
///
/// `BN(z) = (z − μ) / √(σ² + ε)` over the batch. In [`Mode::Train`], `μ`, `σ²` (biased) are the
/// batch's (the rows the unroll is stepping: rows past their length are not counted) and the
/// moving statistics of step `min(t, max_unique_stats − 1)` move towards them
/// (`m ← decay·m + (1 − decay)·batch`); in [`Mode::Eval`] the moving statistics are used
/// (Sonnet's `is_training = False, test_local_stats = False`).
///
/// State: `State::Lstm { h, c }` `[B, H]`, or with `max_unique_stats > 1`
/// `State::Tuple([Lstm { h, c }, Tensor(t [B, 1])])`, the step counter (Sonnet's third state
/// element; every row holds the same count).
///
/// Variables: `w_gates_x [I, 4H]`, `w_gates_h [H, 4H]`, `b_gates [4H]`, `gamma_h`, `gamma_x`
/// `[4H]`, `gamma_c`, `beta_c` `[H]` (those enabled), and the non-trainable moving statistics
/// `moving_mean_{h,x,c}_{k}`, `moving_variance_{h,x,c}_{k}` for each step slot `k`.
pub struct BatchNormLstm {
    scope: Scope,
    config: BatchNormLstmConfig,
    w_x: Tensor,
    w_h: Tensor,
    bias: Tensor,
    /// `(gamma, stats)` of the recurrent and input products.
    bn_h: Option<(Tensor, Stats)>,
    bn_x: Option<(Tensor, Stats)>,
    /// `(gamma_c, beta_c, stats)` of the cell.
    bn_c: Option<(Tensor, Tensor, Stats)>,
}

impl std::fmt::Debug for BatchNormLstm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchNormLstm")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl BatchNormLstm {
    /// A batch-norm LSTM in a new child scope `batch_norm_lstm` (or `batch_norm_lstm_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the core for sizes or `max_unique_stats` below 1, a decay
    /// outside `[0, 1]`, a non-positive or non-finite `epsilon`, a non-finite `forget_bias`,
    /// or an initializer or regularizer key that names no variable.
    pub fn new(parent: &Scope, config: BatchNormLstmConfig) -> Result<Self> {
        let scope = parent.child("batch_norm_lstm")?;
        let module = scope.path();
        let c = &config;
        crate::cell::check_sizes(module, c.hidden_size, Some(c.input_size), 4)?;
        let bad = if c.max_unique_stats < 1 {
            Some(format!("max_unique_stats must be >= 1, got {}", c.max_unique_stats))
        } else if !(0.0..=1.0).contains(&c.decay_rate) {
            Some(format!("decay_rate must be in [0, 1], got {}", c.decay_rate))
        } else if !(c.epsilon.is_finite() && c.epsilon > 0.0) {
            Some(format!("epsilon must be finite and > 0, got {}", c.epsilon))
        } else if !c.forget_bias.is_finite() {
            Some(format!("forget_bias must be finite, got {}", c.forget_bias))
        } else {
            None
        };
        if let Some(message) = bad {
            return Err(Error::config(module, message));
        }
        let valid = ["w_gates_x", "w_gates_h", "b_gates", "gamma_h", "gamma_x", "gamma_c", "beta_c"];
        crate::cell::check_variable_keys(module, &c.initializers, &c.regularizers, &valid)?;
        let mk = VarMaker { scope: &scope, initializers: &c.initializers, regularizers: &c.regularizers };
        let (i, h) = (c.input_size, c.hidden_size);
        let u = || Initializer::symmetric_uniform(1.0 / (h as f64).sqrt());
        let w_x = mk.make("w_gates_x", &[i, 4 * h], u())?;
        let w_h = mk.make("w_gates_h", &[h, 4 * h], u())?;
        let bias = mk.make("b_gates", &[4 * h], Initializer::Zeros)?;
        let tenth = || Initializer::Constant { value: 0.1 };
        let stats = |what: &str, n: i64| -> Result<Stats> {
            (0..c.max_unique_stats)
                .map(|k| {
                    let var = |name: String, value: f64| {
                        scope.var(&name, &[n]).init(Initializer::Constant { value }).trainable(false).create()
                    };
                    Ok((
                        var(format!("moving_mean_{what}_{k}"), 0.0)?,
                        var(format!("moving_variance_{what}_{k}"), 1.0)?,
                    ))
                })
                .collect()
        };
        let bn_h = if c.use_batch_norm_h {
            Some((mk.make("gamma_h", &[4 * h], tenth())?, stats("h", 4 * h)?))
        } else {
            None
        };
        let bn_x = if c.use_batch_norm_x {
            Some((mk.make("gamma_x", &[4 * h], tenth())?, stats("x", 4 * h)?))
        } else {
            None
        };
        let bn_c = if c.use_batch_norm_c {
            Some((
                mk.make("gamma_c", &[h], tenth())?,
                mk.make("beta_c", &[h], Initializer::Zeros)?,
                stats("c", h)?,
            ))
        } else {
            None
        };
        Ok(BatchNormLstm { scope, config, w_x, w_h, bias, bn_h, bn_x, bn_c })
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormLstmConfig {
        &self.config
    }

    /// `(z − μ) / √(σ² + ε)` with the batch's statistics (updating the moving ones of `slot`)
    /// in training, the moving ones in evaluation.
    fn normalize(&self, z: &Tensor, stats: &Stats, slot: usize, mode: Mode) -> Result<Tensor, TchError> {
        let (moving_mean, moving_var) = &stats[slot];
        let (mean, var) = match mode {
            Mode::Train => {
                let mean = z.f_mean_dim([0].as_slice(), false, None)?;
                let var = z.f_var_correction([0].as_slice(), 0, false)?;
                let d = self.config.decay_rate;
                tch::no_grad(|| -> Result<(), TchError> {
                    let mut m = moving_mean.shallow_clone();
                    let _updated = m.f_mul_scalar_(d)?.f_add_(&mean.f_detach()?.f_mul_scalar(1.0 - d)?)?;
                    let mut v = moving_var.shallow_clone();
                    let _updated = v.f_mul_scalar_(d)?.f_add_(&var.f_detach()?.f_mul_scalar(1.0 - d)?)?;
                    Ok(())
                })?;
                (mean, var)
            }
            Mode::Eval => (moving_mean.shallow_clone(), moving_var.shallow_clone()),
        };
        z.f_sub(&mean)?.f_div(&var.f_add_scalar(self.config.epsilon)?.f_sqrt()?)
    }

    /// `(h, c, step)` of a state.
    fn parts<'a>(
        &self,
        state: &'a State,
        batch: i64,
    ) -> Result<(&'a Tensor, &'a Tensor, Option<&'a Tensor>)> {
        let h = self.config.hidden_size;
        let (lstm, step) = match (state, self.config.max_unique_stats) {
            (s @ State::Lstm { .. }, 1) => (s, None),
            (State::Tuple(v), n) if n > 1 && v.len() == 2 => match &v[1] {
                State::Tensor(t) if t.size() == [batch, 1] => (&v[0], Some(t)),
                _ => return Err(self.state_error(state, batch)),
            },
            _ => return Err(self.state_error(state, batch)),
        };
        match lstm {
            State::Lstm { h: hs, c } if hs.size() == [batch, h] && c.size() == [batch, h] => {
                Ok((hs, c, step))
            }
            _ => Err(self.state_error(state, batch)),
        }
    }

    fn state_error(&self, state: &State, batch: i64) -> Error {
        let expected = format!("{:?} for {batch} rows", self.state_size());
        Error::shape(self.name(), "state", expected, state.size())
    }
}

impl Module for BatchNormLstm {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for BatchNormLstm {
    /// One step: `input [B, I]` and the state → `(h' [B, H], new state)`; in training the
    /// moving statistics of this step's slot are updated.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the core if the input is not `[B, I]` of the store's kind or
    /// the state does not have the core's layout. (A training batch of one row has zero
    /// variance: its normalised products are zero, not NaN, thanks to `epsilon`.)
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        check_step_input(&self.scope, input, Some(self.config.input_size))?;
        let batch = input.size()[0];
        let (h_prev, c_prev, step) = self.parts(state, batch)?;
        let slot = match step {
            Some(t) if batch > 0 => {
                let t = t.f_int64_value(&[0, 0]).ctx(self.name())?;
                t.clamp(0, self.config.max_unique_stats - 1) as usize
            }
            _ => 0,
        };
        let c = &self.config;
        let compute = || -> Result<(Tensor, Tensor), TchError> {
            let mut gates_h = h_prev.f_matmul(&self.w_h)?;
            if let Some((gamma, stats)) = &self.bn_h {
                gates_h = self.normalize(&gates_h, stats, slot, mode)?.f_mul(gamma)?;
            }
            let mut gates_x = input.f_matmul(&self.w_x)?;
            if let Some((gamma, stats)) = &self.bn_x {
                gates_x = self.normalize(&gates_x, stats, slot, mode)?.f_mul(gamma)?;
            }
            let gates = gates_h.f_add(&gates_x)?.f_add(&self.bias)?.f_chunk(4, 1)?;
            let (i, j, f, o) = (&gates[0], &gates[1], &gates[2], &gates[3]);
            let c_new = f
                .f_add_scalar(c.forget_bias)?
                .f_sigmoid()?
                .f_mul(c_prev)?
                .f_addcmul(&i.f_sigmoid()?, &j.f_tanh()?)?;
            let cell_out = match &self.bn_c {
                Some((gamma, beta, stats)) => {
                    beta.f_addcmul(&self.normalize(&c_new, stats, slot, mode)?, gamma)?
                }
                None => c_new.shallow_clone(),
            };
            Ok((cell_out.f_tanh()?.f_mul(&o.f_sigmoid()?)?, c_new))
        };
        let (h_new, c_new) = compute().ctx(self.name())?;
        let lstm = State::Lstm { h: h_new.shallow_clone(), c: c_new };
        let state = match step {
            Some(t) => State::Tuple(vec![lstm, State::Tensor(t.f_add_scalar(1).ctx(self.name())?)]),
            None => lstm,
        };
        Ok((h_new, state))
    }

    fn output_shape(&self) -> Vec<i64> {
        vec![self.config.hidden_size]
    }

    /// `Lstm { h: [H], c: [H] }`, with `max_unique_stats > 1` in a tuple with the step
    /// counter `[1]`.
    fn state_size(&self) -> StateSize {
        let h = self.config.hidden_size;
        let lstm = StateSize::lstm(h, h);
        if self.config.max_unique_stats > 1 {
            StateSize::Tuple(vec![lstm, StateSize::vector(1)])
        } else {
            lstm
        }
    }
}
