//! `BatchReshape` and `BatchFlatten`: reshape everything after the leading (batch)
//! dimensions (Sonnet v1's `snt.BatchReshape` / `snt.BatchFlatten`).

use crate::error::{Error, Result, TorchContext};
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use serde::{Deserialize, Serialize};
use tch::Tensor;

fn default_preserve_dims() -> usize {
    1
}

/// Configuration of a [`BatchReshape`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchReshapeConfig {
    /// The new shape of the dimensions after the preserved ones: entries > 0, and at most
    /// one `-1` standing for whatever size makes the element count match. Default `[-1]`
    /// (every non-preserved dimension flattened into one).
    pub shape: Vec<i64>,
    /// Number of leading dimensions kept as they are (>= 1). Default 1 (the batch).
    #[serde(default = "default_preserve_dims")]
    pub preserve_dims: usize,
}

impl Default for BatchReshapeConfig {
    fn default() -> Self {
        BatchReshapeConfig::new(&[-1])
    }
}

impl BatchReshapeConfig {
    /// A config reshaping the non-batch dimensions to `shape`, keeping one leading dimension.
    pub fn new(shape: &[i64]) -> Self {
        BatchReshapeConfig { shape: shape.to_vec(), preserve_dims: 1 }
    }
    /// Sets the number of preserved leading dimensions.
    pub fn with_preserve_dims(mut self, preserve_dims: usize) -> Self {
        self.preserve_dims = preserve_dims;
        self
    }
}

/// Reshapes `x [p1, .., pk, ..rest]` (the first `k = preserve_dims` dimensions preserved) to
/// `[p1, .., pk, ..shape]`, with a `-1` in `shape` inferred. No variables.
pub struct BatchReshape {
    scope: Scope,
    config: BatchReshapeConfig,
}

impl std::fmt::Debug for BatchReshape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReshape")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl BatchReshape {
    /// Builds a `BatchReshape` in a new child scope `batch_reshape` (or `batch_reshape_1`,
    /// …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `preserve_dims` is 0, or `shape` has an entry that is neither
    /// positive nor `-1`, or more than one `-1`.
    pub fn new(parent: &Scope, config: BatchReshapeConfig) -> Result<Self> {
        Self::named(parent, "batch_reshape", config)
    }

    /// Like [`BatchReshape::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: BatchReshapeConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        if config.preserve_dims == 0 {
            return Err(Error::config(module, "preserve_dims must be >= 1, got 0"));
        }
        let shape = &config.shape;
        let wildcards = shape.iter().filter(|&&d| d == -1).count();
        if wildcards > 1 || shape.iter().any(|&d| d <= 0 && d != -1) {
            return Err(Error::config(
                module,
                format!("shape must have entries > 0 and at most one -1, got {shape:?}"),
            ));
        }
        let known: Vec<i64> = shape.iter().copied().filter(|&d| d != -1).collect();
        crate::util::config_size(module, "shape's element count", &known)?;
        Ok(BatchReshape { scope, config })
    }

    /// The configuration.
    pub fn config(&self) -> &BatchReshapeConfig {
        &self.config
    }

    /// The output shape for an input of shape `size`, or `None` if the element counts
    /// cannot match.
    fn output_shape(&self, size: &[i64]) -> Option<Vec<i64>> {
        let k = self.config.preserve_dims;
        if size.len() < k {
            return None;
        }
        let elements: i64 = size[k..].iter().product();
        let known: i64 = self.config.shape.iter().filter(|&&d| d != -1).product();
        let has_wildcard = self.config.shape.contains(&-1);
        let fits = if has_wildcard { known > 0 && elements % known == 0 } else { known == elements };
        if !fits {
            return None;
        }
        let inferred = self.config.shape.iter().map(|&d| if d == -1 { elements / known } else { d });
        Some(size[..k].iter().copied().chain(inferred).collect())
    }

    /// Reshapes `x [p1, .., pk, ..rest]` → `[p1, .., pk, ..shape]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has fewer than `preserve_dims` dimensions, or its elements
    /// after them cannot be arranged as `shape`
    /// (`"batch_reshape: input must be [B, ..] with elements for [B, 5], got [2, 3, 4]"`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let module = self.scope.path();
        let size = x.size();
        let Some(out) = self.output_shape(&size) else {
            let k = self.config.preserve_dims;
            let lead: Vec<String> =
                (0..k).map(|i| if k == 1 { "B".to_string() } else { format!("B{i}") }).collect();
            let target = lead.iter().cloned().chain(self.config.shape.iter().map(i64::to_string));
            let expected = format!(
                "[{}, ..] with elements for [{}]",
                lead.join(", "),
                target.collect::<Vec<_>>().join(", ")
            );
            return Err(Error::shape(module, "input", expected, size));
        };
        x.f_reshape(&out).ctx(module)
    }
}

