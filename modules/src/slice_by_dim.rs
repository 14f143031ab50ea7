//! `SliceByDim`: slices chosen dimensions, leaving the others whole (Sonnet v1's
//! `snt.SliceByDim`).

use crate::error::{Error, Result, TorchContext};
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use crate::util::check_defined;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`SliceByDim`]: three lists of equal length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceByDimConfig {
    /// The sliced dimensions (distinct, >= 0).
    pub dims: Vec<usize>,
    /// Where each slice starts (>= 0).
    pub begin: Vec<i64>,
    /// Length of each slice (> 0), or `-1` for everything from `begin` to the end.
    pub size: Vec<i64>,
}

impl SliceByDimConfig {
    /// Slices `x[.., begin[i] .. begin[i] + size[i], ..]` along each `dims[i]`.
    pub fn new(dims: &[usize], begin: &[i64], size: &[i64]) -> Self {
        SliceByDimConfig { dims: dims.to_vec(), begin: begin.to_vec(), size: size.to_vec() }
    }
}

/// Slices `x` along `dims`: along `dims[i]` it keeps `begin[i] .. begin[i] + size[i]` (to the
/// end for `size[i] = -1`); other dimensions are kept whole. `SliceByDim([1], [2], [3])` on
/// `[B, 10, C]` gives `x[:, 2:5, :]`, `[B, 3, C]`. A view of `x` (no copy); no variables.
pub struct SliceByDim {
    scope: Scope,
    config: SliceByDimConfig,
}

impl std::fmt::Debug for SliceByDim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceByDim").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl SliceByDim {
    /// Builds a `SliceByDim` in a new child scope `slice_by_dim` (or `slice_by_dim_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if the three lists differ in length or are empty, `dims` repeats a
    /// dimension, a `begin` is negative, or a `size` is neither positive nor `-1`.
    pub fn new(parent: &Scope, config: SliceByDimConfig) -> Result<Self> {
        Self::named(parent, "slice_by_dim", config)
    }

    /// Like [`SliceByDim::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: SliceByDimConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        let c = &config;
        if c.dims.is_empty() || c.dims.len() != c.begin.len() || c.dims.len() != c.size.len() {
            return Err(Error::config(
                module,
                format!(
                    "dims, begin and size must be non-empty lists of one length, got {:?}, {:?}, {:?}",
                    c.dims, c.begin, c.size
                ),
            ));
        }
        let mut sorted = c.dims.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != c.dims.len() {
            return Err(Error::config(module, format!("dims must be distinct, got {:?}", c.dims)));
        }
        if c.begin.iter().any(|&b| b < 0) || c.size.iter().any(|&s| s <= 0 && s != -1) {
            return Err(Error::config(
                module,
                format!("begin must be >= 0 and size > 0 or -1, got begin {:?}, size {:?}", c.begin, c.size),
            ));
        }
        Ok(SliceByDim { scope, config })
    }

    /// The configuration.
    pub fn config(&self) -> &SliceByDimConfig {
        &self.config
    }

    /// Slices `x` (rank > every entry of `dims`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has no dimension `dims[i]` or a slice ends past it
    /// (`"slice_by_dim: input must be [.., >= 5 at dim 1, ..], got [2, 4]"`);
    /// [`Error::InvalidArgument`] if `x` is undefined.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let module = self.scope.path();
        check_defined(module, "input", x)?;
        let size = x.size();
        let c = &self.config;
        let mut y = x.shallow_clone();
        for ((&d, &b), &n) in c.dims.iter().zip(&c.begin).zip(&c.size) {
            if d >= size.len() {
                return Err(Error::shape(module, "input", format!("rank > {d}"), size));
            }
            let end = if n == -1 { Some(size[d]).filter(|&e| b <= e) } else { b.checked_add(n) };
            let Some(end) = end.filter(|&e| e <= size[d]) else {
                let need = if n == -1 { b } else { b.saturating_add(n) };
                return Err(Error::shape(module, "input", format!("[.., >= {need} at dim {d}, ..]"), size));
            };
            y = y.f_slice(d as i64, b, end, 1).ctx(module)?;
        }
        Ok(y)
    }
}

impl Module for SliceByDim {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Forward for SliceByDim {
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
    fn slices_each_listed_dimension() {
        let store = Store::cpu();
        let x = Tensor::arange(2 * 6 * 5, (Kind::Float, Device::Cpu)).view([2, 6, 5]);
        let s = SliceByDim::new(&store.root(), SliceByDimConfig::new(&[2, 1], &[1, 2], &[3, -1])).unwrap();
        let y = s.forward(&x).unwrap();
        assert_eq!(y.size(), [2, 4, 3]);
        // y[b, i, j] = x[b, 2 + i, 1 + j] = 30 b + 5 (2 + i) + 1 + j.
        for (b, i, j) in [(0, 0, 0), (1, 3, 2), (0, 2, 1)] {
            assert_eq!(y.double_value(&[b, i, j]), (30 * b + 5 * (2 + i) + 1 + j) as f64);
        }
    }

    #[test]
    fn errors_name_the_module() {
        let store = Store::cpu();
        let root = store.root();
        let e = SliceByDim::new(&root, SliceByDimConfig::new(&[1], &[0, 1], &[1])).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let e = SliceByDim::new(&root, SliceByDimConfig::new(&[1, 1], &[0, 0], &[1, 1])).unwrap_err();
        assert!(e.to_string().contains("distinct"), "{e}");
        let e = SliceByDim::new(&root, SliceByDimConfig::new(&[1], &[0], &[0])).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let s = SliceByDim::new(&root, SliceByDimConfig::new(&[1], &[2], &[3])).unwrap();
        let x = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
        let e = s.forward(&x).unwrap_err();
        assert_eq!(e.to_string(), "slice_by_dim_3: input must be [.., >= 5 at dim 1, ..], got [2, 4]");
        let s = SliceByDim::new(&root, SliceByDimConfig::new(&[2], &[0], &[-1])).unwrap();
        assert!(matches!(s.forward(&x).unwrap_err(), Error::Shape { .. }));
        let s = SliceByDim::new(&root, SliceByDimConfig::new(&[1], &[5], &[-1])).unwrap();
        assert!(matches!(s.forward(&x).unwrap_err(), Error::Shape { .. }));
        assert!(matches!(s.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
