//! `Conv2dTranspose`: TensorFlow's `conv2d_transpose` (Sonnet's `snt.Conv2DTranspose`).

use super::shared::{ConvCore, ConvSpec};
use super::{dims2, DataFormat2d, IntoDims2, Padding};
use crate::error::{Error, Result};
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Configuration of a [`Conv2dTranspose`] module. Per-dimension fields are `[h, w]`; in JSON
/// `kernel_shape` and `stride` may also be a single integer for both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv2dTransposeConfig {
    /// Number of output channels `O` (> 0). Default 1.
    pub output_channels: i64,
    /// Output spatial size `[H', W']` (> 0). `None` (default) gives, per dimension, `SAME`
    /// `in · stride` and `VALID` `(in - 1) · stride + k` ([`Padding::transpose_output_size`]).
    /// A given size must be one that the forward convolution with the same kernel, stride and
    /// padding maps back to the input's size, as TensorFlow requires.
    pub output_shape: Option<[i64; 2]>,
    /// Kernel size `[kh, kw]` (> 0). Default `[1, 1]`.
    #[serde(deserialize_with = "dims2")]
    pub kernel_shape: [i64; 2],
    /// Stride `[sh, sw]` (> 0): the upsampling factor. Default `[1, 1]`.
    #[serde(deserialize_with = "dims2")]
    pub stride: [i64; 2],
    /// TensorFlow padding of the forward convolution being transposed. Default
    /// [`Padding::Same`].
    pub padding: Padding,
    /// Whether to add the bias `b`. Default `true`.
    pub with_bias: bool,
    /// Input (and output) layout. Default [`DataFormat2d::Nhwc`].
    pub data_format: DataFormat2d,
    /// Number of input channels `C`. `Some(C)` creates the variables at construction; `None`
    /// (default) creates them from the first input.
    pub input_channels: Option<i64>,
    /// Initializers by variable name (`"w"`, `"b"`). Defaults: `w` truncated normal with
    /// `std = 1 / sqrt(kh · kw · C)` (Sonnet), `b` zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`, `"b"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for Conv2dTransposeConfig {
    fn default() -> Self {
        Conv2dTransposeConfig {
            output_channels: 1,
            output_shape: None,
            kernel_shape: [1, 1],
            stride: [1, 1],
            padding: Padding::Same,
            with_bias: true,
            data_format: DataFormat2d::Nhwc,
            input_channels: None,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl Conv2dTransposeConfig {
    /// A config with `output_channels` outputs, kernel `kernel_shape` (`3` or `[3, 5]`), and
    /// every other field at its default.
    pub fn new(output_channels: i64, kernel_shape: impl IntoDims2) -> Self {
        Conv2dTransposeConfig {
            output_channels,
            kernel_shape: kernel_shape.into_dims2(),
            ..Default::default()
        }
    }
    /// Sets the output spatial size `[H', W']` (or one size for both).
    pub fn with_output_shape(mut self, output_shape: impl IntoDims2) -> Self {
        self.output_shape = Some(output_shape.into_dims2());
        self
    }
    /// Sets the stride (`2` or `[2, 1]`).
    pub fn with_stride(mut self, stride: impl IntoDims2) -> Self {
        self.stride = stride.into_dims2();
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

/// A transposed 2-d convolution (TensorFlow's `conv2d_transpose`: the gradient of the forward
/// convolution with the same kernel, stride and padding with respect to its input):
/// `x [B, H, W, C]` (or `[B, C, H, W]` with [`DataFormat2d::Nchw`]) to `[B, H', W', O]` (or
/// `[B, O, H', W']`). Variables `w [kh, kw, O, C]` (TensorFlow's layout for
/// `conv2d_transpose`) and `b [O]`, as in Sonnet.
pub struct Conv2dTranspose {
    core: ConvCore,
    config: Conv2dTransposeConfig,
}

impl std::fmt::Debug for Conv2dTranspose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv2dTranspose")
            .field("scope", &self.core.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl Conv2dTranspose {
    /// Builds a `Conv2dTranspose` in a new child scope `conv_2d_transpose` (or
    /// `conv_2d_transpose_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-positive size, stride or output shape, or an
    /// initializer/regularizer key other than `w` (and `b` with a bias).
    pub fn new(parent: &Scope, config: Conv2dTransposeConfig) -> Result<Self> {
        Self::named(parent, "conv_2d_transpose", config)
    }

    /// Like [`Conv2dTranspose::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: Conv2dTransposeConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        if let Some(o) = config.output_shape.filter(|o| o.iter().any(|&d| d <= 0)) {
            return Err(Error::config(
                scope.path(),
                format!("output_shape must be > 0 in every dimension, got {o:?}"),
            ));
        }
        let c = &config;
        let spec = ConvSpec {
            kernel: c.kernel_shape.to_vec(),
            stride: c.stride.to_vec(),
            rate: vec![1, 1],
            padding: c.padding,
            channels_last: c.data_format == DataFormat2d::Nhwc,
            names: &["H", "W"],
            output_channels: c.output_channels,
            input_channels: c.input_channels,
            transpose: true,
            with_bias: c.with_bias,
            initializers: c.initializers.clone(),
            regularizers: c.regularizers.clone(),
        };
        Ok(Conv2dTranspose { core: ConvCore::new(scope, spec)?, config })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dTransposeConfig {
        &self.config
    }

    /// Number of output channels `O`.
    pub fn output_channels(&self) -> i64 {
        self.config.output_channels
    }

    /// Number of input channels `C`, once known.
    pub fn input_channels(&self) -> Option<i64> {
        self.core.input_channels()
    }

    /// The kernel `w [kh, kw, O, C]`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `Conv2dTranspose`.
    pub fn w(&self) -> Result<&Tensor> {
        self.core.w()
    }

    /// The bias `b [O]` (`None` without a bias).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `Conv2dTranspose`.
    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.core.b()
    }

    /// Applies the transposed convolution: `[B, H, W, C]` → `[B, H', W', O]` (channels first
    /// with `NCHW`), `[H', W']` from the config's `output_shape` or its default. The first call
    /// of a lazy `Conv2dTranspose` creates `w` and `b` from `x`'s channel count.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module and both shapes if `x` is not rank 4, has another
    /// channel count than the variables, an empty spatial dimension, or another kind than the
    /// store; [`Error::InvalidArgument`] if the configured `output_shape` is not one that the
    /// forward convolution maps back to `x`'s spatial size.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.core.convolve_transpose(x, self.config.output_shape.as_ref().map(|o| o.as_slice()))
    }
}

impl Module for Conv2dTranspose {
    fn scope(&self) -> &Scope {
        &self.core.scope
    }
    fn is_built(&self) -> bool {
        self.core.is_built()
    }
}

impl Forward for Conv2dTranspose {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn default_output_shapes() {
        let store = Store::cpu();
        let x = Tensor::zeros([2, 3, 4, 5], CPU);
        let cases = [
            (Conv2dTransposeConfig::new(6, 3).with_stride(2), [2, 6, 8, 6]),
            (
                Conv2dTransposeConfig::new(6, [3, 2]).with_stride([2, 3]).with_padding(Padding::Valid),
                [2, 7, 11, 6],
            ),
            (Conv2dTransposeConfig::new(6, 3).with_padding(Padding::Valid), [2, 5, 6, 6]),
            (Conv2dTransposeConfig::new(6, 3).with_stride(2).with_output_shape([5, 7]), [2, 5, 7, 6]),
        ];
        for (config, expected) in cases {
            let conv = Conv2dTranspose::new(&store.root(), config.clone()).unwrap();
            assert_eq!(conv.forward(&x).unwrap().size(), expected, "{config:?}");
        }
    }

    #[test]
    fn one_dimensional_by_hand() {
        // 1 x 3 input [1, 2, 3], kernel [1, 2] of ones, stride 2 along W.
        let store = Store::cpu();
        let make = |padding, output: Option<[i64; 2]>| {
            let mut config = Conv2dTransposeConfig::new(1, [1, 2])
                .with_stride([1, 2])
                .with_padding(padding)
                .with_input_channels(1)
                .with_bias(false)
                .with_initializer("w", Initializer::Ones);
            config.output_shape = output;
            Conv2dTranspose::new(&store.root(), config).unwrap()
        };
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 1, 3, 1]);
        // Each input spreads over two outputs: [1, 1, 2, 2, 3, 3]; SAME needs no padding here.
        assert_eq!(values(&make(Padding::Same, None).forward(&x).unwrap()), [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        // SAME to width 5: the forward conv pads (0, 1), so the last column is cropped.
        let y = make(Padding::Same, Some([1, 5])).forward(&x).unwrap();
        assert_eq!(values(&y), [1.0, 1.0, 2.0, 2.0, 3.0]);
        // VALID to width 7 (the largest TF accepts): the 7th position is in no window, so 0.
        let y = make(Padding::Valid, Some([1, 7])).forward(&x).unwrap();
        assert_eq!(values(&y), [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 0.0]);
    }

    #[test]
    fn same_padding_crops_pad_before_at_the_start() {
        // 1-d along W: x = [1, 2], kernel [1, 3] = [1, 10, 100], stride 2, SAME, output 4.
        // Forward SAME conv on 4 with k=3, s=2: out 2, total pad 1 -> (0, 1), so no crop at the
        // start: full = [1, 10, 100 + 2, 20, 200] (x0 · w at 0..3, x1 · w at 2..5), cropped to
        // the first 4. With output 3: total pad 2 -> (1, 1): the first column goes too.
        let store = Store::cpu();
        let make = |output: [i64; 2]| {
            let conv = Conv2dTranspose::new(
                &store.root(),
                Conv2dTransposeConfig::new(1, [1, 3])
                    .with_stride([1, 2])
                    .with_output_shape(output)
                    .with_input_channels(1)
                    .with_bias(false),
            )
            .unwrap();
            let mut w = conv.w().unwrap().shallow_clone();
            tch::no_grad(|| w.copy_(&Tensor::from_slice(&[1.0f32, 10.0, 100.0]).view([1, 3, 1, 1])));
            conv
        };
        let x = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 1, 2, 1]);
        assert_eq!(values(&make([1, 4]).forward(&x).unwrap()), [1.0, 10.0, 102.0, 20.0]);
        assert_eq!(values(&make([1, 3]).forward(&x).unwrap()), [10.0, 102.0, 20.0]);
    }

    #[test]
    fn variables_in_tensorflow_transpose_layout() {
        tch::manual_seed(0);
        let store = Store::cpu();
        let conv = Conv2dTranspose::new(&store.root(), Conv2dTransposeConfig::new(16, [3, 2])).unwrap();
        assert!(!conv.is_built());
        let _ = conv.forward(&Tensor::zeros([1, 2, 2, 32], CPU)).unwrap();
        let names: Vec<_> = conv.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["conv_2d_transpose/w", "conv_2d_transpose/b"]);
        assert_eq!(conv.w().unwrap().size(), [3, 2, 16, 32]);
        assert_eq!(conv.b().unwrap().unwrap().size(), [16]);
        assert_eq!(conv.input_channels(), Some(32));
        // Sonnet's default std is 1 / sqrt(kh · kw · C) with C the *input* channels: 1 / sqrt(192).
        let bound = 2.0 / 192f64.sqrt();
        assert!(conv.w().unwrap().abs().max().double_value(&[]) <= bound + 1e-6);
        let std = conv.w().unwrap().std(true).double_value(&[]);
        assert!((std - 0.8796 / 192f64.sqrt()).abs() < 0.005, "{std}");
    }

    #[test]
    fn errors() {
        let store = Store::cpu();
        let conv = Conv2dTranspose::new(
            &store.root(),
            Conv2dTransposeConfig::new(2, 3).with_stride(2).with_output_shape(9),
        )
        .unwrap();
        let e = conv.forward(&Tensor::zeros([2, 3, 3, 1], CPU)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(
            e.to_string(),
            "conv_2d_transpose: output_shape [9, 9] does not fit input [2, 3, 3, 1]: a SAME convolution \
             with kernel_shape [3, 3] and stride [2, 2] maps spatial size [9, 9] to [5, 5], not [3, 3]"
        );
        assert!(!conv.is_built());
        assert_eq!(conv.forward(&Tensor::zeros([2, 5, 5, 1], CPU)).unwrap().size(), [2, 9, 9, 2]);
        let e = conv.forward(&Tensor::zeros([2, 5, 5, 2], CPU)).unwrap_err();
        assert_eq!(e.to_string(), "conv_2d_transpose: input must be [B, H, W, 1], got [2, 5, 5, 2]");
        let e = conv.forward(&Tensor::zeros([5, 5, 1], CPU)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e =
            Conv2dTranspose::new(&store.root(), Conv2dTransposeConfig::new(2, 3).with_output_shape([4, 0]))
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "conv_2d_transpose_1: bad configuration: output_shape must be > 0 in every dimension, got [4, 0]"
        );
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Conv2dTranspose>();
    }
}
