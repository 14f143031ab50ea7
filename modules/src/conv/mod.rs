//! Convolutions with TensorFlow/Sonnet v1 semantics: [`Conv1d`] (`snt.Conv1D`), [`Conv2d`]
//! (`snt.Conv2D`) and [`Conv2dTranspose`] (`snt.Conv2DTranspose`).
//!
//! Kernels `w` are stored in TensorFlow's layout (`[kw, in, out]`, `[kh, kw, in, out]`; the
//! transpose `[kh, kw, out, in]`), inputs are channels-last by default (`NWC`, `NHWC`), and
//! padding follows TensorFlow, per spatial dimension with input size `n`, kernel size `k`,
//! stride `s` and rate (dilation) `r`:
//! - `VALID`: no padding, output `ceil((n - (k - 1) r) / s)`;
//! - `SAME`: output `ceil(n / s)`, total padding `max((out - 1) s + (k - 1) r + 1 - n, 0)`,
//!   of which `total / 2` goes before and the rest **after**. PyTorch's `padding='same'` puts
//!   the odd element before instead (and allows no stride), so the two differ whenever the total
//!   is odd; couplet follows TensorFlow so that Sonnet/TF checkpoints give the same outputs.
//!
//! ```
//! use couplet_modules::{Conv2d, Conv2dConfig, Module, Padding, Store};
//! use tch::{Device, Kind, Tensor};
//! # fn main() -> couplet_modules::Result<()> {
//! let store = Store::cpu();
//! let conv = Conv2d::new(&store.root(), Conv2dConfig::new(8, 3).with_stride(2))?;
//! let y = conv.forward(&Tensor::zeros([4, 7, 7, 3], (Kind::Float, Device::Cpu)))?; // NHWC
//! assert_eq!(y.size(), [4, 4, 4, 8]); // SAME: ceil(7 / 2) = 4
//! assert_eq!(conv.w()?.size(), [3, 3, 3, 8]); // [kh, kw, in, out]
//! assert_eq!(Padding::Same.pads(7, 3, 2, 1), (1, 1));
//! # Ok(())
//! # }
//! ```

mod causal_conv1d;
mod conv1d;
mod conv1d_transpose;
mod conv2d;
mod conv2d_transpose;
mod conv3d;
mod depthwise_conv2d;
mod separable_conv2d;
mod shared;

pub use causal_conv1d::{CausalConv1d, CausalConv1dConfig};
pub use conv1d::{Conv1d, Conv1dConfig};
pub use conv1d_transpose::{Conv1dTranspose, Conv1dTransposeConfig};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use conv2d_transpose::{Conv2dTranspose, Conv2dTransposeConfig};
pub use conv3d::{Conv3d, Conv3dConfig, DataFormat3d, IntoDims3};
pub use depthwise_conv2d::{DepthwiseConv2d, DepthwiseConv2dConfig};
pub use separable_conv2d::{SeparableConv2d, SeparableConv2dConfig};

use serde::{Deserialize, Deserializer, Serialize};

/// TensorFlow's padding algorithms. Serialised as `"SAME"` / `"VALID"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Padding {
    /// Pad so that the output has `ceil(n / s)` positions; the odd padding element goes at
    /// the end (TensorFlow). The default, as in Sonnet.
    #[default]
    #[serde(rename = "SAME")]
    Same,
    /// No padding: only windows that fit entirely inside the input.
    #[serde(rename = "VALID")]
    Valid,
}

impl std::fmt::Display for Padding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Padding::Same => "SAME",
            Padding::Valid => "VALID",
        })
    }
}

/// `ceil(a / b)` for `b > 0` and any sign of `a`.
fn ceil_div(a: i64, b: i64) -> i64 {
    -(-a).div_euclid(b)
}

