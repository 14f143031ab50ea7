//! `TorchRnn`: a whole multi-layer, optionally bidirectional LSTM / GRU / RNN that mirrors
//! `torch.nn.LSTM`, `torch.nn.GRU` and `torch.nn.RNN` (same configuration, same outputs,
//! same `h_n`/`c_n` layout, same state-dict key names), for users coming from PyTorch.
//!
//! ```
//! use couplet_modules::{Mode, Store};
//! use couplet_rnn::{TorchRnn, TorchRnnConfig};
//! use tch::{Device, Kind, Tensor};
//! # fn main() -> couplet_modules::Result<()> {
//! let store = Store::cpu();
//! // torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True)
//! let config = TorchRnnConfig::lstm(4, 5).with_num_layers(2).with_bidirectional(true).with_batch_first(true);
//! let lstm = TorchRnn::new(&store.root(), config)?;
//! let x = Tensor::randn([3, 6, 4], (Kind::Float, Device::Cpu));
//! let lengths = [6i64, 2, 4];
//! let (out, h_n, c_n) = lstm.forward_t(&x, Some((&lengths).into()), None, Mode::Eval)?;
//! assert_eq!(out.size(), [3, 6, 10]);
//! assert_eq!(h_n.size(), [4, 3, 5]);
//! assert_eq!(c_n.map(|c| c.size()), Some(vec![4, 3, 5]));
//! # Ok(())
//! # }
//! ```

use crate::bidirectional::{bidirectional_dynamic_rnn, BiRnnOptions};
use crate::cell::{yes, StateDict};
use crate::core::RnnCore;
use crate::gru::{Gru, GruConfig};
use crate::lengths::Lengths;
use crate::lstm::{Lstm, LstmConfig};
use crate::options::UnrollOptions;
use crate::stack::{from_torch_layout, to_torch_layout};
use crate::state::State;
use crate::unroll::dynamic_rnn;
use crate::vanilla::{Nonlinearity, VanillaRnn, VanillaRnnConfig};
use couplet_modules::{checkpoint, Error, Forward, Mode, Module, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use tch::Tensor;

/// Which PyTorch module a [`TorchRnn`] mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TorchRnnKind {
    /// `torch.nn.LSTM` (cells [`Lstm`]).
    Lstm,
    /// `torch.nn.GRU` (cells [`Gru`] with `reset_after = true`).
    Gru,
    /// `torch.nn.RNN(nonlinearity="tanh")` (cells [`VanillaRnn`]).
    RnnTanh,
    /// `torch.nn.RNN(nonlinearity="relu")` (cells [`VanillaRnn`]).
    RnnRelu,
}

impl TorchRnnKind {
    /// The default scope name of a [`TorchRnn`] of this kind: `lstm_layers`, `gru_layers` or
    /// `rnn_layers`.
    pub fn default_name(self) -> &'static str {
        match self {
            TorchRnnKind::Lstm => "lstm_layers",
            TorchRnnKind::Gru => "gru_layers",
            TorchRnnKind::RnnTanh | TorchRnnKind::RnnRelu => "rnn_layers",
        }
    }
}

fn one() -> i64 {
    1
}

/// Configuration of a [`TorchRnn`], field for field PyTorch's constructor arguments.
/// Deserialising needs `kind`, `input_size` and `hidden_size`; every other field has the
/// default documented on it (PyTorch's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TorchRnnConfig {
    /// Which module (LSTM, GRU, RNN with tanh or relu). Required.
    pub kind: TorchRnnKind,
    /// Input features `I` (> 0). Required (as in PyTorch).
    pub input_size: i64,
    /// Hidden units `H` (> 0). Required.
    pub hidden_size: i64,
    /// Number of stacked layers `L` (≥ 1). Default 1.
    #[serde(default = "one")]
    pub num_layers: i64,
    /// Whether the cells have `bias_ih` and `bias_hh`. Default `true`.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Inputs and outputs are `[B, T, ..]` instead of `[T, B, ..]`. Default `false`, as
    /// PyTorch (couplet's unrolls default to batch-major; this module mirrors PyTorch).
    /// `h0`, `c0`, `h_n`, `c_n` are `[L * D, B, ..]` either way.
    #[serde(default)]
    pub batch_first: bool,
    /// Dropout probability in `[0, 1)` on the outputs of every layer but the last, in
    /// [`Mode::Train`] only (inverted dropout, libtorch's RNG). Default 0.0.
    #[serde(default)]
    pub dropout: f64,
    /// Two directions per layer (`D = 2`); layer `k + 1` reads the concatenated outputs
    /// of both directions of layer `k`. Default `false`.
    #[serde(default)]
    pub bidirectional: bool,
    /// LSTM only: project `h` to `P` units (`0 < P < H`, PyTorch `proj_size`; PyTorch's
    /// `proj_size=0` is `None` here). Default `None`.
    #[serde(default)]
    pub proj_size: Option<i64>,
}

