//! `Conv1dTranspose`: TensorFlow's `conv1d_transpose` (Sonnet's `snt.Conv1DTranspose`).

use super::shared::{ConvCore, ConvSpec};
use super::{DataFormat1d, Padding};
use crate::error::{Error, Result};
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::check_defined;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Configuration of a [`Conv1dTranspose`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv1dTransposeConfig {
    /// Number of output channels `O` (> 0). Default 1.
    pub output_channels: i64,
    /// Output width `W'` (> 0). `None` (default) gives `SAME` `in · stride` and `VALID`
    /// `(in - 1) · stride + k` ([`Padding::transpose_output_size`]). A given width must be
    /// one that the forward convolution maps back to the input's width, as TensorFlow requires.
    pub output_shape: Option<i64>,
    /// Kernel width `k` (> 0). Default 1.
    pub kernel_shape: i64,
    /// Stride (> 0): the upsampling factor. Default 1.
    pub stride: i64,
    /// TensorFlow padding of the forward convolution being transposed. Default
    /// [`Padding::Same`].
    pub padding: Padding,
    /// Whether to add the bias `b`. Default `true`.
    pub with_bias: bool,
    /// Input (and output) layout. Default [`DataFormat1d::Nwc`].
    pub data_format: DataFormat1d,
    /// Number of input channels `C`. `Some(C)` creates the variables at construction; `None`
    /// (default) creates them from the first input.
    pub input_channels: Option<i64>,
    /// Initializers by variable name (`"w"`, `"b"`). Defaults: `w` truncated normal with
    /// `std = 1 / sqrt(k · C)` (Sonnet), `b` zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`, `"b"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for Conv1dTransposeConfig {
    fn default() -> Self {
        Conv1dTransposeConfig {
            output_channels: 1,
            output_shape: None,
            kernel_shape: 1,
            stride: 1,
            padding: Padding::Same,
            with_bias: true,
            data_format: DataFormat1d::Nwc,
            input_channels: None,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl Conv1dTransposeConfig {
    /// A config with `output_channels` outputs, kernel width `kernel_shape`, and every other
    /// field at its default.
    pub fn new(output_channels: i64, kernel_shape: i64) -> Self {
        Conv1dTransposeConfig { output_channels, kernel_shape, ..Default::default() }
    }
    /// Sets the output width.
    pub fn with_output_shape(mut self, output_shape: i64) -> Self {
        self.output_shape = Some(output_shape);
        self
    }
    /// Sets the stride.
    pub fn with_stride(mut self, stride: i64) -> Self {
        self.stride = stride;
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

/// TensorFlow's 1-d transposed convolution (the gradient of a [`Conv1d`](crate::Conv1d) with
/// respect to its input): `x [B, W, C]` (or `[B, C, W]` with [`DataFormat1d::Ncw`]) to
/// `[B, W', O]`. Variables `w [k, O, C]` (TensorFlow's `conv1d_transpose` layout) and
/// `b [O]`, as in Sonnet.
pub struct Conv1dTranspose {
    core: ConvCore,
    config: Conv1dTransposeConfig,
}

impl std::fmt::Debug for Conv1dTranspose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv1dTranspose")
            .field("scope", &self.core.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl Conv1dTranspose {
    /// Builds a `Conv1dTranspose` in a new child scope `conv_1d_transpose` (or
    /// `conv_1d_transpose_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-positive size, stride or output width, or an
    /// initializer/regularizer key other than `w` (and `b` with a bias).
    pub fn new(parent: &Scope, config: Conv1dTransposeConfig) -> Result<Self> {
        Self::named(parent, "conv_1d_transpose", config)
    }

    /// Like [`Conv1dTranspose::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: Conv1dTransposeConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        if let Some(o) = config.output_shape.filter(|&o| o <= 0) {
            return Err(Error::config(scope.path(), format!("output_shape must be > 0, got {o}")));
        }
        let c = &config;
        let spec = ConvSpec {
            kernel: vec![c.kernel_shape],
            stride: vec![c.stride],
            rate: vec![1],
            padding: c.padding,
            channels_last: c.data_format == DataFormat1d::Nwc,
            names: &["W"],
            output_channels: c.output_channels,
            input_channels: c.input_channels,
            transpose: true,
            with_bias: c.with_bias,
            initializers: c.initializers.clone(),
            regularizers: c.regularizers.clone(),
        };
        Ok(Conv1dTranspose { core: ConvCore::new(scope, spec)?, config })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv1dTransposeConfig {
        &self.config
    }

    /// Number of input channels `C`, once known.
    pub fn input_channels(&self) -> Option<i64> {
        self.core.input_channels()
    }

    /// The kernel `w [k, O, C]`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy module.
    pub fn w(&self) -> Result<&Tensor> {
        self.core.w()
    }

    /// The bias `b [O]` (`None` without a bias).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy module.
    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.core.b()
    }

    /// Applies the transposed convolution: `[B, W, C]` → `[B, W', O]` (channels first with
    /// `NCW`). The first call of a lazy module creates `w` and `b` from `x`'s channel count.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not rank 3, has another channel count than the variables,
    /// width 0, or another kind than the store; [`Error::InvalidArgument`] if `x` is
    /// undefined or the configured `output_shape` does not map back to `x`'s width.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_defined(self.core.scope.path(), "input", x)?;
        self.core.convolve_transpose(x, self.config.output_shape.as_ref().map(std::slice::from_ref))
    }
}

impl Module for Conv1dTranspose {
    fn scope(&self) -> &Scope {
        &self.core.scope
    }
    fn is_built(&self) -> bool {
        self.core.is_built()
    }
}

impl Forward for Conv1dTranspose {
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
    fn stride_two_valid_by_hand() {
        // x = [1, 2], kernel of ones k=3, stride 2, VALID: each input spreads over 3
        // positions at 2i: [1, 1, 1 + 2, 2, 2] = [1, 1, 3, 2, 2].
        let store = Store::cpu();
        let config = Conv1dTransposeConfig::new(1, 3)
            .with_stride(2)
            .with_padding(Padding::Valid)
            .with_input_channels(1)
            .with_initializer("w", Initializer::Ones);
        let conv = Conv1dTranspose::new(&store.root(), config).unwrap();
        let y = conv.forward(&Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2, 1])).unwrap();
        assert_eq!(Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(), [1.0, 1.0, 3.0, 2.0, 2.0]);
        let e = conv.forward(&Tensor::zeros([1, 2], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "conv_1d_transpose: input must be [B, W, 1], got [1, 2]");
        let e = Conv1dTranspose::new(&store.root(), Conv1dTransposeConfig::new(1, 3).with_output_shape(0))
            .unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(matches!(conv.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
