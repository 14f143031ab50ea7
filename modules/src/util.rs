//! Helpers for writing modules: building lazy variables once, and the input and
//! configuration checks whose messages every couplet module shares. Public because module
//! crates built on couplet-modules (`couplet-rnn`, `couplet-attention`, a user's own) need
//! them; they are not re-exported at the crate root.
//!
//! This file depends only on [`crate::error`], so every other file of the crate may use it.
//! The input-kind check lives on the scope, as [`Scope::check_kind`](crate::Scope::check_kind).

use crate::error::{Error, Result, TorchContext};
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

/// Checks that `x` is defined and has rank `rank`.
///
/// # Errors
/// [`Error::InvalidArgument`] for an undefined `x` (see [`check_defined`]); [`Error::Shape`] naming `module` and `what`, with `expected` (e.g. `[B, T, 4]`) as the
/// accepted form and `x`'s shape.
pub fn check_rank(module: &str, what: &str, x: &Tensor, rank: usize, expected: &str) -> Result<()> {
    check_defined(module, what, x)?;
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

/// The most elements couplet lets a tensor or host buffer hold when it sizes one from its
/// inputs (a mask `[B, T]`, an index, a host copy of lengths): 2^31. Larger requests are
/// refused with a typed error before anything is allocated (libtorch would abort the process
/// or tch 0.26 panic on them).
pub const MAX_ELEMENTS: i64 = 1 << 31;

/// Checks that `x` is a defined tensor. An undefined tensor (`Tensor::new()`, or what
/// `.grad()` returns before any backward) makes every tch accessor panic, so public functions
/// taking tensors call this first.
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

/// Checks that `x` is a defined tensor of a floating-point kind: the dtype rule of every
/// module without variables (activations, dropout, masks' inputs) and of host-side inputs
/// that must hold real values (pretrained matrices, loaded weights). Modules with variables
/// check the store's kind with [`Scope::check_kind`](crate::Scope::check_kind).
///
/// # Errors
/// [`Error::InvalidArgument`] for an undefined `x`; [`Error::Shape`] naming `module` and
/// `{what} kind`, e.g. `"relu: input kind must be floating point, got Int64"`.
pub fn check_floating(module: &str, what: &str, x: &Tensor) -> Result<()> {
    check_defined(module, what, x)?;
    if x.is_floating_point() {
        Ok(())
    } else {
        Err(Error::shape(module, format!("{what} kind"), "floating point", x.kind()))
    }
}

/// Checks that every value of a floating-point `x` is finite: for values that are data
/// (a pretrained matrix, restored or loaded weights) where NaN or an infinity is never valid.
/// Integer and bool tensors pass.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `module` and `what`, with the number of non-finite
/// values; [`Error::Torch`] if libtorch fails.
pub fn check_all_finite(module: &str, what: &str, x: &Tensor) -> Result<()> {
    check_defined(module, what, x)?;
    if !x.is_floating_point() {
        return Ok(());
    }
    let bad =
        x.f_isfinite().and_then(|f| f.f_logical_not()).and_then(|b| b.f_sum(Kind::Int64)).ctx(module)?;
    let bad = bad.f_int64_value(&[]).ctx(module)?;
    if bad == 0 {
        Ok(())
    } else {
        Err(Error::invalid(module, format!("{what} holds {bad} non-finite values (NaN or infinite)")))
    }
}

/// The product of `dims` (a shape, or a size and a factor), checking that it neither
/// overflows `i64` nor exceeds [`MAX_ELEMENTS`].
///
/// # Errors
/// [`Error::InvalidArgument`] naming `module` and `what` with the sizes.
pub fn checked_elements(module: &str, what: &str, dims: &[i64]) -> Result<i64> {
    let too_large = || {
        Error::invalid(
            module,
            format!("{what} {} is too large (more than {MAX_ELEMENTS} elements)", shape_str(dims)),
        )
    };
    let mut n: i64 = 1;
    for &d in dims {
        if d < 0 {
            return Err(Error::invalid(module, format!("{what} {} has a negative size", shape_str(dims))));
        }
        n = n.checked_mul(d).ok_or_else(too_large)?;
    }
    if n > MAX_ELEMENTS {
        return Err(too_large());
    }
    Ok(n)
}

/// Checks that `x`'s element count is at most [`MAX_ELEMENTS`], before couplet copies it to
/// the host or builds a host buffer of its size. A stride-0 expanded tensor can claim 2^40
/// elements while holding one.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `module` and `what` with the shape.
pub fn check_host_size(module: &str, what: &str, x: &Tensor) -> Result<()> {
    checked_elements(module, what, &x.size()).map(|_| ())
}

/// A size computed from configured sizes (`4 * hidden`, `kernel * dilation`, a fan), with
/// overflow and [`MAX_ELEMENTS`] checked.
///
/// # Errors
/// [`Error::Config`] naming `module`, saying which size is too large.
pub fn config_size(module: &str, what: &str, factors: &[i64]) -> Result<i64> {
    checked_elements(module, what, factors).map_err(|_| {
        Error::config(
            module,
            format!(
                "{what} ({}) is too large",
                factors.iter().map(i64::to_string).collect::<Vec<_>>().join(" × ")
            ),
        )
    })
}

/// The most layers (or other repeated parts) a config may ask for: 65536. Configs that build
/// one part per count check against it, so a huge count is an error instead of a hang.
pub const MAX_COUNT: i64 = 1 << 16;

/// Checks that a configured count (`num_layers`, `num_heads`, …) is in `min..=MAX_COUNT`.
///
/// # Errors
/// [`Error::Config`] naming `module` and `what` with the value.
pub fn check_count(module: &str, what: &str, value: i64, min: i64) -> Result<()> {
    if (min..=MAX_COUNT).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(module, format!("{what} must be in {min}..={MAX_COUNT}, got {value}")))
    }
}