impl Module for BatchReshape {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Forward for BatchReshape {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

/// Configuration of a [`BatchFlatten`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchFlattenConfig {
    /// Number of leading dimensions kept as they are (>= 1). Default 1 (the batch).
    #[serde(default = "default_preserve_dims")]
    pub preserve_dims: usize,
}

impl Default for BatchFlattenConfig {
    fn default() -> Self {
        BatchFlattenConfig { preserve_dims: 1 }
    }
}

impl BatchFlattenConfig {
    /// A config keeping `preserve_dims` leading dimensions.
    pub fn new(preserve_dims: usize) -> Self {
        BatchFlattenConfig { preserve_dims }
    }
}

/// Flattens everything after the first `preserve_dims` dimensions: `[B, a, b, ..]` →
/// `[B, a·b·..]`. An input with exactly `preserve_dims` dimensions gets a trailing 1
/// (`[B]` → `[B, 1]`, as Sonnet v1; Sonnet v2's `Flatten` returns it unchanged).
/// A [`BatchReshape`] to `[-1]`; no variables.
pub struct BatchFlatten {
    reshape: BatchReshape,
}

impl std::fmt::Debug for BatchFlatten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let preserve_dims = self.reshape.config.preserve_dims;
        f.debug_struct("BatchFlatten")
            .field("scope", &self.scope().path())
            .field("preserve_dims", &preserve_dims)
            .finish()
    }
}

impl BatchFlatten {
    /// Builds a `BatchFlatten` in a new child scope `batch_flatten` (or `batch_flatten_1`,
    /// …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `preserve_dims` is 0.
    pub fn new(parent: &Scope, config: BatchFlattenConfig) -> Result<Self> {
        Self::named(parent, "batch_flatten", config)
    }

    /// Like [`BatchFlatten::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: BatchFlattenConfig) -> Result<Self> {
        let config = BatchReshapeConfig::new(&[-1]).with_preserve_dims(config.preserve_dims);
        Ok(BatchFlatten { reshape: BatchReshape::named(parent, name, config)? })
    }

    /// Flattens `x [p1, .., pk, ..rest]` → `[p1, .., pk, prod(rest)]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has fewer than `preserve_dims` dimensions.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::util::check_defined(self.name(), "input", x)?;
        let k = self.reshape.config.preserve_dims;
        if x.dim() < k {
            return Err(Error::shape(self.name(), "input", format!("of rank >= {k}"), x.size()));
        }
        self.reshape.forward(x)
    }
}

impl Module for BatchFlatten {
    fn scope(&self) -> &Scope {
        self.reshape.scope()
    }
}

impl Forward for BatchFlatten {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    fn arange(shape: &[i64]) -> Tensor {
        let n: i64 = shape.iter().product();
        Tensor::arange(n, (Kind::Float, Device::Cpu)).view(shape)
    }

