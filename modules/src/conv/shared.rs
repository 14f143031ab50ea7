//! The machinery shared by the convolution modules: configuration checks, lazy variables in
//! TensorFlow layout, input checks, and TF-style (transposed) convolution through libtorch.

use super::Padding;
use crate::error::{Error, Result, TorchContext};
use crate::init::{Fans, Initializer};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::{build_once, check_keys};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// What a convolution module is, independent of its number of spatial dimensions.
pub(crate) struct ConvSpec {
    /// Kernel size per spatial dimension.
    pub kernel: Vec<i64>,
    /// Stride per spatial dimension.
    pub stride: Vec<i64>,
    /// Rate (dilation) per spatial dimension; all ones for transposed convolutions.
    pub rate: Vec<i64>,
    pub padding: Padding,
    /// `true` for `N..C` inputs, `false` for `NC..`.
    pub channels_last: bool,
    /// Spatial dimension letters for messages: `["W"]`, `["H", "W"]`.
    pub names: &'static [&'static str],
    pub output_channels: i64,
    pub input_channels: Option<i64>,
    /// `w` is `[k.., out, in]` (TF `conv2d_transpose`) instead of `[k.., in, out]`.
    pub transpose: bool,
    pub with_bias: bool,
    pub initializers: BTreeMap<String, Initializer>,
    pub regularizers: BTreeMap<String, Regularizer>,
}

struct ConvVars {
    w: Tensor,
    b: Option<Tensor>,
}

/// A convolution's scope, spec and lazily created variables.
pub(crate) struct ConvCore {
    pub scope: Scope,
    pub spec: ConvSpec,
    vars: OnceLock<ConvVars>,
}

fn check_positive(module: &str, what: &str, dims: &[i64]) -> Result<()> {
    if dims.iter().all(|&d| d > 0) {
        Ok(())
    } else if dims.len() == 1 {
        Err(Error::config(module, format!("{what} must be > 0, got {}", dims[0])))
    } else {
        Err(Error::config(module, format!("{what} must be > 0 in every dimension, got {dims:?}")))
    }
}

impl ConvCore {
    /// Checks the spec and, when the input channels are given, creates the variables.
    pub fn new(scope: Scope, spec: ConvSpec) -> Result<Self> {
        let module = scope.path();
        check_positive(module, "output_channels", &[spec.output_channels])?;
        if let Some(c) = spec.input_channels {
            check_positive(module, "input_channels", &[c])?;
        }
        check_positive(module, "kernel_shape", &spec.kernel)?;
        check_positive(module, "stride", &spec.stride)?;
        check_positive(module, "rate", &spec.rate)?;
        // The padding and output-size arithmetic multiplies these: bounded so it cannot overflow.
        for ((&k, &r), &st) in spec.kernel.iter().zip(&spec.rate).zip(&spec.stride) {
            crate::util::config_size(module, "kernel_shape × rate", &[k, r])?;
            crate::util::config_size(module, "stride", &[st])?;
        }
        if spec.rate.iter().any(|&r| r > 1) && spec.stride.iter().any(|&s| s > 1) {
            return Err(Error::config(
                module,
                format!(
                    "cannot have stride > 1 with rate > 1 (as in TensorFlow), got stride {:?} and rate {:?}",
                    spec.stride, spec.rate
                ),
            ));
        }
        let valid: &[&str] = if spec.with_bias { &["w", "b"] } else { &["w"] };
        check_keys(module, "initializers", spec.initializers.keys(), valid)?;
        check_keys(module, "regularizers", spec.regularizers.keys(), valid)?;
        let core = ConvCore { scope, spec, vars: OnceLock::new() };
        if let Some(c) = core.spec.input_channels {
            core.build(c)?;
        }
        Ok(core)
    }

    fn build(&self, input_channels: i64) -> Result<&ConvVars> {
        build_once(&self.vars, || {
            let s = &self.spec;
            let init =
                |name: &str, default: Initializer| s.initializers.get(name).cloned().unwrap_or(default);
            // Fans (and Sonnet's default std 1 / sqrt(k.. · in)) come from the forward layout
            // [k.., in, out], also for the transpose, whose kernel maps `in` to `out` the same way.
            let mut forward = s.kernel.clone();
            forward.extend([input_channels, s.output_channels]);
            let fans = Fans::from_shape(&forward);
            let mut shape = s.kernel.clone();
            if s.transpose {
                shape.extend([s.output_channels, input_channels]);
            } else {
                shape.extend([input_channels, s.output_channels]);
            }
            let w = self
                .scope
                .var("w", &shape)
                .init(init("w", Initializer::sonnet_default(fans.fan_in)))
                .fans(fans)
                .regularizer(s.regularizers.get("w").cloned())
                .create()?;
            let b = if s.with_bias {
                Some(
                    self.scope
                        .var("b", &[s.output_channels])
                        .init(init("b", Initializer::Zeros))
                        .regularizer(s.regularizers.get("b").cloned())
                        .create()?,
                )
            } else {
                None
            };
            Ok(ConvVars { w, b })
        })
    }

