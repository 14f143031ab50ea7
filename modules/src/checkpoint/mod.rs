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
mod checkpointable;
mod format;
mod manager;
mod optimizer;
mod restore;
mod save;

pub use checkpointable::Checkpointable;
pub mod tf;
pub use manager::{CheckpointManager, CheckpointManagerConfig};
pub use optimizer::{restore_optimizer, save_optimizer};
pub use restore::{restore, restore_with, RestoreOptions, RestoreReport};
pub use save::{load, read_metadata, save, save_tensors, save_with_metadata};

#[cfg(doc)]
use crate::{Error, Module, Scope, Store, Variable};
#[cfg(test)]
use std::path::Path;

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