impl TorchRnnConfig {
    /// A config of `kind` with `input_size` inputs, `hidden_size` units and every other
    /// field at PyTorch's default.
    pub fn new(kind: TorchRnnKind, input_size: i64, hidden_size: i64) -> Self {
        TorchRnnConfig {
            kind,
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: None,
        }
    }
    /// `torch.nn.LSTM(input_size, hidden_size)`.
    pub fn lstm(input_size: i64, hidden_size: i64) -> Self {
        Self::new(TorchRnnKind::Lstm, input_size, hidden_size)
    }
    /// `torch.nn.GRU(input_size, hidden_size)`.
    pub fn gru(input_size: i64, hidden_size: i64) -> Self {
        Self::new(TorchRnnKind::Gru, input_size, hidden_size)
    }
    /// `torch.nn.RNN(input_size, hidden_size)` (tanh).
    pub fn rnn_tanh(input_size: i64, hidden_size: i64) -> Self {
        Self::new(TorchRnnKind::RnnTanh, input_size, hidden_size)
    }
    /// `torch.nn.RNN(input_size, hidden_size, nonlinearity="relu")`.
    pub fn rnn_relu(input_size: i64, hidden_size: i64) -> Self {
        Self::new(TorchRnnKind::RnnRelu, input_size, hidden_size)
    }
    /// Sets the number of layers.
    pub fn with_num_layers(mut self, num_layers: i64) -> Self {
        self.num_layers = num_layers;
        self
    }
    /// Sets whether the cells have biases.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// Sets whether inputs and outputs are batch-major.
    pub fn with_batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }
    /// Sets the dropout probability between layers.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }
    /// Sets whether each layer has a backward direction.
    pub fn with_bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }
    /// Sets the LSTM projection size.
    pub fn with_proj_size(mut self, proj_size: i64) -> Self {
        self.proj_size = Some(proj_size);
        self
    }

    /// Number of directions `D`: 2 if bidirectional, else 1.
    pub fn num_directions(&self) -> i64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// The size `P` of `h` and of each direction's output: `proj_size`, else `hidden_size`.
    pub fn h_size(&self) -> i64 {
        self.proj_size.unwrap_or(self.hidden_size)
    }
}

/// A [`StateDict`] that can also list its keys, so a strict load can name unexpected ones:
/// `HashMap<String, Tensor>`, `BTreeMap<String, Tensor>` (what
/// [`checkpoint::load`] returns) and slices / vectors of `(String, Tensor)` pairs.
pub trait StateDictKeys: StateDict {
    /// Every key, in the container's order.
    fn keys(&self) -> Vec<&str>;
}

impl StateDictKeys for HashMap<String, Tensor> {
    fn keys(&self) -> Vec<&str> {
        HashMap::keys(self).map(String::as_str).collect()
    }
}

impl StateDictKeys for BTreeMap<String, Tensor> {
    fn keys(&self) -> Vec<&str> {
        BTreeMap::keys(self).map(String::as_str).collect()
    }
}

impl StateDictKeys for [(String, Tensor)] {
    fn keys(&self) -> Vec<&str> {
        self.iter().map(|(k, _)| k.as_str()).collect()
    }
}

impl StateDictKeys for Vec<(String, Tensor)> {
    fn keys(&self) -> Vec<&str> {
        self.as_slice().keys()
    }
}

/// One concrete cell of a [`TorchRnn`].
enum TorchCell {
    Lstm(Lstm),
    Gru(Gru),
    Rnn(VanillaRnn),
}

impl TorchCell {
    fn core(&self) -> &dyn RnnCore {
        match self {
            TorchCell::Lstm(c) => c,
            TorchCell::Gru(c) => c,
            TorchCell::Rnn(c) => c,
        }
    }

    fn load_torch<D: StateDict + ?Sized>(&self, dict: &D, suffix: &str) -> Result<()> {
        match self {
            TorchCell::Lstm(c) => c.load_torch(dict, suffix),
            TorchCell::Gru(c) => c.load_torch(dict, suffix),
            TorchCell::Rnn(c) => c.load_torch(dict, suffix),
        }
    }

    fn torch_state_dict(&self, suffix: &str) -> Result<Vec<(String, Tensor)>> {
        match self {
            TorchCell::Lstm(c) => c.torch_state_dict(suffix),
            TorchCell::Gru(c) => c.torch_state_dict(suffix),
            TorchCell::Rnn(c) => c.torch_state_dict(suffix),
        }
    }
}

/// PyTorch's key suffix and couplet's scope name of layer `layer`, direction `direction`:
/// `_l0` / `l0`, `_l0_reverse` / `l0_reverse`, …
fn cell_name(layer: usize, direction: usize) -> String {
    if direction == 0 {
        format!("l{layer}")
    } else {
        format!("l{layer}_reverse")
    }
}

