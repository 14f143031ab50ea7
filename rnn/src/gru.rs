//! `Gru`: the gated recurrent unit in PyTorch's layout, with TF 1.x / Sonnet's variant
//! (`reset_after = false`).

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
use tch::{TchError, Tensor};

/// Configuration of a [`Gru`] cell. Deserialising needs `hidden_size`; every other field
/// has the default documented on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GruConfig {
    /// Number of units `H` (> 0). Required.
    pub hidden_size: i64,
    /// Input size `I` (> 0). `Some(I)` creates the variables at construction; `None`
    /// (default) creates them from the first input's last dimension.
    #[serde(default)]
    pub input_size: Option<i64>,
    /// Whether to create `bias_ih` and `bias_hh`. Default `true`.
    #[serde(default = "yes")]
    pub with_bias: bool,
    /// Where the reset gate applies. `true` (default; PyTorch, cuDNN, Keras 2+):
    /// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`. `false` (TF 1.x `GRUCell`, Sonnet):
    /// `n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)`. The two are different functions.
    #[serde(default = "yes")]
    pub reset_after: bool,
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

impl GruConfig {
    /// A config with `hidden_size` units and every other field at its default.
    pub fn new(hidden_size: i64) -> Self {
        GruConfig {
            hidden_size,
            input_size: None,
            with_bias: true,
            reset_after: true,
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
    /// Chooses PyTorch's (`true`) or TF 1.x's (`false`) candidate.
    pub fn with_reset_after(mut self, reset_after: bool) -> Self {
        self.reset_after = reset_after;
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

/// A GRU cell, PyTorch layout (gate rows `r, z, n`):
///
/// ```text
/// r = σ(W_ir x + b_ir + W_hr h + b_hr),   z = σ(W_iz x + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      (reset_after = false: W_hn (r ⊙ h) + b_hn)
/// h' = (1 − z) ⊙ n + z ⊙ h
/// ```
///
/// Input `x [B, I]`, state `State::Tensor(h [B, H])`, output `h' [B, H]`. Variables in scope
/// `gru` (creation order): `initial_h [1, H]` (with a trainable initial state, created at
/// construction), `weight_ih [3H, I]`, `weight_hh [3H, H]`, `bias_ih [3H]`, `bias_hh [3H]`.
pub struct Gru {
    scope: Scope,
    config: GruConfig,
    initial: Option<Tensor>,
    vars: OnceLock<TorchWeights>,
}

impl std::fmt::Debug for Gru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gru").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl Gru {
    /// Builds a GRU in a new child scope `gru` (or `gru_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for `hidden_size <= 0`, `input_size <= 0`, or an
    /// initializer/regularizer key that is not one of [`GruConfig::variable_names`].
    pub fn new(parent: &Scope, config: GruConfig) -> Result<Self> {
        Self::named(parent, "gru", config)
    }

    /// Like [`Gru::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: GruConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        check_sizes(module, config.hidden_size, config.input_size, 3)?;
        check_variable_keys(module, &config.initializers, &config.regularizers, &config.variable_names())?;
        let mut gru = Gru { scope, config, initial: None, vars: OnceLock::new() };
        if gru.config.trainable_initial_state {
            let h = gru.config.hidden_size;
            gru.initial = Some(gru.maker().make("initial_h", &[1, h], Initializer::Zeros)?);
        }
        if let Some(i) = gru.config.input_size {
            gru.build(i)?;
        }
        Ok(gru)
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
            TorchWeights::create(&self.maker(), 3 * h, h, input_size, h, c.with_bias)
        })
    }

