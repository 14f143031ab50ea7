//! `ConvLstm`: the convolutional LSTM of Shi et al. 2015 in one or two spatial dimensions
//! (Sonnet `Conv1DLSTM` / `Conv2DLSTM`, Keras `ConvLSTM1D` / `ConvLSTM2D`), channels last,
//! SAME padding, stride 1, optional peepholes.

use crate::cell::VarMaker;
use crate::core::{InputProjection, RnnCore};
use crate::state::{with_batch, State, StateSize};
use couplet_modules::{Error, Initializer, Mode, Module, Regularizer, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{TchError, Tensor};

/// Configuration of a [`ConvLstm`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvLstmConfig {
    /// One input row: the spatial sizes then the channels, `[W, C]` (1-D) or `[H, W, C]` (2-D).
    /// Required (the state `[B, .., F]` is built before the first input).
    pub input_shape: Vec<i64>,
    /// The number of output channels `F` (Keras `filters`). Required.
    pub output_channels: i64,
    /// The kernel's spatial sizes, one per spatial dimension (each > 0; even sizes pad as TF's
    /// SAME: the extra row after). Required.
    pub kernel_shape: Vec<i64>,
    /// Whether the input convolution has a bias `[4F]`. Default `true`.
    #[serde(default = "crate::cell::yes")]
    pub use_bias: bool,
    /// Added to the forget gate's pre-activation at every step (Sonnet's `forget_bias`; Keras
    /// has 0 and initialises the forget bias to 1 instead). Default 1.
    #[serde(default = "one")]
    pub forget_bias: f64,
    /// Peephole connections (Shi et al.): `w_i_diag ⊙ c`, `w_f_diag ⊙ c` (previous cell) in the
    /// input and forget gates, `w_o_diag ⊙ c'` in the output gate, each weight `[.., F]` of the
    /// state's shape. Default `false` (Sonnet and Keras have none).
    #[serde(default)]
    pub peepholes: bool,
    /// Per-variable initializers by name (`weight_ih`, `weight_hh`, `bias`, `w_*_diag`).
    /// Default: U(−1/√(C·k), 1/√(C·k)) for the weights (`C·k` their fan in) and zeros for the
    /// bias and peepholes.
    #[serde(default)]
    pub initializers: BTreeMap<String, Initializer>,
    /// Per-variable regularizers by name. Default none.
    #[serde(default)]
    pub regularizers: BTreeMap<String, Regularizer>,
}

fn one() -> f64 {
    1.0
}

impl ConvLstmConfig {
    /// A 1-D convolutional LSTM (Sonnet `Conv1DLSTM`, Keras `ConvLSTM1D`): inputs `[B, T, W, C]`.
    pub fn conv1d(input_shape: [i64; 2], output_channels: i64, kernel: i64) -> Self {
        Self::new(input_shape.to_vec(), output_channels, vec![kernel])
    }

    /// A 2-D convolutional LSTM (Sonnet `Conv2DLSTM`, Keras `ConvLSTM2D`): inputs
    /// `[B, T, H, W, C]`.
    pub fn conv2d(input_shape: [i64; 3], output_channels: i64, kernel: [i64; 2]) -> Self {
        Self::new(input_shape.to_vec(), output_channels, kernel.to_vec())
    }

    fn new(input_shape: Vec<i64>, output_channels: i64, kernel_shape: Vec<i64>) -> Self {
        ConvLstmConfig {
            input_shape,
            output_channels,
            kernel_shape,
            use_bias: true,
            forget_bias: 1.0,
            peepholes: false,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }

    /// Sets whether the input convolution has a bias.
    pub fn with_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self
    }
    /// Sets the forget bias.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Self {
        self.forget_bias = forget_bias;
        self
    }
    /// Turns peephole connections on or off.
    pub fn with_peepholes(mut self, peepholes: bool) -> Self {
        self.peepholes = peepholes;
        self
    }
    /// Sets the initializer of one variable.
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
}

