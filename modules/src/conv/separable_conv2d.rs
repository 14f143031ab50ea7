//! `SeparableConv2d`: a depthwise convolution followed by a 1x1 (pointwise) one (Sonnet's
//! `snt.SeparableConv2D`, TensorFlow's `separable_conv2d`).

use super::conv2d::{Conv2d, Conv2dConfig};
use super::depthwise_conv2d::{DepthwiseConv2d, DepthwiseConv2dConfig};
use super::{DataFormat2d, IntoDims2, Padding};
use crate::error::Result;
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`SeparableConv2d`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeparableConv2dConfig {
    /// Number of output channels `O` (> 0). Default 1.
    pub output_channels: i64,
    /// Depthwise kernel size `[kh, kw]` (> 0). Default `[1, 1]`.
    pub kernel_shape: [i64; 2],
    /// Depthwise channel multiplier `M` (> 0). Default 1.
    pub channel_multiplier: i64,
    /// Depthwise stride (> 0). Default `[1, 1]`.
    pub stride: [i64; 2],
    /// Depthwise rate (dilation, > 0). Default `[1, 1]`.
    pub rate: [i64; 2],
    /// Depthwise TensorFlow padding. Default [`Padding::Same`].
    pub padding: Padding,
    /// Whether to add the bias `b` (after the pointwise step). Default `true`.
    pub with_bias: bool,
    /// Input layout. Default [`DataFormat2d::Nhwc`].
    pub data_format: DataFormat2d,
    /// Number of input channels `C`. `Some(C)` creates the variables at construction; `None`
    /// (default) creates them from the first input.
    pub input_channels: Option<i64>,
    /// Initializer of the depthwise kernel. Default as [`DepthwiseConv2dConfig`].
    pub w_dw_init: Option<Initializer>,
    /// Initializer of the pointwise kernel. Default as [`Conv2dConfig`] (`1 / sqrt(C · M)`).
    pub w_pw_init: Option<Initializer>,
}

impl Default for SeparableConv2dConfig {
    fn default() -> Self {
        SeparableConv2dConfig {
            output_channels: 1,
            kernel_shape: [1, 1],
            channel_multiplier: 1,
            stride: [1, 1],
            rate: [1, 1],
            padding: Padding::Same,
            with_bias: true,
            data_format: DataFormat2d::Nhwc,
            input_channels: None,
            w_dw_init: None,
            w_pw_init: None,
        }
    }
}

impl SeparableConv2dConfig {
    /// A config with `output_channels` outputs, depthwise kernel `kernel_shape`, and every
    /// other field at its default.
    pub fn new(output_channels: i64, kernel_shape: impl IntoDims2) -> Self {
        SeparableConv2dConfig {
            output_channels,
            kernel_shape: kernel_shape.into_dims2(),
            ..Default::default()
        }
    }
    /// Sets the channel multiplier.
    pub fn with_channel_multiplier(mut self, channel_multiplier: i64) -> Self {
        self.channel_multiplier = channel_multiplier;
        self
    }
    /// Sets the depthwise stride.
    pub fn with_stride(mut self, stride: impl IntoDims2) -> Self {
        self.stride = stride.into_dims2();
        self
    }
    /// Sets the depthwise rate.
    pub fn with_rate(mut self, rate: impl IntoDims2) -> Self {
        self.rate = rate.into_dims2();
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
    pub fn with_data_format(mut self, data_format: DataFormat2d) -> Self {
        self.data_format = data_format;
        self
    }
    /// Sets the input channels, so variables are created at construction.
    pub fn with_input_channels(mut self, input_channels: i64) -> Self {
        self.input_channels = Some(input_channels);
        self
    }
}

/// A separable 2-d convolution: a [`DepthwiseConv2d`] (kernel `[kh, kw]`, multiplier `M`,
/// no bias) from `[B, H, W, C]` to `[B, H', W', C · M]`, then a 1x1 [`Conv2d`] to
/// `[B, H', W', O]` with the bias, as TensorFlow's `separable_conv2d`. Variables
/// `separable_conv_2d/depthwise_conv_2d/w [kh, kw, C, M]` (Sonnet's `w_dw`) and
/// `separable_conv_2d/conv_2d/w [1, 1, C · M, O]`, `../b [O]` (Sonnet's `w_pw`, `b`).
pub struct SeparableConv2d {
    scope: Scope,
    depthwise: DepthwiseConv2d,
    pointwise: Conv2d,
}

impl std::fmt::Debug for SeparableConv2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeparableConv2d")
            .field("scope", &self.scope.path())
            .field("depthwise", &self.depthwise)
            .field("pointwise", &self.pointwise)
            .finish()
    }
}

