//! `AddBias`: `y = x + b` with a learned bias `b` (Sonnet's `snt.AddBias` / `snt.Bias`).

use crate::error::{Error, Result, TorchContext};
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::{build_once, check_keys, shape_str};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// Configuration of an [`AddBias`] module.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddBiasConfig {
    /// The input's shape without the batch dimension, `[d1, .., dn]`. `Some` creates `b`
    /// at construction; `None` (default) creates it from the first input.
    pub output_size: Option<Vec<i64>>,
    /// Which dimensions of the input (counted with the batch dimension as 0; negative
    /// values count from the end) the bias varies along, as Sonnet's `bias_dims`. `None`
    /// (default): every dimension after the batch one, so `b` has shape `[d1, .., dn]`.
    /// `Some(vec![])`: a scalar bias `[]`. Otherwise `b` takes the input's size on the
    /// listed dimensions and 1 elsewhere, with the leading ones dropped: `[-1]` on
    /// `[B, H, W, C]` gives `b [C]`, `[1, 2]` gives `b [H, W, 1]`. Dimension 0 (the batch)
    /// may not be listed.
    pub bias_dims: Option<Vec<i64>>,
    /// Initializers by variable name (`"b"`). Default zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"b"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl AddBiasConfig {
    /// A config with every field at its default: `b` over all non-batch dimensions,
    /// created from the first input, initialized to zeros.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the input shape without the batch dimension, so `b` is created at construction.
    pub fn with_output_size(mut self, output_size: &[i64]) -> Self {
        self.output_size = Some(output_size.to_vec());
        self
    }
    /// Sets the dimensions the bias varies along (see [`AddBiasConfig::bias_dims`]).
    pub fn with_bias_dims(mut self, bias_dims: &[i64]) -> Self {
        self.bias_dims = Some(bias_dims.to_vec());
        self
    }
    /// Overrides the initializer of `b`.
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to `b`.
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

struct AddBiasVars {
    /// The input shape without the batch dimension, fixed by the first input.
    input_size: Vec<i64>,
    b: Tensor,
}

/// Adds a learned bias: `x [B, d1, .., dn]` → `x + b`, same shape, with `b [d1, .., dn]`
/// (or the shape chosen by `bias_dims`) broadcast over the batch. Variable `b` as in Sonnet.
pub struct AddBias {
    scope: Scope,
    config: AddBiasConfig,
    vars: OnceLock<AddBiasVars>,
}

