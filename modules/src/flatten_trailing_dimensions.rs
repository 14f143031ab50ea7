//! `FlattenTrailingDimensions`: flattens every dimension from a given one on (Sonnet v1's
//! `snt.FlattenTrailingDimensions`).

use crate::error::Result;
use crate::module::{Forward, Mode, Module};
use crate::reshape::{BatchFlatten, BatchFlattenConfig};
use crate::store::Scope;
use crate::util::check_defined;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`FlattenTrailingDimensions`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlattenTrailingDimensionsConfig {
    /// The first flattened dimension (>= 1); the dimensions before it are kept.
    pub dim_from: usize,
}

impl FlattenTrailingDimensionsConfig {
    /// Flattens dimensions `dim_from..` into one.
    pub fn new(dim_from: usize) -> Self {
        FlattenTrailingDimensionsConfig { dim_from }
    }
}

/// Flattens `x [d0, .., d(k-1), ..rest]` (`k = dim_from`) to `[d0, .., d(k-1), prod(rest)]`;
/// an input of rank exactly `k` gets a trailing 1, as Sonnet v1. Sonnet v1 builds it as a
/// `BatchReshape` keeping `dim_from` dimensions, and so does couplet: it is a
/// [`BatchFlatten`] with `preserve_dims = dim_from` in a scope of its own name. No variables.
pub struct FlattenTrailingDimensions {
    flatten: BatchFlatten,
}

impl std::fmt::Debug for FlattenTrailingDimensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlattenTrailingDimensions").field("flatten", &self.flatten).finish()
    }
}

impl FlattenTrailingDimensions {
    /// Builds it in a new child scope `flatten_trailing_dimensions` (or `.._1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if `dim_from` is 0.
    pub fn new(parent: &Scope, config: FlattenTrailingDimensionsConfig) -> Result<Self> {
        Self::named(parent, "flatten_trailing_dimensions", config)
    }

    /// Like [`FlattenTrailingDimensions::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: FlattenTrailingDimensionsConfig) -> Result<Self> {
        Ok(FlattenTrailingDimensions {
            flatten: BatchFlatten::named(parent, name, BatchFlattenConfig::new(config.dim_from))?,
        })
    }

    /// Flattens `x` (rank >= `dim_from`).
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) if `x` has fewer than `dim_from` dimensions;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `x` is undefined.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_defined(self.name(), "input", x)?;
        self.flatten.forward(x)
    }
}

impl Module for FlattenTrailingDimensions {
    fn scope(&self) -> &Scope {
        self.flatten.scope()
    }
}

impl Forward for FlattenTrailingDimensions {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Store};
    use tch::{Device, Kind};

    #[test]
    fn flattens_from_dim_from() {
        let store = Store::cpu();
        let f =
            FlattenTrailingDimensions::new(&store.root(), FlattenTrailingDimensionsConfig::new(2)).unwrap();
        assert_eq!(f.name(), "flatten_trailing_dimensions");
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let y = f.forward(&x).unwrap();
        assert_eq!(y.size(), [2, 3, 20]);
        assert_eq!(y.double_value(&[1, 2, 19]), x.double_value(&[1, 2, 3, 4]));
        assert_eq!(f.forward(&x.view([6, 20])).unwrap().size(), [6, 20, 1]);
        let e = f.forward(&x.view([120])).unwrap_err();
        assert_eq!(e.to_string(), "flatten_trailing_dimensions: input must be of rank >= 2, got [120]");
        assert!(matches!(f.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
        assert!(
            FlattenTrailingDimensions::new(&store.root(), FlattenTrailingDimensionsConfig::new(0)).is_err()
        );
    }
}
