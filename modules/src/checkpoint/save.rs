//! Writing checkpoint files ([`save`], [`save_with_metadata`], [`save_tensors`]) and reading
//! them whole ([`load`], [`read_metadata`]).

use super::checkpointable::Checkpointable;
use super::format::{self, ParsedFile};
use super::restore::check_unique;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::Tensor;

/// Saves the variables of `source` to the safetensors file `path`, keyed by their full scoped
/// names, replacing any file there atomically. Values are written in their own kind, with the
/// CRC-32C of each tensor's bytes in the metadata (key `couplet.crc32c`, checked on restore
/// and hidden from [`read_metadata`]; other safetensors readers ignore it).
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
    check_unique(path, &vars)?;
    let tensors: Vec<(String, Tensor)> =
        vars.iter().map(|v| (v.name().to_string(), v.tensor().shallow_clone())).collect();
    format::write_file(path, &tensors, metadata)
}

/// Saves named tensors (e.g. a PyTorch-named state dict) to the safetensors file `path`,
/// atomically, with optional string `metadata`.
///
/// # Errors
/// [`Error::Checkpoint`] naming `path` if two tensors share a name, a tensor is undefined, a
/// kind has no safetensors dtype, the metadata uses the reserved key `couplet.crc32c`, or the
/// file cannot be written.
pub fn save_tensors(
    tensors: &[(String, Tensor)],
    path: impl AsRef<Path>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    if let Some((name, _)) = tensors.iter().find(|(_, t)| !t.defined()) {
        return Err(Error::checkpoint(path, format!("{name}: an undefined tensor cannot be saved")));
    }
    let mut names = BTreeSet::new();
    if let Some((name, _)) = tensors.iter().find(|(name, _)| !names.insert(name)) {
        return Err(Error::checkpoint(path, format!("the tensor name {name:?} appears twice")));
    }
    format::write_file(path, tensors, metadata)
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