impl std::fmt::Debug for AddBias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddBias").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl AddBias {
    /// Builds an `AddBias` in a new child scope `add_bias` (or `add_bias_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty `output_size` or a non-positive entry, a `bias_dims` entry that
    /// is 0 or outside `output_size`'s rank, or an initializer/regularizer key other than `b`.
    pub fn new(parent: &Scope, config: AddBiasConfig) -> Result<Self> {
        Self::named(parent, "add_bias", config)
    }

    /// Like [`AddBias::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: AddBiasConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        check_keys(module, "initializers", config.initializers.keys(), &["b"])?;
        check_keys(module, "regularizers", config.regularizers.keys(), &["b"])?;
        if let Some(size) = config.output_size.as_ref().filter(|s| s.is_empty() || s.iter().any(|&d| d <= 0))
        {
            return Err(Error::config(
                module,
                format!("output_size must be non-empty with entries > 0, got {size:?}"),
            ));
        }
        if let Some(dims) = config.bias_dims.as_ref().filter(|d| d.contains(&0)) {
            return Err(Error::config(
                module,
                format!("bias_dims may not include the batch dimension 0, got {dims:?}"),
            ));
        }
        let module = AddBias { scope, config, vars: OnceLock::new() };
        if let Some(size) = module.config.output_size.clone() {
            if size.len() + 1 < module.min_rank() {
                return Err(Error::config(
                    module.name(),
                    format!("bias_dims {:?} do not fit output_size {size:?}", module.config.bias_dims),
                ));
            }
            module.build(size)?;
        }
        Ok(module)
    }

    /// The smallest input rank (batch included) that every `bias_dims` entry fits.
    fn min_rank(&self) -> usize {
        let dims = self.config.bias_dims.iter().flatten();
        dims.map(|&d| d.unsigned_abs() as usize + 1).max().unwrap_or(0).max(2)
    }

    /// The shape of `b` for an input of shape `[B] ++ input_size`, whose rank is at least
    /// [`AddBias::min_rank`] (so every `bias_dims` entry names a non-batch dimension).
    fn bias_shape(&self, input_size: &[i64]) -> Vec<i64> {
        let Some(dims) = &self.config.bias_dims else {
            return input_size.to_vec();
        };
        let rank = input_size.len() as i64 + 1;
        let mut shape = vec![1; input_size.len()];
        for &d in dims {
            let i = (if d < 0 { d + rank } else { d }) as usize - 1;
            shape[i] = input_size[i];
        }
        let start = shape.iter().position(|&s| s != 1).unwrap_or(shape.len());
        shape[start..].to_vec()
    }

    fn build(&self, input_size: Vec<i64>) -> Result<&AddBiasVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let b = self
                .scope
                .var("b", &self.bias_shape(&input_size))
                .init(c.initializers.get("b").cloned().unwrap_or(Initializer::Zeros))
                .regularizer(c.regularizers.get("b").cloned())
                .create()?;
            Ok(AddBiasVars { input_size, b })
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AddBiasConfig {
        &self.config
    }

    /// The bias `b`.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy `AddBias`.
    pub fn b(&self) -> Result<&Tensor> {
        self.vars.get().map(|v| &v.b).ok_or_else(|| Error::NotBuilt { module: self.name().to_string() })
    }

    /// Adds the bias: `x [B, d1, .., dn]` → `[B, d1, .., dn]`. The first call of a lazy
    /// `AddBias` creates `b` from `x`'s shape; later calls must have the same `[d1, .., dn]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has rank < 2, if its non-batch shape differs from the
    /// first input's (`"add_bias: input must be [B, 3, 4], got [2, 3, 5]"`), if `bias_dims`
    /// does not fit its rank, or if its kind differs from the store's.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let module = self.scope.path();
        let size = x.size();
        let expected = |s: &[i64]| format!("[B, {}]", shape_str(s).trim_matches(['[', ']']));
        if let Some(vars) = self.vars.get() {
            if size.len() < 2 || size[1..] != vars.input_size[..] {
                return Err(Error::shape(module, "input", expected(&vars.input_size), size));
            }
        } else if size.len() < self.min_rank() {
            let expected = match &self.config.bias_dims {
                Some(dims) => format!("[B, ..] with rank >= {} for bias_dims {dims:?}", self.min_rank()),
                None => "[B, d1, ..] with rank >= 2".to_string(),
            };
            return Err(Error::shape(module, "input", expected, size));
        }
        self.scope.check_kind("input", x)?;
        let vars = self.build(size[1..].to_vec())?;
        x.f_add(&vars.b).ctx(module)
    }
}

impl Module for AddBias {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl Forward for AddBias {
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
    fn adds_b_to_every_batch_row() {
        let store = Store::cpu();
        let ab = AddBias::new(&store.root(), AddBiasConfig::new()).unwrap();
        assert!(!ab.is_built());
        let x = arange(&[2, 3]); // [[0, 1, 2], [3, 4, 5]]
        let y = ab.forward(&x).unwrap();
        assert!(y.equal(&x), "b starts at zero");
        assert_eq!(ab.b().unwrap().size(), [3]);
        tch::no_grad(|| ab.b().unwrap().shallow_clone().copy_(&Tensor::from_slice(&[10.0f32, 20.0, 30.0])));
        let y = Vec::<f32>::try_from(ab.forward(&x).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(y, [10.0, 21.0, 32.0, 13.0, 24.0, 35.0]);
        let names: Vec<_> = ab.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["add_bias/b"]);
    }

