//! `Conv3d`: a 3-d convolution with TensorFlow padding (Sonnet's `snt.Conv3D`).

use super::shared::{ConvCore, ConvSpec};
use super::Padding;
use crate::error::Result;
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::check_defined;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Layout of a [`Conv3d`] input. Serialised as `"NDHWC"` / `"NCDHW"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataFormat3d {
    /// `[B, D, H, W, C]`, channels last (the TensorFlow/Sonnet default).
    #[default]
    #[serde(rename = "NDHWC")]
    Ndhwc,
    /// `[B, C, D, H, W]`, channels first (PyTorch's layout).
    #[serde(rename = "NCDHW")]
    Ncdhw,
}

/// A 3-d size given as one value for every dimension (`3`) or per dimension (`[3, 5, 5]`,
/// depth first).
pub trait IntoDims3 {
    /// The per-dimension `[d, h, w]` form.
    fn into_dims3(self) -> [i64; 3];
}

impl IntoDims3 for i64 {
    fn into_dims3(self) -> [i64; 3] {
        [self; 3]
    }
}

impl IntoDims3 for [i64; 3] {
    fn into_dims3(self) -> [i64; 3] {
        self
    }
}

/// Configuration of a [`Conv3d`] module. Per-dimension fields are `[d, h, w]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv3dConfig {
    /// Number of output channels `O` (> 0). Default 1.
    pub output_channels: i64,
    /// Kernel size `[kd, kh, kw]` (> 0). Default `[1, 1, 1]`.
    pub kernel_shape: [i64; 3],
    /// Stride (> 0). Default `[1, 1, 1]`.
    pub stride: [i64; 3],
    /// Rate (dilation, > 0); a rate > 1 with a stride > 1 is an error, as in TensorFlow.
    /// Default `[1, 1, 1]`.
    pub rate: [i64; 3],
    /// TensorFlow padding. Default [`Padding::Same`].
    pub padding: Padding,
    /// Whether to add the bias `b`. Default `true`.
    pub with_bias: bool,
    /// Input layout. Default [`DataFormat3d::Ndhwc`].
    pub data_format: DataFormat3d,
    /// Number of input channels `C`. `Some(C)` creates the variables at construction; `None`
    /// (default) creates them from the first input.
    pub input_channels: Option<i64>,
    /// Initializers by variable name (`"w"`, `"b"`). Defaults: `w` truncated normal with
    /// `std = 1 / sqrt(kd · kh · kw · C)` (Sonnet), `b` zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`, `"b"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for Conv3dConfig {
    fn default() -> Self {
        Conv3dConfig {
            output_channels: 1,
            kernel_shape: [1; 3],
            stride: [1; 3],
            rate: [1; 3],
            padding: Padding::Same,
            with_bias: true,
            data_format: DataFormat3d::Ndhwc,
            input_channels: None,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl Conv3dConfig {
    /// A config with `output_channels` outputs, kernel `kernel_shape`, and every other field
    /// at its default.
    pub fn new(output_channels: i64, kernel_shape: impl IntoDims3) -> Self {
        Conv3dConfig { output_channels, kernel_shape: kernel_shape.into_dims3(), ..Default::default() }
    }
    /// Sets the stride.
    pub fn with_stride(mut self, stride: impl IntoDims3) -> Self {
        self.stride = stride.into_dims3();
        self
    }
    /// Sets the rate (dilation).
    pub fn with_rate(mut self, rate: impl IntoDims3) -> Self {
        self.rate = rate.into_dims3();
        self
    }
    /// Sets the padding.
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    /// Sets whether the bias is used.
    pub fn with_bias(mut self, with_bias: bool) -> Self {
        self.with_bias = with_bias;
        self
    }
    /// Sets the input layout.
    pub fn with_data_format(mut self, data_format: DataFormat3d) -> Self {
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

/// A 3-d convolution: `x [B, D, H, W, C]` (or `[B, C, D, H, W]` with
/// [`DataFormat3d::Ncdhw`]) to `[B, D', H', W', O]`, each output size from
/// [`Padding::output_size`] (SAME's odd padding element after, as TensorFlow). Variables `w`
/// `[kd, kh, kw, C, O]` (TensorFlow layout) and `b [O]`, as in Sonnet.
pub struct Conv3d {
    core: ConvCore,
    config: Conv3dConfig,
}

impl std::fmt::Debug for Conv3d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv3d")
            .field("scope", &self.core.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl Conv3d {
    /// Builds a `Conv3d` in a new child scope `conv_3d` (or `conv_3d_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a non-positive size, stride or rate, a rate
    /// > 1 with a stride > 1, or an initializer/regularizer key other than `w` (and `b` with a bias).
    pub fn new(parent: &Scope, config: Conv3dConfig) -> Result<Self> {
        Self::named(parent, "conv_3d", config)
    }

    /// Like [`Conv3d::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: Conv3dConfig) -> Result<Self> {
        let c = &config;
        let spec = ConvSpec {
            kernel: c.kernel_shape.to_vec(),
            stride: c.stride.to_vec(),
            rate: c.rate.to_vec(),
            padding: c.padding,
            channels_last: c.data_format == DataFormat3d::Ndhwc,
            names: &["D", "H", "W"],
            output_channels: c.output_channels,
            input_channels: c.input_channels,
            transpose: false,
            with_bias: c.with_bias,
            initializers: c.initializers.clone(),
            regularizers: c.regularizers.clone(),
        };
        Ok(Conv3d { core: ConvCore::new(parent.child(name)?, spec)?, config })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv3dConfig {
        &self.config
    }

    /// Number of input channels `C`, once known.
    pub fn input_channels(&self) -> Option<i64> {
        self.core.input_channels()
    }

    /// The kernel `w [kd, kh, kw, C, O]`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) before the first call of a lazy `Conv3d`.
    pub fn w(&self) -> Result<&Tensor> {
        self.core.w()
    }

    /// The bias `b [O]` (`None` without a bias).
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) before the first call of a lazy `Conv3d`.
    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.core.b()
    }

    /// Applies the convolution: `[B, D, H, W, C]` → `[B, D', H', W', O]` (channels first
    /// with `NCDHW`). The first call of a lazy `Conv3d` creates `w` and `b`.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) naming the module and both shapes if `x` is not
    /// rank 5, has another channel count than the variables, is smaller than the dilated
    /// kernel with `VALID` padding (or empty), or is of another kind than the store;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `x` is undefined.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_defined(self.core.scope.path(), "input", x)?;
        self.core.convolve(x)
    }
}

impl Module for Conv3d {
    fn scope(&self) -> &Scope {
        &self.core.scope
    }
    fn is_built(&self) -> bool {
        self.core.is_built()
    }
}

impl Forward for Conv3d {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Store};
    use tch::{Device, Kind};

    #[test]
    fn a_kernel_of_ones_sums_each_window() {
        // VALID 2x2x2 kernel of ones on a 2x2x2 cube of 1..=8: one output, 36.
        let store = Store::cpu();
        let config = Conv3dConfig::new(1, 2)
            .with_padding(Padding::Valid)
            .with_input_channels(1)
            .with_initializer("w", Initializer::Ones);
        let conv = Conv3d::new(&store.root(), config).unwrap();
        assert_eq!(conv.w().unwrap().size(), [2, 2, 2, 1, 1]);
        let x = Tensor::arange_start(1, 9, (Kind::Float, Device::Cpu)).view([1, 2, 2, 2, 1]);
        let y = conv.forward(&x).unwrap();
        assert_eq!(y.size(), [1, 1, 1, 1, 1]);
        assert_eq!(y.double_value(&[0, 0, 0, 0, 0]), 36.0);
        let e = conv.forward(&Tensor::zeros([1, 2, 2, 2], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "conv_3d: input must be [B, D, H, W, 1], got [1, 2, 2, 2]");
        assert!(matches!(conv.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