/// Checks that a configured value is finite (a mean, a scale, an epsilon, a slope).
///
/// # Errors
/// [`Error::Config`] naming `module` and `what` with the value.
pub fn check_finite(module: &str, what: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::config(module, format!("{what} must be finite, got {value}")))
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

    #[test]
    fn undefined_tensors_are_invalid_arguments() {
        assert!(check_defined("m", "input", &Tensor::zeros([1], (Kind::Float, Device::Cpu))).is_ok());
        let e = check_defined("m", "input", &Tensor::new()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(e.to_string(), "m: input is an undefined tensor");
    }

    #[test]
    fn sizes_are_checked_for_overflow_and_the_bound() {
        assert_eq!(checked_elements("m", "mask", &[3, 4]).unwrap(), 12);
        assert_eq!(checked_elements("m", "mask", &[]).unwrap(), 1);
        assert_eq!(checked_elements("m", "mask", &[0, i64::MAX]).unwrap(), 0);
        assert_eq!(checked_elements("m", "mask", &[2, 1 << 30]).unwrap(), MAX_ELEMENTS);
        let e = checked_elements("m", "mask", &[2, (1 << 30) + 1]).unwrap_err();
        assert_eq!(e.to_string(), "m: mask [2, 1073741825] is too large (more than 2147483648 elements)");
        assert!(checked_elements("m", "mask", &[1 << 62, 4]).is_err(), "overflow");
        assert!(checked_elements("m", "mask", &[i64::MAX, i64::MAX]).is_err(), "overflow");
        assert!(checked_elements("m", "mask", &[-1, 3]).unwrap_err().to_string().contains("negative"));
        let big = Tensor::zeros([1], (Kind::Float, Device::Cpu)).expand([1 << 20, 1 << 20], false);
        assert!(check_host_size("m", "lengths", &big).is_err());
        assert!(check_host_size("m", "lengths", &Tensor::zeros([5], (Kind::Float, Device::Cpu))).is_ok());
        let e = config_size("lstm", "4 × hidden_size", &[4, 1 << 62]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lstm: bad configuration: 4 × hidden_size (4 × 4611686018427387904) is too large"
        );
        assert_eq!(config_size("lstm", "4 × hidden_size", &[4, 8]).unwrap(), 32);
    }

    #[test]
    fn non_finite_values_and_integer_kinds() {
        let x = Tensor::from_slice(&[1.0f32, f32::NAN, f32::INFINITY]);
        assert_eq!(
            check_all_finite("m", "w", &x).unwrap_err().to_string(),
            "m: w holds 2 non-finite values (NaN or infinite)"
        );
        assert!(check_all_finite("m", "w", &x.narrow(0, 0, 1)).is_ok());
        assert!(check_all_finite("m", "w", &Tensor::from_slice(&[1i64])).is_ok());
        let e = check_floating("m", "w", &Tensor::from_slice(&[1i64])).unwrap_err();
        assert_eq!(e.to_string(), "m: w kind must be floating point, got Int64");
        assert!(check_floating("m", "w", &Tensor::new()).is_err());
        assert!(check_floating("m", "w", &x).is_ok());
    }

    #[test]
    fn counts_are_bounded() {
        assert!(
            check_count("m", "num_layers", 1, 1).is_ok()
                && check_count("m", "num_layers", MAX_COUNT, 1).is_ok()
        );
        let e = check_count("m", "num_layers", 1 << 40, 1).unwrap_err();
        assert_eq!(e.to_string(), "m: bad configuration: num_layers must be in 1..=65536, got 1099511627776");
        assert!(check_count("m", "num_layers", 0, 1).is_err());
    }

    #[test]
    fn non_finite_configuration_is_refused() {
        assert!(check_finite("m", "std", 0.5).is_ok());
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = check_finite("m", "std", v).unwrap_err();
            assert!(matches!(e, Error::Config { .. }));
        }
        assert_eq!(
            check_finite("m", "std", f64::NAN).unwrap_err().to_string(),
            "m: bad configuration: std must be finite, got NaN"
        );
    }
}
