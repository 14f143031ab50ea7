//! `SelectInput`: picks inputs by position from a list of tensors (Sonnet v1's
//! `snt.SelectInput`).

use crate::error::{Error, Result};
use crate::module::Module;
use crate::store::Scope;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Which inputs a [`SelectInput`] returns. Serialised as Sonnet's `idx`: a number (`2`) or
/// a list (`[0, 2]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Selection {
    /// One input: [`SelectInput::forward`] returns it.
    One(usize),
    /// Several inputs, in this order (repeats allowed): [`SelectInput::forward_many`]
    /// returns them.
    Many(Vec<usize>),
}

/// Configuration of a [`SelectInput`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectInputConfig {
    /// The positions to select. Nested selections (Sonnet's nested `idx`) are not supported.
    /// Default `Selection::One(0)` (the first input).
    pub idx: Selection,
}

impl Default for SelectInputConfig {
    fn default() -> Self {
        SelectInputConfig::one(0)
    }
}

impl SelectInputConfig {
    /// Selects the input at position `idx`.
    pub fn one(idx: usize) -> Self {
        SelectInputConfig { idx: Selection::One(idx) }
    }
    /// Selects the inputs at positions `idx`, in that order.
    pub fn many(idx: &[usize]) -> Self {
        SelectInputConfig { idx: Selection::Many(idx.to_vec()) }
    }
}

/// Returns some of its inputs by position: with inputs `[a, b, c]`, `idx = 2` gives `c`,
/// `idx = [2, 0]` gives `[c, a]`. Results are shallow clones (they share storage and the
/// autograd graph with the inputs). No variables.
pub struct SelectInput {
    scope: Scope,
    config: SelectInputConfig,
}

impl std::fmt::Debug for SelectInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectInput")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl SelectInput {
    /// Builds a `SelectInput` in a new child scope `select_input` (or `select_input_1`, …)
    /// of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty [`Selection::Many`].
    pub fn new(parent: &Scope, config: SelectInputConfig) -> Result<Self> {
        Self::named(parent, "select_input", config)
    }

    /// Like [`SelectInput::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: SelectInputConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        if config.idx == Selection::Many(Vec::new()) {
            return Err(Error::config(scope.path(), "idx must select at least one input"));
        }
        Ok(SelectInput { scope, config })
    }

    /// The configuration.
    pub fn config(&self) -> &SelectInputConfig {
        &self.config
    }

    fn pick(&self, inputs: &[Tensor], i: usize) -> Result<Tensor> {
        inputs.get(i).map(Tensor::shallow_clone).ok_or_else(|| {
            Error::invalid(
                self.scope.path(),
                format!("index {i} is out of range for {} inputs", inputs.len()),
            )
        })
    }

    /// The input at the selected position, for a [`Selection::One`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the position is not below `inputs.len()`
    /// (`"select_input: index 3 is out of range for 2 inputs"`), or if the module selects
    /// several inputs (use [`SelectInput::forward_many`]).
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Tensor> {
        match &self.config.idx {
            Selection::One(i) => self.pick(inputs, *i),
            Selection::Many(idx) => Err(Error::invalid(
                self.scope.path(),
                format!("selects several inputs {idx:?}; call forward_many"),
            )),
        }
    }

    /// The inputs at every selected position, in order (one element for a
    /// [`Selection::One`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a position is not below `inputs.len()`.
    pub fn forward_many(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        match &self.config.idx {
            Selection::One(i) => Ok(vec![self.pick(inputs, *i)?]),
            Selection::Many(idx) => idx.iter().map(|&i| self.pick(inputs, i)).collect(),
        }
    }
}

impl Module for SelectInput {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn inputs() -> Vec<Tensor> {
        (0..3).map(|i| Tensor::from_slice(&[i as f32, 10.0 * i as f32])).collect()
    }

    #[test]
    fn selects_by_position() {
        let store = Store::cpu();
        let xs = inputs();
        let one = SelectInput::new(&store.root(), SelectInputConfig::one(2)).unwrap();
        assert_eq!(Vec::<f32>::try_from(one.forward(&xs).unwrap()).unwrap(), [2.0, 20.0]);
        assert_eq!(one.forward_many(&xs).unwrap().len(), 1);
        let many = SelectInput::new(&store.root(), SelectInputConfig::many(&[1, 0, 1])).unwrap();
        let got: Vec<f32> =
            many.forward_many(&xs).unwrap().iter().map(|t| t.double_value(&[0]) as f32).collect();
        assert_eq!(got, [1.0, 0.0, 1.0]);
        assert_eq!(many.name(), "select_input_1");
        assert!(many.variables().unwrap().is_empty());
    }

    #[test]
    fn out_of_range_and_misuse_are_errors() {
        let store = Store::cpu();
        let xs = inputs();
        let s = SelectInput::new(&store.root(), SelectInputConfig::one(3)).unwrap();
        let e = s.forward(&xs).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(e.to_string(), "select_input: index 3 is out of range for 3 inputs");
        assert!(s.forward(&[]).is_err());
        let many = SelectInput::new(&store.root(), SelectInputConfig::many(&[0, 5])).unwrap();
        let e = many.forward_many(&xs).unwrap_err();
        assert_eq!(e.to_string(), "select_input_1: index 5 is out of range for 3 inputs");
        let e = many.forward(&xs).unwrap_err();
        assert!(e.to_string().contains("call forward_many"), "{e}");
        assert!(matches!(
            SelectInput::new(&store.root(), SelectInputConfig::many(&[])),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn serde_reads_sonnet_idx() {
        let c: SelectInputConfig = serde_json::from_str(r#"{"idx": 2}"#).unwrap();
        assert_eq!(c, SelectInputConfig::one(2));
        let c: SelectInputConfig = serde_json::from_str(r#"{"idx": [0, 2]}"#).unwrap();
        assert_eq!(c, SelectInputConfig::many(&[0, 2]));
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<SelectInput>();
    }

    #[test]
    fn default_config_selects_the_first_input() {
        let store = Store::cpu();
        let select = SelectInput::new(&store.root(), SelectInputConfig::default()).unwrap();
        let inputs = [tch::Tensor::from(1.0f32), tch::Tensor::from(2.0f32)];
        assert_eq!(select.forward(&inputs).unwrap().double_value(&[]), 1.0);
    }
}
