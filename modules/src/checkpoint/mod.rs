//! Checkpoints: variables saved to and restored from [safetensors] files.
//!
//! A checkpoint maps each variable's full scoped name (`gan/generator/linear/w`) to its value,
//! so Python reads it with `safetensors.torch.load_file` and PyTorch-made files restore into
//! couplet modules. What is saved or restored is anything [`Checkpointable`]: a whole
//! [`Store`], a [`Scope`], a module (`&dyn Module` or any `M: Module`: its
//! [`Module::variables`]) or a list of [`Variable`]s.
//!
//! - [`save`] writes atomically (temporary file, fsync, rename, fsync of the folder), so a
//!   crash mid-save never leaves a corrupt file under the final name.
//! - [`restore`] copies values in place into the existing variables (converting kind and
//!   device to theirs), so modules keep working. It is strict: any missing, unexpected or
//!   mis-shaped variable is an [`Error::Checkpoint`] listing every difference, and nothing is
//!   written. [`restore_with`] and [`RestoreOptions`] restore the intersection instead, or map
//!   one scope onto another.
//! - [`CheckpointManager`] keeps numbered checkpoints in a folder, as TensorFlow's
//!   `tf.train.CheckpointManager` does.
//! - Optimizer state (moments, momentum buffers, step counts) is saved and restored with
//!   [`save_optimizer`] and [`restore_optimizer`], or beside the model in the same numbered
//!   checkpoint with [`CheckpointManager::save_with_optimizers`] and
//!   [`CheckpointManager::restore_latest_with_optimizers`], so resumed training continues
//!   exactly.
//!
//! ```
//! use couplet_modules::{checkpoint, Linear, LinearConfig, Module, Store};
//! # fn main() -> couplet_modules::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("couplet-doc-checkpoint-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("model.safetensors");
//! let store = Store::cpu();
//! let lin = Linear::new(&store.root(), LinearConfig::new(2).with_input_size(3))?;
//! checkpoint::save(&store, &path)?;
//!
//! let fresh = Store::cpu();
//! let lin2 = Linear::new(&fresh.root(), LinearConfig::new(2).with_input_size(3))?;
//! checkpoint::restore(&lin2, &path)?; // a module, or the whole store
//! assert!(lin2.w()?.equal(lin.w()?));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

mod atomic;
mod format;
mod manager;
mod optimizer;
mod restore;

pub mod tf;
pub use manager::{CheckpointManager, CheckpointManagerConfig};
pub use optimizer::{restore_optimizer, save_optimizer};
pub use restore::{RestoreOptions, RestoreReport};

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::module::Module;
use crate::store::{Scope, Store, Variable};
use format::ParsedFile;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// Something whose variables can be saved and restored: a [`Store`], a [`Scope`], a module,
/// or a list of [`Variable`]s.
pub trait Checkpointable {
    /// The variables to save or restore, with their full scoped names.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] for a lazy module that has not seen its first input.
    fn checkpoint_variables(&self) -> Result<Vec<Variable>>;
}

impl Checkpointable for Store {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.variables())
    }
}

impl Checkpointable for Scope {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.variables())
    }
}

impl Checkpointable for [Variable] {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.to_vec())
    }
}

impl Checkpointable for Vec<Variable> {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.clone())
    }
}

impl<M: Module + ?Sized> Checkpointable for M {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        self.variables()
    }
}

/// Saves the variables of `source` to the safetensors file `path`, keyed by their full scoped
/// names, replacing any file there atomically. Values are written in their own kind.
///
/// # Errors
/// [`Error::NotBuilt`] for an unbuilt lazy module; [`Error::Checkpoint`] naming `path` if two
/// variables share a name, or the file cannot be written (missing folder, disk full).
pub fn save(source: &(impl Checkpointable + ?Sized), path: impl AsRef<Path>) -> Result<()> {
    save_with_metadata(source, path, &BTreeMap::new())
}