impl SeparableConv2d {
    /// Builds a `SeparableConv2d` in a new child scope `separable_conv_2d` (or
    /// `separable_conv_2d_1`, …) of `parent`.
    ///
    /// # Errors
    /// The [`DepthwiseConv2d::new`] and [`Conv2d::new`] configuration errors.
    pub fn new(parent: &Scope, config: SeparableConv2dConfig) -> Result<Self> {
        let scope = parent.child("separable_conv_2d")?;
        let c = config;
        let mut dw = DepthwiseConv2dConfig::new(c.kernel_shape)
            .with_channel_multiplier(c.channel_multiplier)
            .with_stride(c.stride)
            .with_rate(c.rate)
            .with_padding(c.padding)
            .with_bias(false)
            .with_data_format(c.data_format);
        if let Some(i) = c.input_channels {
            dw = dw.with_input_channels(i);
        }
        if let Some(init) = c.w_dw_init {
            dw = dw.with_initializer("w", init);
        }
        let depthwise = DepthwiseConv2d::new(&scope, dw)?;
        let mut pw = Conv2dConfig::new(c.output_channels, 1)
            .with_padding(Padding::Valid)
            .with_bias(c.with_bias)
            .with_data_format(c.data_format);
        if let Some(i) = c.input_channels.and_then(|i| i.checked_mul(c.channel_multiplier)) {
            pw = pw.with_input_channels(i);
        }
        if let Some(init) = c.w_pw_init {
            pw = pw.with_initializer("w", init);
        }
        let pointwise = Conv2d::new(&scope, pw)?;
        Ok(SeparableConv2d { scope, depthwise, pointwise })
    }

    /// The depthwise step.
    pub fn depthwise(&self) -> &DepthwiseConv2d {
        &self.depthwise
    }

    /// The pointwise (1x1) step, with the bias.
    pub fn pointwise(&self) -> &Conv2d {
        &self.pointwise
    }

    /// Applies both steps: `[B, H, W, C]` → `[B, H', W', O]` (channels first with `NCHW`).
    ///
    /// # Errors
    /// As [`DepthwiseConv2d::forward`] (every input check happens there).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.pointwise.forward(&self.depthwise.forward(x)?)
    }
}

impl Module for SeparableConv2d {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.depthwise, &self.pointwise]
    }
}

impl Forward for SeparableConv2d {
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
    fn variables_follow_the_two_steps() {
        let store = Store::cpu();
        let conv =
            SeparableConv2d::new(&store.root(), SeparableConv2dConfig::new(5, 3).with_channel_multiplier(2))
                .unwrap();
        let y = conv.forward(&Tensor::zeros([2, 6, 6, 3], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(y.size(), [2, 6, 6, 5]);
        let vars: Vec<(String, Vec<i64>)> =
            conv.variables().unwrap().iter().map(|v| (v.name().to_string(), v.tensor().size())).collect();
        assert_eq!(
            vars,
            [
                ("separable_conv_2d/depthwise_conv_2d/w".to_string(), vec![3, 3, 3, 2]),
                ("separable_conv_2d/conv_2d/w".to_string(), vec![1, 1, 6, 5]),
                ("separable_conv_2d/conv_2d/b".to_string(), vec![5]),
            ]
        );
    }
}