/// A multi-layer, optionally bidirectional LSTM / GRU / vanilla RNN that reproduces
/// `torch.nn.LSTM` / `GRU` / `RNN` exactly, including `h_n`/`c_n` and packed variable
/// lengths, and reads and writes PyTorch's state-dict keys.
///
/// It owns one cell per layer and direction, in child scopes named like PyTorch's key
/// suffixes: `l0`, `l0_reverse`, `l1`, …, so variables are e.g.
/// `lstm_layers/l0/weight_ih [4H, I]`, `lstm_layers/l0/weight_hh [4H, P]`,
/// `lstm_layers/l0/bias_ih`, `lstm_layers/l0/bias_hh [4H]`, `lstm_layers/l0/weight_hr [P, H]`
/// (projection), `lstm_layers/l0_reverse/…`, `lstm_layers/l1/weight_ih [4H, D·P]` (GRU:
/// `3H` rows, RNN: `H` rows). Initialisation is PyTorch's: U(−1/√H, 1/√H) for every
/// weight and bias, with **no** forget bias (unlike a default [`Lstm`]).
///
/// [`TorchRnn::forward_t`] runs each layer with [`dynamic_rnn`] (one direction) or
/// [`bidirectional_dynamic_rnn`] (two directions, outputs concatenated `[fw, bw]`), so it
/// shares their semantics and any speed-ups made there. Layer `k + 1` reads the
/// concatenated outputs of **both** directions of layer `k` (PyTorch semantics). This is a
/// different model from [`bidirectional_dynamic_rnn`] over two
/// [`StackedRnn`](crate::StackedRnn)s (TF `stack_bidirectional_dynamic_rnn` without
/// re-feeding): there the forward stack never sees the backward outputs, so PyTorch weights
/// of a multi-layer bidirectional module cannot be used that way.
///
/// Differences from PyTorch: lengths may be 0 (PyTorch refuses them): such a row gives
/// zero outputs and returns its initial state as `h_n`/`c_n`; outputs always have `T` steps
/// (PyTorch's `pad_packed_sequence` default pads to the longest length only, as with
/// `total_length=T` here); unbatched 2-D inputs are not accepted.
pub struct TorchRnn {
    scope: Scope,
    config: TorchRnnConfig,
    /// `[layer][direction]`.
    layers: Vec<Vec<TorchCell>>,
}

