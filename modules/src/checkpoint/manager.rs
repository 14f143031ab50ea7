//! [`CheckpointManager`]: numbered checkpoints in a folder, pruned to the most recent few
//! (TensorFlow's `tf.train.CheckpointManager`).

use super::atomic::temp_target;
use super::checkpointable::Checkpointable;
use super::format::{ParsedFile, OPTIMIZERS_KEY, OPTIMIZER_SCOPE};
use super::optimizer::in_file;
use super::restore::{check_unique, plan, restore_with, RestoreOptions, RestoreReport};
use super::save::{save_tensors, save_with_metadata};
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::Tensor;

const MANAGER: &str = "checkpoint_manager";

const EXTENSION: &str = ".safetensors";

/// Configuration of a [`CheckpointManager`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointManagerConfig {
    /// The folder holding the checkpoints; created if missing. Default `checkpoints`.
    pub directory: PathBuf,
    /// How many checkpoints to keep (≥ 1), or `None` to keep them all. Default `Some(5)`
    /// (TensorFlow's `Saver` default).
    pub max_to_keep: Option<usize>,
    /// The file name prefix: checkpoints are `{checkpoint_name}-{step:08}.safetensors`
    /// (e.g. `ckpt-00001000.safetensors`). ASCII letters, digits, `_` or `-`. Default `ckpt`.
    pub checkpoint_name: String,
}

impl Default for CheckpointManagerConfig {
    fn default() -> Self {
        CheckpointManagerConfig {
            directory: PathBuf::from("checkpoints"),
            max_to_keep: Some(5),
            checkpoint_name: "ckpt".to_string(),
        }
    }
}

impl CheckpointManagerConfig {
    /// A config for `directory` with every other field at its default.
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        CheckpointManagerConfig { directory: directory.into(), ..Default::default() }
    }
    /// Sets how many checkpoints to keep (`None`: all).
    pub fn with_max_to_keep(mut self, max_to_keep: Option<usize>) -> Self {
        self.max_to_keep = max_to_keep;
        self
    }
    /// Sets the file name prefix.
    pub fn with_checkpoint_name(mut self, name: &str) -> Self {
        self.checkpoint_name = name.to_string();
        self
    }
}

/// Saves numbered checkpoints `{name}-{step:08}.safetensors` into one folder, keeps the
/// `max_to_keep` most recent, and finds and restores the latest.
///
/// The folder is the only state: a manager made later over the same folder (after a restart)
/// sees the same checkpoints. Only complete files count; the temporary files of an
/// interrupted save are ignored, and deleted when a manager is made over the folder (so two
/// managers must not save into one folder at the same time; a failed save deletes its own).
#[derive(Clone, Debug)]
pub struct CheckpointManager {
    config: CheckpointManagerConfig,
}

impl CheckpointManager {
    /// A manager over `directory` (created if missing) keeping `max_to_keep` checkpoints
    /// (`None`: all), named `ckpt-{step:08}.safetensors`.
    ///
    /// # Errors
    /// As [`CheckpointManager::with_config`].
    pub fn new(directory: impl Into<PathBuf>, max_to_keep: Option<usize>) -> Result<Self> {
        Self::with_config(CheckpointManagerConfig::new(directory).with_max_to_keep(max_to_keep))
    }

