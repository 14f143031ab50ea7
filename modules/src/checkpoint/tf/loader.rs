//! Loading a TensorFlow checkpoint into couplet modules, strictly by default: every tensor a
//! converter asks for must exist with the right shape, and every checkpoint tensor (but TF's
//! own bookkeeping) must be used; [`TfLoader::finish`] reports all three lists at once.

use super::reader::TfCheckpoint;
use crate::error::{Error, Result, TorchContext};
use crate::module::Module;
use std::collections::BTreeSet;
use tch::Tensor;

/// Checkpoint entries that hold TensorFlow's bookkeeping, not model weights: never reported
/// as unexpected (matched as substrings of the name).
const BOOKKEEPING: &[&str] = &[
    "_CHECKPOINTABLE_OBJECT_GRAPH",
    "global_step",
    "save_counter/",
    ".OPTIMIZER_SLOT",
    "optimizer/",
    "beta1_power",
    "beta2_power",
    "/Adam",
    "/Momentum",
    "/RMSProp",
    "/Adagrad",
    "keras_api/",
];

/// The suffix `tf.train.Checkpoint` (object-based saving, Keras `save_weights`) appends to
/// every variable's path.
pub const OBJECT_SUFFIX: &str = "/.ATTRIBUTES/VARIABLE_VALUE";

/// What a load found: the checkpoint tensors used and those left unused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TfLoadReport {
    /// Checkpoint tensors that were loaded into a module, sorted.
    pub loaded: Vec<String>,
    /// Checkpoint tensors that nothing asked for (TF bookkeeping excluded), sorted.
    pub unexpected: Vec<String>,
}

/// Loads tensors of a [`TfCheckpoint`] into modules through converters (this crate's
/// [`TfLoader::dense`], [`TfLoader::embedding`], [`TfLoader::layer_norm`],
/// [`TfLoader::batch_norm`], and the recurrent cells' and attention mechanisms' converters in
/// `couplet-rnn` and `couplet-attention`), one call per TF scope: together the calls are the
/// name map from TF scopes to couplet modules.
///
/// A variable path is looked up as `scope/leaf`, and then as `scope/leaf/.ATTRIBUTES/VARIABLE_VALUE`
/// (the names `tf.train.Checkpoint` and Keras' `save_weights` write), so one scope works for
/// both kinds of checkpoint. Converters record what is missing or mismatched instead of
/// failing at the first problem; [`TfLoader::finish`] returns them all in one error.
#[derive(Debug)]
pub struct TfLoader<'a> {
    checkpoint: &'a TfCheckpoint,
    used: BTreeSet<String>,
    missing: Vec<String>,
    mismatched: Vec<String>,
}

impl<'a> TfLoader<'a> {
    /// A loader over `checkpoint`.
    pub fn new(checkpoint: &'a TfCheckpoint) -> Self {
        TfLoader { checkpoint, used: BTreeSet::new(), missing: Vec::new(), mismatched: Vec::new() }
    }

