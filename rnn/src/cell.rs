//! What the recurrent cells ([`Lstm`](crate::Lstm), [`Gru`](crate::Gru),
//! [`VanillaRnn`](crate::VanillaRnn)) share: the [`StateDict`] trait their PyTorch
//! interchange reads from, and crate-private helpers for variables, input/state checks and
//! state-dict copies.

use crate::state::{State, StateSize};
use couplet_modules::{
    util::{check_all_finite, check_keys, config_size},
    Error, Fans, Initializer, Regularizer, Result, Scope, TorchContext,
};
use std::collections::{BTreeMap, HashMap};
use tch::Tensor;

/// A source of named tensors for `load_torch` (a PyTorch `state_dict`): implemented for
/// `HashMap<String, Tensor>`, `BTreeMap<String, Tensor>`, and slices / vectors of
/// `(String, Tensor)` pairs (what [`Tensor::read_safetensors`] returns).
pub trait StateDict {
    /// The tensor stored under `key`, if any.
    fn tensor(&self, key: &str) -> Option<&Tensor>;
}

impl StateDict for HashMap<String, Tensor> {
    fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.get(key)
    }
}

impl StateDict for BTreeMap<String, Tensor> {
    fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.get(key)
    }
}

impl StateDict for [(String, Tensor)] {
    fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }
}

impl StateDict for Vec<(String, Tensor)> {
    fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.as_slice().tensor(key)
    }
}

/// PyTorch's default for every RNN weight and bias: U(−1/√H, 1/√H).
pub(crate) fn torch_default(hidden_size: i64) -> Initializer {
    Initializer::symmetric_uniform(1.0 / (hidden_size as f64).sqrt())
}

/// Creates the variables of one cell, applying the config's per-variable overrides.
pub(crate) struct VarMaker<'a> {
    pub scope: &'a Scope,
    pub initializers: &'a BTreeMap<String, Initializer>,
    pub regularizers: &'a BTreeMap<String, Regularizer>,
}

impl VarMaker<'_> {
    /// Creates `name` of `shape` (PyTorch layout fans), initialised by the override for
    /// `name` or else `default`.
    pub fn make(&self, name: &str, shape: &[i64], default: Initializer) -> Result<Tensor> {
        let init = self.initializers.get(name).cloned().unwrap_or(default);
        self.scope
            .var(name, shape)
            .init(init)
            .fans(Fans::torch(shape))
            .regularizer(self.regularizers.get(name).cloned())
            .create()
    }
}

/// Checks the sizes every cell config has: `hidden_size > 0`, `input_size > 0` if given, and
/// weights of `gates` blocks that neither overflow nor exceed `util::MAX_ELEMENTS`.
pub(crate) fn check_sizes(module: &str, hidden_size: i64, input_size: Option<i64>, gates: i64) -> Result<()> {
    if hidden_size <= 0 {
        return Err(Error::config(module, format!("hidden_size must be > 0, got {hidden_size}")));
    }
    if let Some(i) = input_size.filter(|&i| i <= 0) {
        return Err(Error::config(module, format!("input_size must be > 0, got {i}")));
    }
    // The weights `[gates·H, H]` and `[gates·H, I]` must be sizes libtorch can allocate.
    let rows = config_size(module, &format!("{gates} × hidden_size"), &[gates, hidden_size])?;
    config_size(module, "the hidden-to-hidden weight", &[rows, hidden_size])?;
    if let Some(i) = input_size {
        config_size(module, "the input-to-hidden weight", &[rows, i])?;
    }
    Ok(())
}

/// Checks that every initializer and regularizer key of a cell config names one of its
/// variables (`valid`).
pub(crate) fn check_variable_keys(
    module: &str,
    initializers: &BTreeMap<String, Initializer>,
    regularizers: &BTreeMap<String, Regularizer>,
    valid: &[&str],
) -> Result<()> {
    check_keys(module, "initializers", initializers.keys(), valid)?;
    check_keys(module, "regularizers", regularizers.keys(), valid)
}