impl Padding {
    /// Output size of a convolution along one dimension, for input size `input`, kernel
    /// size `kernel`, `stride` and `rate` (all but `input` positive): `SAME`
    /// `ceil(input / stride)`, `VALID` `ceil((input - (kernel - 1) rate) / stride)`. A `VALID`
    /// result below 1 means the (dilated) kernel does not fit in the input.
    pub fn output_size(self, input: i64, kernel: i64, stride: i64, rate: i64) -> i64 {
        match self {
            Padding::Same => ceil_div(input, stride),
            Padding::Valid => ceil_div(input - (kernel - 1) * rate, stride),
        }
    }

    /// Padding `(before, after)` TensorFlow adds along one dimension (arguments as in
    /// [`Padding::output_size`]): none for `VALID`; for `SAME`, of the total
    /// `max((out - 1) stride + (kernel - 1) rate + 1 - input, 0)`, `total / 2` before and the
    /// rest after.
    pub fn pads(self, input: i64, kernel: i64, stride: i64, rate: i64) -> (i64, i64) {
        match self {
            Padding::Valid => (0, 0),
            Padding::Same => {
                let out = self.output_size(input, kernel, stride, rate);
                let total = ((out - 1) * stride + (kernel - 1) * rate + 1 - input).max(0);
                (total / 2, total - total / 2)
            }
        }
    }

    /// Default output size of a transposed convolution along one dimension: `SAME`
    /// `input · stride`, `VALID` `(input - 1) · stride + kernel` (the size PyTorch's and
    /// Keras' transposed convolutions give without output padding).
    pub fn transpose_output_size(self, input: i64, kernel: i64, stride: i64) -> i64 {
        match self {
            Padding::Same => input * stride,
            Padding::Valid => (input - 1) * stride + kernel,
        }
    }
}

/// Layout of a [`Conv1d`] input. Serialised as `"NWC"` / `"NCW"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataFormat1d {
    /// `[B, W, C]`, channels last (the TensorFlow/Sonnet default).
    #[default]
    #[serde(rename = "NWC")]
    Nwc,
    /// `[B, C, W]`, channels first (PyTorch's layout).
    #[serde(rename = "NCW")]
    Ncw,
}

/// Layout of a [`Conv2d`] or [`Conv2dTranspose`] input. Serialised as `"NHWC"` / `"NCHW"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataFormat2d {
    /// `[B, H, W, C]`, channels last (the TensorFlow/Sonnet default).
    #[default]
    #[serde(rename = "NHWC")]
    Nhwc,
    /// `[B, C, H, W]`, channels first (PyTorch's layout).
    #[serde(rename = "NCHW")]
    Nchw,
}

/// A 2-d size given either as one value for both dimensions (`3`) or per dimension
/// (`[3, 5]`, height first), as Sonnet accepts for kernel shapes, strides and rates.
pub trait IntoDims2 {
    /// The per-dimension `[h, w]` form.
    fn into_dims2(self) -> [i64; 2];
}

impl IntoDims2 for i64 {
    fn into_dims2(self) -> [i64; 2] {
        [self; 2]
    }
}

impl IntoDims2 for [i64; 2] {
    fn into_dims2(self) -> [i64; 2] {
        self
    }
}