    /// The checkpoint being loaded.
    pub fn checkpoint(&self) -> &'a TfCheckpoint {
        self.checkpoint
    }

    /// The checkpoint name of `scope/leaf` (plain or object-based), if it exists.
    pub fn resolve(&self, scope: &str, leaf: &str) -> Option<String> {
        let plain = if scope.is_empty() { leaf.to_string() } else { format!("{scope}/{leaf}") };
        let object = format!("{plain}{OBJECT_SUFFIX}");
        [plain, object].into_iter().find(|name| self.checkpoint.contains(name))
    }

    /// Reads `scope/leaf` (on the CPU, in its stored dtype; [`TfLoader::assign`] converts to
    /// the variable's kind), marking it used. A missing tensor is recorded (and `None` returned) so that
    /// [`TfLoader::finish`] can list it with the others.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if the tensor exists but cannot be read (truncated, corrupt, a
    /// string tensor).
    pub fn tensor(&mut self, scope: &str, leaf: &str) -> Result<Option<Tensor>> {
        match self.resolve(scope, leaf) {
            Some(name) => {
                let t = self.checkpoint.tensor(&name)?;
                self.used.insert(name.clone());
                Ok(Some(t))
            }
            None => {
                let name = if scope.is_empty() { leaf.to_string() } else { format!("{scope}/{leaf}") };
                self.missing.push(name);
                Ok(None)
            }
        }
    }

    /// Reads every leaf of `scope` in `leaves`; `None` if any is missing (each missing one is
    /// recorded).
    ///
    /// # Errors
    /// As [`TfLoader::tensor`].
    pub fn tensors(&mut self, scope: &str, leaves: &[&str]) -> Result<Option<Vec<Tensor>>> {
        let mut out = Vec::with_capacity(leaves.len());
        for leaf in leaves {
            out.push(self.tensor(scope, leaf)?);
        }
        Ok(out.into_iter().collect())
    }

    /// Records a shape mismatch found by a converter (`"what must be [..], got [..]"`).
    pub fn mismatch(&mut self, message: impl Into<String>) {
        self.mismatched.push(message.into());
    }

    /// Copies `value` into the module variable `var` (named `name` in reports) when their
    /// shapes agree, converting to the variable's kind; records a mismatch otherwise.
    /// Returns whether it was copied.
    ///
    /// # Errors
    /// [`Error::Torch`] naming `name` if libtorch fails to copy.
    pub fn assign(&mut self, name: &str, var: &Tensor, value: &Tensor) -> Result<bool> {
        if var.size() != value.size() {
            self.mismatch(format!("{name} must be {:?}, got {:?}", var.size(), value.size()));
            return Ok(false);
        }
        tch::no_grad(|| var.shallow_clone().f_copy_(value)).ctx(name)?;
        Ok(true)
    }

    /// Ends the load, strictly: fine only if nothing was missing or mismatched and every
    /// checkpoint tensor was used (TF bookkeeping such as the object graph, `global_step`
    /// and optimizer slots excepted).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the checkpoint's index file and listing every missing
    /// tensor, every unexpected tensor and every shape mismatch, e.g. `"load: missing
    /// ["rnn/lstm_cell/bias"]; unexpected ["dense_1/kernel"]; shape mismatches [encoder/lstm/
    /// weight_ih must be [16, 3], got [16, 4]]"`.
    pub fn finish(self) -> Result<TfLoadReport> {
        self.finish_with(true)
    }

    /// Ends the load, leniently: missing tensors and shape mismatches are still errors, but
    /// unused checkpoint tensors are only listed in the report.
    ///
    /// # Errors
    /// As [`TfLoader::finish`], without the unexpected tensors.
    pub fn finish_partial(self) -> Result<TfLoadReport> {
        self.finish_with(false)
    }

    fn finish_with(self, strict: bool) -> Result<TfLoadReport> {
        let unexpected: Vec<String> = self
            .checkpoint
            .names()
            .filter(|n| !self.used.contains(*n) && !BOOKKEEPING.iter().any(|b| n.contains(b)))
            .map(str::to_string)
            .collect();
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing {:?}", self.missing));
        }
        if strict && !unexpected.is_empty() {
            parts.push(format!("unexpected {unexpected:?}"));
        }
        if !self.mismatched.is_empty() {
            parts.push(format!("shape mismatches [{}]", self.mismatched.join(", ")));
        }
        if !parts.is_empty() {
            let index = super::reader::index_path(self.checkpoint.prefix());
            return Err(Error::checkpoint(index, format!("load: {}", parts.join("; "))));
        }
        Ok(TfLoadReport { loaded: self.used.into_iter().collect(), unexpected })
    }
}

/// The store variable `leaf` of a built `module` (`module/leaf`), for converters that fill
/// variables a module has no accessor for (peepholes, a mechanism's layers).
///
/// # Errors
/// [`Error::NotBuilt`] naming the variable if the store has no such variable yet.
pub fn module_variable(module: &impl Module, leaf: &str) -> Result<Tensor> {
    let name = format!("{}/{leaf}", module.scope().path());
    module
        .scope()
        .store()
        .get(&name)
        .map(|v| v.tensor().shallow_clone())
        .ok_or(Error::NotBuilt { module: name })
}