/// Adds `value` to rows `start..start + len` of a variable, in place and without gradient.
pub(crate) fn add_to_rows(module: &str, var: &Tensor, start: i64, len: i64, value: f64) -> Result<()> {
    tch::no_grad(|| var.f_narrow(0, start, len).and_then(|mut rows| rows.f_add_scalar_(value)).map(|_| ()))
        .ctx(module)
}

/// Checks a step input `x [B, I]` (rank, size once known, kind) and returns `I`.
pub(crate) fn check_step_input(scope: &Scope, x: &Tensor, input_size: Option<i64>) -> Result<i64> {
    let size = x.size();
    let expected = match input_size {
        Some(i) => format!("[B, {i}]"),
        None => "[B, I]".to_string(),
    };
    match size.as_slice() {
        [_, i] if input_size.map_or(true, |n| n == *i) => {}
        _ => return Err(Error::shape(scope.path(), "input", expected, size)),
    }
    scope.check_kind("input", x)?;
    Ok(size[1])
}

/// Checks `inputs [.., I]` for `project_inputs` and returns `I`.
pub(crate) fn check_many_inputs(scope: &Scope, x: &Tensor, input_size: Option<i64>) -> Result<i64> {
    let size = x.size();
    let last = size.last().copied();
    let ok = last.is_some() && input_size.map_or(true, |n| Some(n) == last);
    if !ok {
        let expected = input_size.map_or("[.., I]".to_string(), |i| format!("[.., {i}]"));
        return Err(Error::shape(scope.path(), "inputs", expected, size));
    }
    scope.check_kind("inputs", x)?;
    Ok(size[size.len() - 1])
}

/// Checks a projected input `p [B, width]` and returns `B`.
pub(crate) fn check_projected(scope: &Scope, p: &Tensor, width: i64) -> Result<i64> {
    let size = p.size();
    match size.as_slice() {
        [b, w] if *w == width => {
            scope.check_kind("projected input", p)?;
            Ok(*b)
        }
        _ => Err(Error::shape(scope.path(), "projected input", format!("[B, {width}]"), size)),
    }
}

/// Describes a state's structure and shapes for error messages.
fn describe(state: &State) -> String {
    match state {
        State::Empty => "State::Empty".to_string(),
        State::Tensor(t) => format!("State::Tensor({:?})", t.size()),
        State::Lstm { h, c } => format!("State::Lstm {{ h: {:?}, c: {:?} }}", h.size(), c.size()),
        State::Tuple(v) => format!("State::Tuple of {} states", v.len()),
    }
}

/// Checks one state leaf: `[batch, n]` of the store's kind.
fn check_leaf(scope: &Scope, what: &str, t: &Tensor, batch: i64, n: i64) -> Result<()> {
    if t.size() != [batch, n] {
        return Err(Error::shape(scope.path(), what, format!("[{batch}, {n}]"), t.size()));
    }
    scope.check_kind(what, t)
}

/// The tensor of a `State::Tensor([batch, n])`, or an error naming the expected and actual state.
pub(crate) fn tensor_state<'s>(scope: &Scope, state: &'s State, batch: i64, n: i64) -> Result<&'s Tensor> {
    match state {
        State::Tensor(t) => check_leaf(scope, "state", t, batch, n).map(|_| t),
        other => Err(Error::shape(
            scope.path(),
            "state",
            format!("State::Tensor([{batch}, {n}])"),
            format_args!("{}", describe(other)),
        )),
    }
}

/// `(h, c)` of a `State::Lstm { h [batch, p], c [batch, n] }`, or an error naming both.
pub(crate) fn lstm_state<'s>(
    scope: &Scope,
    state: &'s State,
    batch: i64,
    p: i64,
    n: i64,
) -> Result<(&'s Tensor, &'s Tensor)> {
    match state {
        State::Lstm { h, c } => {
            check_leaf(scope, "state h", h, batch, p)?;
            check_leaf(scope, "state c", c, batch, n)?;
            Ok((h, c))
        }
        other => Err(Error::shape(
            scope.path(),
            "state",
            format!("State::Lstm {{ h: [{batch}, {p}], c: [{batch}, {n}] }}"),
            format_args!("{}", describe(other)),
        )),
    }
}