    #[test]
    fn flatten_shapes() {
        let store = Store::cpu();
        let f = BatchFlatten::new(&store.root(), BatchFlattenConfig::default()).unwrap();
        let x = arange(&[2, 3, 4, 5]);
        let y = f.forward(&x).unwrap();
        assert_eq!(y.size(), [2, 60]);
        // Row-major order: element [1, 2, 3, 4] is at 1·60 + 2·20 + 3·5 + 4 = 119, column 59.
        assert_eq!(y.double_value(&[1, 59]), 119.0);
        assert_eq!(f.forward(&arange(&[7])).unwrap().size(), [7, 1]);
        let f2 = BatchFlatten::new(&store.root(), BatchFlattenConfig::new(2)).unwrap();
        assert_eq!(f2.name(), "batch_flatten_1");
        assert_eq!(f2.forward_t(&x, Mode::Eval).unwrap().size(), [2, 3, 20]);
        let e = f2.forward(&arange(&[4])).unwrap_err();
        assert_eq!(e.to_string(), "batch_flatten_1: input must be of rank >= 2, got [4]");
        // Non-contiguous inputs are fine.
        assert!(f.forward(&x.transpose(1, 3)).unwrap().equal(&x.transpose(1, 3).contiguous().view([2, 60])));
        assert!(f.variables().unwrap().is_empty());
        assert!(BatchFlatten::new(&store.root(), BatchFlattenConfig::new(0)).is_err());
    }

    #[test]
    fn reshape_infers_the_wildcard() {
        let store = Store::cpu();
        let r = BatchReshape::new(&store.root(), BatchReshapeConfig::new(&[2, -1, 3])).unwrap();
        let x = arange(&[4, 12]);
        let y = r.forward(&x).unwrap();
        assert_eq!(y.size(), [4, 2, 2, 3]);
        assert!(y.flatten(1, -1).equal(&x));
        let r2 =
            BatchReshape::new(&store.root(), BatchReshapeConfig::new(&[6]).with_preserve_dims(2)).unwrap();
        assert_eq!(r2.forward(&arange(&[2, 3, 2, 3])).unwrap().size(), [2, 3, 6]);
        // An empty shape squeezes trailing size-1 dimensions away.
        let r3 = BatchReshape::new(&store.root(), BatchReshapeConfig::new(&[])).unwrap();
        assert_eq!(r3.forward(&arange(&[5, 1, 1])).unwrap().size(), [5]);
    }

    #[test]
    fn mismatched_counts_name_both_shapes() {
        let store = Store::cpu();
        let r = BatchReshape::new(&store.root(), BatchReshapeConfig::new(&[5])).unwrap();
        let e = r.forward(&arange(&[2, 3, 4])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }));
        assert_eq!(
            e.to_string(),
            "batch_reshape: input must be [B, ..] with elements for [B, 5], got [2, 3, 4]"
        );
        let r = BatchReshape::new(&store.root(), BatchReshapeConfig::new(&[5, -1]).with_preserve_dims(2))
            .unwrap();
        let e = r.forward(&arange(&[2, 3, 4])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "batch_reshape_1: input must be [B0, B1, ..] with elements for [B0, B1, 5, -1], got [2, 3, 4]"
        );
        let e = r.forward(&arange(&[2])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }

    #[test]
    fn config_errors_and_serde() {
        let store = Store::cpu();
        for shape in [&[-1, -1][..], &[0, 2], &[-2]] {
            let e = BatchReshape::new(&store.root(), BatchReshapeConfig::new(shape)).unwrap_err();
            assert!(e.to_string().contains("at most one -1"), "{e}");
        }
        let e = BatchReshape::new(&store.root(), BatchReshapeConfig::new(&[2]).with_preserve_dims(0))
            .unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        let c: BatchReshapeConfig = serde_json::from_str(r#"{"shape": [-1, 4]}"#).unwrap();
        assert_eq!(c, BatchReshapeConfig::new(&[-1, 4]));
        let c: BatchFlattenConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.preserve_dims, 1);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<BatchReshape>();
        send::<BatchFlatten>();
    }

    #[test]
    fn default_config_flattens_the_non_batch_dimensions() {
        let store = Store::cpu();
        let r = BatchReshape::new(&store.root(), BatchReshapeConfig::default()).unwrap();
        let y = r.forward(&Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(y.size(), [2, 12]);
    }
}