impl std::fmt::Debug for TorchRnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchRnn").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl TorchRnn {
    /// Builds the module in a new child scope of `parent` named after its kind
    /// ([`TorchRnnKind::default_name`]: `lstm_layers`, `gru_layers`, `rnn_layers`, or
    /// `…_1`, …), creating every variable.
    ///
    /// # Errors
    /// [`Error::Config`] for `input_size`, `hidden_size` or `num_layers` below 1 (or
    /// `num_layers` above `util::MAX_COUNT`, or weights too large to allocate), `dropout`
    /// outside `[0, 1)`, a `proj_size` with a kind other than LSTM or outside
    /// `1..hidden_size`.
    pub fn new(parent: &Scope, config: TorchRnnConfig) -> Result<Self> {
        Self::named(parent, config.kind.default_name(), config)
    }

    /// Like [`TorchRnn::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: TorchRnnConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        let bad = |msg: String| Err(Error::config(module, msg));
        let c = &config;
        for (what, value) in [("input_size", c.input_size), ("hidden_size", c.hidden_size)] {
            if value <= 0 {
                return bad(format!("{what} must be > 0, got {value}"));
            }
        }
        couplet_modules::util::check_count(module, "num_layers", c.num_layers, 1)?;
        let gates = match c.kind {
            TorchRnnKind::Lstm => 4,
            TorchRnnKind::Gru => 3,
            _ => 1,
        };
        let rows = couplet_modules::util::config_size(
            module,
            &format!("{gates} × hidden_size"),
            &[gates, c.hidden_size],
        )?;
        for (what, cols) in
            [("input", c.input_size), ("hidden", c.hidden_size), ("layer input", 2 * c.hidden_size)]
        {
            couplet_modules::util::config_size(
                module,
                &format!("the {what}-to-hidden weight"),
                &[rows, cols],
            )?;
        }
        if !(0.0..1.0).contains(&c.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", c.dropout));
        }
        if let Some(p) = c.proj_size {
            if c.kind != TorchRnnKind::Lstm {
                return bad(format!("proj_size is only supported by LSTM, got kind {:?}", c.kind));
            }
            if p <= 0 || p >= c.hidden_size {
                return bad(format!(
                    "proj_size must be in 1..{} (below hidden_size), got {p}",
                    c.hidden_size
                ));
            }
        }
        let mut layers = Vec::new();
        for layer in 0..c.num_layers as usize {
            let input_size = if layer == 0 { c.input_size } else { c.num_directions() * c.h_size() };
            let cells = (0..c.num_directions() as usize)
                .map(|direction| Self::cell(&scope, &cell_name(layer, direction), c, input_size))
                .collect::<Result<_>>()?;
            layers.push(cells);
        }
        Ok(TorchRnn { scope, config, layers })
    }

    fn cell(scope: &Scope, name: &str, c: &TorchRnnConfig, input_size: i64) -> Result<TorchCell> {
        let h = c.hidden_size;
        Ok(match c.kind {
            TorchRnnKind::Lstm => {
                let mut lc =
                    LstmConfig::new(h).with_input_size(input_size).with_bias(c.bias).with_forget_bias(0.0);
                lc.proj_size = c.proj_size;
                TorchCell::Lstm(Lstm::named(scope, name, lc)?)
            }
            TorchRnnKind::Gru => {
                let gc = GruConfig::new(h).with_input_size(input_size).with_bias(c.bias);
                TorchCell::Gru(Gru::named(scope, name, gc)?)
            }
            TorchRnnKind::RnnTanh | TorchRnnKind::RnnRelu => {
                let act =
                    if c.kind == TorchRnnKind::RnnRelu { Nonlinearity::Relu } else { Nonlinearity::Tanh };
                let vc = VanillaRnnConfig::new(h)
                    .with_input_size(input_size)
                    .with_bias(c.bias)
                    .with_activation(act);
                TorchCell::Rnn(VanillaRnn::named(scope, name, vc)?)
            }
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TorchRnnConfig {
        &self.config
    }

    /// Number of directions `D` (1 or 2).
    pub fn num_directions(&self) -> i64 {
        self.config.num_directions()
    }

    /// The size of the outputs' last dimension: `D · P` (`P` = `proj_size`, else `H`).
    pub fn output_size(&self) -> i64 {
        self.num_directions() * self.config.h_size()
    }

    /// The cell of `layer` (0 = bottom) and `direction` (0 = forward, 1 = backward), e.g.
    /// to step it by hand; `None` outside the module's layers and directions.
    pub fn cell_core(&self, layer: usize, direction: usize) -> Option<&dyn RnnCore> {
        self.layers.get(layer).and_then(|cells| cells.get(direction)).map(TorchCell::core)
    }

    /// Runs the module like PyTorch's `forward`.
    ///
    /// - `inputs`: `[T, B, I]` (`[B, T, I]` with `batch_first`), of the store's kind.
    /// - `lengths`: optional per-row lengths `[B]` in `0..=T` (an int tensor or a slice),
    ///   the equivalent of `pack_padded_sequence(inputs, lengths, enforce_sorted=False)`;
    ///   `None`: every row runs `T` steps.
    /// - `initial`: optional `(h0 [L·D, B, P], c0)` in PyTorch's layout (index
    ///   `layer · D + direction`); `c0 [L·D, B, H]` is required for LSTM and must be `None`
    ///   otherwise. `None`: zeros.
    /// - `mode`: [`Mode::Train`] applies the between-layer dropout; [`Mode::Eval`] does not.
    ///
    /// Returns `(outputs, h_n, c_n)`: `outputs [T, B, D·P]` (`[B, T, D·P]` with
    /// `batch_first`), the top layer's outputs with the forward direction first, zero past
    /// each row's length (PyTorch's `pad_packed_sequence(.., total_length=T)`);
    /// `h_n [L·D, B, P]`: each layer's and direction's final state (the forward one after
    /// step `len − 1`, the backward one after reading `t = 0`); `c_n [L·D, B, H]` for LSTM,
    /// else `None`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module if `inputs` is not rank 3 with `I` features of the
    /// store's kind, `lengths` is not `[B]` integers, or `h0`/`c0` do not have the shapes
    /// above; [`Error::InvalidArgument`] for a length outside `0..=T` or a `c0` given to (or
    /// missing from) a module of the wrong kind.
    pub fn forward_t(
        &self,
        inputs: &Tensor,
        lengths: Option<Lengths>,
        initial: Option<(&Tensor, Option<&Tensor>)>,
        mode: Mode,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let module = self.scope.path();
        couplet_modules::util::check_defined(module, "input", inputs)?;
        let c = &self.config;
        let time_major = !c.batch_first;
        let size = inputs.size();
        let expected = if time_major {
            format!("[T, B, {}]", c.input_size)
        } else {
            format!("[B, T, {}]", c.input_size)
        };
        if size.len() != 3 || size[2] != c.input_size {
            return Err(Error::shape(module, "input", expected, size));
        }
        self.scope.check_kind("input", inputs)?;
        let (batch, time) = if time_major { (size[1], size[0]) } else { (size[0], size[1]) };
        let lengths = lengths.map(|l| l.validate(module, batch, time)).transpose()?;
        let initial = initial.map(|(h0, c0)| self.initial_states(h0, c0, batch)).transpose()?;
        let d = self.num_directions() as usize;
        let mut finals: Vec<Vec<State>> = vec![Vec::new(); d];
        let mut x = inputs.shallow_clone();
        for (layer, cells) in self.layers.iter().enumerate() {
            if layer > 0 && mode.is_training() && c.dropout > 0.0 {
                x = x.f_dropout(c.dropout, true).ctx(module)?;
            }
            let init = |direction: usize| {
                initial.as_ref().and_then(|dirs| dirs[direction].as_tuple()).map(|layers| &layers[layer])
            };
            match cells.as_slice() {
                [fw] => {
                    let mut options = UnrollOptions::new(mode).with_time_major(time_major);
                    options.lengths = lengths.as_deref().map(Lengths::Slice);
                    options.initial_state = init(0);
                    let (out, state) = dynamic_rnn(fw.core(), &x, &options)?;
                    x = out;
                    finals[0].push(state);
                }
                [fw, bw] => {
                    let mut options = BiRnnOptions::new(mode).with_time_major(time_major);
                    options.lengths = lengths.as_deref().map(Lengths::Slice);
                    options.fw_initial_state = init(0);
                    options.bw_initial_state = init(1);
                    let out = bidirectional_dynamic_rnn(fw.core(), bw.core(), &x, &options)?;
                    x = Tensor::f_cat(&[&out.fw_outputs, &out.bw_outputs], -1).ctx(module)?;
                    finals[0].push(out.fw_state);
                    finals[1].push(out.bw_state);
                }
                _ => unreachable!("a layer has one or two directions"),
            }
        }
        let finals: Vec<State> = finals.into_iter().map(State::Tuple).collect();
        let (h_n, c_n) = to_torch_layout(&finals.iter().collect::<Vec<_>>())?;
        Ok((x, h_n, c_n))
    }

    /// Checks `h0`, `c0` and splits them into one `State::Tuple` of layer states per direction.
    fn initial_states(&self, h0: &Tensor, c0: Option<&Tensor>, batch: i64) -> Result<Vec<State>> {
        let module = self.scope.path();
        let c = &self.config;
        let n = c.num_layers * c.num_directions();
        let check = |what: &str, t: &Tensor, width: i64| {
            let want = [n, batch, width];
            if t.size() != want {
                return Err(Error::shape(module, what, format!("{want:?} ([L * D, B, {width}])"), t.size()));
            }
            self.scope.check_kind(what, t)
        };
        check("h0", h0, c.h_size())?;
        match (c.kind, c0) {
            (TorchRnnKind::Lstm, Some(c0)) => check("c0", c0, c.hidden_size)?,
            (TorchRnnKind::Lstm, None) => {
                return Err(Error::invalid(module, "an LSTM's initial state needs both h0 and c0"))
            }
            (_, Some(_)) => {
                return Err(Error::invalid(module, format!("c0 is only for LSTM, not {:?}", c.kind)))
            }
            (_, None) => {}
        }
        from_torch_layout(h0, c0, c.num_layers, c.num_directions())
    }

    /// PyTorch's state dict of the whole module, in PyTorch's order (layer by layer,
    /// forward direction first): `weight_ih_l{k}{_reverse}`, `weight_hh_l{k}{_reverse}`,
    /// `bias_ih_l{k}{_reverse}`, `bias_hh_l{k}{_reverse}` (with a bias) and
    /// `weight_hr_l{k}{_reverse}` (with a projection). The tensors are detached and share
    /// storage with the variables; `torch.nn.LSTM(..).load_state_dict` accepts them as is.
    ///
    /// # Errors
    /// None in practice (every cell is built at construction); any cell's error otherwise.
    pub fn torch_state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        let mut dict = Vec::new();
        for (layer, cells) in self.layers.iter().enumerate() {
            for (direction, cell) in cells.iter().enumerate() {
                dict.extend(cell.torch_state_dict(&format!("_{}", cell_name(layer, direction)))?);
            }
        }
        Ok(dict)
    }

    /// Loads a PyTorch `state_dict()` of the same module (e.g. from [`checkpoint::load`]),
    /// strictly, as `load_state_dict(strict=True)`: the dict must hold exactly the keys of
    /// [`TorchRnn::torch_state_dict`] with the same shapes. Values are copied in place
    /// without gradient, converted to the variables' kind and device.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the module and listing every missing key, every
    /// unexpected key and every shape mismatch, e.g. `"lstm_layers: load_torch: missing keys
    /// [\"weight_hr_l0\"]; unexpected keys [\"weight_ih_l2\"]; shape mismatches
    /// [weight_ih_l0 must be [20, 4], got [20, 3]]"` (a value that is not floating point or
    /// holds NaN or infinite values is listed with the mismatches); nothing is copied then.
    pub fn load_torch<D: StateDictKeys + ?Sized>(&self, state_dict: &D) -> Result<()> {
        let module = self.scope.path();
        let expected = self.torch_state_dict()?;
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        for (key, var) in &expected {
            match state_dict.tensor(key) {
                None => missing.push(key.clone()),
                Some(t) => mismatched.extend(crate::cell::load_mismatch(key, var, t)),
            }
        }
        let known: BTreeSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
        let unexpected: BTreeSet<&str> =
            state_dict.keys().into_iter().filter(|k| !known.contains(k)).collect();
        if !missing.is_empty() || !unexpected.is_empty() || !mismatched.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing keys {missing:?}"));
            }
            if !unexpected.is_empty() {
                parts.push(format!("unexpected keys {:?}", unexpected.into_iter().collect::<Vec<_>>()));
            }
            if !mismatched.is_empty() {
                parts.push(format!("shape mismatches [{}]", mismatched.join(", ")));
            }
            return Err(Error::invalid(module, format!("load_torch: {}", parts.join("; "))));
        }
        for (layer, cells) in self.layers.iter().enumerate() {
            for (direction, cell) in cells.iter().enumerate() {
                cell.load_torch(state_dict, &format!("_{}", cell_name(layer, direction)))?;
            }
        }
        Ok(())
    }

    /// Loads a safetensors file holding a PyTorch state dict, as written by Python's
    /// `safetensors.torch.save_file(module.state_dict(), path)`: [`checkpoint::load`] then
    /// [`TorchRnn::load_torch`].
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming `path` if it is missing or not safetensors; as
    /// [`TorchRnn::load_torch`] if its keys or shapes do not match.
    pub fn load_torch_file(&self, path: impl AsRef<Path>) -> Result<()> {
        self.load_torch(&checkpoint::load(path)?)
    }

    /// Writes [`TorchRnn::torch_state_dict`] to the safetensors file `path` (replacing it
    /// atomically),
    /// which Python loads with
    /// `module.load_state_dict(safetensors.torch.load_file(path))`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming `path` if it cannot be written.
    pub fn save_torch_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let dict = self.torch_state_dict()?;
        couplet_modules::checkpoint::save_tensors(&dict, path, &Default::default())
    }
}