/// A learned `[1, n]` initial state repeated to `[batch, n]`.
pub(crate) fn tile(scope: &Scope, var: &Tensor, batch_size: i64) -> Result<Tensor> {
    check_batch_size(scope, batch_size)?;
    var.f_repeat([batch_size, 1]).ctx(scope.path())
}

/// Zeros of `size` for `batch_size` rows in `scope`'s kind and device; a negative
/// `batch_size` is an [`Error::InvalidArgument`] naming the scope.
pub(crate) fn zero_state(scope: &Scope, size: &StateSize, batch_size: i64) -> Result<State> {
    check_batch_size(scope, batch_size)?;
    State::zeros(size, batch_size, (scope.kind(), scope.device()))
}

fn check_batch_size(scope: &Scope, batch_size: i64) -> Result<()> {
    if batch_size < 0 {
        return Err(Error::invalid(scope.path(), format!("batch_size must be >= 0, got {batch_size}")));
    }
    Ok(())
}

/// Copies `dict[name + suffix]` into each `(name, variable)` under `no_grad`, after checking
/// that every key exists with the variable's shape (nothing is copied otherwise).
/// What is wrong with `value` loaded into `var` under `key`, if anything: undefined, not
/// floating point (the dtype rule of every loaded weight), another shape, or non-finite values.
pub(crate) fn load_mismatch(key: &str, var: &Tensor, value: &Tensor) -> Option<String> {
    if !value.defined() {
        Some(format!("{key} is an undefined tensor"))
    } else if !value.is_floating_point() {
        Some(format!("{key} must be floating point, got {:?}", value.kind()))
    } else if value.size() != var.size() {
        Some(format!("{key} must be {:?}, got {:?}", var.size(), value.size()))
    } else {
        check_all_finite("", key, value).err().map(|e| e.to_string().trim_start_matches(": ").to_string())
    }
}

pub(crate) fn load_params<D: StateDict + ?Sized>(
    module: &str,
    dict: &D,
    suffix: &str,
    params: &[(&str, &Tensor)],
) -> Result<()> {
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, var) in params {
        let key = format!("{name}{suffix}");
        match dict.tensor(&key) {
            None => missing.push(key),
            Some(t) => mismatched.extend(load_mismatch(&key, var, t)),
        }
    }
    if !missing.is_empty() || !mismatched.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing keys {missing:?}"));
        }
        if !mismatched.is_empty() {
            parts.push(format!("shape mismatches [{}]", mismatched.join(", ")));
        }
        return Err(Error::invalid(module, format!("load_torch: {}", parts.join("; "))));
    }
    tch::no_grad(|| {
        for (name, var) in params {
            if let Some(src) = dict.tensor(&format!("{name}{suffix}")) {
                var.shallow_clone().f_copy_(src).ctx(module)?;
            }
        }
        Ok(())
    })
}

/// `(name + suffix, detached variable)` pairs: a PyTorch-style state dict sharing storage.
pub(crate) fn export_params(params: &[(&str, &Tensor)], suffix: &str) -> Vec<(String, Tensor)> {
    params.iter().map(|(name, var)| (format!("{name}{suffix}"), var.detach())).collect()
}

/// Copies `src` into the variable `var` under `no_grad`.
pub(crate) fn assign(module: &str, var: &Tensor, src: &Tensor) -> Result<()> {
    tch::no_grad(|| var.shallow_clone().f_copy_(src)).ctx(module)
}

/// `x Wᵀ + b` for `x [.., I]`, `w [N, I]`, `b [N]` (optional).
pub(crate) fn affine(module: &str, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let wt = w.f_tr().ctx(module)?;
    match (b, x.dim()) {
        (Some(b), 2) => b.f_addmm(x, &wt),
        (Some(b), _) => x.f_matmul(&wt).and_then(|y| y.f_add(b)),
        (None, _) => x.f_matmul(&wt),
    }
    .ctx(module)
}