/// A convolutional LSTM core. With `x [B, .., C]` channels last and `*` the SAME convolution
/// (stride 1) over the spatial dimensions:
///
/// `[i, f, g, o] = W_ih * x + b + W_hh * h` (gate order `i, f, g, o` along the channels),
/// `i = σ(i (+ w_i_diag ⊙ c))`, `f = σ(f + forget_bias (+ w_f_diag ⊙ c))`,
/// `c' = f ⊙ c + i ⊙ tanh(g)`, `o = σ(o (+ w_o_diag ⊙ c'))`, `h' = o ⊙ tanh(c')`;
/// output `h'`. State `State::Lstm { h, c }`, both `[B, .., F]`.
///
/// Variables (PyTorch convolution layout): `weight_ih [4F, C, k..]`, `weight_hh [4F, F, k..]`,
/// `bias [4F]` (with `use_bias`), `w_i_diag`, `w_f_diag`, `w_o_diag [.., F]` (peepholes).
/// The input convolution is an [`InputProjection`]: unrolls convolve every step's input in
/// one call.
#[derive(Debug)]
pub struct ConvLstm {
    scope: Scope,
    config: ConvLstmConfig,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Option<Tensor>,
    peepholes: Option<[Tensor; 3]>,
}

impl ConvLstm {
    /// A convolutional LSTM in a new child scope `conv_lstm` (or `conv_lstm_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the core if `input_shape` is not 2 or 3 positive sizes,
    /// `kernel_shape` does not have one positive size per spatial dimension,
    /// `output_channels <= 0`, `forget_bias` is not finite, or an initializer or regularizer
    /// key names no variable.
    pub fn new(parent: &Scope, config: ConvLstmConfig) -> Result<Self> {
        let scope = parent.child("conv_lstm")?;
        let module = scope.path();
        let c = &config;
        let spatial = c.input_shape.len().saturating_sub(1);
        if !(1..=2).contains(&spatial) || c.input_shape.iter().any(|&n| n <= 0) {
            let got = format!("{:?}", c.input_shape);
            return Err(Error::config(
                module,
                format!("input_shape must be [W, C] or [H, W, C] of sizes > 0, got {got}"),
            ));
        }
        if c.kernel_shape.len() != spatial || c.kernel_shape.iter().any(|&k| k <= 0) {
            let got = format!("{:?}", c.kernel_shape);
            return Err(Error::config(
                module,
                format!("kernel_shape must be {spatial} sizes > 0, got {got}"),
            ));
        }
        if c.output_channels <= 0 {
            return Err(Error::config(
                module,
                format!("output_channels must be > 0, got {}", c.output_channels),
            ));
        }
        if !c.forget_bias.is_finite() {
            return Err(Error::config(module, format!("forget_bias must be finite, got {}", c.forget_bias)));
        }
        let mut valid = vec!["weight_ih", "weight_hh", "bias"];
        if c.peepholes {
            valid.extend(["w_i_diag", "w_f_diag", "w_o_diag"]);
        }
        crate::cell::check_variable_keys(module, &c.initializers, &c.regularizers, &valid)?;
        let mk = VarMaker { scope: &scope, initializers: &c.initializers, regularizers: &c.regularizers };
        let (f, channels) = (c.output_channels, c.input_shape[spatial]);
        let kernel: i64 = c.kernel_shape.iter().product();
        let shape = |inputs: i64| [&[4 * f, inputs][..], &c.kernel_shape].concat();
        let uniform = |fan_in: i64| Initializer::symmetric_uniform(1.0 / (fan_in as f64).sqrt());
        let weight_ih = mk.make("weight_ih", &shape(channels), uniform(channels * kernel))?;
        let weight_hh = mk.make("weight_hh", &shape(f), uniform(f * kernel))?;
        let bias = if c.use_bias { Some(mk.make("bias", &[4 * f], Initializer::Zeros)?) } else { None };
        let peepholes = if c.peepholes {
            let state = [&c.input_shape[..spatial], &[f]].concat();
            let diag = |name: &str| mk.make(name, &state, Initializer::Zeros);
            Some([diag("w_i_diag")?, diag("w_f_diag")?, diag("w_o_diag")?])
        } else {
            None
        };
        Ok(ConvLstm { scope, config, weight_ih, weight_hh, bias, peepholes })
    }

    /// The configuration.
    pub fn config(&self) -> &ConvLstmConfig {
        &self.config
    }

    fn spatial(&self) -> usize {
        self.config.kernel_shape.len()
    }