impl Module for TorchRnn {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Forward for TorchRnn {
    /// The outputs of [`TorchRnn::forward_t`] without lengths or initial state.
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        TorchRnn::forward_t(self, x, None, None, mode).map(|(outputs, _, _)| outputs)
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

    #[test]
    fn variable_names_and_torch_keys_follow_pytorch() {
        let store = Store::cpu();
        let config = TorchRnnConfig::lstm(4, 5).with_num_layers(2).with_bidirectional(true).with_proj_size(3);
        let rnn = TorchRnn::new(&store.root(), config).unwrap();
        let mut want = Vec::new();
        let mut keys = Vec::new();
        for (cell, suffix, i) in [
            ("l0", "_l0", 4),
            ("l0_reverse", "_l0_reverse", 4),
            ("l1", "_l1", 6),
            ("l1_reverse", "_l1_reverse", 6),
        ] {
            for (name, shape) in [
                ("weight_ih", vec![20, i]),
                ("weight_hh", vec![20, 3]),
                ("bias_ih", vec![20]),
                ("bias_hh", vec![20]),
                ("weight_hr", vec![3, 5]),
            ] {
                want.push((format!("lstm_layers/{cell}/{name}"), shape));
                keys.push(format!("{name}{suffix}"));
            }
        }
        assert_eq!(names_and_shapes(&store), want);
        let dict = rnn.torch_state_dict().unwrap();
        assert_eq!(dict.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), keys);
        assert_eq!(rnn.variables().unwrap().len(), 20);
        assert_eq!(rnn.output_size(), 6);
        assert!(rnn.cell_core(1, 1).is_some() && rnn.cell_core(2, 0).is_none());

