//! `Lstm`: the long short-term memory cell in PyTorch's layout, with the options of
//! TensorFlow's `LSTMCell` / `LayerNormBasicLSTMCell` and Sonnet's `LSTM`.

use crate::cell::{
    add_to_rows, affine, assign, check_many_inputs, check_projected, check_sizes, check_step_input,
    check_variable_keys, export_params, input_size_from_dict, load_params, lstm_state, tile, torch_default,
    yes, zero_state, StateDict, TorchWeights, VarMaker,
};
use crate::core::{InputProjection, RnnCore};
use crate::state::{State, StateSize};
use crate::torch_cell::{TorchCellKind, TorchCellWeights};
use couplet_modules::{
    util::{build_once, scalar_fits},
    Error, Initializer, Mode, Module, Regularizer, Result, Scope, TorchContext,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::{TchError, Tensor};

fn one() -> f64 {
    1.0
}

fn tf_layer_norm_epsilon() -> f64 {
    1e-12
}

/// The gates whose pre-activations layer norm normalises, plus the cell (`c`), in the
/// order of the variable names `ln_{gate}_gamma`, `ln_{gate}_beta`.
const LN_PARTS: [&str; 5] = ["i", "f", "g", "o", "c"];

/// Configuration of an [`Lstm`] cell. Deserialising needs `hidden_size`; every other field
/// has the default documented on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LstmConfig {
    /// Number of units `H` (> 0). Required.
    pub hidden_size: i64,
    /// Input size `I` (> 0). `Some(I)` creates the variables at construction; `None`
    /// (default) creates them from the first input's last dimension.
    #[serde(default)]
    pub input_size: Option<i64>,
    /// Whether to create `bias_ih` and `bias_hh`. Default `true`.
    #[serde(default = "yes")]
    pub with_bias: bool,
    /// Added once, at initialisation, to the forget-gate rows `H..2H` of `bias_ih` (Keras
    /// `unit_forget_bias`, Sonnet v2); with `layer_norm` it is added to `ln_f_beta`
    /// instead, since the bias comes before the normalisation. Ignored without a bias and
    /// without layer norm (as Keras). Default `1.0`.
    #[serde(default = "one")]
    pub forget_bias: f64,
    /// TensorFlow peephole connections: `w_i_diag ⊙ c`, `w_f_diag ⊙ c` (previous cell) are
    /// added to the `i`, `f` pre-activations and `w_o_diag ⊙ c'` (new cell) to `o`.
    /// Default `false`.
    #[serde(default)]
    pub peepholes: bool,
    /// Clips the new cell state `c'` to `[-clip, clip]` (> 0) before it is used and stored
    /// (TF `cell_clip`). Default `None`.
    #[serde(default)]
    pub cell_clip: Option<f64>,
    /// Projection size `P` (`0 < P < H`): the output and `h` are `weight_hr h_raw` with
    /// `weight_hr [P, H]`, and `c` keeps `H` units (PyTorch `proj_size`, TF `num_proj`).
    /// Default `None` (`P = H`, no projection).
    #[serde(default)]
    pub proj_size: Option<i64>,
    /// Clips the projected output (and `h`) to `[-clip, clip]` (> 0), as TF's
    /// `LSTMCell(num_proj, proj_clip)`; needs `proj_size`. Default `None`.
    #[serde(default)]
    pub proj_clip: Option<f64>,
    /// Layer normalisation (Ba et al. 2016) as in TF's `LayerNormBasicLSTMCell`: each gate's
    /// pre-activation (`i`, `f`, `g`, `o`, each `[B, H]`) is normalised over its `H` units
    /// with its own gain `ln_{gate}_gamma` (ones) and shift `ln_{gate}_beta` (zeros), and
    /// the new cell `c'` is normalised with `ln_c_gamma`, `ln_c_beta` before the output
    /// `tanh`; the **normalised** `c'` is the stored state, as in TF (Ba et al. store the
    /// raw `c'`). The biases, if any, are part of the normalised pre-activation (TF's cell
    /// has none; use `with_bias(false)` to match it). Default `false`.
    #[serde(default)]
    pub layer_norm: bool,
    /// The variance epsilon of layer norm. Default `1e-12` (TF's `layer_norm`).
    #[serde(default = "tf_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    /// Learn the initial state (Sonnet): variables `initial_h [1, P]` and
    /// `initial_c [1, H]` (zeros), repeated to the batch by `initial_state`. Default `false`.
    #[serde(default)]
    pub trainable_initial_state: bool,
    /// Initializers by variable name (see [`Lstm`] for the names). Default: every variable
    /// U(−1/√H, 1/√H) (PyTorch), except layer-norm gains (ones), shifts (zeros) and the
    /// initial state (zeros). The forget bias is added after the initializer.
    #[serde(default)]
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name. Default none.
    #[serde(default)]
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl LstmConfig {
    /// A config with `hidden_size` units and every other field at its default.
    pub fn new(hidden_size: i64) -> Self {
        LstmConfig {
            hidden_size,
            input_size: None,
            with_bias: true,
            forget_bias: 1.0,
            peepholes: false,
            cell_clip: None,
            proj_size: None,
            proj_clip: None,
            layer_norm: false,
            layer_norm_epsilon: tf_layer_norm_epsilon(),
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
    /// Sets the forget bias added at initialisation.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Self {
        self.forget_bias = forget_bias;
        self
    }
    /// Turns peephole connections on or off.
    pub fn with_peepholes(mut self, peepholes: bool) -> Self {
        self.peepholes = peepholes;
        self
    }
    /// Clips the cell state to `[-clip, clip]`.
    pub fn with_cell_clip(mut self, clip: f64) -> Self {
        self.cell_clip = Some(clip);
        self
    }
    /// Projects the output to `proj_size` units.
    pub fn with_proj_size(mut self, proj_size: i64) -> Self {
        self.proj_size = Some(proj_size);
        self
    }
    /// Clips the projected output to `[-clip, clip]` (TF `proj_clip`; needs a projection).
    pub fn with_proj_clip(mut self, clip: f64) -> Self {
        self.proj_clip = Some(clip);
        self
    }
    /// Turns layer normalisation on or off.
    pub fn with_layer_norm(mut self, layer_norm: bool) -> Self {
        self.layer_norm = layer_norm;
        self
    }
    /// Sets layer norm's variance epsilon.
    pub fn with_layer_norm_epsilon(mut self, epsilon: f64) -> Self {
        self.layer_norm_epsilon = epsilon;
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
    pub fn variable_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        if self.trainable_initial_state {
            names.extend(["initial_h".into(), "initial_c".into()]);
        }
        names.extend(["weight_ih".into(), "weight_hh".into()]);
        if self.with_bias {
            names.extend(["bias_ih".into(), "bias_hh".into()]);
        }
        if self.proj_size.is_some() {
            names.push("weight_hr".into());
        }
        if self.peepholes {
            names.extend(["w_i_diag".into(), "w_f_diag".into(), "w_o_diag".into()]);
        }
        if self.layer_norm {
            for part in LN_PARTS {
                names.extend([format!("ln_{part}_gamma"), format!("ln_{part}_beta")]);
            }
        }
        names
    }
}

struct LayerNormVars {
    /// Gains of `i, f, g, o` concatenated `[4H]`, then of `c` `[H]`.
    gammas: Vec<Tensor>,
    betas: Vec<Tensor>,
}

struct LstmVars {
    torch: TorchWeights,
    weight_hr: Option<Tensor>,
    peepholes: Option<[Tensor; 3]>,
    layer_norm: Option<LayerNormVars>,
}

/// An LSTM cell, PyTorch layout (gate rows `i, f, g, o`), so PyTorch checkpoints load
/// exactly:
///
/// ```text
/// [i, f, g, o] = W_ih x + b_ih + W_hh h + b_hh          (each [B, H])
/// c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),   h' = σ(o) ⊙ tanh(c')   (h' = W_hr h_raw with proj_size)
/// ```
///
/// Input `x [B, I]`, state `State::Lstm { h [B, P], c [B, H] }` (`P` = `proj_size`, else
/// `H`), output `h' [B, P]`. Variables in scope `lstm` (creation order):
/// `initial_h [1, P]`, `initial_c [1, H]` (with a trainable initial state, created at
/// construction), `weight_ih [4H, I]`, `weight_hh [4H, P]`, `bias_ih [4H]`, `bias_hh [4H]`,
/// `weight_hr [P, H]` (projection), `w_i_diag`, `w_f_diag`, `w_o_diag` `[H]` (peepholes),
/// `ln_{i,f,g,o,c}_{gamma,beta}` `[H]` (layer norm). See [`LstmConfig`] for the options:
/// peepholes and layer norm add to the pre-activations as documented there.
///
/// Full step, in order: pre-activations `W_ih x + b_ih + b_hh + W_hh h`; layer norm of each
/// gate; peepholes on `i`, `f`; `c'` as above; layer norm of `c'`; cell clip; peephole on
/// `o` from the final `c'`; `h_raw = σ(o) ⊙ tanh(c')`; projection.
pub struct Lstm {
    scope: Scope,
    config: LstmConfig,
    initial: Option<(Tensor, Tensor)>,
    vars: OnceLock<LstmVars>,
}

impl std::fmt::Debug for Lstm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lstm").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl Lstm {
    /// Builds an LSTM in a new child scope `lstm` (or `lstm_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for `hidden_size <= 0`, `input_size <= 0`, a `proj_size` outside
    /// `1..H`, a `cell_clip` or `proj_clip <= 0` (or beyond the store kind's finite range), a
    /// `proj_clip` without a `proj_size`, a
    /// `layer_norm_epsilon` negative or not finite, a non-finite `forget_bias`, weights too
    /// large to allocate, or an initializer/regularizer
    /// key that is not one of [`LstmConfig::variable_names`].
    pub fn new(parent: &Scope, config: LstmConfig) -> Result<Self> {
        Self::named(parent, "lstm", config)
    }

    /// Like [`Lstm::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: LstmConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        let h = config.hidden_size;
        let bad = |msg: String| Err(Error::config(module, msg));
        check_sizes(module, h, config.input_size, 4)?;
        if let Some(p) = config.proj_size.filter(|&p| p <= 0 || p >= h) {
            return bad(format!("proj_size must be in 1..{h} (below hidden_size), got {p}"));
        }
        if let Some(clip) = config.cell_clip.filter(|&c| c.is_nan() || c <= 0.0) {
            return bad(format!("cell_clip must be > 0, got {clip}"));
        }
        if let Some(clip) = config.cell_clip.filter(|&c| !scalar_fits(c, scope.kind())) {
            return bad(format!("cell_clip {clip:e} overflows the store's kind {:?}", scope.kind()));
        }
        if let Some(clip) = config.proj_clip {
            if config.proj_size.is_none() {
                return bad(format!("proj_clip {clip} needs a projection (proj_size), as TF's LSTMCell"));
            }
            if clip.is_nan() || clip <= 0.0 || !scalar_fits(clip, scope.kind()) {
                return bad(format!("proj_clip must be > 0 and finite in {:?}, got {clip}", scope.kind()));
            }
        }
        if !(config.layer_norm_epsilon.is_finite() && config.layer_norm_epsilon >= 0.0) {
            return bad(format!(
                "layer_norm_epsilon must be finite and >= 0, got {}",
                config.layer_norm_epsilon
            ));
        }
        couplet_modules::util::check_finite(module, "forget_bias", config.forget_bias)?;
        let names = config.variable_names();
        let valid: Vec<&str> = names.iter().map(String::as_str).collect();
        check_variable_keys(module, &config.initializers, &config.regularizers, &valid)?;
        let mut lstm = Lstm { scope, config, initial: None, vars: OnceLock::new() };
        if lstm.config.trainable_initial_state {
            let mk = lstm.maker();
            let p = lstm.output_size();
            let h0 = mk.make("initial_h", &[1, p], Initializer::Zeros)?;
            let c0 = mk.make("initial_c", &[1, h], Initializer::Zeros)?;
            lstm.initial = Some((h0, c0));
        }
        if let Some(i) = lstm.config.input_size {
            lstm.build(i)?;
        }
        Ok(lstm)
    }

    fn maker(&self) -> VarMaker<'_> {
        VarMaker {
            scope: &self.scope,
            initializers: &self.config.initializers,
            regularizers: &self.config.regularizers,
        }
    }

    fn build(&self, input_size: i64) -> Result<&LstmVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let (h, p, g) = (c.hidden_size, self.output_size(), 4 * c.hidden_size);
            let mk = self.maker();
            let u = || torch_default(h);
            let torch = TorchWeights::create(&mk, g, h, input_size, p, c.with_bias)?;
            let weight_hr = c.proj_size.map(|p| mk.make("weight_hr", &[p, h], u())).transpose()?;
            let peepholes = if c.peepholes {
                Some([
                    mk.make("w_i_diag", &[h], u())?,
                    mk.make("w_f_diag", &[h], u())?,
                    mk.make("w_o_diag", &[h], u())?,
                ])
            } else {
                None
            };
            let layer_norm = if c.layer_norm {
                let (mut gammas, mut betas) = (Vec::new(), Vec::new());
                for part in LN_PARTS {
                    gammas.push(mk.make(&format!("ln_{part}_gamma"), &[h], Initializer::Ones)?);
                    betas.push(mk.make(&format!("ln_{part}_beta"), &[h], Initializer::Zeros)?);
                }
                Some(LayerNormVars { gammas, betas })
            } else {
                None
            };
            let module = self.scope.path();
            match (&layer_norm, &torch.bias) {
                (Some(ln), _) => add_to_rows(module, &ln.betas[1], 0, h, c.forget_bias)?,
                (None, Some((bias_ih, _))) => add_to_rows(module, bias_ih, h, h, c.forget_bias)?,
                (None, None) => {}
            }
            Ok(LstmVars { torch, weight_hr, peepholes, layer_norm })
        })
    }

    fn vars(&self) -> Result<&LstmVars> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The configuration.
    pub fn config(&self) -> &LstmConfig {
        &self.config
    }

    /// The output size `O` (each output and `h` are `[B, O]`).
    pub fn output_size(&self) -> i64 {
        self.config.proj_size.unwrap_or(self.config.hidden_size)
    }

    /// Number of units `H` (the size of `c`).
    pub fn hidden_size(&self) -> i64 {
        self.config.hidden_size
    }

    /// Input size `I`, once known.
    pub fn input_size(&self) -> Option<i64> {
        self.vars.get().map(|v| v.torch.input_size())
    }

    fn project(&self, inputs: &Tensor, input_size: i64) -> Result<Tensor> {
        let module = self.scope.path();
        let v = self.build(input_size)?;
        let bias = v.torch.bias.as_ref().map(|(bi, bh)| bi.f_add(bh)).transpose().ctx(module)?;
        affine(module, inputs, &v.torch.weight_ih, bias.as_ref())
    }

    fn torch_params(v: &LstmVars) -> Vec<(&'static str, &Tensor)> {
        let mut params = v.torch.params();
        if let Some(w) = &v.weight_hr {
            params.push(("weight_hr", w));
        }
        params
    }

    /// Loads PyTorch weights: `weight_ih{suffix} [4H, I]`, `weight_hh{suffix} [4H, P]`,
    /// `bias_ih{suffix}`, `bias_hh{suffix} [4H]` (with a bias) and `weight_hr{suffix} [P, H]`
    /// (with a projection), e.g. `suffix = "_l0"` for layer 0 of `torch.nn.LSTM`,
    /// `"_l1_reverse"` for its backward direction, `""` for `torch.nn.LSTMCell`. Values are
    /// copied in place without gradient (any float kind and device). `bias_ih` is
    /// overwritten wholesale, so the forget bias added at initialisation is replaced by
    /// PyTorch's values and the cell computes exactly what PyTorch does. Other keys of the
    /// dict are ignored, as are couplet-only variables (peepholes, layer norm, initial
    /// state), which keep their values. A lazy cell is built from `weight_ih`'s shape.
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
                4 * self.hidden_size(),
            )?)?,
        };
        load_params(module, state_dict, suffix, &Self::torch_params(v))
    }

    /// PyTorch's state dict of this cell: `(name + suffix, tensor)` for `weight_ih`,
    /// `weight_hh`, `bias_ih`, `bias_hh` (with a bias) and `weight_hr` (with a projection),
    /// in PyTorch's order. The tensors are detached and share storage with the variables.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy cell.
    pub fn torch_state_dict(&self, suffix: &str) -> Result<Vec<(String, Tensor)>> {
        Ok(export_params(&Self::torch_params(self.vars()?), suffix))
    }

    /// Loads a TensorFlow 1.x `LSTMCell` (gates `i, j, f, o`, forget bias added at run
    /// time): `kernel [I + P, 4H]`, `bias [4H]`. Sets `weight_ih = kernel[..I]ᵀ`,
    /// `weight_hh = kernel[I..]ᵀ` with the gate blocks reordered to `i, f, j, o`,
    /// `bias_ih = (b_i, b_f + forget_bias, b_j, b_o)` and `bias_hh = 0`, so the cell
    /// computes TF's function exactly (peephole variables have TF's names and are set
    /// separately; a TF projection kernel `[H, P]` is `weight_hrᵀ`, also set separately).
    /// A lazy cell is built with `I = kernel rows − P`.
    ///
    /// # Errors
    /// [`Error::Config`] without a bias or with layer norm (TF's `LSTMCell` has neither), or
    /// for a non-finite `forget_bias`; [`Error::Shape`] if `kernel` is not `[I + P, 4H]` or
    /// `bias` is not `[4H]`, or either is not floating point; [`Error::InvalidArgument`] if
    /// either is undefined or holds NaN or infinite values.
    pub fn load_tf_kernel(&self, kernel: &Tensor, bias: &Tensor, forget_bias: f64) -> Result<()> {
        let module = self.scope.path();
        let not_tf = || {
            Error::config(
                module,
                "load_tf_kernel needs with_bias = true and layer_norm = false (a TF LSTMCell)",
            )
        };
        if !self.config.with_bias || self.config.layer_norm {
            return Err(not_tf());
        }
        couplet_modules::util::check_finite(module, "forget_bias", forget_bias)?;
        couplet_modules::util::check_floating(module, "kernel", kernel)?;
        couplet_modules::util::check_floating(module, "bias", bias)?;
        couplet_modules::util::check_all_finite(module, "kernel", kernel)?;
        couplet_modules::util::check_all_finite(module, "bias", bias)?;
        let (h, p) = (self.hidden_size(), self.output_size());
        let rows = kernel.size().first().copied().unwrap_or(0);
        let input_size = self.input_size().unwrap_or(rows - p);
        let expected = [input_size + p, 4 * h];
        if kernel.size() != expected || input_size <= 0 {
            let want = format!("[I + {p}, {}] = {expected:?}", 4 * h);
            return Err(Error::shape(module, "kernel", want, kernel.size()));
        }
        if bias.size() != [4 * h] {
            return Err(Error::shape(module, "bias", format!("[{}]", 4 * h), bias.size()));
        }
        let v = self.build(input_size)?;
        let ifjo = |t: &Tensor| -> Result<Tensor, TchError> {
            let blocks = t.f_chunk(4, 0)?;
            Tensor::f_cat(&[&blocks[0], &blocks[2], &blocks[1], &blocks[3]], 0)
        };
        let convert = || -> Result<(Tensor, Tensor, Tensor), TchError> {
            let w_ih = ifjo(&kernel.f_narrow(0, 0, input_size)?.f_tr()?)?;
            let w_hh = ifjo(&kernel.f_narrow(0, input_size, p)?.f_tr()?)?;
            let b = ifjo(&bias.f_detach()?.f_to_kind(v.torch.weight_ih.kind())?)?;
            Ok((w_ih, w_hh, b))
        };
        let (w_ih, w_hh, b) = convert().ctx(module)?;
        let (bias_ih, bias_hh) = v.torch.bias.as_ref().ok_or_else(not_tf)?;
        assign(module, &v.torch.weight_ih, &w_ih)?;
        assign(module, &v.torch.weight_hh, &w_hh)?;
        assign(module, bias_ih, &b)?;
        add_to_rows(module, bias_ih, h, h, forget_bias)?;
        assign(module, bias_hh, &bias_hh.zeros_like())
    }
}

