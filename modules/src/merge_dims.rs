//! `MergeDims`: merges a run of consecutive dimensions into one (Sonnet v1's `snt.MergeDims`).

use crate::error::{Error, Result, TorchContext};
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use crate::util::check_defined;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`MergeDims`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeDimsConfig {
    /// Index of the first merged dimension (>= 0).
    pub start: usize,
    /// Number of merged dimensions (>= 2, as in Sonnet: merging one dimension is no merge).
    pub size: usize,
}

impl MergeDimsConfig {
    /// Merges `size` dimensions from `start`.
    pub fn new(start: usize, size: usize) -> Self {
        MergeDimsConfig { start, size }
    }
}

/// Merges dimensions `start .. start + size` of `x` into one of their product:
/// `[d0, .., d(s-1), ds, .., d(s+n-1), ..rest]` → `[d0, .., d(s-1), ds·..·d(s+n-1), ..rest]`.
/// `MergeDims(0, 2)` on `[T, B, I]` gives `[T·B, I]`. No variables.
pub struct MergeDims {
    scope: Scope,
    config: MergeDimsConfig,
}

impl std::fmt::Debug for MergeDims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeDims").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl MergeDims {
    /// Builds a `MergeDims` in a new child scope `merge_dims` (or `merge_dims_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `size < 2`.
    pub fn new(parent: &Scope, config: MergeDimsConfig) -> Result<Self> {
        Self::named(parent, "merge_dims", config)
    }

    /// Like [`MergeDims::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: MergeDimsConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        if config.size < 2 {
            return Err(Error::config(scope.path(), format!("size must be >= 2, got {}", config.size)));
        }
        Ok(MergeDims { scope, config })
    }

    /// The configuration.
    pub fn config(&self) -> &MergeDimsConfig {
        &self.config
    }

    /// Merges the configured dimensions of `x` (rank >= `start + size`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has fewer than `start + size` dimensions
    /// (`"merge_dims: input must be rank >= 3, got [2, 3]"`); [`Error::InvalidArgument`] if `x`
    /// is undefined or the merged size overflows `i64`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let module = self.scope.path();
        check_defined(module, "input", x)?;
        let (start, n) = (self.config.start, self.config.size);
        let size = x.size();
        let end = start.checked_add(n).filter(|&e| e <= size.len());
        let Some(end) = end else {
            let rank = start.saturating_add(n);
            return Err(Error::shape(module, "input", format!("rank >= {rank}"), size));
        };
        let merged =
            size[start..end].iter().try_fold(1i64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
                Error::invalid(module, format!("merged size of {:?} overflows i64", &size[start..end]))
            })?;
        let out: Vec<i64> =
            size[..start].iter().copied().chain([merged]).chain(size[end..].iter().copied()).collect();
        x.f_reshape(out).ctx(module)
    }
}

impl Module for MergeDims {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Forward for MergeDims {
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
    fn merges_the_configured_run_of_dimensions() {
        let store = Store::cpu();
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let m = MergeDims::new(&store.root(), MergeDimsConfig::new(1, 2)).unwrap();
        let y = m.forward(&x).unwrap();
        assert_eq!(y.size(), [2, 12, 5]);
        // Row-major order is kept: element [1, 2, 3, 4] of x is [1, 2·4 + 3, 4] of y.
        assert_eq!(y.double_value(&[1, 11, 4]), x.double_value(&[1, 2, 3, 4]));
        let all = MergeDims::new(&store.root(), MergeDimsConfig::new(0, 4)).unwrap();
        assert_eq!(all.forward(&x).unwrap().size(), [120]);
    }

    #[test]
    fn errors_name_the_module() {
        let store = Store::cpu();
        let e = MergeDims::new(&store.root(), MergeDimsConfig::new(0, 1)).unwrap_err();
        assert_eq!(e.to_string(), "merge_dims: bad configuration: size must be >= 2, got 1");
        let m = MergeDims::new(&store.root(), MergeDimsConfig::new(1, 2)).unwrap();
        let e = m.forward(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "merge_dims_1: input must be rank >= 3, got [2, 3]");
        let e = m.forward(&Tensor::new()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let huge = MergeDims::new(&store.root(), MergeDimsConfig::new(usize::MAX, 2)).unwrap();
        let e = huge.forward(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
}
