//! Which tokens of a `[B, T]` batch are real: all, those before each sequence's length, or a
//! Bool mask.

use super::check::{defined, integer};
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

/// Which tokens of a batch of sequences count.
#[derive(Debug, Clone, Copy)]
pub enum TokenMask<'a> {
    /// Every token.
    All,
    /// Int64 (or other integer) lengths `[B]` in `[0, T]`: token `t` of sequence `b` is real
    /// when `t < lengths[b]`. Only for `[B, T]` targets.
    Lengths(&'a Tensor),
    /// A Bool mask of the targets' shape: `true` marks real tokens.
    Mask(&'a Tensor),
}

impl TokenMask<'_> {
    /// The Bool mask of `shape` (the targets' shape) on `device`.
    ///
    /// # Errors
    /// [`Error::Shape`] for lengths that are not `[B]` (or targets that are not `[B, T]`) or a
    /// mask of another shape; [`Error::InvalidArgument`] for lengths outside `[0, T]` or a
    /// mask that is not Bool.
    pub(crate) fn to_mask(self, scope: &str, shape: &[i64], device: tch::Device) -> Result<Tensor> {
        match self {
            TokenMask::All => Tensor::f_ones(shape, (Kind::Bool, device)).ctx(scope),
            TokenMask::Mask(mask) => {
                defined(scope, "mask", mask)?;
                if mask.kind() != Kind::Bool {
                    return Err(Error::invalid(
                        scope,
                        format!("mask must be Bool, got kind {:?}", mask.kind()),
                    ));
                }
                if mask.size() != shape {
                    return Err(Error::shape(
                        scope,
                        "mask",
                        format!("{shape:?} (the targets' shape)"),
                        mask.size(),
                    ));
                }
                mask.f_to_device(device).ctx(scope)
            }
            TokenMask::Lengths(lengths) => {
                integer(scope, "lengths", lengths)?;
                if shape.len() != 2 {
                    return Err(Error::shape(scope, "targets (with lengths)", "[B, T]", shape));
                }
                let (b, t) = (shape[0], shape[1]);
                if lengths.size() != [b] {
                    return Err(Error::shape(scope, "lengths", format!("[{b}]"), lengths.size()));
                }
                if b > 0 {
                    let lo = i64::try_from(&lengths.f_min().ctx(scope)?).ctx(scope)?;
                    let hi = i64::try_from(&lengths.f_max().ctx(scope)?).ctx(scope)?;
                    if lo < 0 || hi > t {
                        return Err(Error::invalid(
                            scope,
                            format!("lengths must be in [0, {t}], got values in [{lo}, {hi}]"),
                        ));
                    }
                }
                let steps = Tensor::f_arange(t, (Kind::Int64, device)).ctx(scope)?;
                let lengths = lengths.f_to_device(device).and_then(|l| l.f_unsqueeze(1)).ctx(scope)?;
                steps.f_unsqueeze(0).and_then(|s| s.f_lt_tensor(&lengths)).ctx(scope)
            }
        }
    }
}