    fn not_built(&self) -> Error {
        Error::NotBuilt { module: self.scope.path().to_string() }
    }

    pub fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }

    pub fn w(&self) -> Result<&Tensor> {
        self.vars.get().map(|v| &v.w).ok_or_else(|| self.not_built())
    }

    pub fn b(&self) -> Result<Option<&Tensor>> {
        self.vars.get().map(|v| v.b.as_ref()).ok_or_else(|| self.not_built())
    }

    pub fn input_channels(&self) -> Option<i64> {
        let n = self.spec.kernel.len();
        self.vars.get().map(|v| v.w.size()[if self.spec.transpose { n + 1 } else { n }])
    }

    /// An input shape in the module's layout, e.g. `[B, H >= 5, W >= 5, 3]`.
    fn describe(&self, spatial: &[String], channels: String) -> String {
        let mut parts = vec!["B".to_string()];
        if !self.spec.channels_last {
            parts.push(channels.clone());
        }
        parts.extend(spatial.iter().cloned());
        if self.spec.channels_last {
            parts.push(channels);
        }
        format!("[{}]", parts.join(", "))
    }

    /// Checks rank, kind, channels and spatial sizes (each at least `min`, with `note` saying
    /// why), returning the spatial sizes and the channel count.
    fn check_input(&self, x: &Tensor, min: &[i64], note: &str) -> Result<(Vec<i64>, i64)> {
        let module = self.scope.path();
        let names = self.spec.names;
        let known = self.input_channels();
        let channels_str = known.map_or("C".to_string(), |c| c.to_string());
        let size = x.size();
        if size.len() != names.len() + 2 {
            let spatial: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            return Err(Error::shape(module, "input", self.describe(&spatial, channels_str), size));
        }
        let (c, spatial) = if self.spec.channels_last {
            (size[size.len() - 1], size[1..size.len() - 1].to_vec())
        } else {
            (size[1], size[2..].to_vec())
        };
        if known.is_some_and(|k| k != c) || c < 1 {
            let spatial: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let channels = known.map_or("C >= 1".to_string(), |k| k.to_string());
            return Err(Error::shape(module, "input", self.describe(&spatial, channels), size));
        }
        if spatial.iter().zip(min).any(|(s, m)| s < m) {
            let spatial: Vec<String> = names.iter().zip(min).map(|(n, m)| format!("{n} >= {m}")).collect();
            let expected = format!("{}{note}", self.describe(&spatial, c.to_string()));
            return Err(Error::shape(module, "input", expected, size));
        }
        self.scope.check_kind("input", x)?;
        Ok((spatial, c))
    }

    /// `x` in channels-first layout.
    fn channels_first(&self, x: &Tensor) -> Result<Tensor> {
        if !self.spec.channels_last {
            return Ok(x.shallow_clone());
        }
        let r = x.dim() as i64;
        let perm: Vec<i64> = [0, r - 1].into_iter().chain(1..r - 1).collect();
        x.f_permute(perm).ctx(self.scope.path())
    }

    /// Channels-first `y` back in the module's layout.
    fn restore_layout(&self, y: Tensor) -> Result<Tensor> {
        if !self.spec.channels_last {
            return Ok(y);
        }
        let r = y.dim() as i64;
        let perm: Vec<i64> = [0].into_iter().chain(2..r).chain([1]).collect();
        y.f_permute(perm).ctx(self.scope.path())
    }

    /// `w` in PyTorch's layout: `[out, in, k..]` for a convolution and `[in, out, k..]` (what
    /// `conv_transpose` takes) for a transpose, both from TF's `[k.., a, b]` by `[b, a, k..]`.
    fn torch_weight(&self, w: &Tensor) -> Result<Tensor> {
        let n = self.spec.kernel.len() as i64;
        let perm: Vec<i64> = [n + 1, n].into_iter().chain(0..n).collect();
        w.f_permute(perm).ctx(self.scope.path())
    }

    /// The TF-style convolution of `x`, creating the variables on the first call.
    pub fn convolve(&self, x: &Tensor) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let module = self.scope.path();
        let s = &self.spec;
        let n = s.kernel.len();
        let (min, note) = match s.padding {
            Padding::Same => (vec![1; n], String::new()),
            Padding::Valid => (
                s.kernel.iter().zip(&s.rate).map(|(k, r)| (k - 1) * r + 1).collect(),
                format!(" (VALID padding, kernel_shape {:?}, rate {:?})", s.kernel, s.rate),
            ),
        };
        let (spatial, channels) = self.check_input(x, &min, &note)?;
        let vars = self.build(channels)?;
        let pads: Vec<(i64, i64)> =
            (0..n).map(|d| s.padding.pads(spatial[d], s.kernel[d], s.stride[d], s.rate[d])).collect();
        let mut x = self.channels_first(x)?;
        let conv_padding: Vec<i64> = if pads.iter().all(|(before, after)| before == after) {
            pads.iter().map(|p| p.0).collect()
        } else {
            // libtorch pads symmetrically; TF puts the odd element at the end, so pad explicitly
            // (constant_pad_nd lists the last dimension first).
            let flat: Vec<i64> = pads.iter().rev().flat_map(|&(b, a)| [b, a]).collect();
            x = x.f_constant_pad_nd(flat).ctx(module)?;
            vec![0; n]
        };
        let weight = self.torch_weight(&vars.w)?;
        let y = x
            .f_convolution(&weight, vars.b.as_ref(), &s.stride, conv_padding, &s.rate, false, vec![0; n], 1)
            .ctx(module)?;
        self.restore_layout(y)
    }

    /// The TF `conv2d_transpose` of `x` to spatial size `output` (default: SAME `in · s`,
    /// VALID `(in - 1) · s + k`), creating the variables on the first call.
    ///
    /// libtorch's transposed convolution without padding gives the full size
    /// `L = (in - 1) s + k`: the gradient of a VALID convolution wrt its input of that size. TF's
    /// result is the gradient wrt the unpadded input of the forward convolution on `output`,
    /// whose input was padded by `(before, after)`: the full result extended with zeros to
    /// `output + before + after` (positions no window touched), then cropped by `before` at the
    /// start and `after` at the end. Both are one `constant_pad_nd` of `(-before, output + before - L)`.
    pub fn convolve_transpose(&self, x: &Tensor, output: Option<&[i64]>) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let module = self.scope.path();
        let s = &self.spec;
        let n = s.kernel.len();
        let (spatial, channels) = self.check_input(x, &vec![1; n], "")?;
        let output: Vec<i64> = match output {
            Some(o) => o.to_vec(),
            None => (0..n)
                .map(|d| s.padding.transpose_output_size(spatial[d], s.kernel[d], s.stride[d]))
                .collect(),
        };
        let mapped: Vec<i64> =
            (0..n).map(|d| s.padding.output_size(output[d], s.kernel[d], s.stride[d], 1)).collect();
        if mapped != spatial {
            return Err(Error::invalid(
                module,
                format!(
                    "output_shape {output:?} does not fit input {:?}: a {} convolution with kernel_shape {:?} \
                     and stride {:?} maps spatial size {output:?} to {mapped:?}, not {spatial:?}",
                    x.size(),
                    s.padding,
                    s.kernel,
                    s.stride
                ),
            ));
        }
        let vars = self.build(channels)?;
        let x = self.channels_first(x)?;
        let weight = self.torch_weight(&vars.w)?;
        let full = x
            .f_convolution(&weight, None::<&Tensor>, &s.stride, vec![0; n], vec![1; n], true, vec![0; n], 1)
            .ctx(module)?;
        let flat: Vec<i64> = (0..n)
            .rev()
            .flat_map(|d| {
                let full_size = (spatial[d] - 1) * s.stride[d] + s.kernel[d];
                let (before, _) = s.padding.pads(output[d], s.kernel[d], s.stride[d], 1);
                [-before, output[d] + before - full_size]
            })
            .collect();
        let mut y = full.f_constant_pad_nd(flat).ctx(module)?;
        if let Some(b) = &vars.b {
            let mut shape = vec![1, s.output_channels];
            shape.extend(vec![1; n]);
            y = y.f_add(&b.f_view(shape.as_slice()).ctx(module)?).ctx(module)?;
        }
        self.restore_layout(y)
    }
}