        let store = Store::cpu();
        let gru = TorchRnn::new(&store.root(), TorchRnnConfig::gru(2, 3).with_bias(false)).unwrap();
        assert_eq!(store.variable_names(), ["gru_layers/l0/weight_ih", "gru_layers/l0/weight_hh"]);
        assert_eq!(gru.torch_state_dict().unwrap()[1].0, "weight_hh_l0");
        let _ = TorchRnn::new(&store.root(), TorchRnnConfig::rnn_relu(2, 3)).unwrap();
        assert_eq!(store.variable_names()[2], "rnn_layers/l0/weight_ih");
    }

    #[test]
    fn init_is_pytorch_uniform_without_forget_bias() {
        tch::manual_seed(3);
        let store = Store::cpu();
        let _ = TorchRnn::new(&store.root(), TorchRnnConfig::lstm(3, 100)).unwrap();
        for v in store.variables() {
            let max = v.tensor().abs().max().double_value(&[]);
            assert!(max <= 0.1 && max > 0.09, "{}: max |x| = {max}", v.name());
        }
    }

    #[test]
    fn config_errors_are_typed() {
        let store = Store::cpu();
        let root = store.root();
        let err = |c: TorchRnnConfig| TorchRnn::new(&root, c).unwrap_err();
        let e = err(TorchRnnConfig::lstm(4, 5).with_num_layers(0));
        assert!(matches!(e, Error::Config { .. }));
        assert_eq!(e.to_string(), "lstm_layers: bad configuration: num_layers must be in 1..=65536, got 0");
        // Used to hang, building 2^40 layers.
        let e = err(TorchRnnConfig::rnn_relu(2, 3).with_num_layers(1 << 40));
        assert!(e.to_string().contains("num_layers must be in 1..=65536, got 1099511627776"), "{e}");
        let e = err(TorchRnnConfig::lstm(4, 1 << 62));
        assert!(e.to_string().contains("4 × hidden_size (4 × 4611686018427387904) is too large"), "{e}");
        let e = err(TorchRnnConfig::gru(1 << 40, 5));
        assert!(e.to_string().contains("the input-to-hidden weight"), "{e}");
        let e = err(TorchRnnConfig::gru(4, 5).with_proj_size(2));
        assert!(e.to_string().contains("proj_size is only supported by LSTM, got kind Gru"), "{e}");
        let e = err(TorchRnnConfig::lstm(4, 5).with_proj_size(5));
        assert!(e.to_string().contains("proj_size must be in 1..5 (below hidden_size), got 5"), "{e}");
        let e = err(TorchRnnConfig::lstm(4, 5).with_dropout(1.0));
        assert!(e.to_string().contains("dropout must be in [0, 1), got 1"), "{e}");
        let e = err(TorchRnnConfig::rnn_tanh(0, 5));
        assert!(e.to_string().contains("input_size must be > 0, got 0"), "{e}");
    }

