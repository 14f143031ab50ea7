//! `DepthwiseConv2d`: a 2-d convolution of each input channel on its own (Sonnet's
//! `snt.DepthwiseConv2D`, TensorFlow's `depthwise_conv2d`).

use super::{DataFormat2d, IntoDims2, Padding};
use crate::error::{Error, Result, TorchContext};
use crate::init::{Fans, Initializer};
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::{build_once, check_defined, check_keys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// Configuration of a [`DepthwiseConv2d`] module. Per-dimension fields are `[h, w]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DepthwiseConv2dConfig {
    /// Kernel size `[kh, kw]` (> 0). Default `[1, 1]`.
    pub kernel_shape: [i64; 2],
    /// Output channels per input channel `M` (> 0). Default 1.
    pub channel_multiplier: i64,
    /// Stride (> 0). Default `[1, 1]`.
    pub stride: [i64; 2],
    /// Rate (dilation, > 0); a rate > 1 with a stride > 1 is an error, as in TensorFlow.
    /// Default `[1, 1]`.
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
    /// `std = 1 / sqrt(kh · kw)` (each output sees `kh · kw` inputs), `b` zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`, `"b"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for DepthwiseConv2dConfig {
    fn default() -> Self {
        DepthwiseConv2dConfig {
            kernel_shape: [1, 1],
            channel_multiplier: 1,
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

impl DepthwiseConv2dConfig {
    /// A config with kernel `kernel_shape` and every other field at its default.
    pub fn new(kernel_shape: impl IntoDims2) -> Self {
        DepthwiseConv2dConfig { kernel_shape: kernel_shape.into_dims2(), ..Default::default() }
    }
    /// Sets the channel multiplier.
    pub fn with_channel_multiplier(mut self, channel_multiplier: i64) -> Self {
        self.channel_multiplier = channel_multiplier;
        self
    }
    /// Sets the stride.
    pub fn with_stride(mut self, stride: impl IntoDims2) -> Self {
        self.stride = stride.into_dims2();
        self
    }
    /// Sets the rate (dilation).
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

struct DepthwiseVars {
    w: Tensor,
    b: Option<Tensor>,
}

/// A depthwise 2-d convolution: each of the `C` channels of `x [B, H, W, C]` (or
/// `[B, C, H, W]`) is convolved with its own `M` filters, giving `[B, H', W', C · M]` with
/// output channel `c · M + m` from input channel `c` and filter `m` (TensorFlow's order),
/// `H'`, `W'` from [`Padding::output_size`] with TensorFlow's SAME padding. Variables `w
/// [kh, kw, C, M]` (TensorFlow layout) and `b [C · M]`, as Sonnet. Runs libtorch's grouped
/// convolution with `C` groups.
pub struct DepthwiseConv2d {
    scope: Scope,
    config: DepthwiseConv2dConfig,
    vars: OnceLock<DepthwiseVars>,
}

impl std::fmt::Debug for DepthwiseConv2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepthwiseConv2d")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl DepthwiseConv2d {
    /// Builds a `DepthwiseConv2d` in a new child scope `depthwise_conv_2d` (or
    /// `depthwise_conv_2d_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-positive kernel size, multiplier, stride, rate or channel
    /// count, a rate > 1 with a stride > 1, or an initializer/regularizer key other than `w`
    /// (and `b` with a bias).
    pub fn new(parent: &Scope, config: DepthwiseConv2dConfig) -> Result<Self> {
        Self::named(parent, "depthwise_conv_2d", config)
    }

    /// Like [`DepthwiseConv2d::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: DepthwiseConv2dConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        let c = &config;
        let positive = c.kernel_shape.iter().chain(&c.stride).chain(&c.rate).all(|&d| d > 0)
            && c.channel_multiplier > 0
            && c.input_channels.map_or(true, |i| i > 0);
        if !positive {
            return Err(Error::config(
                module,
                format!(
                    "kernel_shape, channel_multiplier, stride, rate and input_channels must be > 0, got {:?}, {}, {:?}, {:?}, {:?}",
                    c.kernel_shape, c.channel_multiplier, c.stride, c.rate, c.input_channels
                ),
            ));
        }
        if c.rate.iter().any(|&r| r > 1) && c.stride.iter().any(|&s| s > 1) {
            return Err(Error::config(
                module,
                format!(
                    "cannot have stride > 1 with rate > 1, got stride {:?} and rate {:?}",
                    c.stride, c.rate
                ),
            ));
        }
        let valid: &[&str] = if c.with_bias { &["w", "b"] } else { &["w"] };
        check_keys(module, "initializers", c.initializers.keys(), valid)?;
        check_keys(module, "regularizers", c.regularizers.keys(), valid)?;
        let conv = DepthwiseConv2d { scope, config, vars: OnceLock::new() };
        if let Some(i) = conv.config.input_channels {
            conv.build(i)?;
        }
        Ok(conv)
    }

    fn build(&self, channels: i64) -> Result<&DepthwiseVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let module = self.scope.path();
            let [kh, kw] = c.kernel_shape;
            let out = channels
                .checked_mul(c.channel_multiplier)
                .ok_or_else(|| Error::invalid(module, "output channels C · M overflow i64"))?;
            let init =
                |name: &str, default: Initializer| c.initializers.get(name).cloned().unwrap_or(default);
            let shape = [kh, kw, channels, c.channel_multiplier];
            let field = kh.saturating_mul(kw);
            let fans = Fans { fan_in: field, fan_out: field.saturating_mul(c.channel_multiplier) };
            let w = self
                .scope
                .var("w", &shape)
                .init(init("w", Initializer::sonnet_default(field)))
                .fans(fans)
                .regularizer(c.regularizers.get("w").cloned())
                .create()?;
            let b = if c.with_bias {
                Some(
                    self.scope
                        .var("b", &[out])
                        .init(init("b", Initializer::Zeros))
                        .regularizer(c.regularizers.get("b").cloned())
                        .create()?,
                )
            } else {
                None
            };
            Ok(DepthwiseVars { w, b })
        })
    }

    fn built(&self) -> Result<&DepthwiseVars> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The configuration.
    pub fn config(&self) -> &DepthwiseConv2dConfig {
        &self.config
    }

    /// Number of input channels `C`, once known.
    pub fn input_channels(&self) -> Option<i64> {
        self.vars.get().map(|v| v.w.size()[2])
    }

    /// The kernel `w [kh, kw, C, M]`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy module.
    pub fn w(&self) -> Result<&Tensor> {
        self.built().map(|v| &v.w)
    }

    /// The bias `b [C · M]` (`None` without a bias).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy module.
    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.built().map(|v| v.b.as_ref())
    }

    /// Applies the convolution: `[B, H, W, C]` → `[B, H', W', C · M]` (channels first with
    /// `NCHW`). The first call of a lazy module creates `w` and `b` from `x`'s channels.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not rank 4, has another channel count than the variables
    /// (or 0), is smaller than the dilated kernel with `VALID` padding (or empty), or is of
    /// another kind than the store; [`Error::InvalidArgument`] if `x` is undefined.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let module = self.scope.path();
        check_defined(module, "input", x)?;
        let c = &self.config;
        let last = c.data_format == DataFormat2d::Nhwc;
        let size = x.size();
        let min: Vec<i64> = match c.padding {
            Padding::Same => vec![1, 1],
            Padding::Valid => c.kernel_shape.iter().zip(&c.rate).map(|(k, r)| (k - 1) * r + 1).collect(),
        };
        let channels = self.input_channels().map_or("C >= 1".to_string(), |k| k.to_string());
        let expected = if last {
            format!("[B, H >= {}, W >= {}, {channels}]", min[0], min[1])
        } else {
            format!("[B, {channels}, H >= {}, W >= {}]", min[0], min[1])
        };
        let (ch, spatial) = match *size.as_slice() {
            [_, h, w, ch] if last => (ch, [h, w]),
            [_, ch, h, w] => (ch, [h, w]),
            _ => return Err(Error::shape(module, "input", expected, size)),
        };
        let fits = spatial.iter().zip(&min).all(|(s, m)| s >= m);
        if !fits || ch < 1 || self.input_channels().is_some_and(|k| k != ch) {
            return Err(Error::shape(module, "input", expected, size));
        }
        self.scope.check_kind("input", x)?;
        let vars = self.build(ch)?;
        let pads: Vec<(i64, i64)> =
            (0..2).map(|d| c.padding.pads(spatial[d], c.kernel_shape[d], c.stride[d], c.rate[d])).collect();
        let first = if last { x.f_permute([0, 3, 1, 2]).ctx(module)? } else { x.shallow_clone() };
        // TF puts SAME's odd element after; pad explicitly (last dimension first).
        let padded = first.f_constant_pad_nd([pads[1].0, pads[1].1, pads[0].0, pads[0].1]).ctx(module)?;
        let [kh, kw] = c.kernel_shape;
        let out = ch * c.channel_multiplier;
        // [kh, kw, C, M] → [kh, kw, 1, C·M] → [C·M, 1, kh, kw]: output c·M + m in group c.
        let weight =
            vars.w.f_reshape([kh, kw, 1, out]).and_then(|w| w.f_permute([3, 2, 0, 1])).ctx(module)?;
        let y = padded
            .f_convolution(&weight, vars.b.as_ref(), c.stride, [0, 0], c.rate, false, [0, 0], ch)
            .ctx(module)?;
        if last {
            y.f_permute([0, 2, 3, 1]).ctx(module)
        } else {
            Ok(y)
        }
    }
}

