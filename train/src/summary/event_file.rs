//! Naming, creating and reading TensorBoard events files.

use super::proto::Event;
use super::record::split_records;
use couplet_modules::{Error, Result};
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The prefix of every events file's name.
pub(crate) const PREFIX: &str = "events.out.tfevents.";

/// The file-version string of the first event of every file (TensorBoard purges orphaned
/// steps after a `SessionLog` START only from version 2 on).
pub const FILE_VERSION: &str = "brain.Event:2";

/// Seconds since the Unix epoch, as `Event.wall_time` holds them.
pub(crate) fn wall_time() -> f64 {
    // A clock before 1970 reads as 0 rather than failing the training run.
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// The time stamp in an events file's name (`events.out.tfevents.<time>.<host>`), if it has one.
fn name_time(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.split('.').next()?.parse().ok()
}

/// The events files in `dir` (any name containing `tfevents`, as TensorBoard's loader picks
/// them), sorted by name: the order TensorBoard reads them in.
///
/// # Errors
/// [`Error::Io`] if `dir` cannot be listed.
pub fn events_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let context = || format!("summary: listing {}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(context()))? {
        let entry = entry.map_err(io(context()))?;
        let name = entry.file_name();
        if name.to_string_lossy().contains("tfevents") && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// A new events file's path in `dir`: `events.out.tfevents.<time>.<host><suffix>`, `<time>`
/// the Unix time in seconds as ten digits. When an events file of the same or a later time
/// is already there (a resume within the same second), the time is one past the latest, so
/// the new file sorts after every older one and TensorBoard reads them in order.
pub(crate) fn new_file_path(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let now = wall_time() as u64;
    let latest = events_files(dir)?
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).and_then(name_time))
        .max();
    let time = match latest {
        Some(t) if t >= now => t.saturating_add(1),
        _ => now,
    };
    let host = gethostname::gethostname().to_string_lossy().replace(['/', '\\'], "_");
    Ok(dir.join(format!("{PREFIX}{time:010}.{host}{suffix}")))
}

/// Every event in the events file at `path`, in order, checking each record's CRCs. A last
/// record cut short (a writer killed mid-write) is left out, as TensorBoard does.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read, a record's CRC does not match, or a record is
/// not an `Event` message (`InvalidData`, naming the record).
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).map_err(io(format!("summary: reading events file {}", path.display())))?;
    split_records(path, &bytes)?
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            Event::decode(data).map_err(|e| Error::Io {
                context: format!("summary: reading events file {}", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("record {i}: {e}")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_a_same_second_file_sorts_after() {
        assert_eq!(name_time("events.out.tfevents.1700000000.host"), Some(1_700_000_000));
        assert_eq!(name_time("events.out.tfevents.x.host"), None);
        let dir = std::env::temp_dir().join(format!("couplet-event-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let future = wall_time() as u64 + 100;
        std::fs::write(dir.join(format!("{PREFIX}{future:010}.h")), b"").unwrap();
        let next = new_file_path(&dir, ".v1").unwrap();
        let name = next.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(name_time(&name), Some(future + 1));
        assert!(name.ends_with(".v1"));
        std::fs::write(&next, b"").unwrap();
        assert_eq!(events_files(&dir).unwrap().last().unwrap(), &next);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