    #[test]
    fn forward_errors_name_the_module() {
        let store = Store::cpu();
        let lstm = TorchRnn::new(&store.root(), TorchRnnConfig::lstm(4, 5).with_num_layers(2)).unwrap();
        let x = Tensor::zeros([6, 3, 4], CPU);
        let e = lstm.forward_t(&Tensor::zeros([6, 3, 2], CPU), None, None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm_layers: input must be [T, B, 4], got [6, 3, 2]");
        let e = lstm.forward_t(&Tensor::zeros([6, 4], CPU), None, None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm_layers: input must be [T, B, 4], got [6, 4]");
        let e = lstm.forward_t(&x, Some((&[6i64, 7, 1]).into()), None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm_layers: lengths must be in 0..=T (T = 6), row 1 has 7");
        let h0 = Tensor::zeros([2, 3, 5], CPU);
        let e = lstm.forward_t(&x, None, Some((&h0, None)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm_layers: an LSTM's initial state needs both h0 and c0");
        let c0 = Tensor::zeros([1, 3, 5], CPU);
        let e = lstm.forward_t(&x, None, Some((&h0, Some(&c0))), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm_layers: c0 must be [2, 3, 5] ([L * D, B, 5]), got [1, 3, 5]");
        let gru = TorchRnn::new(&store.root(), TorchRnnConfig::gru(4, 5).with_batch_first(true)).unwrap();
        let x = Tensor::zeros([3, 6, 4], CPU);
        let g0 = Tensor::zeros([1, 3, 5], CPU);
        let e = gru.forward_t(&x, None, Some((&g0, Some(&g0))), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "gru_layers: c0 is only for LSTM, not Gru");
        let e = gru.forward_t(&x, None, Some((&h0, None)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "gru_layers: h0 must be [1, 3, 5] ([L * D, B, 5]), got [2, 3, 5]");
        let e = gru.forward_t(&x.to_kind(Kind::Double), None, None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "gru_layers: input kind must be Float, got Double");
    }

    #[test]
    fn hand_worked_two_layer_relu_rnn_with_a_zero_length_row() {
        // I = H = 1, every weight 0.5, biases 0, relu: h' = relu(0.5 x + 0.5 h).
        // Layer 0 on x = (2, 4): 1, 2.5. Layer 1 on (1, 2.5): 0.5, 1.5.
        let store = Store::cpu();
        let rnn = TorchRnn::new(&store.root(), TorchRnnConfig::rnn_relu(1, 1).with_num_layers(2)).unwrap();
        for v in store.variables() {
            let value = if v.name().contains("weight") { 0.5 } else { 0.0 };
            let _ = tch::no_grad(|| v.tensor().shallow_clone().fill_(value));
        }
        let x = Tensor::from_slice(&[2.0f32, 7.0, 4.0, 7.0]).view([2, 2, 1]); // [T, B, 1]
        let h0 = Tensor::from_slice(&[0.0f32, 3.0, 0.0, 5.0]).view([2, 2, 1]);
        let (out, h_n, c_n) =
            rnn.forward_t(&x, Some((&[2i64, 0]).into()), Some((&h0, None)), Mode::Eval).unwrap();
        assert!(c_n.is_none());
        let vals = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(vals(&out), [0.5, 0.0, 1.5, 0.0], "row 1 has length 0: zero outputs");
        assert_eq!(vals(&h_n), [2.5, 3.0, 1.5, 5.0], "row 1 keeps its initial state");
    }

    #[test]
    fn dropout_acts_between_layers_in_training_only() {
        tch::manual_seed(0);
        let store = Store::cpu();
        let config = TorchRnnConfig::gru(3, 4).with_num_layers(2).with_dropout(0.5);
        let rnn = TorchRnn::new(&store.root(), config).unwrap();
        let x = Tensor::randn([5, 2, 3], CPU);
        let eval = Forward::forward_t(&rnn, &x, Mode::Eval).unwrap();
        assert!(eval.equal(&Forward::forward_t(&rnn, &x, Mode::Eval).unwrap()));
        let train = Forward::forward_t(&rnn, &x, Mode::Train).unwrap();
        assert!(!train.allclose(&eval, 1e-4, 1e-4, false), "training drops layer 0's outputs");
        // Layer 0 alone never sees dropout.
        let single = TorchRnn::new(&store.root(), TorchRnnConfig::gru(3, 4).with_dropout(0.5)).unwrap();
        assert!(Forward::forward_t(&single, &x, Mode::Train)
            .unwrap()
            .equal(&Forward::forward_t(&single, &x, Mode::Eval).unwrap()));
    }

    #[test]
    fn state_dict_round_trip_and_strict_errors() {
        let store = Store::cpu();
        let config = TorchRnnConfig::lstm(4, 5).with_bidirectional(true).with_proj_size(3);
        let a = TorchRnn::new(&store.root(), config.clone()).unwrap();
        let b = TorchRnn::new(&store.root(), config).unwrap();
        assert_eq!(b.name(), "lstm_layers_1");
        let dict = a.torch_state_dict().unwrap();
        let map: HashMap<String, Tensor> =
            dict.iter().map(|(k, v)| (k.clone(), v.to_kind(Kind::Double))).collect();
        b.load_torch(&map).unwrap();
        for ((_, x), (_, y)) in dict.iter().zip(b.torch_state_dict().unwrap()) {
            assert!(x.equal(&y));
        }
        let mut bad: Vec<(String, Tensor)> =
            dict.iter().skip(1).map(|(k, v)| (k.clone(), v.copy())).collect();
        bad[0].1 = Tensor::zeros([20, 4], CPU);
        bad.push(("weight_ih_l1".into(), Tensor::zeros([20, 6], CPU)));
        bad.push(("bias".into(), Tensor::zeros([1], CPU)));
        let before = b.torch_state_dict().unwrap();
        let e = b.load_torch(&bad).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(
            e.to_string(),
            "lstm_layers_1: load_torch: missing keys [\"weight_ih_l0\"]; unexpected keys [\"bias\", \
             \"weight_ih_l1\"]; shape mismatches [weight_hh_l0 must be [20, 3], got [20, 4]]"
        );
        for ((_, x), (_, y)) in before.iter().zip(b.torch_state_dict().unwrap()) {
            assert!(x.equal(&y), "nothing is copied on error");
        }
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<TorchRnn>();
    }

    #[test]
    fn loaded_weights_must_be_finite_floats_and_undefined_inputs_are_errors() {
        let store = Store::cpu();
        let lstm = TorchRnn::new(&store.root(), TorchRnnConfig::lstm(2, 3)).unwrap();
        let good: Vec<(String, Tensor)> = lstm.torch_state_dict().unwrap();
        let with = |key: &str, t: Tensor| -> Vec<(String, Tensor)> {
            good.iter()
                .map(|(k, v)| (k.clone(), if k == key { t.shallow_clone() } else { v.copy() }))
                .collect()
        };
        let ints = with("weight_ih_l0", Tensor::zeros([12, 2], (Kind::Int64, Device::Cpu)));
        let e = lstm.load_torch(ints.as_slice()).unwrap_err();
        assert!(e.to_string().contains("weight_ih_l0 must be floating point, got Int64"), "{e}");
        let nan = with("bias_hh_l0", Tensor::full([12], f64::NAN, CPU));
        let e = lstm.load_torch(nan.as_slice()).unwrap_err();
        assert!(e.to_string().contains("bias_hh_l0 holds 12 non-finite values"), "{e}");
        let undefined = with("weight_hh_l0", Tensor::new());
        assert!(lstm.load_torch(undefined.as_slice()).unwrap_err().to_string().contains("undefined"));
        assert!(lstm.load_torch(good.as_slice()).is_ok());
        let e = lstm.forward_t(&Tensor::new(), None, None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "lstm_layers: input is an undefined tensor");
    }
}
