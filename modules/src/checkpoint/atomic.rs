//! Crash-safe file replacement: write a temporary file in the destination's folder, flush and
//! fsync it, rename it over the destination, then fsync the folder. A crash at any point leaves
//! either the old file or the new one under the final name, never a partial one; at worst a
//! stray temporary file (`.{name}.{pid}-{n}.tmp`) remains, which checkpoint listings ignore.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of the temporary files [`write_atomically`] creates.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::checkpoint(path, "the path has no file name"))?
        .to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    // The time makes the name unique across restarts too: a process that crashed with the
    // same pid (pid 1 in a container) and the same counter left a file of the same name.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok(parent_dir(path).join(format!(".{name}.{pid}-{nanos:x}-{n}{TEMP_SUFFIX}")))
}

/// The name of the file a temporary file of [`write_atomically`] was made for, if
/// `file_name` is one (`.{target}.{pid}-{time}-{n}.tmp`, or `.{target}.{pid}-{n}.tmp` as
/// earlier versions named them).
pub(crate) fn temp_target(file_name: &str) -> Option<&str> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (target, tag) = inner.rsplit_once('.')?;
    let tag_ok = !tag.is_empty() && tag.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    (tag_ok && !target.is_empty()).then_some(target)
}

/// Writes `path` atomically: `fill` writes the whole content into a buffered temporary file,
/// which is then synced and renamed over `path`.
///
/// # Errors
/// [`Error::Checkpoint`] naming `path` if the folder is missing or not writable, if `fill`
/// fails (its error is returned as is), or if syncing or renaming fails. The temporary file is
/// removed on every error.
pub(crate) fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let (temp, file) = create_temp(path)?;
    let result = write_and_rename(path, &temp, file, fill);
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temporary file.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Creates a new temporary file for `path`, trying another name if one exists already.
fn create_temp(path: &Path) -> Result<(PathBuf, File)> {
    let mut tries = 0;
    loop {
        let temp = temp_path(path)?;
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => {
                let message = format!("cannot create temporary file {}: {e}", temp.display());
                return Err(Error::checkpoint(path, message));
            }
        }
    }
}

fn write_and_rename(
    path: &Path,
    temp: &Path,
    file: File,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let io_err = |what: &str, e: std::io::Error| Error::checkpoint(path, format!("cannot {what}: {e}"));
    let mut writer = BufWriter::new(file);
    fill(&mut writer)?;
    let file = writer.into_inner().map_err(|e| io_err("write temporary file", e.into_error()))?;
    file.sync_all().map_err(|e| io_err("sync temporary file", e))?;
    drop(file);
    std::fs::rename(temp, path).map_err(|e| io_err("rename temporary file over it", e))?;
    sync_dir(parent_dir(path)).map_err(|e| io_err("sync its folder", e))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Folders cannot be opened for syncing on this platform; the rename is still atomic.
    Ok(())
}

/// Writes all of `bytes`, naming `path` in the error.
pub(crate) fn write_all(writer: &mut impl Write, bytes: &[u8], path: &Path) -> Result<()> {
    writer.write_all(bytes).map_err(|e| Error::checkpoint(path, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TestDir;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = TestDir::new("atomic_replace");
        let path = dir.join("a.bin");
        write_atomically(&path, |w| write_all(w, b"old", &path)).unwrap();
        write_atomically(&path, |w| write_all(w, b"new", &path)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(&dir), ["a.bin"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let dir = TestDir::new("atomic_fail");
        let path = dir.join("a.bin");
        write_atomically(&path, |w| write_all(w, b"old", &path)).unwrap();
        let e = write_atomically(&path, |w| {
            write_all(w, b"partial", &path)?;
            Err(Error::checkpoint(&path, "simulated failure"))
        })
        .unwrap_err();
        assert!(e.to_string().ends_with("simulated failure"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(&dir), ["a.bin"]);
    }

    #[test]
    fn stale_temporaries_of_a_crashed_process_with_the_same_pid_do_not_block_saves() {
        let dir = TestDir::new("atomic_stale");
        let path = dir.join("a.bin");
        let pid = std::process::id();
        // What earlier versions left after a crash: `.{name}.{pid}-{n}.tmp`.
        for n in 0..16 {
            std::fs::write(dir.join(format!(".a.bin.{pid}-{n}{TEMP_SUFFIX}")), b"partial").unwrap();
        }
        write_atomically(&path, |w| write_all(w, b"new", &path)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(temp_target(&format!(".a.bin.{pid}-0{TEMP_SUFFIX}")), Some("a.bin"));
        let fresh = temp_path(&path).unwrap();
        assert_eq!(temp_target(&fresh.file_name().unwrap().to_string_lossy()), Some("a.bin"));
        assert_eq!(temp_target("a.bin"), None);
        assert_eq!(temp_target(".a.bin.tmp"), None);
        assert_eq!(temp_target(".a.bin.xyz.tmp"), None);
    }

    #[test]
    fn a_missing_folder_is_a_checkpoint_error() {
        let dir = TestDir::new("atomic_missing");
        let path = dir.join("no/such/folder/a.bin");
        let e = write_atomically(&path, |w| write_all(w, b"x", &path)).unwrap_err();
        assert!(matches!(&e, Error::Checkpoint { path: p, .. } if p == &path), "{e}");
        assert!(e.to_string().contains("cannot create temporary file"), "{e}");
    }
}
