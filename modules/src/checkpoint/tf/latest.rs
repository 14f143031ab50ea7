//! TensorFlow's `checkpoint` file: the text proto (`CheckpointState`) that names a folder's
//! latest checkpoint, read by `tf.train.latest_checkpoint`.

use super::reader::index_path;
use crate::checkpoint::atomic::{write_all, write_atomically};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The file's name inside a checkpoint folder.
const STATE_FILE: &str = "checkpoint";

/// The prefix of the latest checkpoint in `dir`, read from its `checkpoint` file
/// (`model_checkpoint_path: "model.ckpt-100"`), as `tf.train.latest_checkpoint(dir)`.
/// A relative path is taken relative to `dir`. `Ok(None)` when `dir` has no `checkpoint` file.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file if it cannot be read, has no
/// `model_checkpoint_path`, or names a checkpoint whose `.index` file does not exist.
pub fn latest_checkpoint(dir: impl AsRef<Path>) -> Result<Option<PathBuf>> {
    let dir = dir.as_ref();
    let file = dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::checkpoint(&file, format!("cannot read: {e}"))),
    };
    let value = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("model_checkpoint_path:"))
        .ok_or_else(|| Error::checkpoint(&file, "no model_checkpoint_path line"))?;
    let name = unquote(value.trim())
        .ok_or_else(|| Error::checkpoint(&file, format!("bad model_checkpoint_path {value}")))?;
    let prefix = dir.join(name);
    if !index_path(&prefix).is_file() {
        return Err(Error::checkpoint(
            &file,
            format!("names {}, but {} does not exist", prefix.display(), index_path(&prefix).display()),
        ));
    }
    Ok(Some(prefix))
}

/// Writes `dir/checkpoint` naming `prefix` (relative to `dir` when it lies inside it) as the
/// latest checkpoint, so that `tf.train.latest_checkpoint(dir)` and [`latest_checkpoint`]
/// find it.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file if it cannot be written.
pub fn write_checkpoint_state(dir: impl AsRef<Path>, prefix: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    let prefix = prefix.as_ref();
    let name = prefix.strip_prefix(dir).unwrap_or(prefix).to_string_lossy().into_owned();
    let quoted = quote(&name);
    let text = format!("model_checkpoint_path: {quoted}\nall_model_checkpoint_paths: {quoted}\n");
    let file = dir.join(STATE_FILE);
    write_atomically(&file, |w| write_all(w, text.as_bytes(), &file))
}

/// The text-proto string `"..."` with its escapes undone.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(match chars.next()? {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}