impl Module for DepthwiseConv2d {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl Forward for DepthwiseConv2d {
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
    fn channels_are_convolved_apart_in_tensorflow_order() {
        // C = 2, M = 2, 1x1 kernel: output c·M + m = x[c] · w[0, 0, c, m].
        let store = Store::cpu();
        let conv = DepthwiseConv2d::new(
            &store.root(),
            DepthwiseConv2dConfig::new(1).with_channel_multiplier(2).with_input_channels(2).with_bias(false),
        )
        .unwrap();
        let mut w = conv.w().unwrap().shallow_clone();
        tch::no_grad(|| w.copy_(&Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 1, 2, 2])));
        let x = Tensor::from_slice(&[10.0f32, 100.0]).view([1, 1, 1, 2]);
        let y = conv.forward(&x).unwrap();
        assert_eq!(Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(), [10.0, 20.0, 300.0, 400.0]);
    }

    #[test]
    fn errors_name_the_module() {
        let store = Store::cpu();
        let e = DepthwiseConv2d::new(&store.root(), DepthwiseConv2dConfig::new(3).with_channel_multiplier(0))
            .unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let conv =
            DepthwiseConv2d::new(&store.root(), DepthwiseConv2dConfig::new(3).with_padding(Padding::Valid))
                .unwrap();
        let e = conv.forward(&Tensor::zeros([1, 2, 4, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "depthwise_conv_2d_1: input must be [B, H >= 3, W >= 3, C >= 1], got [1, 2, 4, 3]"
        );
        assert!(matches!(
            conv.forward(&Tensor::zeros([1, 2, 4], (Kind::Float, Device::Cpu))).unwrap_err(),
            Error::Shape { .. }
        ));
        assert!(matches!(conv.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
        let _ = conv.forward(&Tensor::zeros([1, 3, 3, 3], (Kind::Float, Device::Cpu))).unwrap();
        let e = conv.forward(&Tensor::zeros([1, 3, 3, 2], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(e.to_string().contains("W >= 3, 3]"), "{e}");
    }
}
