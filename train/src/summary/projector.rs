//! The embedding projector's files, as TensorFlow users know them: `projector_config.pbtxt`
//! in the log directory listing each embedding, with its tensor and metadata TSV files.

use couplet_modules::{Error, Result, TorchContext};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The name of the projector plugin's config file in a run directory.
pub const PROJECTOR_CONFIG: &str = "projector_config.pbtxt";

/// Labels of an embedding's points, one row per point, written as `metadata.tsv`.
#[derive(Clone, Debug, PartialEq)]
pub enum EmbeddingMetadata {
    /// One label per point; the file has no header (the projector's single-column format).
    Labels(Vec<String>),
    /// Several named columns: `header` names them, `rows[i]` holds point `i`'s values.
    Columns {
        /// The column names (at least two).
        header: Vec<String>,
        /// One row per point, each as long as `header`.
        rows: Vec<Vec<String>>,
    },
}

impl EmbeddingMetadata {
    /// One label per point.
    pub fn labels<S: Into<String>>(labels: impl IntoIterator<Item = S>) -> Self {
        EmbeddingMetadata::Labels(labels.into_iter().map(Into::into).collect())
    }

    fn rows(&self) -> usize {
        match self {
            EmbeddingMetadata::Labels(l) => l.len(),
            EmbeddingMetadata::Columns { rows, .. } => rows.len(),
        }
    }

    /// The TSV text, after checking every cell.
    fn to_tsv(&self) -> Result<String> {
        let cell = |s: &str, at: String| {
            if s.contains(['\t', '\n', '\r']) {
                Err(Error::invalid("projector", format!("{at} {s:?} contains a tab or a line break")))
            } else {
                Ok(())
            }
        };
        let mut out = String::new();
        match self {
            EmbeddingMetadata::Labels(labels) => {
                for (i, l) in labels.iter().enumerate() {
                    cell(l, format!("label {i}"))?;
                    out.push_str(l);
                    out.push('\n');
                }
            }
            EmbeddingMetadata::Columns { header, rows } => {
                if header.len() < 2 {
                    return Err(Error::invalid(
                        "projector",
                        format!(
                            "a metadata header needs at least 2 columns, got {}; use labels",
                            header.len()
                        ),
                    ));
                }
                for (j, h) in header.iter().enumerate() {
                    cell(h, format!("header column {j}"))?;
                }
                out.push_str(&header.join("\t"));
                out.push('\n');
                for (i, row) in rows.iter().enumerate() {
                    if row.len() != header.len() {
                        return Err(Error::shape(
                            "projector",
                            format!("metadata row {i}"),
                            format!("{} columns (the header's)", header.len()),
                            row.len(),
                        ));
                    }
                    for (j, c) in row.iter().enumerate() {
                        cell(c, format!("row {i} column {j}"))?;
                    }
                    out.push_str(&row.join("\t"));
                    out.push('\n');
                }
            }
        }
        Ok(out)
    }
}

/// Writes embeddings for TensorBoard's projector into a run directory: for each embedding
/// `<tag>_<step>/tensors.tsv` (one point per line, tab-separated values), optionally
/// `<tag>_<step>/metadata.tsv`, and an `embeddings { .. }` entry appended to
/// `projector_config.pbtxt` (so a resumed run adds to the earlier entries).
///
/// Unlike the [`crate::summary::SummaryWriter`]'s events, these files are written at once, on
/// the calling thread: embeddings are written rarely.
#[derive(Clone, Debug)]
pub struct Projector {
    logdir: PathBuf,
}

impl Projector {
    /// A projector writing into `logdir` (usually the [`crate::summary::SummaryWriter`]'s).
    pub fn new(logdir: impl AsRef<Path>) -> Self {
        Projector { logdir: logdir.as_ref().to_path_buf() }
    }