    /// A manager from a full configuration; creates the folder if missing.
    ///
    /// # Errors
    /// [`Error::Config`] if `max_to_keep` is `Some(0)` or the checkpoint name is empty or has
    /// other characters than ASCII letters, digits, `_` and `-`; [`Error::Checkpoint`] naming
    /// the folder if it cannot be created or listed, or a stale temporary file of an
    /// interrupted save of this manager's checkpoints that cannot be deleted.
    pub fn with_config(config: CheckpointManagerConfig) -> Result<Self> {
        let module = "checkpoint_manager";
        if config.max_to_keep == Some(0) {
            return Err(Error::config(module, "max_to_keep must be >= 1, or None to keep all, got 0"));
        }
        let name = &config.checkpoint_name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Error::config(
                module,
                format!("checkpoint_name {name:?} must be non-empty ASCII letters, digits, '_' or '-'"),
            ));
        }
        std::fs::create_dir_all(&config.directory)
            .map_err(|e| Error::checkpoint(&config.directory, format!("cannot create the folder: {e}")))?;
        let manager = CheckpointManager { config };
        manager.remove_stale_temporaries()?;
        Ok(manager)
    }

    /// Deletes the temporary files that interrupted saves of this manager's checkpoints left
    /// (a crash or kill while writing): no save of this manager is running yet, so every one
    /// of them is stale. Other files are left alone.
    fn remove_stale_temporaries(&self) -> Result<()> {
        let dir = &self.config.directory;
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::checkpoint(dir, format!("cannot list: {e}")))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if temp_target(&name).is_some_and(|target| self.step_of(target).is_some()) {
                match std::fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::checkpoint(
                            entry.path(),
                            format!("cannot delete a stale temporary file: {e}"),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &CheckpointManagerConfig {
        &self.config
    }

    /// The checkpoint folder.
    pub fn directory(&self) -> &Path {
        &self.config.directory
    }

    /// The path of the checkpoint for `step` (whether or not it exists).
    pub fn path_for(&self, step: u64) -> PathBuf {
        self.config.directory.join(format!("{}-{step:08}{EXTENSION}", self.config.checkpoint_name))
    }

    /// The step of a checkpoint file name, if it is exactly one this manager writes.
    fn step_of(&self, file_name: &str) -> Option<u64> {
        let digits = file_name
            .strip_prefix(self.config.checkpoint_name.as_str())?
            .strip_prefix('-')?
            .strip_suffix(EXTENSION)?;
        let step: u64 = digits.parse().ok()?;
        // Only the canonical spelling: `ckpt-5` or `ckpt-+0005` are not ours.
        (format!("{step:08}") == digits).then_some(step)
    }

    /// Saves the variables of `source` as the checkpoint for `step` (replacing one of the
    /// same step), with `{"step": "<step>"}` as its metadata, then deletes old checkpoints
    /// beyond `max_to_keep`: the checkpoint just written is always kept, and among the others
    /// the lowest steps go first. Returns the new checkpoint's path.
    ///
    /// # Errors
    /// As [`save`](super::save); [`Error::Checkpoint`] naming the folder or a file if listing
    /// or deleting fails.
    pub fn save(&self, source: &(impl Checkpointable + ?Sized), step: u64) -> Result<PathBuf> {
        let path = self.path_for(step);
        let metadata = BTreeMap::from([("step".to_string(), step.to_string())]);
        save_with_metadata(source, &path, &metadata)?;
        self.prune(step)?;
        Ok(path)
    }

    /// Deletes old checkpoints beyond `max_to_keep`, keeping the one for `step` (just written)
    /// and deleting the lowest steps first.
    pub(super) fn prune(&self, step: u64) -> Result<()> {
        if let Some(keep) = self.config.max_to_keep {
            let others: Vec<_> = self.checkpoints()?.into_iter().filter(|&(s, _)| s != step).collect();
            let excess = (others.len() + 1).saturating_sub(keep);
            for (_, old) in others.into_iter().take(excess) {
                std::fs::remove_file(&old)
                    .map_err(|e| Error::checkpoint(&old, format!("cannot delete an old checkpoint: {e}")))?;
            }
        }
        Ok(())
    }

    /// Every complete checkpoint in the folder as `(step, path)`, by increasing step.
    /// Temporary files and other files are ignored.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the folder if it cannot be listed.
    pub fn checkpoints(&self) -> Result<Vec<(u64, PathBuf)>> {
        let dir = self.directory();
        let list_err = |e: std::io::Error| Error::checkpoint(dir, format!("cannot list the folder: {e}"));
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name();
            let Some(step) = name.to_str().and_then(|n| self.step_of(n)) else { continue };
            let path = entry.path();
            if path.is_file() {
                found.push((step, path));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The checkpoint with the highest step, if any.
    ///
    /// # Errors
    /// As [`CheckpointManager::checkpoints`].
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.checkpoints()?.pop().map(|(_, path)| path))
    }

    /// The highest saved step, if any.
    ///
    /// # Errors
    /// As [`CheckpointManager::checkpoints`].
    pub fn latest_step(&self) -> Result<Option<u64>> {
        Ok(self.checkpoints()?.pop().map(|(step, _)| step))
    }

    /// Restores `target` strictly from the latest checkpoint and returns its step, or
    /// `Ok(None)` (changing nothing) if the folder has no checkpoint yet.
    ///
    /// # Errors
    /// As [`restore`](super::restore): a latest checkpoint that is corrupt or does not match
    /// is an error (never silently skipped for an older one).
    pub fn restore_latest(&self, target: &(impl Checkpointable + ?Sized)) -> Result<Option<u64>> {
        Ok(self.restore_latest_with(target, &RestoreOptions::strict())?.map(|(step, _)| step))
    }

    /// Like [`CheckpointManager::restore_latest`] with explicit [`RestoreOptions`], also
    /// returning the [`RestoreReport`].
    ///
    /// # Errors
    /// As [`restore_with`](super::restore_with).
    pub fn restore_latest_with(
        &self,
        target: &(impl Checkpointable + ?Sized),
        options: &RestoreOptions,
    ) -> Result<Option<(u64, RestoreReport)>> {
        match self.checkpoints()?.pop() {
            Some((step, path)) => Ok(Some((step, restore_with(target, &path, options)?))),
            None => Ok(None),
        }
    }

    /// Saves the variables of `source` and the state of `optimizers`, each given with a name
    /// of the caller's choosing (`&[("generator", &g_opt), ("discriminator", &d_opt)]`), into
    /// one checkpoint file for `step`, then prunes old checkpoints as
    /// [`CheckpointManager::save`] does. Returns the new checkpoint's path.
    ///
    /// The file holds each variable under its scoped name, as [`CheckpointManager::save`]
    /// writes, and each optimizer's [`Optimizer::state_tensors`] under
    /// `optimizer/{name}/{variable}/{slot}` (e.g.
    /// `optimizer/generator/gan/generator/linear/w/exp_avg`), with the metadata
    /// `{"step": "<step>", "optimizers": "generator,discriminator"}`. Plain
    /// [`restore`](super::restore) and [`CheckpointManager::restore_latest`] of such a file
    /// restore the model alone (for evaluation), ignoring the `optimizer/` keys;
    /// [`CheckpointManager::restore_latest_with_optimizers`] restores both.
    ///
    /// ```
    /// use couplet_modules::{Adam, AdamConfig, CheckpointManager, Linear, LinearConfig};
    /// use couplet_modules::{Module, Optimizer, Sgd, SgdConfig, Store};
    /// # fn main() -> couplet_modules::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("couplet-doc-optim-{}", std::process::id()));
    /// let store = Store::cpu();
    /// let g = Linear::new(&store.root().child("generator")?, LinearConfig::new(2).with_input_size(3))?;
    /// let d = Linear::new(&store.root().child("discriminator")?, LinearConfig::new(1).with_input_size(2))?;
    /// let g_opt = Adam::new(g.trainable_variables()?, AdamConfig::new(1e-3))?;
    /// let d_opt = Sgd::new(d.trainable_variables()?, SgdConfig::new(1e-2).with_momentum(0.9))?;
    /// // ... training steps ...
    /// let manager = CheckpointManager::new(&dir, Some(3))?;
    /// manager.save_with_optimizers(&store, &[("generator", &g_opt), ("discriminator", &d_opt)], 100)?;
    ///
    /// // After a restart: the same model and optimizers, then the latest checkpoint.
    /// let (mut g_opt, mut d_opt) = (g_opt, d_opt); // (rebuilt the same way in practice)
    /// let step = manager.restore_latest_with_optimizers(
    ///     &store,
    ///     &mut [("generator", &mut g_opt), ("discriminator", &mut d_opt)],
    /// )?;
    /// assert_eq!(step, Some(100));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `checkpoint_manager` if an optimizer name is empty,
    /// has other characters than ASCII letters, digits, `_` and `-`, or is given twice, or if
    /// a variable lies under the scope `optimizer` (its name would be ambiguous); otherwise as
    /// [`CheckpointManager::save`].
    pub fn save_with_optimizers(
        &self,
        source: &(impl Checkpointable + ?Sized),
        optimizers: &[(&str, &dyn Optimizer)],
        step: u64,
    ) -> Result<PathBuf> {
        check_names(optimizers.iter().map(|(name, _)| *name))?;
        let path = self.path_for(step);
        let vars = source.checkpoint_variables()?;
        check_unique(&path, &vars)?;
        if let Some(v) = vars.iter().find(|v| v.name().starts_with(&format!("{OPTIMIZER_SCOPE}/"))) {
            return Err(Error::invalid(
                MANAGER,
                format!(
                    "variable {:?} lies under the scope {OPTIMIZER_SCOPE:?} that holds optimizer state; \
                     rename its scope",
                    v.name()
                ),
            ));
        }
        let mut tensors: Vec<(String, Tensor)> =
            vars.iter().map(|v| (v.name().to_string(), v.tensor().shallow_clone())).collect();
        for (name, optimizer) in optimizers {
            let prefix = prefix(name);
            tensors.extend(optimizer.state_tensors()?.into_iter().map(|(k, t)| (format!("{prefix}{k}"), t)));
        }
        let names: Vec<&str> = optimizers.iter().map(|(name, _)| *name).collect();
        let metadata = BTreeMap::from([
            ("step".to_string(), step.to_string()),
            (OPTIMIZERS_KEY.to_string(), names.join(",")),
        ]);
        save_tensors(&tensors, &path, &metadata)?;
        self.prune(step)?;
        Ok(path)
    }

    /// Restores `target` and the state of `optimizers` from the latest checkpoint written by
    /// [`CheckpointManager::save_with_optimizers`], strictly, and returns its step, or
    /// `Ok(None)` (changing nothing) if the folder has no checkpoint yet. `optimizers` are
    /// named as when saving (`&mut [("generator", &mut g_opt), ("discriminator", &mut d_opt)]`),
    /// in any order; the file must hold exactly these optimizers.
    ///
    /// Everything is checked before anything changes: the model as
    /// [`restore`](super::restore) does, and each optimizer as
    /// [`Optimizer::load_state_tensors`] does; if an optimizer does not match, those already
    /// loaded get their previous state back (a snapshot taken just before, cheap for fresh
    /// optimizers, which have none).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad optimizer names, as in
    /// [`CheckpointManager::save_with_optimizers`]. [`Error::Checkpoint`] naming the latest
    /// checkpoint if it is corrupt, was written without optimizers, holds other optimizers
    /// than the given ones (both lists in the message), or does not match the variables or an
    /// optimizer (every difference listed, prefixed with the optimizer's name).
    pub fn restore_latest_with_optimizers(
        &self,
        target: &(impl Checkpointable + ?Sized),
        optimizers: &mut [(&str, &mut dyn Optimizer)],
    ) -> Result<Option<u64>> {
        check_names(optimizers.iter().map(|(name, _)| *name))?;
        let Some((step, path)) = self.checkpoints()?.pop() else { return Ok(None) };
        let file = ParsedFile::read(&path)?;
        let saved: BTreeSet<&str> = match file.metadata().get(OPTIMIZERS_KEY) {
            Some(list) => list.split(',').filter(|n| !n.is_empty()).collect(),
            None => {
                return Err(Error::checkpoint(
                    &path,
                    "holds no optimizer state (it was written by save, not save_with_optimizers)",
                ))
            }
        };
        let given: BTreeSet<&str> = optimizers.iter().map(|(name, _)| *name).collect();
        if saved != given {
            let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
            return Err(Error::checkpoint(
                &path,
                format!("holds the optimizers [{}], but [{}] were given", list(&saved), list(&given)),
            ));
        }
        let stray: Vec<&str> = file
            .names()
            .filter(|k| k.starts_with(&format!("{OPTIMIZER_SCOPE}/")))
            .filter(|k| !given.iter().any(|n| k.starts_with(&prefix(n))))
            .collect();
        if !stray.is_empty() {
            return Err(Error::checkpoint(
                &path,
                format!("optimizer state of no listed optimizer ({}): {}", stray.len(), stray.join(", ")),
            ));
        }

        let vars = target.checkpoint_variables()?;
        check_unique(&path, &vars)?;
        let model = plan(&file, &path, &vars, &RestoreOptions::strict(), Some(OPTIMIZER_SCOPE))?;
        let states = optimizers
            .iter()
            .map(|(name, _)| {
                let prefix = prefix(name);
                file.names()
                    .filter_map(|k| Some((k, k.strip_prefix(&prefix)?)))
                    .map(|(k, key)| Ok((key.to_string(), file.tensor(k)?)))
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        load_all(&path, optimizers, &states)?;
        model.apply(&path)?;
        Ok(Some(step))
    }
}

/// Checks optimizer names: non-empty ASCII letters, digits, `_` or `-`, and unique.
fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Error::invalid(
                MANAGER,
                format!("optimizer name {name:?} must be non-empty ASCII letters, digits, '_' or '-'"),
            ));
        }
        if !seen.insert(name) {
            return Err(Error::invalid(MANAGER, format!("optimizer name {name:?} is given twice")));
        }
    }
    Ok(())
}

