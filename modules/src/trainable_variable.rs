//! `TrainableVariable`: a module holding one variable and returning it (Sonnet v1's
//! `snt.TrainableVariable`), e.g. a learned initial state or a learned query.

use crate::error::{Error, Result};
use crate::init::Initializer;
use crate::module::Module;
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::check_keys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Configuration of a [`TrainableVariable`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainableVariableConfig {
    /// Shape of the variable `w` (every entry >= 0; `[]` is a scalar). Default `[]`.
    pub shape: Vec<i64>,
    /// Whether optimizers train `w`. Default `true`.
    pub trainable: bool,
    /// Initializers by variable name (`"w"`). Default truncated normal with
    /// `std = 1 / sqrt(prod(shape))` (Sonnet v1).
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"w"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for TrainableVariableConfig {
    fn default() -> Self {
        TrainableVariableConfig {
            shape: Vec::new(),
            trainable: true,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl TrainableVariableConfig {
    /// A config for a variable of `shape`, every other field at its default.
    pub fn new(shape: &[i64]) -> Self {
        TrainableVariableConfig { shape: shape.to_vec(), ..Default::default() }
    }
    /// Sets whether `w` is trainable.
    pub fn with_trainable(mut self, trainable: bool) -> Self {
        self.trainable = trainable;
        self
    }
    /// Overrides the initializer of `w`.
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to `w`.
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

/// One variable `w` of a fixed shape, created at construction; [`TrainableVariable::forward`]
/// returns it.
pub struct TrainableVariable {
    scope: Scope,
    config: TrainableVariableConfig,
    w: Tensor,
}

impl std::fmt::Debug for TrainableVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainableVariable")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl TrainableVariable {
    /// Builds a `TrainableVariable` in a new child scope `trainable_variable` (or
    /// `trainable_variable_1`, …) of `parent`, creating `w`.
    ///
    /// # Errors
    /// [`Error::Config`] for a negative dimension or an initializer/regularizer key other
    /// than `w`.
    pub fn new(parent: &Scope, config: TrainableVariableConfig) -> Result<Self> {
        Self::named(parent, "trainable_variable", config)
    }

    /// Like [`TrainableVariable::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: TrainableVariableConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        if config.shape.iter().any(|&d| d < 0) {
            return Err(Error::config(module, format!("shape entries must be >= 0, got {:?}", config.shape)));
        }
        check_keys(module, "initializers", config.initializers.keys(), &["w"])?;
        check_keys(module, "regularizers", config.regularizers.keys(), &["w"])?;
        let size = crate::util::config_size(module, "shape's element count", &config.shape)?;
        let init = config.initializers.get("w").cloned().unwrap_or(Initializer::sonnet_default(size));
        let w = scope
            .var("w", &config.shape)
            .init(init)
            .trainable(config.trainable)
            .regularizer(config.regularizers.get("w").cloned())
            .create()?;
        Ok(TrainableVariable { scope, config, w })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainableVariableConfig {
        &self.config
    }

    /// The variable `w` (a shallow clone: it shares storage and gradients with the store's).
    pub fn forward(&self) -> Tensor {
        self.w.shallow_clone()
    }
}

impl Module for TrainableVariable {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::Kind;

    fn names(vars: Vec<crate::Variable>) -> Vec<String> {
        vars.iter().map(|v| v.name().to_string()).collect()
    }

    #[test]
    fn holds_and_returns_w() {
        let store = Store::cpu();
        let config =
            TrainableVariableConfig::new(&[2, 3]).with_initializer("w", Initializer::Constant { value: 1.5 });
        let tv = TrainableVariable::new(&store.root(), config).unwrap();
        assert_eq!(names(tv.variables().unwrap()), ["trainable_variable/w"]);
        let w = tv.forward();
        assert_eq!(w.size(), [2, 3]);
        assert_eq!(w.sum(Kind::Float).double_value(&[]), 9.0);
        // The returned tensor is the variable itself: gradients land in the store.
        (tv.forward() * 2.0).sum(Kind::Float).backward();
        let g = store.get("trainable_variable/w").unwrap().tensor().grad();
        assert_eq!(g.sum(Kind::Float).double_value(&[]), 12.0);
    }

    #[test]
    fn default_init_is_sonnet_truncated_normal() {
        let store = Store::cpu();
        tch::manual_seed(1);
        let tv = TrainableVariable::named(&store.root(), "query", TrainableVariableConfig::new(&[100, 100]))
            .unwrap();
        let w = tv.forward();
        // std 1/sqrt(10000) = 0.01 before truncation at ±0.02; sample std ≈ 0.0088.
        assert!(w.abs().max().double_value(&[]) <= 0.02 + 1e-7);
        assert!((w.std(true).double_value(&[]) - 0.0088).abs() < 0.0005);
        assert_eq!(tv.name(), "query");
    }

    #[test]
    fn non_trainable_and_scalar() {
        let store = Store::cpu();
        let tv =
            TrainableVariable::new(&store.root(), TrainableVariableConfig::new(&[]).with_trainable(false))
                .unwrap();
        assert_eq!(tv.forward().size(), Vec::<i64>::new());
        assert!(tv.trainable_variables().unwrap().is_empty());
        assert_eq!(names(tv.non_trainable_variables().unwrap()), ["trainable_variable/w"]);
    }

    #[test]
    fn config_errors() {
        let store = Store::cpu();
        let e = TrainableVariable::new(&store.root(), TrainableVariableConfig::new(&[2, -1])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "trainable_variable: bad configuration: shape entries must be >= 0, got [2, -1]"
        );
        let config = TrainableVariableConfig::new(&[2]).with_regularizer("b", Regularizer::L2 { scale: 1.0 });
        assert!(matches!(TrainableVariable::new(&store.root(), config), Err(Error::Config { .. })));
        let c: TrainableVariableConfig = serde_json::from_str(r#"{"shape": [4]}"#).unwrap();
        assert_eq!(c, TrainableVariableConfig::new(&[4]));
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<TrainableVariable>();
    }
}
