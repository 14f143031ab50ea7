//! `CausalConv1d`: a 1-d convolution whose output at time `t` sees inputs up to `t` only
//! (Keras' `Conv1D(padding="causal")`, the WaveNet convolution).

use super::conv1d::{Conv1d, Conv1dConfig};
use super::{DataFormat1d, Padding};
use crate::error::{Error, Result, TorchContext};
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::check_defined;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Configuration of a [`CausalConv1d`] module: a [`Conv1dConfig`] without the padding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CausalConv1dConfig {
    /// Number of output channels `O` (> 0). Default 1.
    pub output_channels: i64,
    /// Kernel width `k` (> 0). Default 1.
    pub kernel_shape: i64,
    /// Stride (> 0). Default 1.
    pub stride: i64,
    /// Rate (dilation, > 0); a rate > 1 with a stride > 1 is an error. Default 1.
    pub rate: i64,
    /// Whether to add the bias `b`. Default `true`.
    pub with_bias: bool,
    /// Input layout. Default [`DataFormat1d::Nwc`].
    pub data_format: DataFormat1d,
    /// Number of input channels `C`. `Some(C)` creates the variables at construction; `None`
    /// (default) creates them from the first input.
    pub input_channels: Option<i64>,
    /// Initializers by variable name (`"w"`, `"b"`). Defaults as [`Conv1dConfig`].
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`, `"b"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for CausalConv1dConfig {
    fn default() -> Self {
        CausalConv1dConfig {
            output_channels: 1,
            kernel_shape: 1,
            stride: 1,
            rate: 1,
            with_bias: true,
            data_format: DataFormat1d::Nwc,
            input_channels: None,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl CausalConv1dConfig {
    /// A config with `output_channels` outputs, kernel width `kernel_shape`, and every other
    /// field at its default.
    pub fn new(output_channels: i64, kernel_shape: i64) -> Self {
        CausalConv1dConfig { output_channels, kernel_shape, ..Default::default() }
    }
    /// Sets the stride.
    pub fn with_stride(mut self, stride: i64) -> Self {
        self.stride = stride;
        self
    }
    /// Sets the rate (dilation).
    pub fn with_rate(mut self, rate: i64) -> Self {
        self.rate = rate;
        self
    }
    /// Sets whether the bias is used.
    pub fn with_bias(mut self, with_bias: bool) -> Self {
        self.with_bias = with_bias;
        self
    }
    /// Sets the input layout.
    pub fn with_data_format(mut self, data_format: DataFormat1d) -> Self {
        self.data_format = data_format;
        self
    }
    /// Sets the input channels, so variables are created at construction.
    pub fn with_input_channels(mut self, input_channels: i64) -> Self {
        self.input_channels = Some(input_channels);
        self
    }
    /// Overrides the initializer of variable `name` (`"w"` or `"b"`).
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to variable `name` (`"w"` or `"b"`).
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

/// A causal 1-d convolution: `x [B, W, C]` (or `[B, C, W]`) is padded with `(k - 1) · rate`
/// zeros at the start of time only, then convolved `VALID`, so output `t` depends on inputs
/// `t - (k - 1) rate ..= t` and the output has `ceil(W / stride)` positions (`W` for stride
/// 1), as Keras' `padding="causal"`. Variables `w [k, C, O]` and `b [O]` as [`Conv1d`].
pub struct CausalConv1d {
    conv: Conv1d,
}

impl std::fmt::Debug for CausalConv1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CausalConv1d").field("conv", &self.conv).finish()
    }
}

impl CausalConv1d {
    /// Builds a `CausalConv1d` in a new child scope `causal_conv_1d` (or `causal_conv_1d_1`,
    /// …) of `parent`.
    ///
    /// # Errors
    /// The [`Conv1d::new`] configuration errors.
    pub fn new(parent: &Scope, config: CausalConv1dConfig) -> Result<Self> {
        let c = config;
        let conv = Conv1dConfig {
            output_channels: c.output_channels,
            kernel_shape: c.kernel_shape,
            stride: c.stride,
            rate: c.rate,
            padding: Padding::Valid,
            with_bias: c.with_bias,
            data_format: c.data_format,
            input_channels: c.input_channels,
            initializers: c.initializers,
            regularizers: c.regularizers,
        };
        Ok(CausalConv1d { conv: Conv1d::named(parent, "causal_conv_1d", conv)? })
    }

    /// The inner `VALID` convolution (its config, `w` and `b`).
    pub fn conv(&self) -> &Conv1d {
        &self.conv
    }

    /// Applies the causal convolution: `[B, W, C]` → `[B, ceil(W / stride), O]` (channels
    /// first with `NCW`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not rank 3, has width 0 or another channel count than the
    /// variables, or another kind than the store; [`Error::InvalidArgument`] if `x` is
    /// undefined.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let module = self.conv.name();
        check_defined(module, "input", x)?;
        let c = self.conv.config();
        let last = c.data_format == DataFormat1d::Nwc;
        let size = x.size();
        let channels = self.conv.input_channels().map_or("C".to_string(), |c| c.to_string());
        let expected =
            if last { format!("[B, W >= 1, {channels}]") } else { format!("[B, {channels}, W >= 1]") };
        let (w, ch) = match *size.as_slice() {
            [_, a, b] if last => (a, b),
            [_, a, b] => (b, a),
            _ => return Err(Error::shape(module, "input", expected, size)),
        };
        if w < 1 || self.conv.input_channels().is_some_and(|k| k != ch) {
            return Err(Error::shape(module, "input", expected, size));
        }
        let pad = (c.kernel_shape - 1)
            .checked_mul(c.rate)
            .ok_or_else(|| Error::invalid(module, "causal padding (k - 1) · rate overflows i64"))?;
        // constant_pad_nd lists the last dimension first: time is dim 1 (NWC) or 2 (NCW).
        let flat = if last { vec![0, 0, pad, 0] } else { vec![pad, 0] };
        self.conv.forward(&x.f_constant_pad_nd(flat).ctx(module)?)
    }
}

impl Module for CausalConv1d {
    fn scope(&self) -> &Scope {
        self.conv.scope()
    }
    fn is_built(&self) -> bool {
        self.conv.is_built()
    }
}

impl Forward for CausalConv1d {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    #[test]
    fn output_t_sees_only_the_past() {
        // Kernel of ones k=2 rate 2: y[t] = x[t - 2] + x[t], with zeros before the start.
        let store = Store::cpu();
        let config = CausalConv1dConfig::new(1, 2)
            .with_rate(2)
            .with_input_channels(1)
            .with_initializer("w", Initializer::Ones);
        let conv = CausalConv1d::new(&store.root(), config).unwrap();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0]).view([1, 5, 1]);
        let y = conv.forward(&x).unwrap();
        assert_eq!(Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(), [1.0, 2.0, 4.0, 6.0, 8.0]);
        let e = conv.forward(&Tensor::zeros([1, 5, 2], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "causal_conv_1d: input must be [B, W >= 1, 1], got [1, 5, 2]");
        assert!(matches!(
            conv.forward(&Tensor::zeros([1, 0, 1], (Kind::Float, Device::Cpu))).unwrap_err(),
            Error::Shape { .. }
        ));
        assert!(matches!(conv.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