/// The file-key prefix of optimizer `name`'s state: `optimizer/{name}/`.
fn prefix(name: &str) -> String {
    format!("{OPTIMIZER_SCOPE}/{name}/")
}

/// Loads `states[i]` into `optimizers[i]`; if one fails, gives the optimizers loaded before it
/// their previous state back and returns its error.
fn load_all(
    path: &Path,
    optimizers: &mut [(&str, &mut dyn Optimizer)],
    states: &[BTreeMap<String, Tensor>],
) -> Result<()> {
    let previous = optimizers
        .iter()
        .map(|(_, optimizer)| Ok(optimizer.state_tensors()?.into_iter().collect::<BTreeMap<_, _>>()))
        .collect::<Result<Vec<_>>>()?;
    for (loaded, ((name, optimizer), state)) in optimizers.iter_mut().zip(states).enumerate() {
        if let Err(e) = optimizer.load_state_tensors(state) {
            let error = in_file(path, Some(name), e);
            for ((_, optimizer), snapshot) in optimizers.iter_mut().zip(&previous).take(loaded) {
                // The optimizer's own state always matches it; only an allocation failure can
                // stop this, and the error being returned matters more.
                let _ = optimizer.load_state_tensors(snapshot);
            }
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::atomic::TEMP_SUFFIX;
    use crate::checkpoint::{read_metadata, restore, TestDir};
    use crate::{Initializer, Store};
    use tch::Tensor;

    fn store_with(value: f64) -> Store {
        let store = Store::cpu();
        let s = store.root().child("m").unwrap();
        let _ = s.var("w", &[2]).init(Initializer::Constant { value }).create().unwrap();
        store
    }

    /// Whether `file_name` is a temporary file left by an interrupted save.
    fn is_temp(file_name: &str) -> bool {
        file_name.starts_with('.') && file_name.ends_with(TEMP_SUFFIX)
    }

    fn steps(m: &CheckpointManager) -> Vec<u64> {
        m.checkpoints().unwrap().into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn max_to_keep_prunes_exactly_the_oldest() {
        let dir = TestDir::new("manager_prune");
        let m = CheckpointManager::new(dir.join("ckpts"), Some(3)).unwrap();
        assert!(dir.join("ckpts").is_dir(), "new creates the folder");
        let store = store_with(1.0);
        for step in [10, 20, 30] {
            m.save(&store, step).unwrap();
        }
        assert_eq!(steps(&m), [10, 20, 30]);
        let p = m.save(&store, 40).unwrap();
        assert_eq!(p, dir.join("ckpts/ckpt-00000040.safetensors"));
        assert_eq!(steps(&m), [20, 30, 40]);
        assert!(!dir.join("ckpts/ckpt-00000010.safetensors").exists());
        m.save(&store, 50).unwrap();
        assert_eq!(steps(&m), [30, 40, 50]);
        // The checkpoint just written survives even with a lower step than the others.
        m.save(&store, 5).unwrap();
        assert_eq!(steps(&m), [5, 40, 50]);
        // Re-saving an existing step replaces it without pruning anything.
        m.save(&store, 50).unwrap();
        assert_eq!(steps(&m), [5, 40, 50]);
    }

    #[test]
    fn none_keeps_everything_and_latest_is_the_highest_step() {
        let dir = TestDir::new("manager_all");
        let m = CheckpointManager::new(&*dir, None).unwrap();
        assert_eq!(m.latest().unwrap(), None);
        assert_eq!(m.latest_step().unwrap(), None);
        let store = store_with(1.0);
        for step in [3, 100_000_000_000, 7, 2] {
            m.save(&store, step).unwrap();
        }
        assert_eq!(steps(&m), [2, 3, 7, 100_000_000_000]);
        assert_eq!(m.latest().unwrap(), Some(dir.join("ckpt-100000000000.safetensors")));
        assert_eq!(m.latest_step().unwrap(), Some(100_000_000_000));
        let meta = read_metadata(m.path_for(7)).unwrap();
        assert_eq!(meta, BTreeMap::from([("step".to_string(), "7".to_string())]));
    }

    #[test]
    fn restore_latest_restores_the_highest_step() {
        let dir = TestDir::new("manager_restore");
        let m = CheckpointManager::new(&*dir, Some(2)).unwrap();
        let store = store_with(0.0);
        assert_eq!(m.restore_latest(&store).unwrap(), None, "an empty folder restores nothing");
        let mut w = store.get("m/w").unwrap().tensor().shallow_clone();
        for step in 1..=3 {
            let _ = tch::no_grad(|| w.fill_(step as f64));
            m.save(&store, step).unwrap();
        }
        let fresh = store_with(-1.0);
        assert_eq!(m.restore_latest(&fresh).unwrap(), Some(3));
        assert_eq!(Vec::<f32>::try_from(fresh.get("m/w").unwrap().tensor()).unwrap(), [3.0, 3.0]);
        let (step, report) = m.restore_latest_with(&fresh, &RestoreOptions::partial()).unwrap().unwrap();
        assert_eq!((step, report.restored), (3, vec!["m/w".to_string()]));
    }

    #[test]
    fn stray_temp_and_foreign_files_are_ignored() {
        let dir = TestDir::new("manager_temp");
        let m = CheckpointManager::new(&*dir, Some(2)).unwrap();
        let store = store_with(2.0);
        m.save(&store, 1).unwrap();
        // What a crash in the middle of saving step 2 leaves: a partial temporary file.
        let full = std::fs::read(m.path_for(1)).unwrap();
        let stray = format!(".ckpt-00000002.safetensors.999-0{TEMP_SUFFIX}");
        assert!(is_temp(&stray));
        std::fs::write(dir.join(&stray), &full[..full.len() / 2]).unwrap();
        for other in ["ckpt-2.safetensors", "ckpt-00000009.safetensors.bak", "other-00000009.safetensors"] {
            std::fs::write(dir.join(other), b"junk").unwrap();
        }
        std::fs::create_dir(dir.join("ckpt-00000008.safetensors")).unwrap();
        assert_eq!(steps(&m), [1]);
        assert_eq!(m.latest().unwrap(), Some(m.path_for(1)));
        let fresh = store_with(0.0);
        assert_eq!(m.restore_latest(&fresh).unwrap(), Some(1));
        assert!(fresh.get("m/w").unwrap().tensor().equal(&Tensor::from_slice(&[2.0f32, 2.0])));
        // Saving never leaves a temporary file of its own, and keeps the stray one untouched.
        m.save(&store, 2).unwrap();
        let temps = || -> Vec<String> {
            std::fs::read_dir(&*dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| is_temp(n))
                .collect()
        };
        assert_eq!(temps(), std::slice::from_ref(&stray));
        assert!(restore(&fresh, m.path_for(2)).is_ok());
        // A manager starting over the folder deletes its stale temporaries, and only those.
        let foreign = format!(".other-00000002.safetensors.999-0{TEMP_SUFFIX}");
        std::fs::write(dir.join(&foreign), b"x").unwrap();
        let _restarted = CheckpointManager::new(&*dir, Some(2)).unwrap();
        assert_eq!(temps(), [foreign]);
        assert_eq!(steps(&m), [1, 2]);
    }

    #[test]
    fn bad_configs_are_errors() {
        let dir = TestDir::new("manager_config");
        let e = CheckpointManager::new(&*dir, Some(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "checkpoint_manager: bad configuration: max_to_keep must be >= 1, or None to keep all, got 0"
        );
        let e =
            CheckpointManager::with_config(CheckpointManagerConfig::new(&*dir).with_checkpoint_name("a/b"))
                .unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        std::fs::write(dir.join("file"), b"").unwrap();
        let e = CheckpointManager::new(dir.join("file/sub"), None).unwrap_err();
        assert!(matches!(&e, Error::Checkpoint { path, .. } if path == &dir.join("file/sub")), "{e}");
    }

    #[test]
    fn config_serde_defaults_and_custom_names() {
        let c: CheckpointManagerConfig =
            serde_json::from_str(r#"{"directory": "runs/a", "checkpoint_name": "model"}"#).unwrap();
        assert_eq!(c, CheckpointManagerConfig::new("runs/a").with_checkpoint_name("model"));
        assert_eq!(c.max_to_keep, Some(5));
        let back: CheckpointManagerConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let dir = TestDir::new("manager_name");
        let m = CheckpointManager::with_config(
            CheckpointManagerConfig::new(&*dir).with_checkpoint_name("model").with_max_to_keep(None),
        )
        .unwrap();
        m.save(&store_with(1.0), 4).unwrap();
        assert_eq!(m.latest().unwrap(), Some(dir.join("model-00000004.safetensors")));
        // Another name in the same folder does not see these checkpoints.
        assert_eq!(CheckpointManager::new(&*dir, None).unwrap().latest().unwrap(), None);
    }

    #[test]
    fn is_send() {
        fn send<T: Send + Sync>() {}
        send::<CheckpointManager>();
    }
}