/// Like [`save`], also storing `metadata` as the file's `__metadata__` string map (what
/// Python's `safetensors.safe_open(..).metadata()` returns), e.g. `{"step": "1000"}`.
///
/// # Errors
/// As [`save`].
pub fn save_with_metadata(
    source: &(impl Checkpointable + ?Sized),
    path: impl AsRef<Path>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let vars = source.checkpoint_variables()?;
    restore::check_unique(path, &vars)?;
    let tensors: Vec<(String, Tensor)> =
        vars.iter().map(|v| (v.name().to_string(), v.tensor().shallow_clone())).collect();
    format::write_file(path, &tensors, metadata)
}

/// Saves named tensors (e.g. a PyTorch-named state dict) to the safetensors file `path`,
/// atomically, with optional string `metadata`.
///
/// # Errors
/// [`Error::Checkpoint`] naming `path` if two tensors share a name, a kind has no safetensors
/// dtype, or the file cannot be written.
pub fn save_tensors(
    tensors: &[(String, Tensor)],
    path: impl AsRef<Path>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut names = std::collections::BTreeSet::new();
    if let Some((name, _)) = tensors.iter().find(|(name, _)| !names.insert(name)) {
        return Err(crate::Error::checkpoint(path, format!("the tensor name {name:?} appears twice")));
    }
    format::write_file(path, tensors, metadata)
}

/// Restores every variable of `target` from `path`, strictly: the file must hold exactly
/// these names, with the same shapes. Values are copied in place (under `no_grad`), converted
/// to each variable's kind and device.
///
/// # Errors
/// [`Error::NotBuilt`] for an unbuilt lazy module. [`Error::Checkpoint`] naming `path` if the
/// file is missing, truncated or not safetensors, or if it does not match: the message lists
/// every variable missing in the file, every unexpected tensor and every shape mismatch with
/// both shapes (`linear/w: variable [3, 2], file [2, 3]`). Nothing is written on error.
///
/// In a file written by [`CheckpointManager::save_with_optimizers`] the optimizer state
/// (the keys under `optimizer/`) is not part of the model: it is ignored here and by
/// [`restore_with`].
pub fn restore(target: &(impl Checkpointable + ?Sized), path: impl AsRef<Path>) -> Result<RestoreReport> {
    restore_with(target, path, &RestoreOptions::strict())
}

/// Restores the variables of `target` from `path` as `options` allow (e.g.
/// [`RestoreOptions::partial`] restores the intersection), reporting what was restored and
/// what was skipped.
///
/// # Errors
/// As [`restore`], for the differences `options` do not allow; shape mismatches are always
/// errors.
pub fn restore_with(
    target: &(impl Checkpointable + ?Sized),
    path: impl AsRef<Path>,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    let vars = target.checkpoint_variables()?;
    restore::restore_vars(path.as_ref(), &vars, options)
}

/// Loads every tensor of a safetensors file, by name, as CPU tensors of the file's dtypes.
///
/// # Errors
/// [`Error::Checkpoint`] naming `path` if it is missing, truncated or not safetensors, or
/// holds a dtype libtorch does not support.
pub fn load(path: impl AsRef<Path>) -> Result<BTreeMap<String, Tensor>> {
    let file = ParsedFile::read(path.as_ref())?;
    file.names().map(|name| Ok((name.to_string(), file.tensor(name)?))).collect()
}

/// The `__metadata__` string map of a safetensors file (empty if it has none).
///
/// # Errors
/// [`Error::Checkpoint`] naming `path` if it is missing, truncated or not safetensors.
pub fn read_metadata(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    Ok(ParsedFile::read(path.as_ref())?.metadata().clone())
}

/// A fresh, empty folder under the system's temporary folder, removed when dropped.
#[cfg(test)]
pub(crate) struct TestDir(std::path::PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("couplet-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

#[cfg(test)]
impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests;