    /// SAME convolution of channels-last `x [N, .., C]` with `weight [O, C, k..]` → `[N, .., O]`.
    fn conv(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, TchError> {
        let n = self.spatial() as i64;
        let to_first: Vec<i64> = [0, n + 1].into_iter().chain(1..=n).collect();
        let to_last: Vec<i64> = [0].into_iter().chain(2..n + 2).chain([1]).collect();
        let x = x.f_permute(to_first.as_slice())?;
        let y = match n {
            1 => x.f_conv1d_padding(weight, bias, [1], "same", [1], 1)?,
            _ => x.f_conv2d_padding(weight, bias, [1, 1], "same", [1, 1], 1)?,
        };
        y.f_permute(to_last.as_slice())
    }

    /// Checks that `x` is `[lead.., ..row]` of the store's kind.
    fn check(&self, what: &str, x: &Tensor, row: &[i64], lead: &str) -> Result<()> {
        let size = x.size();
        let fits = size.len() > row.len() && size[size.len() - row.len()..] == *row;
        if !fits || (lead == "B" && size.len() != row.len() + 1) {
            let dims = format!("{row:?}");
            return Err(Error::shape(
                self.name(),
                what,
                format!("[{lead}, {}]", &dims[1..dims.len() - 1]),
                size,
            ));
        }
        self.scope.check_kind(what, x)
    }
}

impl Module for ConvLstm {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for ConvLstm {
    /// One step: `input [B, .., C]`, `State::Lstm { h, c }` (`[B, .., F]`) → `(h', new state)`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the core if the input is not `[B, ..input_shape]` of the
    /// store's kind, or the state does not have the core's leaves.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let projected = self.project_inputs(input)?;
        self.step_projected(&projected, state, mode)
    }

    /// `[.., F]`: the input's spatial sizes with `F` channels.
    fn output_shape(&self) -> Vec<i64> {
        let c = &self.config;
        [&c.input_shape[..self.spatial()], &[c.output_channels]].concat()
    }

    fn state_size(&self) -> StateSize {
        StateSize::Lstm { h: self.output_shape(), c: self.output_shape() }
    }

    /// The input convolution `W_ih * x + b` for every step at once.
    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for ConvLstm {
    /// `inputs [.., ..input_shape]` (any leading dimensions) → `W_ih * x + b` `[.., 4F]`.
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        self.check("inputs", inputs, &self.config.input_shape, "..")?;
        let size = inputs.size();
        let lead = size.len() - self.config.input_shape.len();
        let compute = || -> Result<Tensor, TchError> {
            let flat = inputs.f_reshape([&[-1][..], &self.config.input_shape].concat())?;
            let y = self.conv(&flat, &self.weight_ih, self.bias.as_ref())?;
            y.f_reshape([&size[..lead], &y.size()[1..]].concat())
        };
        compute().ctx(self.name())
    }

    fn step_projected(&self, projected: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let f = self.config.output_channels;
        let mut gates_row = self.output_shape();
        if let Some(last) = gates_row.last_mut() {
            *last = 4 * f;
        }
        self.check("projected input", projected, &gates_row, "B")?;
        let batch = projected.size()[0];
        let leaf = with_batch(batch, &self.output_shape());
        let (h, c) = match state {
            State::Lstm { h, c } if h.size() == leaf && c.size() == leaf => (h, c),
            other => {
                let expected = format!("State::Lstm {{ h: {leaf:?}, c: {leaf:?} }}");
                return Err(Error::shape(self.name(), "state", expected, other.size()));
            }
        };
        let forget_bias = self.config.forget_bias;
        let compute = || -> Result<(Tensor, Tensor), TchError> {
            let gates = projected.f_add(&self.conv(h, &self.weight_hh, None)?)?.f_chunk(4, -1)?;
            let peep = |k: usize, c: &Tensor, gate: &Tensor| match &self.peepholes {
                Some(w) => gate.f_add(&w[k].f_mul(c)?),
                None => Ok(gate.shallow_clone()),
            };
            let i = peep(0, c, &gates[0])?.f_sigmoid()?;
            let f = peep(1, c, &gates[1].f_add_scalar(forget_bias)?)?.f_sigmoid()?;
            let c_new = f.f_mul(c)?.f_addcmul(&i, &gates[2].f_tanh()?)?;
            let o = peep(2, &c_new, &gates[3])?.f_sigmoid()?;
            Ok((o.f_mul(&c_new.f_tanh()?)?, c_new))
        };
        let (h_new, c_new) = compute().ctx(self.name())?;
        Ok((h_new.shallow_clone(), State::Lstm { h: h_new, c: c_new }))
    }
}