    #[test]
    fn bias_shape_covers_all_non_batch_dims_by_default() {
        let store = Store::cpu();
        let ab = AddBias::new(&store.root(), AddBiasConfig::new()).unwrap();
        let _ = ab.forward(&arange(&[2, 3, 4])).unwrap();
        assert_eq!(ab.b().unwrap().size(), [3, 4]);
        // A later input must have the same non-batch shape; the batch may change.
        assert_eq!(ab.forward(&arange(&[5, 3, 4])).unwrap().size(), [5, 3, 4]);
        let e = ab.forward(&arange(&[2, 3, 5])).unwrap_err();
        assert_eq!(e.to_string(), "add_bias: input must be [B, 3, 4], got [2, 3, 5]");
        let e = ab.forward(&arange(&[12])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }

    #[test]
    fn bias_dims_follow_sonnet() {
        let store = Store::cpu();
        let root = store.root();
        let cases: [(&[i64], &[i64]); 4] =
            [(&[-1], &[5]), (&[1, 2], &[3, 4, 1]), (&[2], &[4, 1]), (&[], &[])];
        for (dims, want) in cases {
            let ab = AddBias::new(&root, AddBiasConfig::new().with_bias_dims(dims)).unwrap();
            let x = arange(&[2, 3, 4, 5]);
            assert_eq!(ab.forward(&x).unwrap().size(), [2, 3, 4, 5]);
            assert_eq!(ab.b().unwrap().size(), want, "bias_dims {dims:?}");
        }
        // `[1]` on [B, 2, 2]: b [2, 1] of ones adds 1 everywhere.
        let ab = AddBias::new(
            &root,
            AddBiasConfig::new().with_bias_dims(&[1]).with_initializer("b", Initializer::Ones),
        )
        .unwrap();
        let y = ab.forward(&arange(&[1, 2, 2])).unwrap();
        assert_eq!(Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ab.b().unwrap().size(), [2, 1]);
        // The batch dimension and dimensions past the rank are refused.
        let e = AddBias::new(&root, AddBiasConfig::new().with_bias_dims(&[0])).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let ab = AddBias::new(&root, AddBiasConfig::new().with_bias_dims(&[-3])).unwrap();
        let e = ab.forward(&arange(&[2, 3])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "add_bias_6: input must be [B, ..] with rank >= 4 for bias_dims [-3], got [2, 3]"
        );
        assert_eq!(ab.forward(&arange(&[2, 3, 4, 5])).unwrap().size(), [2, 3, 4, 5]);
        assert_eq!(ab.b().unwrap().size(), [3, 1, 1]);
        let e = AddBias::new(&root, AddBiasConfig::new().with_output_size(&[3]).with_bias_dims(&[2]))
            .unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }

    #[test]
    fn given_output_size_builds_eagerly() {
        let store = Store::cpu();
        let ab = AddBias::new(
            &store.root(),
            AddBiasConfig::new().with_output_size(&[2, 3]).with_initializer("b", Initializer::Ones),
        )
        .unwrap();
        assert!(ab.is_built());
        assert_eq!(store.variable_names(), ["add_bias/b"]);
        let e = ab.forward(&arange(&[4, 3, 2])).unwrap_err();
        assert_eq!(e.to_string(), "add_bias: input must be [B, 2, 3], got [4, 3, 2]");
        assert_eq!(ab.forward(&arange(&[4, 2, 3])).unwrap().sum(Kind::Float).double_value(&[]), 300.0);
    }

    #[test]
    fn config_errors() {
        let store = Store::cpu();
        let e = AddBias::new(&store.root(), AddBiasConfig::new().with_output_size(&[0])).unwrap_err();
        assert!(e.to_string().contains("output_size must be non-empty with entries > 0"), "{e}");
        let e = AddBias::new(&store.root(), AddBiasConfig::new().with_output_size(&[])).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let e = AddBias::new(&store.root(), AddBiasConfig::new().with_initializer("w", Initializer::Ones))
            .unwrap_err();
        assert!(e.to_string().contains("valid keys: [\"b\"]"), "{e}");
        let c: AddBiasConfig = serde_json::from_str(r#"{"bias_dims": [-1]}"#).unwrap();
        assert_eq!(c, AddBiasConfig::new().with_bias_dims(&[-1]));
    }

    #[test]
    fn gradient_reaches_b() {
        let store = Store::cpu();
        let ab = AddBias::new(&store.root(), AddBiasConfig::new()).unwrap();
        ab.forward(&arange(&[4, 2])).unwrap().sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(ab.b().unwrap().grad()).unwrap(), [4.0, 4.0]);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<AddBias>();
    }
}
