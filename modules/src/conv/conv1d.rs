//! `Conv1d`: a 1-d convolution with TensorFlow padding (Sonnet's `snt.Conv1D`).

use super::shared::{ConvCore, ConvSpec};
use super::{DataFormat1d, Padding};
use crate::error::Result;
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Configuration of a [`Conv1d`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv1dConfig {
    /// Number of output channels `O` (> 0). Default 1.
    pub output_channels: i64,
    /// Kernel width `k` (> 0). Default 1.
    pub kernel_shape: i64,
    /// Stride (> 0). Default 1.
    pub stride: i64,
    /// Rate (dilation, > 0); a rate > 1 with a stride > 1 is an error, as in TensorFlow.
    /// Default 1.
    pub rate: i64,
    /// TensorFlow padding. Default [`Padding::Same`].
    pub padding: Padding,
    /// Whether to add the bias `b`. Default `true`.
    pub with_bias: bool,
    /// Input layout. Default [`DataFormat1d::Nwc`].
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

impl Default for Conv1dConfig {
    fn default() -> Self {
        Conv1dConfig {
            output_channels: 1,
            kernel_shape: 1,
            stride: 1,
            rate: 1,
            padding: Padding::Same,
            with_bias: true,
            data_format: DataFormat1d::Nwc,
            input_channels: None,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl Conv1dConfig {
    /// A config with `output_channels` outputs, kernel width `kernel_shape`, and every other
    /// field at its default.
    pub fn new(output_channels: i64, kernel_shape: i64) -> Self {
        Conv1dConfig { output_channels, kernel_shape, ..Default::default() }
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

/// A 1-d convolution: `x [B, W, C]` (or `[B, C, W]` with [`DataFormat1d::Ncw`]) to
/// `[B, W', O]` (or `[B, O, W']`), with `W'` from [`Padding::output_size`]. Variables `w`
/// `[k, C, O]` (TensorFlow layout) and `b [O]`, as in Sonnet.
pub struct Conv1d {
    core: ConvCore,
    config: Conv1dConfig,
}

impl std::fmt::Debug for Conv1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv1d")
            .field("scope", &self.core.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl Conv1d {
    /// Builds a `Conv1d` in a new child scope `conv_1d` (or `conv_1d_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a non-positive size, stride or rate, a rate
    /// > 1 with a stride > 1, or an initializer/regularizer key other than `w` (and `b` with a bias).
    pub fn new(parent: &Scope, config: Conv1dConfig) -> Result<Self> {
        Self::named(parent, "conv_1d", config)
    }

    /// Like [`Conv1d::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: Conv1dConfig) -> Result<Self> {
        let c = &config;
        let spec = ConvSpec {
            kernel: vec![c.kernel_shape],
            stride: vec![c.stride],
            rate: vec![c.rate],
            padding: c.padding,
            channels_last: c.data_format == DataFormat1d::Nwc,
            names: &["W"],
            output_channels: c.output_channels,
            input_channels: c.input_channels,
            transpose: false,
            with_bias: c.with_bias,
            initializers: c.initializers.clone(),
            regularizers: c.regularizers.clone(),
        };
        Ok(Conv1d { core: ConvCore::new(parent.child(name)?, spec)?, config })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv1dConfig {
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

    /// The kernel `w [k, C, O]`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) before the first call of a lazy `Conv1d`.
    pub fn w(&self) -> Result<&Tensor> {
        self.core.w()
    }

    /// The bias `b [O]` (`None` without a bias).
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) before the first call of a lazy `Conv1d`.
    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.core.b()
    }

    /// Applies the convolution: `[B, W, C]` → `[B, W', O]` (channels first with `NCW`). The
    /// first call of a lazy `Conv1d` creates `w` and `b` from `x`'s channel count.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) naming the module and both shapes if `x` is not
    /// rank 3, has another channel count than the variables, is narrower than the dilated
    /// kernel `(k - 1) · rate + 1` with `VALID` padding (or has width 0), or is of another kind
    /// than the store.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.core.convolve(x)
    }
}

impl Module for Conv1d {
    fn scope(&self) -> &Scope {
        &self.core.scope
    }
    fn is_built(&self) -> bool {
        self.core.is_built()
    }
}

impl Forward for Conv1d {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Store};
    use tch::{Device, Kind};

    fn ones_conv(store: &Store, config: Conv1dConfig) -> Conv1d {
        let config = config.with_input_channels(1).with_initializer("w", Initializer::Ones);
        Conv1d::new(&store.root(), config).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn same_padding_puts_the_odd_element_at_the_end() {
        // x = 1..=6, kernel of ones k=2, SAME stride 1: total pad 1, all at the end, so
        // y[i] = x[i] + x[i+1] and the last window sees x[5] + 0 (PyTorch would pad at the start).
        let store = Store::cpu();
        let conv = ones_conv(&store, Conv1dConfig::new(1, 2));
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([1, 6, 1]);
        assert_eq!(values(&conv.forward(&x).unwrap()), [3.0, 5.0, 7.0, 9.0, 11.0, 6.0]);
        // k=3 stride 2 on 6: out 3, total pad 1 -> (0, 1): windows [1,2,3], [3,4,5], [5,6,0].
        let conv = ones_conv(&store, Conv1dConfig::new(1, 3).with_stride(2));
        assert_eq!(values(&conv.forward(&x).unwrap()), [6.0, 12.0, 11.0]);
    }

    #[test]
    fn valid_and_dilated_windows_by_hand() {
        let store = Store::cpu();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]).view([1, 7, 1]);
        // VALID k=3 stride 2: windows start at 0, 2, 4.
        let conv = ones_conv(&store, Conv1dConfig::new(1, 3).with_stride(2).with_padding(Padding::Valid));
        assert_eq!(values(&conv.forward(&x).unwrap()), [6.0, 12.0, 18.0]);
        // VALID k=2 rate 3: x[i] + x[i+3].
        let conv = ones_conv(&store, Conv1dConfig::new(1, 2).with_rate(3).with_padding(Padding::Valid));
        assert_eq!(values(&conv.forward(&x).unwrap()), [5.0, 7.0, 9.0, 11.0]);
        // SAME k=2 rate 3: total pad 3 -> (1, 2): [0+3, 1+4, 2+5, 3+6, 4+7, 5+0, 6+0].
        let conv = ones_conv(&store, Conv1dConfig::new(1, 2).with_rate(3));
        assert_eq!(values(&conv.forward(&x).unwrap()), [3.0, 5.0, 7.0, 9.0, 11.0, 5.0, 6.0]);
    }

    #[test]
    fn variables_in_tensorflow_layout_and_channels_first() {
        let store = Store::cpu();
        let conv =
            Conv1d::new(&store.root(), Conv1dConfig::new(4, 3).with_data_format(DataFormat1d::Ncw)).unwrap();
        assert!(!conv.is_built());
        assert!(matches!(conv.w(), Err(Error::NotBuilt { .. })));
        let y = conv.forward(&Tensor::zeros([2, 5, 9], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(y.size(), [2, 4, 9]);
        let names: Vec<_> = conv.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["conv_1d/w", "conv_1d/b"]);
        assert_eq!(conv.w().unwrap().size(), [3, 5, 4]);
        assert_eq!(conv.b().unwrap().unwrap().size(), [4]);
        assert_eq!(conv.input_channels(), Some(5));
        let _ = conv.forward(&Tensor::zeros([1, 5, 2], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(store.len(), 2, "a second call creates no variable");
    }

    #[test]
    fn shape_errors_name_the_module_and_both_shapes() {
        let store = Store::cpu();
        let conv = Conv1d::new(&store.root(), Conv1dConfig::new(2, 4).with_padding(Padding::Valid)).unwrap();
        let e = conv.forward(&Tensor::zeros([2, 5], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "conv_1d: input must be [B, W, C], got [2, 5]");
        let e = conv.forward(&Tensor::zeros([2, 3, 1], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }));
        assert_eq!(
            e.to_string(),
            "conv_1d: input must be [B, W >= 4, 1] (VALID padding, kernel_shape [4], rate [1]), got [2, 3, 1]"
        );
        assert!(!conv.is_built(), "a refused input builds nothing");
        let _ = conv.forward(&Tensor::zeros([2, 4, 1], (Kind::Float, Device::Cpu))).unwrap();
        let e = conv.forward(&Tensor::zeros([2, 4, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "conv_1d: input must be [B, W, 1], got [2, 4, 3]");
    }

    #[test]
    fn config_errors() {
        let store = Store::cpu();
        let e = Conv1d::new(&store.root(), Conv1dConfig::new(2, 3).with_stride(2).with_rate(2)).unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        assert_eq!(
            e.to_string(),
            "conv_1d: bad configuration: cannot have stride > 1 with rate > 1 (as in TensorFlow), \
             got stride [2] and rate [2]"
        );
        let e = Conv1d::new(&store.root(), Conv1dConfig::new(2, 0)).unwrap_err();
        assert_eq!(e.to_string(), "conv_1d_1: bad configuration: kernel_shape must be > 0, got 0");
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = Conv1dConfig::new(3, 5).with_padding(Padding::Valid).with_data_format(DataFormat1d::Ncw);
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"padding\":\"VALID\"") && json.contains("\"data_format\":\"NCW\""), "{json}");
        assert_eq!(serde_json::from_str::<Conv1dConfig>(&json).unwrap(), config);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Conv1d>();
    }
}
