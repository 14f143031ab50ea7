//! `Embed`: a learned lookup table from integer ids to vectors (Sonnet's `snt.Embed`).

use crate::error::{Error, Result, TorchContext};
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::{check_all_finite, check_floating, check_keys, config_size};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Configuration of an [`Embed`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbedConfig {
    /// Number of ids `V` (> 0); valid ids are `0..V`. Default 1.
    pub vocab_size: i64,
    /// Size `D` of each embedding vector (> 0). Default 1.
    pub embed_dim: i64,
    /// Whether optimizers train the embeddings. Default `true`; `false` makes
    /// `embeddings` a non-trainable variable (frozen, e.g. pretrained, vectors).
    pub trainable: bool,
    /// Initializers by variable name (`"embeddings"`). Default truncated normal with
    /// `std = 1` (Sonnet). Not allowed with a pretrained matrix.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"embeddings"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            vocab_size: 1,
            embed_dim: 1,
            trainable: true,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl EmbedConfig {
    /// A config for `vocab_size` ids of `embed_dim` features, every other field at its default.
    pub fn new(vocab_size: i64, embed_dim: i64) -> Self {
        EmbedConfig { vocab_size, embed_dim, ..Default::default() }
    }
    /// Sets whether the embeddings are trainable.
    pub fn with_trainable(mut self, trainable: bool) -> Self {
        self.trainable = trainable;
        self
    }
    /// Overrides the initializer of `embeddings`.
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to `embeddings`.
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

/// Looks up ids in a table: `ids [..]` (integers in `0..V`) → `[.., D]`, row `ids[..]` of the
/// variable `embeddings [V, D]` (Sonnet's name). Built at construction.
pub struct Embed {
    scope: Scope,
    config: EmbedConfig,
    embeddings: Tensor,
}

impl std::fmt::Debug for Embed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embed").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl Embed {
    /// Builds an `Embed` in a new child scope `embed` (or `embed_1`, …) of `parent`, with
    /// `embeddings` drawn from the initializer.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-positive size or an initializer/regularizer key other than
    /// `embeddings`.
    pub fn new(parent: &Scope, config: EmbedConfig) -> Result<Self> {
        Self::named(parent, "embed", config)
    }

    /// Like [`Embed::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: EmbedConfig) -> Result<Self> {
        Self::build(parent, name, config, None)
    }

    /// Builds an `Embed` in a new child scope `embed` of `parent` whose `embeddings` start as
    /// a copy of `matrix [V, D]` (any floating kind and device; converted to the store's).
    ///
    /// # Errors
    /// [`Error::Shape`] if `matrix` is not `[vocab_size, embed_dim]` or not floating point;
    /// [`Error::InvalidArgument`] if it is undefined or holds NaN or infinite values;
    /// [`Error::Config`] as for [`Embed::new`], or if an initializer is also given.
    pub fn from_pretrained(parent: &Scope, matrix: &Tensor, config: EmbedConfig) -> Result<Self> {
        Self::named_from_pretrained(parent, "embed", matrix, config)
    }

    /// Like [`Embed::from_pretrained`] with the child scope named `name`.
    pub fn named_from_pretrained(
        parent: &Scope,
        name: &str,
        matrix: &Tensor,
        config: EmbedConfig,
    ) -> Result<Self> {
        Self::build(parent, name, config, Some(matrix))
    }

    fn build(parent: &Scope, name: &str, config: EmbedConfig, matrix: Option<&Tensor>) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        let (v, d) = (config.vocab_size, config.embed_dim);
        if v <= 0 || d <= 0 {
            return Err(Error::config(
                module,
                format!("vocab_size and embed_dim must be > 0, got {v} and {d}"),
            ));
        }
        config_size(module, "vocab_size × embed_dim", &[v, d])?;
        check_keys(module, "initializers", config.initializers.keys(), &["embeddings"])?;
        check_keys(module, "regularizers", config.regularizers.keys(), &["embeddings"])?;
        if let Some(m) = matrix {
            if !config.initializers.is_empty() {
                return Err(Error::config(module, "initializers cannot be given with a pretrained matrix"));
            }
            check_floating(module, "pretrained matrix", m)?;
            if m.size() != [v, d] {
                return Err(Error::shape(module, "pretrained matrix", format!("[{v}, {d}]"), m.size()));
            }
            check_all_finite(module, "pretrained matrix", m)?;
        }
        let init = config
            .initializers
            .get("embeddings")
            .cloned()
            .unwrap_or(Initializer::TruncatedNormal { mean: 0.0, std: 1.0 });
        let embeddings = scope
            .var("embeddings", &[v, d])
            .init(init)
            .trainable(config.trainable)
            .regularizer(config.regularizers.get("embeddings").cloned())
            .create()?;
        if let Some(m) = matrix {
            tch::no_grad(|| embeddings.shallow_clone().f_copy_(m)).ctx(module)?;
        }
        Ok(Embed { scope, config, embeddings })
    }

    /// The configuration.
    pub fn config(&self) -> &EmbedConfig {
        &self.config
    }

    /// The table `embeddings [V, D]`.
    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }

    /// Looks up `ids [..]` → `[.., D]`. Any integer kind is accepted (converted to `Int64`);
    /// `ids` may be on any device and is moved to the store's. A scalar id gives `[D]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `ids` is not an integer tensor; [`Error::InvalidArgument`] if an
    /// id is outside `0..V` (`"embed: id 12 is out of range 0..10 (vocab_size 10)"`), checked
    /// before the lookup.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "ids", ids)?;
        let module = self.scope.path();
        let kind = ids.kind();
        if !matches!(kind, Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8) {
            return Err(Error::shape(module, "ids kind", "an integer kind (Int64)", kind));
        }
        let ids = ids.f_to_kind(Kind::Int64).and_then(|t| t.f_to_device(self.scope.device())).ctx(module)?;
        let v = self.config.vocab_size;
        if ids.numel() > 0 {
            let min = ids.f_min().ctx(module)?.int64_value(&[]);
            let max = ids.f_max().ctx(module)?.int64_value(&[]);
            if let Some(bad) = [min, max].into_iter().find(|&id| !(0..v).contains(&id)) {
                return Err(Error::invalid(
                    module,
                    format!("id {bad} is out of range 0..{v} (vocab_size {v})"),
                ));
            }
        }
        Tensor::f_embedding(&self.embeddings, &ids, -1, false, false).ctx(module)
    }
}

