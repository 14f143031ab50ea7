//! File sources: text lines, JSON lines and CSV rows. Errors name the file and the line.

use crate::dataset::{Dataset, Iter};
use couplet_modules::Error;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

/// An [`Error::Io`] for `path`.
pub(crate) fn io_error(stage: &str, path: &std::path::Path, source: std::io::Error) -> Error {
    Error::Io { context: format!("{stage}: {}", path.display()), source }
}

/// One pass over the files in order, each opened when reached, `read` turning a file into items.
pub(crate) fn over_files<T: Send + 'static>(
    paths: Vec<PathBuf>,
    read: impl Fn(PathBuf) -> Iter<T> + Send + Sync + 'static,
) -> Dataset<T> {
    let (paths, read) = (Arc::new(paths), Arc::new(read));
    Dataset::from_factory(move |_| {
        let (paths, read) = (Arc::clone(&paths), Arc::clone(&read));
        Box::new((0..paths.len()).flat_map(move |i| read(paths[i].clone())))
    })
}

/// The lines of a file with their 1-based numbers, read lazily (`\n` or `\r\n` removed).
fn lines(stage: &'static str, path: PathBuf) -> Iter<(usize, String)> {
    match File::open(&path) {
        Err(e) => Box::new(std::iter::once(Err(io_error(stage, &path, e)))),
        Ok(f) => Box::new(
            BufReader::new(f)
                .lines()
                .zip(1..)
                .map(move |(line, n)| line.map(|l| (n, l)).map_err(|e| io_error(stage, &path, e))),
        ),
    }
}

/// The lines of the text files `paths`, in order (TF's `TextLineDataset`).
///
/// # Errors
/// While iterating, [`Error::Io`] naming the file that cannot be opened or read (or is not UTF-8).
pub fn text_lines(paths: Vec<PathBuf>) -> Dataset<String> {
    over_files(paths, |path| Box::new(lines("text_lines", path).map(|r| r.map(|(_, l)| l))))
}

/// One `T` per non-empty line of the JSON-lines files `paths` (deserialized with serde).
///
/// # Errors
/// While iterating, [`Error::Io`] for an unreadable file, [`Error::InvalidArgument`] naming
/// the file and line of a value that does not deserialize into `T`.
pub fn json_lines<T: DeserializeOwned + Send + 'static>(paths: Vec<PathBuf>) -> Dataset<T> {
    over_files(paths, |path| {
        let shown = path.display().to_string();
        Box::new(
            lines("json_lines", path).filter(|r| r.as_ref().map_or(true, |(_, l)| !l.trim().is_empty())).map(
                move |r| {
                    let (n, line) = r?;
                    serde_json::from_str(&line)
                        .map_err(|e| Error::invalid("json_lines", format!("{shown}:{n}: {e}")))
                },
            ),
        )
    })
}

/// One `T` per row of the CSV files `paths` (the `csv` crate with serde; with `has_headers`,
/// the first row names the fields, so `T` may be a struct or a `HashMap<String, String>`;
/// `Vec<String>` takes any row).
///
/// # Errors
/// While iterating, [`Error::Io`] for an unreadable file, [`Error::InvalidArgument`] naming
/// the file and line of a malformed row or one that does not deserialize into `T`.
pub fn csv_rows<T: DeserializeOwned + Send + 'static>(paths: Vec<PathBuf>, has_headers: bool) -> Dataset<T> {
    over_files(paths, move |path| -> Iter<T> {
        let reader = match csv::ReaderBuilder::new().has_headers(has_headers).from_path(&path) {
            Ok(r) => r,
            Err(e) => {
                return Box::new(std::iter::once(Err(Error::invalid(
                    "csv_rows",
                    format!("{}: {e}", path.display()),
                ))))
            }
        };
        let shown = path.display().to_string();
        Box::new(reader.into_deserialize::<T>().map(move |r| {
            r.map_err(|e| {
                let line = e.position().map_or(String::new(), |p| format!(":{}", p.line()));
                Error::invalid("csv_rows", format!("{shown}{line}: {e}"))
            })
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Result;
    use std::collections::HashMap;

    fn temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("couplet-data-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn text_lines_read_files_in_order() {
        let (a, b) = (temp("a.txt", "one\r\ntwo\n"), temp("b.txt", "three"));
        assert_eq!(text_lines(vec![a, b]).collect().unwrap(), ["one", "two", "three"]);
        let e = text_lines(vec![PathBuf::from("/nonexistent/x.txt")]).collect().unwrap_err();
        assert!(e.to_string().starts_with("text_lines: /nonexistent/x.txt: "), "{e}");
    }

    #[test]
    fn json_lines_deserialize_and_name_the_bad_line() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Pair {
            text: String,
            label: i64,
        }
        let p = temp(
            "p.jsonl",
            "{\"text\": \"a\", \"label\": 1}\n\n{\"text\": \"b\", \"label\": 2}\n{\"text\": 3}\n",
        );
        let got: Vec<Result<Pair>> = json_lines(vec![p.clone()]).iter().collect();
        assert_eq!(got[1].as_ref().unwrap(), &Pair { text: "b".into(), label: 2 });
        let e = got[2].as_ref().unwrap_err().to_string();
        assert!(e.starts_with(&format!("json_lines: {}:4: ", p.display())), "{e}");
    }

    #[test]
    fn csv_rows_with_headers() {
        let p = temp("c.csv", "name,age\nada,36\nalan,41\nbad\n");
        let got: Vec<Result<HashMap<String, String>>> = csv_rows(vec![p.clone()], true).iter().collect();
        assert_eq!(got[1].as_ref().unwrap()["age"], "41");
        let e = got[2].as_ref().unwrap_err().to_string();
        assert!(e.starts_with(&format!("csv_rows: {}:4: ", p.display())), "{e}");
        let rows: Vec<Vec<String>> = csv_rows(vec![temp("d.csv", "1,2\n3,4\n")], false).collect().unwrap();
        assert_eq!(rows, vec![vec!["1", "2"], vec!["3", "4"]]);
    }
}
