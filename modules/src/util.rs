//! Helpers for writing modules: building lazy variables once, and the input and
//! configuration checks whose messages every couplet module shares. Public because module
//! crates built on couplet-modules (`couplet-rnn`, `couplet-attention`, a user's own) need
//! them; they are not re-exported at the crate root.
//!
//! This file depends only on [`crate::error`], so every other file of the crate may use it.
//! The input-kind check lives on the scope, as [`Scope::check_kind`](crate::Scope::check_kind).

use crate::error::{Error, Result};
use std::sync::OnceLock;
use tch::{Kind, Tensor};

/// Returns the cell's value, building it with `build` on first use. Modules keep their lazy
/// variables in a `OnceLock` and go through this, so a failed build leaves the cell empty
/// and the module unbuilt.
///
/// # Errors
/// `build`'s error, unchanged (the cell stays empty).
pub fn build_once<T>(cell: &OnceLock<T>, build: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = build()?;
    Ok(cell.get_or_init(|| value))
}

/// Formats a shape as `[8, 5]`.
pub(crate) fn shape_str(shape: &[i64]) -> String {
    format!("{shape:?}")
}

/// Checks that `x` has rank `rank`.
///
/// # Errors
/// [`Error::Shape`] naming `module` and `what`, with `expected` (e.g. `[B, T, 4]`) as the
/// accepted form and `x`'s shape.
pub fn check_rank(module: &str, what: &str, x: &Tensor, rank: usize, expected: &str) -> Result<()> {
    if x.dim() == rank {
        Ok(())
    } else {
        Err(Error::shape(module, what, expected, x.size()))
    }
}

/// Checks that every key of a per-variable map (`initializers`, `regularizers`) names a
/// variable of the module.
///
/// # Errors
/// [`Error::Config`] naming `module` that lists the valid keys.
pub fn check_keys<'a>(
    module: &str,
    what: &str,
    keys: impl IntoIterator<Item = &'a String>,
    valid: &[&str],
) -> Result<()> {
    for key in keys {
        if !valid.contains(&key.as_str()) {
            return Err(Error::config(module, format!("unknown {what} key {key:?}; valid keys: {valid:?}")));
        }
    }
    Ok(())
}

/// Whether libtorch can store `value` in a tensor of `kind` (`full`, `clamp`, `masked_fill`,
/// …): false for a finite value beyond the largest finite `Half`, `BFloat16` or `Float`,
/// which libtorch refuses with an overflow error (that tch 0.26 turns into a panic even in
/// its `f_` ops that take a scalar). NaN, infinities and other kinds are accepted.
pub fn scalar_fits(value: f64, kind: Kind) -> bool {
    let max = match kind {
        Kind::Half => 65504.0,
        Kind::BFloat16 => 3.389_531_389_251_535_5e38,
        Kind::Float => f32::MAX as f64,
        _ => return true,
    };
    !value.is_finite() || value.abs() <= max
}

/// Checks that `x` is a defined tensor (not `Tensor::new()`), whose shape and kind can be
/// read.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `module` and `what`.
pub fn check_defined(module: &str, what: &str, x: &Tensor) -> Result<()> {
    if x.defined() {
        Ok(())
    } else {
        Err(Error::invalid(module, format!("{what} is an undefined tensor")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn build_once_builds_once_and_a_failed_build_leaves_the_cell_empty() {
        let cell = OnceLock::new();
        let e = build_once(&cell, || Err::<i32, _>(Error::config("m", "no"))).unwrap_err();
        assert_eq!(e.to_string(), "m: bad configuration: no");
        assert!(cell.get().is_none());
        assert_eq!(*build_once(&cell, || Ok(1)).unwrap(), 1);
        assert_eq!(*build_once(&cell, || Ok(2)).unwrap(), 1, "the second build is not run");
    }

    #[test]
    fn checks_name_the_module_and_the_accepted_form() {
        let x = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        assert!(check_rank("m", "input", &x, 2, "[B, I]").is_ok());
        let e = check_rank("m", "input", &x, 3, "[B, T, I]").unwrap_err();
        assert!(matches!(e, Error::Shape { .. }));
        assert_eq!(e.to_string(), "m: input must be [B, T, I], got [2, 3]");
        assert_eq!(shape_str(&[8, 5]), "[8, 5]");
        let keys = ["w".to_string(), "v".to_string()];
        assert!(check_keys("m", "initializers", &keys[..1], &["w", "b"]).is_ok());
        let e = check_keys("m", "initializers", &keys, &["w", "b"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m: bad configuration: unknown initializers key \"v\"; valid keys: [\"w\", \"b\"]"
        );
    }

    #[test]
    fn check_defined_refuses_an_undefined_tensor() {
        assert!(check_defined("m", "input", &Tensor::zeros([1], (Kind::Float, Device::Cpu))).is_ok());
        let e = check_defined("m", "input", &Tensor::new()).unwrap_err();
        assert_eq!(e.to_string(), "m: input is an undefined tensor");
    }

    #[test]
    fn scalar_fits_the_largest_finite_value_of_each_kind() {
        assert!(scalar_fits(65504.0, Kind::Half) && !scalar_fits(65505.0, Kind::Half));
        assert!(scalar_fits(-65504.0, Kind::Half) && !scalar_fits(-1e5, Kind::Half));
        assert!(scalar_fits(f32::MAX as f64, Kind::Float) && !scalar_fits(1e39, Kind::Float));
        assert!(scalar_fits(3.0e38, Kind::BFloat16) && !scalar_fits(3.4e38, Kind::BFloat16));
        assert!(scalar_fits(1e300, Kind::Double));
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(scalar_fits(v, Kind::Half));
        }
    }
}
