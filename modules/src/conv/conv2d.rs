//! `Conv2d`: a 2-d convolution with TensorFlow padding (Sonnet's `snt.Conv2D`).

use super::shared::{ConvCore, ConvSpec};
use super::{dims2, DataFormat2d, IntoDims2, Padding};
use crate::error::Result;
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Configuration of a [`Conv2d`] module. Per-dimension fields are `[h, w]`; in JSON they may
/// also be a single integer for both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv2dConfig {
    /// Number of output channels `O` (> 0). Default 1.
    pub output_channels: i64,
    /// Kernel size `[kh, kw]` (> 0). Default `[1, 1]`.
    #[serde(deserialize_with = "dims2")]
    pub kernel_shape: [i64; 2],
    /// Stride `[sh, sw]` (> 0). Default `[1, 1]`.
    #[serde(deserialize_with = "dims2")]
    pub stride: [i64; 2],
    /// Rate (dilation) `[rh, rw]` (> 0); a rate > 1 in any dimension with a stride > 1 in any
    /// dimension is an error, as in TensorFlow. Default `[1, 1]`.
    #[serde(deserialize_with = "dims2")]
    pub rate: [i64; 2],
    /// TensorFlow padding. Default [`Padding::Same`].
    pub padding: Padding,
    /// Whether to add the bias `b`. Default `true`.
    pub with_bias: bool,
    /// Input layout. Default [`DataFormat2d::Nhwc`].
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

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            output_channels: 1,
            kernel_shape: [1, 1],
            stride: [1, 1],
            rate: [1, 1],
            padding: Padding::Same,
            with_bias: true,
            data_format: DataFormat2d::Nhwc,
            input_channels: None,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl Conv2dConfig {
    /// A config with `output_channels` outputs, kernel `kernel_shape` (`3` or `[3, 5]`), and
    /// every other field at its default.
    pub fn new(output_channels: i64, kernel_shape: impl IntoDims2) -> Self {
        Conv2dConfig { output_channels, kernel_shape: kernel_shape.into_dims2(), ..Default::default() }
    }
    /// Sets the stride (`2` or `[2, 1]`).
    pub fn with_stride(mut self, stride: impl IntoDims2) -> Self {
        self.stride = stride.into_dims2();
        self
    }
    /// Sets the rate (dilation, `2` or `[2, 1]`).
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

/// A 2-d convolution: `x [B, H, W, C]` (or `[B, C, H, W]` with [`DataFormat2d::Nchw`]) to
/// `[B, H', W', O]` (or `[B, O, H', W']`), with `H'`, `W'` from [`Padding::output_size`].
/// Variables `w [kh, kw, C, O]` (TensorFlow layout) and `b [O]`, as in Sonnet.
pub struct Conv2d {
    core: ConvCore,
    config: Conv2dConfig,
}

impl std::fmt::Debug for Conv2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv2d")
            .field("scope", &self.core.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl Conv2d {
    /// Builds a `Conv2d` in a new child scope `conv_2d` (or `conv_2d_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a non-positive size, stride or rate, a rate
    /// > 1 with a stride > 1, or an initializer/regularizer key other than `w` (and `b` with a bias).
    pub fn new(parent: &Scope, config: Conv2dConfig) -> Result<Self> {
        Self::named(parent, "conv_2d", config)
    }

    /// Like [`Conv2d::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: Conv2dConfig) -> Result<Self> {
        let c = &config;
        let spec = ConvSpec {
            kernel: c.kernel_shape.to_vec(),
            stride: c.stride.to_vec(),
            rate: c.rate.to_vec(),
            padding: c.padding,
            channels_last: c.data_format == DataFormat2d::Nhwc,
            names: &["H", "W"],
            output_channels: c.output_channels,
            input_channels: c.input_channels,
            transpose: false,
            with_bias: c.with_bias,
            initializers: c.initializers.clone(),
            regularizers: c.regularizers.clone(),
        };
        Ok(Conv2d { core: ConvCore::new(parent.child(name)?, spec)?, config })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
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

    /// The kernel `w [kh, kw, C, O]`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) before the first call of a lazy `Conv2d`.
    pub fn w(&self) -> Result<&Tensor> {
        self.core.w()
    }

    /// The bias `b [O]` (`None` without a bias).
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) before the first call of a lazy `Conv2d`.
    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.core.b()
    }

    /// Applies the convolution: `[B, H, W, C]` → `[B, H', W', O]` (channels first with
    /// `NCHW`). The first call of a lazy `Conv2d` creates `w` and `b` from `x`'s channel count.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) naming the module and both shapes if `x` is not
    /// rank 4, has another channel count than the variables
    /// (`"conv_2d: input must be [B, H, W, 3], got [2, 5, 5, 4]"`), is smaller than the
    /// dilated kernel `(k - 1) · rate + 1` with `VALID` padding (or has an empty spatial
    /// dimension), or is of another kind than the store.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.core.convolve(x)
    }
}

