//! `HighwayCore`: the recurrent highway network of Zilly et al. 2016 (Sonnet v1
//! `HighwayCore`).

use crate::cell::{check_sizes, check_step_input, tensor_state, VarMaker};
use crate::core::{InputProjection, RnnCore};
use crate::state::{State, StateSize};
use couplet_modules::{Error, Initializer, Mode, Module, Regularizer, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{TchError, Tensor};

/// Configuration of a [`HighwayCore`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HighwayCoreConfig {
    /// Hidden size `H` (the state and the output). Required.
    pub hidden_size: i64,
    /// Highway layers per time step `L` (Sonnet's `num_layers`). Required, ≥ 1.
    pub num_layers: i64,
    /// Input size `I`. Default `None`: the core is lazy and creates its variables at its first
    /// step (or projection) from the input's last dimension.
    #[serde(default)]
    pub input_size: Option<i64>,
    /// Per-variable initializers by name (`w_h`, `w_t`, `u_h_{l}`, `u_t_{l}`, `b_h_{l}`,
    /// `b_t_{l}`). Default: U(−1/√H, 1/√H) for the weights and zeros for the biases.
    #[serde(default)]
    pub initializers: BTreeMap<String, Initializer>,
    /// Per-variable regularizers by name. Default none.
    #[serde(default)]
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl HighwayCoreConfig {
    /// `hidden_size` units and `num_layers` highway layers per step.
    pub fn new(hidden_size: i64, num_layers: i64) -> Self {
        HighwayCoreConfig {
            hidden_size,
            num_layers,
            input_size: None,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
    /// Sets the input size (variables are then created at construction).
    pub fn with_input_size(mut self, input_size: i64) -> Self {
        self.input_size = Some(input_size);
        self
    }
    /// Sets the initializer of one variable.
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
}

struct Vars {
    /// `w_h`, `w_t`, each `[I, H]` (Sonnet's layout: `x w`).
    w: [Tensor; 2],
    /// Per layer `[u_h [H, H], b_h [H], u_t [H, H], b_t [H]]`.
    layers: Vec<[Tensor; 4]>,
}

impl Vars {
    /// `x [w_h, w_t]` for `x [.., I]`: `[.., 2H]` (the weights concatenated at each call, so
    /// gradients and in-place loads reach the variables).
    fn project(&self, module: &str, x: &Tensor) -> Result<Tensor> {
        Tensor::f_cat(&self.w, 1).and_then(|w| x.f_matmul(&w)).ctx(module)
    }
}

/// A recurrent highway network core (Zilly et al. 2016; Sonnet v1 `HighwayCore`). One step,
/// with `s_0 = state`, for `l = 0..L`:
///
/// `h_l = tanh([l = 0] x w_h + s_l u_h_l + b_h_l)`,
/// `t_l = σ([l = 0] x w_t + s_l u_t_l + b_t_l)`,
/// `s_{l+1} = h_l ⊙ t_l + s_l ⊙ (1 − t_l)`;
///
/// output and new state `s_L`, `State::Tensor([B, H])`. Variables (Sonnet's names and
/// layouts): `w_h`, `w_t [I, H]`, `u_h_{l}`, `u_t_{l}` `[H, H]`, `b_h_{l}`, `b_t_{l}` `[H]`.
/// The input products `x [w_h, w_t]` are an [`InputProjection`] `[.., 2H]`.
pub struct HighwayCore {
    scope: Scope,
    config: HighwayCoreConfig,
    vars: std::sync::OnceLock<Vars>,
}

impl std::fmt::Debug for HighwayCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HighwayCore")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl HighwayCore {
    /// A highway core in a new child scope `highway_core` (or `highway_core_1`, …) of
    /// `parent`; with `input_size` its variables are created now, else at its first step.
    ///
    /// # Errors
    /// [`Error::Config`] naming the core if `hidden_size`, `num_layers` or `input_size` is
    /// not positive, `num_layers` is above `util::MAX_COUNT`, a weight is too large, or an initializer or regularizer key names no variable.
    pub fn new(parent: &Scope, config: HighwayCoreConfig) -> Result<Self> {
        let scope = parent.child("highway_core")?;
        let module = scope.path();
        check_sizes(module, config.hidden_size, config.input_size, 2)?;
        couplet_modules::util::check_count(module, "num_layers", config.num_layers, 1)?;
        let mut valid: Vec<String> = vec!["w_h".into(), "w_t".into()];
        for l in 0..config.num_layers {
            valid.extend(["u_h", "u_t", "b_h", "b_t"].map(|v| format!("{v}_{l}")));
        }
        let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
        crate::cell::check_variable_keys(module, &config.initializers, &config.regularizers, &valid)?;
        let core = HighwayCore { scope, config, vars: std::sync::OnceLock::new() };
        if let Some(i) = core.config.input_size {
            core.build(i)?;
        }
        Ok(core)
    }

    /// The configuration.
    pub fn config(&self) -> &HighwayCoreConfig {
        &self.config
    }

    fn build(&self, input_size: i64) -> Result<&Vars> {
        couplet_modules::util::build_once(&self.vars, || {
            let c = &self.config;
            let h = c.hidden_size;
            let mk =
                VarMaker { scope: &self.scope, initializers: &c.initializers, regularizers: &c.regularizers };
            let u = || Initializer::symmetric_uniform(1.0 / (h as f64).sqrt());
            let (w_h, w_t) = (mk.make("w_h", &[input_size, h], u())?, mk.make("w_t", &[input_size, h], u())?);
            let mut layers = Vec::new();
            for l in 0..c.num_layers {
                let u_h = mk.make(&format!("u_h_{l}"), &[h, h], u())?;
                let b_h = mk.make(&format!("b_h_{l}"), &[h], Initializer::Zeros)?;
                let u_t = mk.make(&format!("u_t_{l}"), &[h, h], u())?;
                let b_t = mk.make(&format!("b_t_{l}"), &[h], Initializer::Zeros)?;
                layers.push([u_h, b_h, u_t, b_t]);
            }
            Ok(Vars { w: [w_h, w_t], layers })
        })
    }

    /// The input size, once configured or built.
    fn known_input_size(&self) -> Option<i64> {
        self.config.input_size.or_else(|| self.vars.get().map(|v| v.w[0].size()[0]))
    }

    fn vars(&self) -> Result<&Vars> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.name().to_string() })
    }
}