    fn vars(&self) -> Result<&TorchWeights> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The configuration.
    pub fn config(&self) -> &GruConfig {
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

    /// `x W_ihᵀ + b_ih`, plus `b_hh` with `reset_after = false` (where it is additive); with
    /// `reset_after` the step adds `b_hh` inside its recurrent product, as PyTorch does.
    fn project(&self, inputs: &Tensor, input_size: i64) -> Result<Tensor> {
        let module = self.scope.path();
        let v = self.build(input_size)?;
        let reset_after = self.config.reset_after;
        // With reset after, `b_hh` goes into the step's recurrent product (PyTorch's form).
        let bias = |(b_ih, b_hh): &(Tensor, Tensor)| -> Result<Tensor, TchError> {
            if reset_after {
                Ok(b_ih.shallow_clone())
            } else {
                b_ih.f_add(b_hh)
            }
        };
        let bias = v.bias.as_ref().map(bias).transpose().ctx(module)?;
        affine(module, inputs, &v.weight_ih, bias.as_ref())
    }

    /// Loads PyTorch weights `weight_ih{suffix} [3H, I]`, `weight_hh{suffix} [3H, H]`,
    /// `bias_ih{suffix}`, `bias_hh{suffix} [3H]` (with a bias), e.g. `suffix = "_l0"` for
    /// `torch.nn.GRU`, `""` for `torch.nn.GRUCell`; copied in place without gradient. Other
    /// keys are ignored, as is `initial_h`. A lazy cell is built from `weight_ih`'s shape.
    /// (Weights of a PyTorch GRU only reproduce PyTorch with `reset_after = true`.)
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
                3 * self.hidden_size(),
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

impl Module for Gru {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl RnnCore for Gru {
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

    /// `[O]`: [`Gru::output_size`].
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

    /// One `Gru` layer with `reset_after = true` (PyTorch's GRU); `None` with
    /// `reset_after = false`, or for an `input_size` other than the cell's.
    fn torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        if !self.config.reset_after || input_size <= 0 || self.input_size().is_some_and(|i| i != input_size) {
            return Ok(None);
        }
        let v = self.build(input_size)?;
        Ok(Some(vec![TorchCellWeights::new(TorchCellKind::Gru, v, None)]))
    }

    /// The cell's [`InputProjection`] (`W_ih x` and the additive biases, for every step at once).
    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for Gru {
    /// `inputs [.., I]` → `W_ih x + b_ih` `[.., 3H]` (`+ b_hh` with `reset_after = false`,
    /// where `b_hn` is additive too; with `reset_after` the step adds `b_hh` to `W_hh h`).
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        let i = check_many_inputs(&self.scope, inputs, self.input_size())?;
        self.project(inputs, i)
    }

    fn step_projected(&self, projected: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let module = self.scope.path();
        let v = self.vars()?;
        let h = self.hidden_size();
        let batch = check_projected(&self.scope, projected, 3 * h)?;
        let h_prev = tensor_state(&self.scope, state, batch, h)?;
        let reset_after = self.config.reset_after;
        let compute = || -> Result<Tensor, TchError> {
            let (z, n) = if reset_after {
                // gh = h W_hh^T + b_hh; [r, z] = σ(p_rz + gh_rz); n = tanh(p_n + r ⊙ gh_n).
                let w = v.weight_hh.f_tr()?;
                let gh = match &v.bias {
                    Some((_, b_hh)) => b_hh.f_addmm(h_prev, &w)?,
                    None => h_prev.f_matmul(&w)?,
                };
                // One split per tensor (a dispatch each) rather than a narrow per piece.
                let p = projected.f_split_with_sizes([2 * h, h], 1)?;
                let gh = gh.f_split_with_sizes([2 * h, h], 1)?;
                let rz = p[0].f_add(&gh[0])?.f_sigmoid()?.f_chunk(2, 1)?;
                let n = p[1].f_addcmul(&rz[0], &gh[1])?.f_tanh()?;
                (rz[1].shallow_clone(), n)
            } else {
                let p = projected.f_chunk(3, 1)?;
                let w_rz = v.weight_hh.f_narrow(0, 0, 2 * h)?;
                let w_n = v.weight_hh.f_narrow(0, 2 * h, h)?;
                let gh = h_prev.f_matmul(&w_rz.f_tr()?)?.f_chunk(2, 1)?;
                let r = p[0].f_add(&gh[0])?.f_sigmoid()?;
                let z = p[1].f_add(&gh[1])?.f_sigmoid()?;
                let n = p[2].f_add(&r.f_mul(h_prev)?.f_matmul(&w_n.f_tr()?)?)?.f_tanh()?;
                (z, n)
            };
            // h' = (1 − z) ⊙ n + z ⊙ h = lerp(n, h, z)
            n.f_lerp_tensor(h_prev, &z)
        };
        let h_new = compute().ctx(module)?;
        Ok((h_new.shallow_clone(), State::Tensor(h_new)))
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

    fn constant(config: GruConfig, w: f64, b: f64) -> GruConfig {
        config
            .with_initializer("weight_ih", Initializer::Constant { value: w })
            .with_initializer("weight_hh", Initializer::Constant { value: w })
            .with_initializer("bias_ih", Initializer::Constant { value: b })
            .with_initializer("bias_hh", Initializer::Constant { value: b })
    }

    #[test]
    fn variable_names_and_shapes() {
        let store = Store::cpu();
        let config = GruConfig::new(6).with_input_size(4).with_trainable_initial_state(true);
        let gru = Gru::new(&store.root(), config).unwrap();
        let s = |n: &str, v: &[i64]| (n.to_string(), v.to_vec());
        assert_eq!(
            names_and_shapes(&store),
            [
                s("gru/initial_h", &[1, 6]),
                s("gru/weight_ih", &[18, 4]),
                s("gru/weight_hh", &[18, 6]),
                s("gru/bias_ih", &[18]),
                s("gru/bias_hh", &[18])
            ]
        );
        assert_eq!(gru.state_size(), StateSize::vector(6));
        let store = Store::cpu();
        let _ =
            Gru::named(&store.root(), "enc", GruConfig::new(2).with_input_size(1).with_bias(false)).unwrap();
        assert_eq!(store.variable_names(), ["enc/weight_ih", "enc/weight_hh"]);
        let w = store.get("enc/weight_hh").unwrap().tensor().abs().max().double_value(&[]);
        assert!(w <= 1.0 / 2f64.sqrt(), "PyTorch's U(-1/sqrt(H), 1/sqrt(H))");
    }

    #[test]
    fn hand_worked_steps_for_both_reset_placements() {
        // I = H = 1, all weights 1 and biases 0.5; x = 1, h = 1.
        // r = z = σ(1 + 0.5 + 1 + 0.5) = σ(3).
        // reset_after:  n = tanh(1.5 + r (1 + 0.5));  TF: n = tanh(1.5 + r·1 + 0.5).
        let s3 = 1.0 / (1.0 + (-3.0f64).exp());
        for (reset_after, n) in [(true, (1.5 + s3 * 1.5).tanh()), (false, (2.0 + s3).tanh())] {
            let store = Store::cpu();
            let config =
                constant(GruConfig::new(1).with_input_size(1).with_reset_after(reset_after), 1.0, 0.5);
            let gru = Gru::new(&store.root(), config).unwrap();
            let one = Tensor::ones([1, 1], CPU);
            let (out, _) = gru.step(&one, &State::Tensor(one.shallow_clone()), Mode::Eval).unwrap();
            let want = (1.0 - s3) * n + s3;
            assert!((out.double_value(&[0, 0]) - want).abs() < 1e-6, "{reset_after}");
        }
    }

    #[test]
    fn step_and_projected_step_agree() {
        for reset_after in [true, false] {
            let store = Store::cpu();
            let gru = Gru::new(&store.root(), GruConfig::new(4).with_reset_after(reset_after)).unwrap();
            let xs = Tensor::randn([3, 2, 5], CPU);
            let projected = gru.project_inputs(&xs).unwrap();
            let mut s = State::Tensor(Tensor::randn([2, 4], CPU));
            for t in 0..3 {
                let (ya, sa) = gru.step(&xs.get(t), &s, Mode::Train).unwrap();
                let (yb, _) = gru.step_projected(&projected.get(t), &s, Mode::Train).unwrap();
                assert!(ya.allclose(&yb, 1e-6, 1e-6, false));
                s = sa;
            }
        }
    }

    #[test]
    fn lazy_input_size_and_state_errors() {
        let store = Store::cpu();
        let gru = Gru::new(&store.root(), GruConfig::new(3)).unwrap();
        assert!(!gru.is_built());
        let x = Tensor::zeros([2, 5], CPU);
        let (y, _) = gru.step(&x, &gru.initial_state(2).unwrap(), Mode::Eval).unwrap();
        assert_eq!((y.size(), gru.input_size()), (vec![2, 3], Some(5)));
        let e = gru.step(&x, &State::Tensor(Tensor::zeros([3, 3], CPU)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "gru: state must be [2, 3], got [3, 3]");
        let lstm_state = State::Lstm { h: Tensor::zeros([2, 3], CPU), c: Tensor::zeros([2, 3], CPU) };
        let e = gru.step(&x, &lstm_state, Mode::Eval).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gru: state must be State::Tensor([2, 3]), got State::Lstm { h: [2, 3], c: [2, 3] }"
        );
        let e = gru.step(&Tensor::zeros([5], CPU), &gru.initial_state(2).unwrap(), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "gru: input must be [B, 5], got [5]");
        let e =
            Gru::new(&store.root(), GruConfig::new(3).with_regularizer("w", Regularizer::L2 { scale: 1.0 }))
                .unwrap_err();
        assert!(e.to_string().contains("unknown regularizers key \"w\""), "{e}");
    }

    #[test]
    fn trainable_initial_state_is_tiled_and_a_variable() {
        let store = Store::cpu();
        let config = GruConfig::new(2)
            .with_trainable_initial_state(true)
            .with_initializer("initial_h", Initializer::Constant { value: 0.5 });
        let gru = Gru::new(&store.root(), config).unwrap();
        let State::Tensor(h) = gru.initial_state(3).unwrap() else { panic!("tensor state") };
        assert_eq!(Vec::<f32>::try_from(h.flatten(0, -1)).unwrap(), [0.5; 6]);
        assert!(h.requires_grad());
        assert!(store.get("gru/initial_h").unwrap().trainable());
    }

    #[test]
    fn torch_state_dict_round_trip() {
        let store = Store::cpu();
        let a = Gru::new(&store.root(), GruConfig::new(4).with_input_size(3)).unwrap();
        let dict = a.torch_state_dict("_l0").unwrap();
        let keys: Vec<&str> = dict.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]);
        let b = Gru::new(&store.root(), GruConfig::new(4)).unwrap();
        b.load_torch(&dict, "_l0").unwrap();
        for ((_, x), (_, y)) in dict.iter().zip(b.torch_state_dict("_l0").unwrap()) {
            assert!(x.equal(&y));
        }
        let e = b.load_torch(&dict, "_l1").unwrap_err();
        assert!(e.to_string().starts_with("gru_1: load_torch: missing keys [\"weight_ih_l1\""), "{e}");
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Gru>();
    }
}
