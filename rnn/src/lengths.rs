//! [`Lengths`]: how many time steps of each batch row are real data.

use couplet_modules::{Error, Result, TorchContext};
use tch::{Device, Kind, Tensor};

/// Per-row sequence lengths `[B]`: an integer tensor on any device, or a slice of `i64`.
///
/// Build one with `From`: `Lengths::from(&tensor)`, `Lengths::from(&[3i64, 1][..])`,
/// `Lengths::from(&vec)` or `Lengths::from(&[3i64, 1])`; functions taking lengths accept
/// `impl Into<Lengths>`.
///
/// Valid values are `0..=T` (`T` the padded time dimension). couplet refuses a negative
/// length or one above `T` with [`Error::InvalidArgument`] naming the function, the row and
/// the value (TF silently clamps them; PyTorch builds a malformed packed batch).
#[derive(Clone, Copy, Debug)]
pub enum Lengths<'a> {
    /// An integer tensor `[B]` (`Int64` preferred; any integer kind is accepted), on any
    /// device. Reading its values copies it to the host once.
    Tensor(&'a Tensor),
    /// Lengths already on the host.
    Slice(&'a [i64]),
}

impl<'a> From<&'a Tensor> for Lengths<'a> {
    fn from(t: &'a Tensor) -> Self {
        Lengths::Tensor(t)
    }
}

impl<'a> From<&'a [i64]> for Lengths<'a> {
    fn from(s: &'a [i64]) -> Self {
        Lengths::Slice(s)
    }
}

impl<'a> From<&'a Vec<i64>> for Lengths<'a> {
    fn from(v: &'a Vec<i64>) -> Self {
        Lengths::Slice(v)
    }
}

impl<'a, const N: usize> From<&'a [i64; N]> for Lengths<'a> {
    fn from(a: &'a [i64; N]) -> Self {
        Lengths::Slice(a)
    }
}

fn is_integer(kind: Kind) -> bool {
    matches!(kind, Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8)
}

impl Lengths<'_> {
    /// The device of the tensor, or the CPU for a slice.
    pub fn device(&self) -> Device {
        match self {
            Lengths::Tensor(t) => t.device(),
            Lengths::Slice(_) => Device::Cpu,
        }
    }

    /// The lengths as host values, after checking only the form (rank 1, integer kind).
    ///
    /// # Errors
    /// [`Error::Shape`] naming `func` if the tensor is not rank 1 or not of an integer kind;
    /// [`Error::InvalidArgument`] if it is undefined or has more than
    /// `util::MAX_ELEMENTS` rows (checked before anything is copied).
    pub fn to_vec(&self, func: &str) -> Result<Vec<i64>> {
        match self {
            Lengths::Slice(s) => Ok(s.to_vec()),
            Lengths::Tensor(t) => {
                couplet_modules::util::check_defined(func, "lengths", t)?;
                if t.dim() != 1 {
                    return Err(Error::shape(func, "lengths", "[B]", t.size()));
                }
                if !is_integer(t.kind()) {
                    return Err(Error::shape(func, "lengths kind", "Int64", t.kind()));
                }
                // A stride-0 expanded tensor can claim far more rows than it stores.
                couplet_modules::util::check_host_size(func, "lengths", t)?;
                let host = t.f_to_kind(Kind::Int64).ctx(func)?.f_to_device(Device::Cpu).ctx(func)?;
                Vec::<i64>::try_from(&host).ctx(func)
            }
        }
    }

    /// The validated host values: exactly `batch` of them, each in `0..=max_len`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `func` for a tensor of the wrong rank or kind, or a count other
    /// than `batch` (`"dynamic_rnn: lengths must be [3], got [4]"`); [`Error::InvalidArgument`]
    /// for a value out of range (`"dynamic_rnn: lengths must be in 0..=T (T = 7), row 2 has 9"`);
    /// [`Error::Untraceable`] while a TorchScript trace records (see
    /// `couplet_modules::export`): the host values would be fixed at this run's.
    pub fn validate(&self, func: &str, batch: i64, max_len: i64) -> Result<Vec<i64>> {
        couplet_modules::export::ensure_not_tracing(
            func,
            "per-row lengths are host values that slice the batch, which a trace would fix at one run's lengths",
            "trace without lengths (full rows; the fused kernels keep batch and time sizes dynamic) and mask in the caller",
        )?;
        let values = self.to_vec(func)?;
        if values.len() as i64 != batch {
            return Err(Error::shape(func, "lengths", format!("[{batch}]"), [values.len()]));
        }
        check_values(func, &values, max_len)?;
        Ok(values)
    }
}

/// Checks every value is in `0..=max_len`.
pub(crate) fn check_values(func: &str, values: &[i64], max_len: i64) -> Result<()> {
    match values.iter().position(|&l| l < 0 || l > max_len) {
        None => Ok(()),
        Some(row) => Err(Error::invalid(
            func,
            format!("lengths must be in 0..=T (T = {max_len}), row {row} has {}", values[row]),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_and_slices_give_the_same_values() {
        let t = Tensor::from_slice(&[3i64, 0, 2]);
        assert_eq!(Lengths::from(&t).validate("f", 3, 3).unwrap(), [3, 0, 2]);
        let t32 = Tensor::from_slice(&[1i32, 2]);
        assert_eq!(Lengths::from(&t32).validate("f", 2, 2).unwrap(), [1, 2]);
        assert_eq!(Lengths::from(&[1i64, 2]).validate("f", 2, 5).unwrap(), [1, 2]);
        assert_eq!(Lengths::from(&vec![4i64]).validate("f", 1, 4).unwrap(), [4]);
        assert_eq!(Lengths::from(&[0i64][..]).device(), Device::Cpu);
    }

    #[test]
    fn bad_lengths_are_typed_errors_naming_function_row_and_value() {
        let e = Lengths::from(&[1i64, 9, 2]).validate("dynamic_rnn", 3, 7).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(e.to_string(), "dynamic_rnn: lengths must be in 0..=T (T = 7), row 1 has 9");
        let e = Lengths::from(&[1i64, -1]).validate("f", 2, 7).unwrap_err();
        assert_eq!(e.to_string(), "f: lengths must be in 0..=T (T = 7), row 1 has -1");
        let e = Lengths::from(&[1i64, 1]).validate("f", 3, 7).unwrap_err();
        assert_eq!(e.to_string(), "f: lengths must be [3], got [2]");
        let m = Tensor::from_slice(&[1i64, 1]).view([1, 2]);
        let e = Lengths::from(&m).validate("f", 2, 7).unwrap_err();
        assert_eq!(e.to_string(), "f: lengths must be [B], got [1, 2]");
        let f = Tensor::from_slice(&[1.0f32, 1.0]);
        let e = Lengths::from(&f).validate("f", 2, 7).unwrap_err();
        assert_eq!(e.to_string(), "f: lengths kind must be Int64, got Float");
    }
}