impl Module for HighwayCore {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl RnnCore for HighwayCore {
    /// One step: `input [B, I]`, `State::Tensor(s [B, H])` → `(s' [B, H], State::Tensor(s'))`.
    /// The first step of a lazy core creates its variables.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the core if the input is not `[B, I]` of the store's kind, or
    /// the state not `State::Tensor([B, H])`.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let i = check_step_input(&self.scope, input, self.known_input_size())?;
        let projected = self.build(i)?.project(self.name(), input)?;
        self.step_projected(&projected, state, mode)
    }

    fn output_shape(&self) -> Vec<i64> {
        vec![self.config.hidden_size]
    }

    fn state_size(&self) -> StateSize {
        StateSize::vector(self.config.hidden_size)
    }

    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for HighwayCore {
    /// `inputs [.., I]` → `x [w_h, w_t]` `[.., 2H]`.
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        let i = crate::cell::check_many_inputs(&self.scope, inputs, self.known_input_size())?;
        self.build(i)?.project(self.name(), inputs)
    }

    fn step_projected(&self, projected: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let h = self.config.hidden_size;
        let batch = crate::cell::check_projected(&self.scope, projected, 2 * h)?;
        self.scope.check_kind("projected input", projected)?;
        let v = self.vars()?;
        let mut s = tensor_state(&self.scope, state, batch, h)?.shallow_clone();
        let compute = |s: &Tensor| -> Result<Tensor, TchError> {
            let mut s = s.shallow_clone();
            let x = projected.f_split(h, 1)?;
            for (l, [u_h, b_h, u_t, b_t]) in v.layers.iter().enumerate() {
                let (mut pre_h, mut pre_t) = (b_h.f_addmm(&s, u_h)?, b_t.f_addmm(&s, u_t)?);
                if l == 0 {
                    pre_h = pre_h.f_add(&x[0])?;
                    pre_t = pre_t.f_add(&x[1])?;
                }
                let (hl, tl) = (pre_h.f_tanh()?, pre_t.f_sigmoid()?);
                // s' = h ⊙ t + s ⊙ (1 − t) = s + t ⊙ (h − s).
                s = s.f_addcmul(&tl, &hl.f_sub(&s)?)?;
            }
            Ok(s)
        };
        s = compute(&s).ctx(self.name())?;
        Ok((s.shallow_clone(), State::Tensor(s)))
    }
}