    /// Writes the `[N, D]` float matrix `embedding` (any real kind, any device) as the
    /// embedding `tag` at `step` (named `<tag>:<step>` in the projector), with optional
    /// labels for its `N` points. Returns the folder the TSV files went to.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tag, a tag with characters other than ASCII
    /// letters, digits, `_`, `-`, `.` or `/` (`/` becomes `_` in the folder name), an
    /// undefined tensor, a non-finite value or a label with a tab or line break;
    /// [`Error::Shape`] for a matrix that is not `[N >= 1, D >= 1]` or metadata with other
    /// than `N` rows; [`Error::Io`] if a file cannot be written.
    pub fn add_embedding(
        &self,
        tag: &str,
        embedding: &Tensor,
        metadata: Option<&EmbeddingMetadata>,
        step: i64,
    ) -> Result<PathBuf> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
        if tag.is_empty() || !tag.chars().all(ok_char) {
            return Err(Error::invalid(
                "projector",
                format!("an embedding tag must be non-empty ASCII letters, digits, '_', '-', '.' or '/', got {tag:?}"),
            ));
        }
        if !embedding.defined() {
            return Err(Error::invalid("projector", format!("embedding {tag:?} is an undefined tensor")));
        }
        let size = embedding.size();
        if size.len() != 2 || size[0] < 1 || size[1] < 1 {
            return Err(Error::shape("projector", format!("embedding {tag:?}"), "[N >= 1, D >= 1]", size));
        }
        let (n, d) = (size[0] as usize, size[1] as usize);
        if let Some(m) = metadata {
            if m.rows() != n {
                return Err(Error::shape(
                    "projector",
                    format!("metadata of {tag:?}"),
                    format!("{n} rows"),
                    m.rows(),
                ));
            }
        }
        let values = embedding
            .f_detach()
            .and_then(|t| t.f_to_kind(Kind::Double))
            .and_then(|t| t.f_to_device(tch::Device::Cpu))
            .and_then(|t| t.f_flatten(0, -1))
            .ctx("projector")?;
        let values = Vec::<f64>::try_from(&values).ctx("projector")?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "projector",
                format!("embedding {tag:?} has a non-finite value at row {}, column {}", i / d, i % d),
            ));
        }
        let metadata_tsv = metadata.map(EmbeddingMetadata::to_tsv).transpose()?;

        let folder_name = format!("{}_{step:05}", tag.replace('/', "_"));
        let folder = self.logdir.join(&folder_name);
        let io = |what: &Path| {
            let context = format!("projector: writing {}", what.display());
            move |source| Error::Io { context, source }
        };
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let mut tensors = String::new();
        for row in values.chunks(d) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
            tensors.push_str(&cells.join("\t"));
            tensors.push('\n');
        }
        let tensor_path = folder.join("tensors.tsv");
        std::fs::write(&tensor_path, tensors).map_err(io(&tensor_path))?;
        let mut entry = format!(
            "embeddings {{\n  tensor_name: \"{tag}:{step}\"\n  tensor_path: \"{folder_name}/tensors.tsv\"\n"
        );
        if let Some(tsv) = metadata_tsv {
            let metadata_path = folder.join("metadata.tsv");
            std::fs::write(&metadata_path, tsv).map_err(io(&metadata_path))?;
            entry.push_str(&format!("  metadata_path: \"{folder_name}/metadata.tsv\"\n"));
        }
        entry.push_str("}\n");
        let config = self.logdir.join(PROJECTOR_CONFIG);
        let existing = match std::fs::read_to_string(&config) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&config)(e)),
        };
        // Writing the same embedding again (a resumed run repeating a step) replaces nothing
        // and adds no second entry.
        if !existing.contains(&entry) {
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(&config).map_err(io(&config))?;
            file.write_all(entry.as_bytes()).map_err(io(&config))?;
        }
        Ok(folder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_config_entries_are_written_once() {
        let dir = std::env::temp_dir().join(format!("couplet-projector-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = Projector::new(&dir);
        let m = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.5]).reshape([2, 2]);
        let labels = EmbeddingMetadata::labels(["a", "b"]);
        let folder = p.add_embedding("emb/words", &m, Some(&labels), 3).unwrap();
        assert_eq!(folder, dir.join("emb_words_00003"));
        assert_eq!(std::fs::read_to_string(folder.join("tensors.tsv")).unwrap(), "1\t2\n3\t4.5\n");
        assert_eq!(std::fs::read_to_string(folder.join("metadata.tsv")).unwrap(), "a\nb\n");
        p.add_embedding("emb/words", &m, Some(&labels), 3).unwrap();
        let config = std::fs::read_to_string(dir.join(PROJECTOR_CONFIG)).unwrap();
        assert_eq!(
            config,
            "embeddings {\n  tensor_name: \"emb/words:3\"\n  tensor_path: \"emb_words_00003/tensors.tsv\"\n  \
             metadata_path: \"emb_words_00003/metadata.tsv\"\n}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_embeddings_are_typed_errors() {
        let p = Projector::new(std::env::temp_dir().join("couplet-projector-never-written"));
        let m = Tensor::from_slice(&[1.0f32, 2.0]).reshape([2, 1]);
        let shape = |e: Error| matches!(e, Error::Shape { .. });
        assert!(shape(p.add_embedding("x", &Tensor::from_slice(&[1.0f32]), None, 0).unwrap_err()));
        assert!(shape(p.add_embedding("x", &m, Some(&EmbeddingMetadata::labels(["a"])), 0).unwrap_err()));
        assert!(p.add_embedding("a\"b", &m, None, 0).is_err());
        assert!(p.add_embedding("", &m, None, 0).is_err());
        let e = p.add_embedding("x", &m, Some(&EmbeddingMetadata::labels(["a", "b\tc"])), 0).unwrap_err();
        assert!(e.to_string().contains("label 1"), "{e}");
        let columns = EmbeddingMetadata::Columns {
            header: vec!["a".into(), "b".into()],
            rows: vec![vec!["1".into()]; 2],
        };
        assert!(shape(p.add_embedding("x", &m, Some(&columns), 0).unwrap_err()));
        let nan = Tensor::from_slice(&[1.0f32, f32::NAN]).reshape([1, 2]);
        let e = p.add_embedding("x", &nan, None, 0).unwrap_err();
        assert!(e.to_string().contains("row 0, column 1"), "{e}");
        assert!(p.add_embedding("x", &Tensor::new(), None, 0).is_err());
    }
}
