//! `TileByDim`: repeats a tensor along chosen dimensions (Sonnet v1's `snt.TileByDim`).

use crate::error::{Error, Result, TorchContext};
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use crate::util::check_defined;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`TileByDim`]: two lists of equal length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileByDimConfig {
    /// The tiled dimensions (distinct, >= 0).
    pub dims: Vec<usize>,
    /// How many copies along each (> 0).
    pub multiples: Vec<i64>,
}

impl TileByDimConfig {
    /// Tiles `multiples[i]` copies along each `dims[i]`.
    pub fn new(dims: &[usize], multiples: &[i64]) -> Self {
        TileByDimConfig { dims: dims.to_vec(), multiples: multiples.to_vec() }
    }
}

/// Tiles `x` along `dims`: dimension `dims[i]` of size `n` becomes `n · multiples[i]`, the
/// whole of `x` repeated along it (as `tf.tile`: `[a, b]` tiled 2 times is `[a, b, a, b]`).
/// Other dimensions are unchanged. No variables.
pub struct TileByDim {
    scope: Scope,
    config: TileByDimConfig,
}

impl std::fmt::Debug for TileByDim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileByDim").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl TileByDim {
    /// Builds a `TileByDim` in a new child scope `tile_by_dim` (or `tile_by_dim_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if the lists differ in length or are empty, `dims` repeats a
    /// dimension, or a multiple is not positive.
    pub fn new(parent: &Scope, config: TileByDimConfig) -> Result<Self> {
        Self::named(parent, "tile_by_dim", config)
    }

    /// Like [`TileByDim::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: TileByDimConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        let c = &config;
        if c.dims.is_empty() || c.dims.len() != c.multiples.len() {
            return Err(Error::config(
                module,
                format!(
                    "dims and multiples must be non-empty lists of one length, got {:?}, {:?}",
                    c.dims, c.multiples
                ),
            ));
        }
        let mut sorted = c.dims.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != c.dims.len() {
            return Err(Error::config(module, format!("dims must be distinct, got {:?}", c.dims)));
        }
        if c.multiples.iter().any(|&m| m <= 0) {
            return Err(Error::config(module, format!("multiples must be > 0, got {:?}", c.multiples)));
        }
        Ok(TileByDim { scope, config })
    }

    /// The configuration.
    pub fn config(&self) -> &TileByDimConfig {
        &self.config
    }

    /// Tiles `x` (rank > every entry of `dims`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has no dimension `dims[i]`; [`Error::InvalidArgument`] if `x` is
    /// undefined or a tiled size overflows `i64`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let module = self.scope.path();
        check_defined(module, "input", x)?;
        let size = x.size();
        let mut repeats = vec![1i64; size.len()];
        for (&d, &m) in self.config.dims.iter().zip(&self.config.multiples) {
            if d >= size.len() {
                return Err(Error::shape(module, "input", format!("rank > {d}"), size));
            }
            if size[d].checked_mul(m).is_none() {
                return Err(Error::invalid(
                    module,
                    format!("dim {d} of {size:?} tiled {m} times overflows i64"),
                ));
            }
            repeats[d] = m;
        }
        x.f_repeat(repeats).ctx(module)
    }
}

impl Module for TileByDim {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Forward for TileByDim {
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
    fn tiles_like_tf_tile() {
        let store = Store::cpu();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let t = TileByDim::new(&store.root(), TileByDimConfig::new(&[1], &[2])).unwrap();
        let y = Vec::<f32>::try_from(t.forward(&x).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(y, [1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
        let t = TileByDim::new(&store.root(), TileByDimConfig::new(&[0, 1], &[3, 1])).unwrap();
        assert_eq!(t.forward(&x).unwrap().size(), [6, 2]);
    }

    #[test]
    fn errors_name_the_module() {
        let store = Store::cpu();
        let e = TileByDim::new(&store.root(), TileByDimConfig::new(&[0], &[0])).unwrap_err();
        assert_eq!(e.to_string(), "tile_by_dim: bad configuration: multiples must be > 0, got [0]");
        assert!(TileByDim::new(&store.root(), TileByDimConfig::new(&[0, 0], &[1, 2])).is_err());
        assert!(TileByDim::new(&store.root(), TileByDimConfig::new(&[], &[])).is_err());
        let t = TileByDim::new(&store.root(), TileByDimConfig::new(&[2], &[2])).unwrap();
        let e = t.forward(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "tile_by_dim_3: input must be rank > 2, got [2, 3]");
        let t = TileByDim::new(&store.root(), TileByDimConfig::new(&[0], &[i64::MAX])).unwrap();
        let e = t.forward(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert!(matches!(t.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