/// Serde default `true`.
pub(crate) fn yes() -> bool {
    true
}

/// The input size `I` of a lazy cell, read from `dict[key]` (`[rows, I]`) before loading.
pub(crate) fn input_size_from_dict<D: StateDict + ?Sized>(
    module: &str,
    dict: &D,
    key: &str,
    rows: i64,
) -> Result<i64> {
    match dict.tensor(key).filter(|t| t.defined()).map(Tensor::size) {
        None => Err(Error::invalid(
            module,
            format!("load_torch: missing keys [{key:?}] (needed to infer the input size)"),
        )),
        Some(size) => match size.as_slice() {
            [r, i] if *r == rows && *i > 0 => Ok(*i),
            _ => Err(Error::invalid(
                module,
                format!("load_torch: shape mismatches [{key} must be [{rows}, I], got {size:?}]"),
            )),
        },
    }
}

/// The weights every PyTorch RNN cell has: `weight_ih [G·H, I]`, `weight_hh [G·H, P]` and,
/// with a bias, `bias_ih`, `bias_hh` `[G·H]`, all U(−1/√H, 1/√H) by default.
pub(crate) struct TorchWeights {
    pub weight_ih: Tensor,
    pub weight_hh: Tensor,
    pub bias: Option<(Tensor, Tensor)>,
}

impl TorchWeights {
    /// Creates the weights of a cell with `rows = G·H` gate rows, `hidden_size` H (for the
    /// default bound), `input_size` I and `h_size` P (the recurrent input's size).
    pub fn create(
        mk: &VarMaker<'_>,
        rows: i64,
        hidden_size: i64,
        input_size: i64,
        h_size: i64,
        with_bias: bool,
    ) -> Result<Self> {
        let u = || torch_default(hidden_size);
        let weight_ih = mk.make("weight_ih", &[rows, input_size], u())?;
        let weight_hh = mk.make("weight_hh", &[rows, h_size], u())?;
        let bias = if with_bias {
            Some((mk.make("bias_ih", &[rows], u())?, mk.make("bias_hh", &[rows], u())?))
        } else {
            None
        };
        Ok(TorchWeights { weight_ih, weight_hh, bias })
    }

    /// `(PyTorch name, variable)` in PyTorch's order.
    pub fn params(&self) -> Vec<(&'static str, &Tensor)> {
        let mut params = vec![("weight_ih", &self.weight_ih), ("weight_hh", &self.weight_hh)];
        if let Some((bias_ih, bias_hh)) = &self.bias {
            params.extend([("bias_ih", bias_ih), ("bias_hh", bias_hh)]);
        }
        params
    }

    /// The input size `I`.
    pub fn input_size(&self) -> i64 {
        self.weight_ih.size()[1]
    }
}

#[cfg(test)]
mod tests {
    use crate::test_cores::Accum;
    use crate::{Gru, GruConfig, Lstm, LstmConfig, RnnCore, VanillaRnn, VanillaRnnConfig};
    use couplet_modules::{Error, Store};

    #[test]
    fn a_negative_batch_size_is_an_error_naming_the_core() {
        let store = Store::cpu();
        let root = store.root();
        let cores: Vec<Box<dyn RnnCore>> = vec![
            Box::new(Lstm::new(&root, LstmConfig::new(3)).unwrap()),
            Box::new(Lstm::new(&root, LstmConfig::new(3).with_trainable_initial_state(true)).unwrap()),
            Box::new(Gru::new(&root, GruConfig::new(3)).unwrap()),
            Box::new(VanillaRnn::new(&root, VanillaRnnConfig::new(3)).unwrap()),
            Box::new(Accum::new(&root, 2, 1.0)),
        ];
        for core in &cores {
            // Zero-state cores used to report libtorch's "zeros: Dimension size must be
            // non-negative" under the name "state".
            let e = core.initial_state(-1).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
            assert_eq!(e.to_string(), format!("{}: batch_size must be >= 0, got -1", core.name()));
            assert_eq!(core.initial_state(0).unwrap().leaves()[0].size()[0], 0);
        }
    }
}