impl Module for Lstm {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl RnnCore for Lstm {
    /// One step: `input [B, I]`, `State::Lstm { h [B, P], c [B, H] }` → `(h' [B, P],
    /// State::Lstm { h', c' })`. The first call of a lazy cell creates its variables.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the core if the input is not `[B, I]` of the store's kind,
    /// or the state is not `State::Lstm` with `h [B, P]`, `c [B, H]` of that kind.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let i = check_step_input(&self.scope, input, self.input_size())?;
        let projected = self.project(input, i)?;
        self.step_projected(&projected, state, mode)
    }

    /// `[O]`: [`Lstm::output_size`].
    fn output_shape(&self) -> Vec<i64> {
        vec![self.output_size()]
    }

    fn state_size(&self) -> StateSize {
        StateSize::lstm(self.output_size(), self.hidden_size())
    }

    /// Zeros, or the learned `initial_h`, `initial_c` repeated to `batch_size` rows.
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        match &self.initial {
            Some((h0, c0)) => Ok(State::Lstm {
                h: tile(&self.scope, h0, batch_size)?,
                c: tile(&self.scope, c0, batch_size)?,
            }),
            None => zero_state(&self.scope, &self.state_size(), batch_size),
        }
    }

    /// One `Lstm` layer (with `weight_hr` for a projection) without peepholes, layer norm,
    /// cell clip or projection clip; `None` with any of them, or for an `input_size` other than the cell's.
    fn torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        let c = &self.config;
        let plain = !c.peepholes && !c.layer_norm && c.cell_clip.is_none() && c.proj_clip.is_none();
        if !plain || input_size <= 0 || self.input_size().is_some_and(|i| i != input_size) {
            return Ok(None);
        }
        let v = self.build(input_size)?;
        Ok(Some(vec![TorchCellWeights::new(TorchCellKind::Lstm, &v.torch, v.weight_hr.as_ref())]))
    }

    /// The cell's [`InputProjection`] (`W_ih x` and the additive biases, for every step at once).
    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for Lstm {
    /// `inputs [.., I]` → `W_ih x + b_ih + b_hh` `[.., 4H]` (both biases are additive).
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        let i = check_many_inputs(&self.scope, inputs, self.input_size())?;
        self.project(inputs, i)
    }

    fn step_projected(&self, projected: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let module = self.scope.path();
        let v = self.vars()?;
        let (h, p) = (self.hidden_size(), self.output_size());
        let batch = check_projected(&self.scope, projected, 4 * h)?;
        let (h_prev, c_prev) = lstm_state(&self.scope, state, batch, p, h)?;
        let eps = self.config.layer_norm_epsilon;
        let clip = self.config.cell_clip;
        let proj_clip = self.config.proj_clip;
        let compute = || -> Result<(Tensor, Tensor), TchError> {
            let mut gates = projected.f_addmm(h_prev, &v.torch.weight_hh.f_tr()?)?;
            if let Some(ln) = &v.layer_norm {
                let gamma = Tensor::f_cat(&ln.gammas[..4], 0)?;
                let beta = Tensor::f_cat(&ln.betas[..4], 0)?;
                let normed = gates
                    .f_view([batch, 4, h])?
                    .f_layer_norm([h], None::<Tensor>, None::<Tensor>, eps, true)?
                    .f_view([batch, 4 * h])?;
                gates = beta.f_addcmul(&normed, &gamma)?;
            }
            // Without peepholes one sigmoid covers i, f and o (fewer ops per step).
            let chunks = gates.f_chunk(4, 1)?;
            let sig = if v.peepholes.is_none() { gates.f_sigmoid()?.f_chunk(4, 1)? } else { Vec::new() };
            let (i, f) = match &v.peepholes {
                Some([w_i, w_f, _]) => (
                    chunks[0].f_add(&w_i.f_mul(c_prev)?)?.f_sigmoid()?,
                    chunks[1].f_add(&w_f.f_mul(c_prev)?)?.f_sigmoid()?,
                ),
                None => (sig[0].shallow_clone(), sig[1].shallow_clone()),
            };
            let mut c = f.f_mul(c_prev)?.f_addcmul(&i, &chunks[2].f_tanh()?)?;
            if let Some(ln) = &v.layer_norm {
                c = c.f_layer_norm([h], Some(&ln.gammas[4]), Some(&ln.betas[4]), eps, true)?;
            }
            if let Some(clip) = clip {
                c = c.f_clamp(-clip, clip)?;
            }
            let o = match &v.peepholes {
                Some([_, _, w_o]) => chunks[3].f_add(&w_o.f_mul(&c)?)?.f_sigmoid()?,
                None => sig[3].shallow_clone(),
            };
            let h_raw = o.f_mul(&c.f_tanh()?)?;
            let h_new = match (&v.weight_hr, proj_clip) {
                (Some(w), Some(clip)) => h_raw.f_matmul(&w.f_tr()?)?.f_clamp(-clip, clip)?,
                (Some(w), None) => h_raw.f_matmul(&w.f_tr()?)?,
                (None, _) => h_raw,
            };
            Ok((h_new, c))
        };
        let (h_new, c_new) = compute().ctx(module)?;
        Ok((h_new.shallow_clone(), State::Lstm { h: h_new, c: c_new }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;
    use tch::{Device, Kind};

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn names_and_shapes(store: &Store) -> Vec<(String, Vec<i64>)> {
        store.variables().iter().map(|v| (v.name().to_string(), v.tensor().size())).collect()
    }

    fn vals(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn a_cell_clip_beyond_the_store_kind_is_a_config_error() {
        // At the first step, clamping a Half c by 1e10 used to panic inside tch's f_clamp.
        let half = Store::with_kind(Device::Cpu, Kind::Half).unwrap();
        let e = Lstm::new(&half.root(), LstmConfig::new(2).with_cell_clip(1e10)).unwrap_err();
        assert_eq!(e.to_string(), "lstm: bad configuration: cell_clip 1e10 overflows the store's kind Half");
        assert!(Lstm::new(&half.root(), LstmConfig::new(2).with_cell_clip(100.0)).is_ok());
        assert!(Lstm::new(&Store::cpu().root(), LstmConfig::new(2).with_cell_clip(1e10)).is_ok());
    }

    #[test]
    fn variable_names_and_shapes_for_every_option() {
        let store = Store::cpu();
        let lstm = Lstm::new(&store.root(), LstmConfig::new(6).with_input_size(4)).unwrap();
        assert!(lstm.is_built());
        let s = |n: &str, v: &[i64]| (n.to_string(), v.to_vec());
        assert_eq!(
            names_and_shapes(&store),
            [
                s("lstm/weight_ih", &[24, 4]),
                s("lstm/weight_hh", &[24, 6]),
                s("lstm/bias_ih", &[24]),
                s("lstm/bias_hh", &[24])
            ]
        );
        let store = Store::cpu();
        let config = LstmConfig::new(6)
            .with_input_size(4)
            .with_proj_size(3)
            .with_peepholes(true)
            .with_layer_norm(true)
            .with_trainable_initial_state(true);
        let lstm = Lstm::new(&store.root(), config.clone()).unwrap();
        let mut want = vec![
            s("lstm/initial_h", &[1, 3]),
            s("lstm/initial_c", &[1, 6]),
            s("lstm/weight_ih", &[24, 4]),
            s("lstm/weight_hh", &[24, 3]),
            s("lstm/bias_ih", &[24]),
            s("lstm/bias_hh", &[24]),
            s("lstm/weight_hr", &[3, 6]),
            s("lstm/w_i_diag", &[6]),
            s("lstm/w_f_diag", &[6]),
            s("lstm/w_o_diag", &[6]),
        ];
        for part in ["i", "f", "g", "o", "c"] {
            want.push(s(&format!("lstm/ln_{part}_gamma"), &[6]));
            want.push(s(&format!("lstm/ln_{part}_beta"), &[6]));
        }
        assert_eq!(names_and_shapes(&store), want);
        let short: Vec<String> = want.iter().map(|(n, _)| n["lstm/".len()..].to_string()).collect();
        assert_eq!(config.variable_names(), short);
        assert_eq!(lstm.output_size(), 3);
        assert_eq!(lstm.state_size(), StateSize::lstm(3, 6));
        let store = Store::cpu();
        let _ = Lstm::new(&store.root(), LstmConfig::new(2).with_input_size(1).with_bias(false)).unwrap();
        assert_eq!(store.variable_names(), ["lstm/weight_ih", "lstm/weight_hh"]);
    }

    #[test]
    fn default_init_is_torch_uniform_plus_forget_bias() {
        tch::manual_seed(1);
        let store = Store::cpu();
        let lstm = Lstm::new(&store.root(), LstmConfig::new(100).with_input_size(3)).unwrap();
        let bound = 0.1; // 1 / sqrt(100)
        let b = store.get("lstm/bias_ih").unwrap().tensor().shallow_clone();
        let w = store.get("lstm/weight_hh").unwrap().tensor().shallow_clone();
        assert!(w.abs().max().double_value(&[]) <= bound);
        assert!(w.abs().max().double_value(&[]) > 0.09, "uses the whole range");
        let forget = b.narrow(0, 100, 100);
        assert!(forget.min().double_value(&[]) >= 1.0 - bound, "forget rows get +1");
        for start in [0, 200, 300] {
            assert!(b.narrow(0, start, 100).abs().max().double_value(&[]) <= bound);
        }
        let bias_hh = store.get("lstm/bias_hh").unwrap().tensor().shallow_clone();
        assert!(bias_hh.abs().max().double_value(&[]) <= bound, "bias_hh gets no forget bias");
        assert!(lstm.is_built());
        // With layer norm the forget bias goes to the forget gate's shift.
        let store = Store::cpu();
        let config = LstmConfig::new(2).with_input_size(1).with_layer_norm(true).with_forget_bias(0.5);
        let _ = Lstm::new(&store.root(), config).unwrap();
        assert_eq!(vals(store.get("lstm/ln_f_beta").unwrap().tensor()), [0.5, 0.5]);
        assert_eq!(vals(store.get("lstm/ln_i_beta").unwrap().tensor()), [0.0, 0.0]);
        assert_eq!(vals(store.get("lstm/ln_c_gamma").unwrap().tensor()), [1.0, 1.0]);
        let b = store.get("lstm/bias_ih").unwrap().tensor().shallow_clone();
        assert!(b.abs().max().double_value(&[]) <= 1.0 / 2f64.sqrt());
    }

    #[test]
    fn hand_worked_step() {
        // I = 1, H = 1, weights 0.5, biases 0 (forget bias 0): x = 1, h = 0, c = 1.
        let store = Store::cpu();
        let config = LstmConfig::new(1)
            .with_input_size(1)
            .with_forget_bias(0.0)
            .with_initializer("weight_ih", Initializer::Constant { value: 0.5 })
            .with_initializer("weight_hh", Initializer::Constant { value: 0.5 })
            .with_initializer("bias_ih", Initializer::Zeros)
            .with_initializer("bias_hh", Initializer::Zeros);
        let lstm = Lstm::new(&store.root(), config).unwrap();
        let x = Tensor::from_slice(&[1.0f32]).view([1, 1]);
        let state = State::Lstm { h: Tensor::zeros([1, 1], CPU), c: Tensor::ones([1, 1], CPU) };
        let (out, new) = lstm.step(&x, &state, Mode::Eval).unwrap();
        let s = 1.0 / (1.0 + (-0.5f64).exp());
        let c = s + s * 0.5f64.tanh();
        let h = s * c.tanh();
        assert!((out.double_value(&[0, 0]) - h).abs() < 1e-6);
        let State::Lstm { c: c_new, .. } = new else { panic!("LSTM state") };
        assert!((c_new.double_value(&[0, 0]) - c).abs() < 1e-6);
    }

    #[test]
    fn proj_size_must_be_below_hidden_size() {
        let store = Store::cpu();
        for p in [6, 7, 0, -1] {
            let e = Lstm::new(&store.root(), LstmConfig::new(6).with_proj_size(p)).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            assert!(e.to_string().contains("proj_size must be in 1..6"), "{e}");
        }
        let e = Lstm::new(&store.root(), LstmConfig::new(0)).unwrap_err();
        assert!(e.to_string().contains("hidden_size must be > 0, got 0"), "{e}");
        let e = Lstm::new(&store.root(), LstmConfig::new(2).with_cell_clip(0.0)).unwrap_err();
        assert!(e.to_string().contains("cell_clip must be > 0"), "{e}");
        let e = Lstm::new(&store.root(), LstmConfig::new(2).with_initializer("w_i_diag", Initializer::Ones))
            .unwrap_err();
        assert!(e.to_string().contains("unknown initializers key \"w_i_diag\""), "{e}");
    }

    #[test]
    fn lazy_input_size_and_state_errors() {
        let store = Store::cpu();
        let lstm = Lstm::new(&store.root(), LstmConfig::new(3).with_proj_size(2)).unwrap();
        assert!(!lstm.is_built());
        assert!(matches!(lstm.variables(), Err(Error::NotBuilt { .. })));
        assert!(matches!(lstm.torch_state_dict(""), Err(Error::NotBuilt { .. })));
        let x = Tensor::zeros([4, 5], CPU);
        let s0 = lstm.initial_state(4).unwrap();
        let (out, s1) = lstm.step(&x, &s0, Mode::Train).unwrap();
        assert_eq!(out.size(), [4, 2]);
        assert_eq!(s1.size(), StateSize::lstm(2, 3));
        assert_eq!(lstm.input_size(), Some(5));
        assert_eq!(store.get("lstm/weight_ih").unwrap().tensor().size(), [12, 5]);
        let e = lstm.step(&Tensor::zeros([4, 6], CPU), &s0, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm: input must be [B, 5], got [4, 6]");
        let e = lstm.step(&Tensor::zeros([4, 5], (Kind::Double, Device::Cpu)), &s0, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm: input kind must be Float, got Double");
        let e = lstm.step(&x, &lstm.initial_state(3).unwrap(), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm: state h must be [4, 2], got [3, 2]");
        let bad = State::Lstm { h: Tensor::zeros([4, 2], CPU), c: Tensor::zeros([4, 2], CPU) };
        let e = lstm.step(&x, &bad, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm: state c must be [4, 3], got [4, 2]");
        let e = lstm.step(&x, &State::Tensor(Tensor::zeros([4, 3], CPU)), Mode::Eval).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lstm: state must be State::Lstm { h: [4, 2], c: [4, 3] }, got State::Tensor([4, 3])"
        );
        let e = lstm.step_projected(&Tensor::zeros([4, 5], CPU), &s0, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm: projected input must be [B, 12], got [4, 5]");
        let e = lstm.project_inputs(&Tensor::zeros([2, 7, 4], CPU)).unwrap_err();
        assert_eq!(e.to_string(), "lstm: inputs must be [.., 5], got [2, 7, 4]");
    }

    #[test]
    fn step_and_projected_step_agree() {
        let store = Store::cpu();
        let config = LstmConfig::new(4).with_peepholes(true).with_cell_clip(0.5).with_layer_norm(true);
        let lstm = Lstm::new(&store.root(), config).unwrap();
        // Layer norm (eps 1e-12) amplifies float rounding, which differs between the two
        // routes' order of additions: compare to 1e-5.
        let xs = Tensor::randn([3, 2, 5], CPU);
        let projected = lstm.project_inputs(&xs).unwrap();
        assert_eq!(projected.size(), [3, 2, 16]);
        let (mut a, mut b) = (lstm.initial_state(2).unwrap(), lstm.initial_state(2).unwrap());
        for t in 0..3 {
            let (ya, sa) = lstm.step(&xs.get(t), &a, Mode::Train).unwrap();
            let (yb, sb) = lstm.step_projected(&projected.get(t), &b, Mode::Train).unwrap();
            assert!(ya.allclose(&yb, 1e-5, 1e-5, false), "{ya} vs {yb}");
            (a, b) = (sa, sb);
        }
        let State::Lstm { c, .. } = a else { panic!("LSTM state") };
        assert!(c.abs().max().double_value(&[]) <= 0.5);
    }

    #[test]
    fn trainable_initial_state_is_tiled_and_a_variable() {
        let store = Store::cpu();
        let config = LstmConfig::new(3)
            .with_proj_size(2)
            .with_trainable_initial_state(true)
            .with_initializer("initial_c", Initializer::Constant { value: 0.25 });
        let lstm = Lstm::new(&store.root(), config).unwrap();
        let State::Lstm { h, c } = lstm.initial_state(4).unwrap() else { panic!("LSTM state") };
        assert_eq!((h.size(), c.size()), (vec![4, 2], vec![4, 3]));
        assert_eq!(vals(&c), [0.25; 12]);
        assert_eq!(vals(&h), [0.0; 8]);
        lstm.step(&Tensor::ones([4, 2], CPU), &State::Lstm { h, c }, Mode::Train)
            .unwrap()
            .0
            .sum(Kind::Float)
            .backward();
        let names: Vec<String> =
            lstm.trainable_variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names[..2], ["lstm/initial_h", "lstm/initial_c"]);
        let g = store.get("lstm/initial_c").unwrap().tensor().grad();
        assert_eq!(g.size(), [1, 3]);
        assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "gradients reach the initial state");
        assert!(lstm.initial_state(-1).is_err());
    }

    #[test]
    fn torch_state_dict_round_trip() {
        let store = Store::cpu();
        let a = Lstm::new(&store.root(), LstmConfig::new(4).with_input_size(3).with_proj_size(2)).unwrap();
        let dict = a.torch_state_dict("_l1_reverse").unwrap();
        let keys: Vec<&str> = dict.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "weight_ih_l1_reverse",
                "weight_hh_l1_reverse",
                "bias_ih_l1_reverse",
                "bias_hh_l1_reverse",
                "weight_hr_l1_reverse"
            ]
        );
        let b = Lstm::new(&store.root(), LstmConfig::new(4).with_proj_size(2)).unwrap();
        b.load_torch(&dict, "_l1_reverse").unwrap();
        assert_eq!(b.input_size(), Some(3), "a lazy cell is built from weight_ih's shape");
        for ((_, x), (_, y)) in dict.iter().zip(b.torch_state_dict("_l1_reverse").unwrap()) {
            assert!(x.equal(&y));
        }
        let map: std::collections::HashMap<String, Tensor> =
            dict.iter().map(|(k, v)| (k.replace("_l1_reverse", ""), v.shallow_clone())).collect();
        b.load_torch(&map, "").unwrap();
        // Missing keys and shape mismatches are listed together.
        let mut partial: Vec<(String, Tensor)> =
            dict.iter().skip(1).map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        partial[0].1 = Tensor::zeros([16, 3], CPU);
        let e = b.load_torch(&partial, "_l1_reverse").unwrap_err();
        assert_eq!(
            e.to_string(),
            "lstm_1: load_torch: missing keys [\"weight_ih_l1_reverse\"]; shape mismatches \
             [weight_hh_l1_reverse must be [16, 2], got [16, 3]]"
        );
        let c = Lstm::new(&store.root(), LstmConfig::new(4)).unwrap();
        let e = c.load_torch(&partial, "_l1_reverse").unwrap_err();
        assert!(e.to_string().contains("needed to infer the input size"), "{e}");
    }

    #[test]
    fn tf_kernel_is_reordered_and_forget_bias_folded() {
        let store = Store::cpu();
        let lstm = Lstm::new(&store.root(), LstmConfig::new(1)).unwrap();
        // I = 1, H = 1: kernel rows (x, h), columns (i, j, f, o).
        let kernel = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]).view([2, 4]);
        let bias = Tensor::from_slice(&[0.1f32, 0.2, 0.3, 0.4]);
        lstm.load_tf_kernel(&kernel, &bias, 1.0).unwrap();
        let get = |n: &str| vals(store.get(&format!("lstm/{n}")).unwrap().tensor());
        assert_eq!(get("weight_ih"), [1.0, 3.0, 2.0, 4.0]);
        assert_eq!(get("weight_hh"), [10.0, 30.0, 20.0, 40.0]);
        assert_eq!(get("bias_ih"), [0.1, 1.3, 0.2, 0.4]);
        assert_eq!(get("bias_hh"), [0.0; 4]);
        let e = lstm.load_tf_kernel(&Tensor::zeros([3, 4], CPU), &bias, 1.0).unwrap_err();
        assert_eq!(e.to_string(), "lstm: kernel must be [I + 1, 4] = [2, 4], got [3, 4]");
        let ln = Lstm::new(&store.root(), LstmConfig::new(1).with_layer_norm(true)).unwrap();
        assert!(matches!(ln.load_tf_kernel(&kernel, &bias, 1.0), Err(Error::Config { .. })));
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Lstm>();
    }

    #[test]
    fn huge_sizes_and_non_finite_forget_bias_are_config_errors() {
        let store = Store::cpu();
        let e = Lstm::new(&store.root(), LstmConfig::new(1 << 62)).unwrap_err();
        assert!(e.to_string().contains("4 × hidden_size (4 × 4611686018427387904) is too large"), "{e}");
        let e = Lstm::new(&store.root(), LstmConfig::new(1 << 20).with_input_size(1 << 20)).unwrap_err();
        assert!(e.to_string().contains("is too large"), "{e}");
        let e = crate::Gru::new(&store.root(), crate::GruConfig::new(1 << 62)).unwrap_err();
        assert!(e.to_string().contains("3 × hidden_size"), "{e}");
        let e = Lstm::new(&store.root(), LstmConfig::new(3).with_forget_bias(f64::NAN)).unwrap_err();
        assert_eq!(e.to_string(), "lstm_2: bad configuration: forget_bias must be finite, got NaN");
        let e = Lstm::new(
            &store.root(),
            LstmConfig::new(3).with_layer_norm(true).with_layer_norm_epsilon(f64::INFINITY),
        );
        assert!(e.unwrap_err().to_string().contains("layer_norm_epsilon must be finite and >= 0, got inf"));
        let lstm = Lstm::new(&store.root(), LstmConfig::new(2).with_input_size(1)).unwrap();
        let (k, b) = (
            Tensor::zeros([3, 8], (Kind::Float, Device::Cpu)),
            Tensor::zeros([8], (Kind::Float, Device::Cpu)),
        );
        let e = lstm.load_tf_kernel(&k, &b, f64::NAN).unwrap_err();
        assert!(e.to_string().contains("forget_bias must be finite, got NaN"), "{e}");
        let e = lstm.load_tf_kernel(&k.to_kind(Kind::Int64), &b, 1.0).unwrap_err();
        assert!(e.to_string().contains("kernel kind must be floating point, got Int64"), "{e}");
        let e = lstm.load_tf_kernel(&k.fill(f64::NAN), &b, 1.0).unwrap_err();
        assert!(e.to_string().contains("kernel holds 24 non-finite values"), "{e}");
        assert!(lstm.load_tf_kernel(&k.zero(), &b, 1.0).is_ok());
    }
}