impl Module for Embed {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Forward for Embed {
    fn forward_t(&self, ids: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::Device;

    fn names(vars: Vec<crate::Variable>) -> Vec<String> {
        vars.iter().map(|v| v.name().to_string()).collect()
    }

    fn table() -> Tensor {
        // Row r is [10 r, 10 r + 1, 10 r + 2].
        let rows: Vec<f32> = (0..4).flat_map(|r| (0..3).map(move |c| (10 * r + c) as f32)).collect();
        Tensor::from_slice(&rows).view([4, 3])
    }

    #[test]
    fn looks_up_rows_for_ids_of_any_shape() {
        let store = Store::cpu();
        let embed = Embed::from_pretrained(&store.root(), &table(), EmbedConfig::new(4, 3)).unwrap();
        let ids = Tensor::from_slice(&[3i64, 0, 1, 3, 2, 2]).view([2, 3]);
        let y = embed.forward(&ids).unwrap();
        assert_eq!(y.size(), [2, 3, 3]);
        let got = Vec::<f32>::try_from(y.get(0).get(0)).unwrap();
        assert_eq!(got, [30.0, 31.0, 32.0]);
        let got = Vec::<f32>::try_from(y.get(1).get(2)).unwrap();
        assert_eq!(got, [20.0, 21.0, 22.0]);
        assert!(y.equal(&table().index_select(0, &ids.flatten(0, -1)).view([2, 3, 3])));
        // A scalar id gives one row; Int32 ids work too.
        assert_eq!(
            Vec::<f32>::try_from(embed.forward(&Tensor::from(1i32)).unwrap()).unwrap(),
            [10.0, 11.0, 12.0]
        );
        // Empty ids give an empty result.
        let none = embed.forward(&Tensor::zeros([0, 5], (Kind::Int64, Device::Cpu))).unwrap();
        assert_eq!(none.size(), [0, 5, 3]);
    }

    #[test]
    fn default_variable_is_trainable_and_truncated_normal() {
        let store = Store::cpu();
        tch::manual_seed(0);
        let embed = Embed::new(&store.root(), EmbedConfig::new(1000, 50)).unwrap();
        assert_eq!(names(embed.variables().unwrap()), ["embed/embeddings"]);
        assert_eq!(names(embed.trainable_variables().unwrap()), ["embed/embeddings"]);
        assert!(embed.non_trainable_variables().unwrap().is_empty());
        let e = embed.embeddings();
        assert_eq!(e.size(), [1000, 50]);
        // Truncated at ±2 with std 1 before truncation: sample std ≈ 0.88.
        let (lo, hi) = (e.min().double_value(&[]), e.max().double_value(&[]));
        let std = e.std(true).double_value(&[]);
        assert!(lo >= -2.0 && hi <= 2.0 && (std - 0.88).abs() < 0.02, "{lo} {hi} {std}");
        // Gradient reaches the looked-up rows only.
        embed.forward(&Tensor::from_slice(&[2i64, 2, 5])).unwrap().sum(Kind::Float).backward();
        let g = e.grad();
        assert_eq!(g.get(2).sum(Kind::Float).double_value(&[]), 100.0);
        assert_eq!(g.get(5).sum(Kind::Float).double_value(&[]), 50.0);
        assert_eq!(g.sum(Kind::Float).double_value(&[]), 150.0);
    }

    #[test]
    fn pretrained_frozen_embeddings_are_non_trainable() {
        let store = Store::cpu();
        let matrix = table().to_kind(Kind::Double);
        let config = EmbedConfig::new(4, 3).with_trainable(false);
        let embed = Embed::named_from_pretrained(&store.root(), "words", &matrix, config).unwrap();
        assert!(embed.trainable_variables().unwrap().is_empty());
        assert_eq!(names(embed.non_trainable_variables().unwrap()), ["words/embeddings"]);
        assert!(!embed.embeddings().requires_grad());
        assert_eq!(embed.embeddings().kind(), Kind::Float, "converted to the store's kind");
        assert!(embed.embeddings().equal(&table()));
        // The variable is a copy: changing the source afterwards changes nothing.
        let _ = matrix.shallow_clone().fill_(0.0);
        assert!(embed.embeddings().equal(&table()));
    }

    #[test]
    fn pretrained_matrix_is_checked() {
        let store = Store::cpu();
        let root = store.root();
        let e = Embed::from_pretrained(&root, &table(), EmbedConfig::new(5, 3)).unwrap_err();
        assert_eq!(e.to_string(), "embed: pretrained matrix must be [5, 3], got [4, 3]");
        let ints = Tensor::zeros([4, 3], (Kind::Int64, Device::Cpu));
        let e = Embed::from_pretrained(&root, &ints, EmbedConfig::new(4, 3)).unwrap_err();
        assert!(e.to_string().contains("pretrained matrix kind must be floating point"), "{e}");
        let config = EmbedConfig::new(4, 3).with_initializer("embeddings", Initializer::Zeros);
        let e = Embed::from_pretrained(&root, &table(), config).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(store.is_empty(), "no variable is created by a refused construction");
    }

    #[test]
    fn invalid_ids_are_errors_naming_id_and_vocab() {
        let store = Store::cpu();
        let embed = Embed::new(&store.root(), EmbedConfig::new(10, 2)).unwrap();
        let e = embed.forward(&Tensor::from_slice(&[1i64, 12, 3])).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(e.to_string(), "embed: id 12 is out of range 0..10 (vocab_size 10)");
        let e = embed.forward(&Tensor::from_slice(&[-1i64, 9])).unwrap_err();
        assert_eq!(e.to_string(), "embed: id -1 is out of range 0..10 (vocab_size 10)");
        let e = embed.forward(&Tensor::from_slice(&[10i64])).unwrap_err();
        assert!(e.to_string().contains("id 10 is out of range"), "{e}");
        let e = embed.forward(&Tensor::from_slice(&[1.0f32])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }));
        assert_eq!(e.to_string(), "embed: ids kind must be an integer kind (Int64), got Float");
    }

    #[test]
    fn config_errors_and_serde() {
        let store = Store::cpu();
        let e = Embed::new(&store.root(), EmbedConfig::new(0, 3)).unwrap_err();
        assert!(e.to_string().contains("vocab_size and embed_dim must be > 0"), "{e}");
        let e = Embed::new(&store.root(), EmbedConfig::new(3, 3).with_initializer("w", Initializer::Zeros))
            .unwrap_err();
        assert!(e.to_string().contains("valid keys: [\"embeddings\"]"), "{e}");
        let c: EmbedConfig =
            serde_json::from_str(r#"{"vocab_size": 7, "embed_dim": 4, "trainable": false}"#).unwrap();
        assert_eq!(c, EmbedConfig::new(7, 4).with_trainable(false));
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Embed>();
    }
}