/// Deserialises a 2-d size from either an integer or a two-element array.
fn dims2<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[i64; 2], D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrTwo {
        One(i64),
        Two([i64; 2]),
    }
    Ok(match OneOrTwo::deserialize(deserializer)? {
        OneOrTwo::One(n) => [n; 2],
        OneOrTwo::Two(d) => d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_table() {
        // (padding, input, kernel, stride, rate, output, pads), worked by hand from TF's rules.
        let table = [
            (Padding::Same, 7, 3, 1, 1, 7, (1, 1)),
            (Padding::Same, 7, 4, 1, 1, 7, (1, 2)),
            (Padding::Same, 7, 3, 2, 1, 4, (1, 1)),
            (Padding::Same, 6, 3, 2, 1, 3, (0, 1)),
            (Padding::Same, 7, 4, 2, 1, 4, (1, 2)),
            (Padding::Same, 5, 1, 3, 1, 2, (0, 0)),
            (Padding::Same, 7, 3, 1, 2, 7, (2, 2)),
            (Padding::Same, 7, 4, 1, 2, 7, (3, 3)),
            (Padding::Same, 6, 2, 1, 3, 6, (1, 2)),
            (Padding::Same, 1, 5, 1, 1, 1, (2, 2)),
            (Padding::Valid, 7, 3, 1, 1, 5, (0, 0)),
            (Padding::Valid, 7, 3, 2, 1, 3, (0, 0)),
            (Padding::Valid, 6, 3, 2, 1, 2, (0, 0)),
            (Padding::Valid, 7, 3, 1, 2, 3, (0, 0)),
            (Padding::Valid, 7, 4, 1, 2, 1, (0, 0)),
            (Padding::Valid, 3, 3, 1, 1, 1, (0, 0)),
            (Padding::Valid, 2, 3, 1, 1, 0, (0, 0)),
            (Padding::Valid, 4, 3, 1, 2, 0, (0, 0)),
            (Padding::Valid, 1, 4, 2, 1, -1, (0, 0)),
        ];
        for (padding, n, k, s, r, out, pads) in table {
            let case = format!("{padding} n={n} k={k} s={s} r={r}");
            assert_eq!(padding.output_size(n, k, s, r), out, "{case}");
            assert_eq!(padding.pads(n, k, s, r), pads, "{case}");
            // Padding by `pads` then sliding a VALID window gives the same size.
            let (b, a) = pads;
            if out >= 1 {
                assert_eq!(Padding::Valid.output_size(n + b + a, k, s, r), out, "{case}");
            }
        }
    }

    #[test]
    fn transpose_output_size_table() {
        assert_eq!(Padding::Same.transpose_output_size(3, 3, 2), 6);
        assert_eq!(Padding::Same.transpose_output_size(3, 5, 1), 3);
        assert_eq!(Padding::Valid.transpose_output_size(3, 3, 2), 7);
        assert_eq!(Padding::Valid.transpose_output_size(3, 2, 3), 8);
        assert_eq!(Padding::Valid.transpose_output_size(4, 3, 1), 6);
        // Each default maps back to the input size through the forward convolution.
        for padding in [Padding::Same, Padding::Valid] {
            for (n, k, s) in [(3, 3, 2), (4, 2, 3), (5, 4, 2), (1, 1, 1)] {
                let o = padding.transpose_output_size(n, k, s);
                assert_eq!(padding.output_size(o, k, s, 1), n, "{padding} n={n} k={k} s={s}");
            }
        }
    }

    #[test]
    fn serde_names_follow_tensorflow() {
        assert_eq!(serde_json::to_string(&Padding::Valid).unwrap(), "\"VALID\"");
        assert_eq!(serde_json::from_str::<Padding>("\"SAME\"").unwrap(), Padding::Same);
        assert_eq!(serde_json::to_string(&DataFormat2d::Nchw).unwrap(), "\"NCHW\"");
        assert_eq!(serde_json::from_str::<DataFormat1d>("\"NCW\"").unwrap(), DataFormat1d::Ncw);
        #[derive(Deserialize)]
        struct S {
            #[serde(deserialize_with = "dims2")]
            k: [i64; 2],
        }
        assert_eq!(serde_json::from_str::<S>(r#"{"k": 3}"#).unwrap().k, [3, 3]);
        assert_eq!(serde_json::from_str::<S>(r#"{"k": [3, 5]}"#).unwrap().k, [3, 5]);
        assert!(serde_json::from_str::<S>(r#"{"k": [3, 5, 7]}"#).is_err());
    }

    #[test]
    fn dims2_from_int_or_pair() {
        fn f(d: impl IntoDims2) -> [i64; 2] {
            d.into_dims2()
        }
        assert_eq!(f(3), [3, 3]);
        assert_eq!(f([2, 4]), [2, 4]);
    }
}