impl Module for Conv2d {
    fn scope(&self) -> &Scope {
        &self.core.scope
    }
    fn is_built(&self) -> bool {
        self.core.is_built()
    }
}

impl Forward for Conv2d {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Store};
    use tch::{Device, Kind};

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    #[test]
    fn output_shapes_for_padding_stride_and_rate() {
        let store = Store::cpu();
        let x = Tensor::zeros([2, 7, 6, 3], CPU);
        // (config, expected output shape), sizes from Padding::output_size's table.
        let cases = [
            (Conv2dConfig::new(5, [4, 3]), [2, 7, 6, 5]),
            (Conv2dConfig::new(5, [4, 3]).with_stride(2), [2, 4, 3, 5]),
            (Conv2dConfig::new(5, [4, 3]).with_stride([2, 1]), [2, 4, 6, 5]),
            (Conv2dConfig::new(5, [4, 3]).with_padding(Padding::Valid), [2, 4, 4, 5]),
            (Conv2dConfig::new(5, [4, 3]).with_padding(Padding::Valid).with_stride(2), [2, 2, 2, 5]),
            (Conv2dConfig::new(5, [4, 3]).with_padding(Padding::Valid).with_rate(2), [2, 1, 2, 5]),
            (Conv2dConfig::new(5, 3).with_rate([1, 2]), [2, 7, 6, 5]),
        ];
        for (config, expected) in cases {
            let conv = Conv2d::new(&store.root(), config.clone()).unwrap();
            assert_eq!(conv.forward(&x).unwrap().size(), expected, "{config:?}");
        }
    }

    #[test]
    fn hand_worked_sums_with_asymmetric_padding() {
        // 3x3 input 1..=9, 2x2 kernel of ones, SAME stride 1: pad (0, 1) in both dimensions.
        let store = Store::cpu();
        let conv = Conv2d::new(
            &store.root(),
            Conv2dConfig::new(1, 2)
                .with_input_channels(1)
                .with_initializer("w", Initializer::Ones)
                .with_initializer("b", Initializer::Constant { value: 0.5 }),
        )
        .unwrap();
        let x = Tensor::arange_start(1, 10, CPU).view([1, 3, 3, 1]);
        let y = Vec::<f32>::try_from(conv.forward(&x).unwrap().flatten(0, -1)).unwrap();
        #[rustfmt::skip]
        let expected = [12.5, 16.5, 9.5,
                        24.5, 28.5, 15.5,
                        15.5, 17.5, 9.5];
        assert_eq!(y, expected);
    }

    #[test]
    fn lazy_build_names_shapes_and_layouts() {
        let store = Store::cpu();
        let conv = Conv2d::new(&store.root(), Conv2dConfig::new(4, [3, 2])).unwrap();
        assert!(!conv.is_built());
        assert!(matches!(conv.variables(), Err(Error::NotBuilt { .. })));
        let _ = conv.forward(&Tensor::zeros([1, 5, 5, 3], CPU)).unwrap();
        let names: Vec<_> = conv.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["conv_2d/w", "conv_2d/b"]);
        assert_eq!(conv.w().unwrap().size(), [3, 2, 3, 4]);
        assert_eq!(conv.b().unwrap().unwrap().size(), [4]);
        assert_eq!(conv.input_channels(), Some(3));

        let nchw = Conv2d::new(
            &store.root(),
            Conv2dConfig::new(4, 3)
                .with_bias(false)
                .with_data_format(DataFormat2d::Nchw)
                .with_input_channels(2),
        )
        .unwrap();
        assert!(nchw.is_built());
        let names: Vec<_> = nchw.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["conv_2d_1/w"]);
        assert!(nchw.b().unwrap().is_none());
        assert_eq!(nchw.forward(&Tensor::zeros([2, 2, 5, 7], CPU)).unwrap().size(), [2, 4, 5, 7]);
    }

    #[test]
    fn default_init_is_sonnet_truncated_normal() {
        tch::manual_seed(0);
        let store = Store::cpu();
        let conv = Conv2d::new(&store.root(), Conv2dConfig::new(64, 3).with_input_channels(16)).unwrap();
        let w = conv.w().unwrap();
        // std = 1 / sqrt(3 · 3 · 16) = 1/12, truncated at 2 std (std of the result ≈ 0.88 / 12).
        let std = w.std(true).double_value(&[]);
        assert!((std - 0.8796 / 12.0).abs() < 0.003, "{std}");
        assert!(w.abs().max().double_value(&[]) <= 2.0 / 12.0 + 1e-6);
        assert_eq!(conv.b().unwrap().unwrap().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn errors_name_the_module_and_both_shapes() {
        let store = Store::cpu();
        let conv = Conv2d::new(&store.root(), Conv2dConfig::new(2, 3).with_input_channels(3)).unwrap();
        let e = conv.forward(&Tensor::zeros([2, 5, 5, 4], CPU)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }));
        assert_eq!(e.to_string(), "conv_2d: input must be [B, H, W, 3], got [2, 5, 5, 4]");
        let e = conv.forward(&Tensor::zeros([5, 5, 3], CPU)).unwrap_err();
        assert_eq!(e.to_string(), "conv_2d: input must be [B, H, W, 3], got [5, 5, 3]");
        let e = conv.forward(&Tensor::zeros([2, 0, 5, 3], CPU)).unwrap_err();
        assert_eq!(e.to_string(), "conv_2d: input must be [B, H >= 1, W >= 1, 3], got [2, 0, 5, 3]");
        let e = conv.forward(&Tensor::zeros([2, 5, 5, 3], (Kind::Double, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "conv_2d: input kind must be Float, got Double");

        let valid = Conv2d::new(
            &store.root(),
            Conv2dConfig::new(2, 3)
                .with_rate(2)
                .with_padding(Padding::Valid)
                .with_data_format(DataFormat2d::Nchw),
        )
        .unwrap();
        let e = valid.forward(&Tensor::zeros([2, 1, 5, 4], CPU)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "conv_2d_1: input must be [B, 1, H >= 5, W >= 5] (VALID padding, kernel_shape [3, 3], \
             rate [2, 2]), got [2, 1, 5, 4]"
        );
        assert_eq!(valid.forward(&Tensor::zeros([2, 1, 5, 5], CPU)).unwrap().size(), [2, 2, 1, 1]);
    }

    #[test]
    fn config_errors() {
        let store = Store::cpu();
        let e = Conv2d::new(&store.root(), Conv2dConfig::new(2, 3).with_stride([1, 2]).with_rate([2, 1]))
            .unwrap_err();
        assert!(e.to_string().contains("cannot have stride > 1 with rate > 1"), "{e}");
        let e = Conv2d::new(&store.root(), Conv2dConfig::new(2, [3, -1])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "conv_2d_1: bad configuration: kernel_shape must be > 0 in every dimension, got [3, -1]"
        );
        let e = Conv2d::new(
            &store.root(),
            Conv2dConfig::new(2, 3).with_bias(false).with_initializer("b", Initializer::Ones),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown initializers key \"b\""), "{e}");
        let e = Conv2d::new(&store.root(), Conv2dConfig::new(0, 3)).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }

    #[test]
    fn config_from_json_accepts_int_or_pair() {
        let c: Conv2dConfig = serde_json::from_str(
            r#"{"output_channels": 8, "kernel_shape": 3, "stride": [2, 1], "padding": "VALID"}"#,
        )
        .unwrap();
        assert_eq!(c, Conv2dConfig::new(8, 3).with_stride([2, 1]).with_padding(Padding::Valid));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Conv2dConfig>(&json).unwrap(), c);
    }

    #[test]
    fn gradients_reach_w_and_b() {
        let store = Store::cpu();
        let conv = Conv2d::new(&store.root(), Conv2dConfig::new(2, 3).with_stride(2)).unwrap();
        conv.forward(&Tensor::ones([1, 5, 5, 1], CPU)).unwrap().sum(Kind::Float).backward();
        assert_eq!(conv.w().unwrap().grad().size(), [3, 3, 1, 2]);
        // 3x3 outputs per channel, so d(sum)/db = 9.
        assert_eq!(Vec::<f32>::try_from(conv.b().unwrap().unwrap().grad()).unwrap(), [9.0, 9.0]);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Conv2d>();
    }
}
