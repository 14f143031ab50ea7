//! Reading a TensorBundle (V2) checkpoint: `PREFIX.index` and `PREFIX.data-0000N-of-0000M`.

use super::dtype::TfDType;
use super::proto::{BundleEntryProto, BundleHeaderProto};
use super::table::{mask_crc, read_table};
use crate::error::{Error, Result, TorchContext};
use prost::Message;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The format version couplet reads and writes (`kTensorBundleVersion`).
pub(crate) const BUNDLE_VERSION: i32 = 1;

/// What the index says about one tensor: enough to list it without reading its data.
#[derive(Clone, Debug, PartialEq)]
pub struct TfTensorInfo {
    /// The variable's name, e.g. `rnn/multi_rnn_cell/cell_0/lstm_cell/kernel`.
    pub name: String,
    /// Its dtype.
    pub dtype: TfDType,
    /// Its shape (empty for a scalar).
    pub shape: Vec<i64>,
    /// Whether it is a partitioned variable (stored as slices; couplet cannot load those).
    pub partitioned: bool,
    shard: usize,
    offset: u64,
    size: u64,
    crc32c: u32,
}

/// An open TensorFlow checkpoint, as written by `tf.compat.v1.train.Saver` (V2 format) and
/// `tf.train.Checkpoint`: the index is read and checked at [`TfCheckpoint::open`], tensors are
/// read (and checked against their CRC-32C) on demand.
///
/// ```no_run
/// # fn main() -> couplet_modules::Result<()> {
/// use couplet_modules::checkpoint::tf::{latest_checkpoint, TfCheckpoint};
/// let prefix = latest_checkpoint("runs/tf_model")?.expect("a checkpoint");
/// let ckpt = TfCheckpoint::open(&prefix)?;
/// for info in ckpt.tensors() {
///     println!("{} {:?} {:?}", info.name, info.dtype, info.shape);
/// }
/// let kernel = ckpt.tensor("dense/kernel")?; // a tch Tensor of the stored dtype
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TfCheckpoint {
    prefix: PathBuf,
    num_shards: usize,
    tensors: BTreeMap<String, TfTensorInfo>,
}

/// `PREFIX.index`.
pub(crate) fn index_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, ".index")
}

/// `PREFIX.data-0000N-of-0000M`.
pub(crate) fn data_path(prefix: &Path, shard: usize, num_shards: usize) -> PathBuf {
    with_suffix(prefix, &format!(".data-{shard:05}-of-{num_shards:05}"))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl TfCheckpoint {
    /// Opens the checkpoint with the given prefix (`dir/model.ckpt-100`, the path without
    /// `.index`; a path ending in `.index` is accepted too) and reads its index.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the index file if it is missing, truncated or corrupt (a
    /// bad CRC, bad varints, keys out of order, an unparsable entry), big-endian, or of a
    /// newer format version; naming the tensor's key if its entry is inconsistent (negative
    /// dimensions, a size that does not match its shape and dtype, a shard that does not exist).
    pub fn open(prefix: impl AsRef<Path>) -> Result<Self> {
        let prefix = prefix.as_ref();
        let prefix = match prefix.to_str().and_then(|s| s.strip_suffix(".index")) {
            Some(stripped) => PathBuf::from(stripped),
            None => prefix.to_path_buf(),
        };
        let index = index_path(&prefix);
        let bytes =
            std::fs::read(&index).map_err(|e| Error::checkpoint(&index, format!("cannot read: {e}")))?;
        let corrupt = |message: String| Error::checkpoint(&index, message);
        let entries = read_table(&bytes).map_err(corrupt)?;
        let mut entries = entries.into_iter();
        let header = match entries.next() {
            Some((key, value)) if key.is_empty() => BundleHeaderProto::decode(value.as_slice())
                .map_err(|e| corrupt(format!("cannot parse the bundle header: {e}")))?,
            _ => return Err(corrupt("no bundle header (the entry under the empty key)".into())),
        };
        if header.endianness != 0 {
            return Err(corrupt("big-endian bundles are not supported".into()));
        }
        let min_consumer = header.version.as_ref().map_or(0, |v| v.min_consumer);
        if min_consumer > BUNDLE_VERSION {
            return Err(corrupt(format!(
                "needs a reader of bundle version {min_consumer}; couplet reads version {BUNDLE_VERSION}"
            )));
        }
        let num_shards = usize::try_from(header.num_shards)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| corrupt(format!("bad shard count {}", header.num_shards)))?;
        let mut tensors = BTreeMap::new();
        for (key, value) in entries {
            let name = String::from_utf8(key).map_err(|e| corrupt(format!("a key is not UTF-8: {e}")))?;
            let bad = |message: String| corrupt(format!("tensor {name:?}: {message}"));
            let entry = BundleEntryProto::decode(value.as_slice())
                .map_err(|e| bad(format!("cannot parse its entry: {e}")))?;
            let info = tensor_info(&name, &entry, num_shards).map_err(bad)?;
            tensors.insert(name, info);
        }
        Ok(TfCheckpoint { prefix, num_shards, tensors })
    }

    /// The checkpoint's prefix (`dir/model.ckpt-100`).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Every tensor's name, dtype and shape, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = &TfTensorInfo> {
        self.tensors.values()
    }

    /// The names of every tensor, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// What the index says about `name`, if it holds such a tensor.
    pub fn info(&self, name: &str) -> Option<&TfTensorInfo> {
        self.tensors.get(name)
    }

    /// Whether the checkpoint holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Reads tensor `name` (on the CPU, in its stored dtype, with its stored shape), checking
    /// its bytes against the CRC-32C in the index.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the data file and the key if there is no such tensor, it
    /// is a string or partitioned tensor, the data file is missing or shorter than the index
    /// says (truncated), or its bytes do not match their CRC-32C (corrupt).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let index = index_path(&self.prefix);
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::checkpoint(&index, format!("no tensor {name:?} in the checkpoint")))?;
        let kind = info.dtype.kind().filter(|_| !info.partitioned).ok_or_else(|| {
            let what = if info.partitioned {
                "a partitioned variable".to_string()
            } else {
                format!("{:?}", info.dtype)
            };
            Error::checkpoint(&index, format!("tensor {name:?} is {what}, which couplet cannot load"))
        })?;
        let path = data_path(&self.prefix, info.shard, self.num_shards);
        let fail = |message: String| Error::checkpoint(&path, format!("tensor {name:?}: {message}"));
        let mut file =
            std::fs::File::open(&path).map_err(|e| fail(format!("cannot open the data file: {e}")))?;
        let len = file.metadata().map_err(|e| fail(format!("cannot read the data file: {e}")))?.len();
        let end = info.offset.checked_add(info.size);
        if end.map_or(true, |end| end > len) {
            return Err(fail(format!(
                "bytes {}..{} are past the end of the {len}-byte data file (truncated?)",
                info.offset,
                info.offset.saturating_add(info.size)
            )));
        }
        let size = usize::try_from(info.size).map_err(|_| fail("too large for this machine".into()))?;
        let mut bytes = vec![0u8; size];
        file.seek(SeekFrom::Start(info.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| fail(format!("cannot read its bytes: {e}")))?;
        if mask_crc(crc32c::crc32c(&bytes)) != info.crc32c {
            return Err(fail("CRC-32C mismatch: the data file is corrupt".into()));
        }
        Tensor::f_from_data_size(&bytes, &info.shape, kind).ctx(&format!("tf checkpoint {name}"))
    }
}

/// Checks one entry against its own shape and dtype.
fn tensor_info(name: &str, entry: &BundleEntryProto, num_shards: usize) -> Result<TfTensorInfo, String> {
    let dtype = TfDType::from_proto(entry.dtype);
    let shape_proto = entry.shape.clone().unwrap_or_default();
    if shape_proto.unknown_rank {
        return Err("unknown rank".into());
    }
    let shape: Vec<i64> = shape_proto.dim.iter().map(|d| d.size).collect();
    if shape.iter().any(|&d| d < 0) {
        return Err(format!("negative dimension in shape {shape:?}"));
    }
    let partitioned = !entry.slices.is_empty();
    let shard = usize::try_from(entry.shard_id).ok().filter(|&s| s < num_shards);
    let shard = match shard {
        Some(s) => s,
        None if partitioned => 0,
        None => return Err(format!("shard {} of {num_shards}", entry.shard_id)),
    };
    let (offset, size) = match (u64::try_from(entry.offset), u64::try_from(entry.size)) {
        (Ok(o), Ok(s)) => (o, s),
        _ => return Err(format!("negative offset {} or size {}", entry.offset, entry.size)),
    };
    if let (Some(elem), false) = (dtype.element_size(), partitioned) {
        let expected = shape
            .iter()
            .try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| format!("shape {shape:?} overflows"))?;
        if expected != size {
            return Err(format!(
                "{size} bytes stored for a {dtype:?} tensor of shape {shape:?} ({expected} bytes)"
            ));
        }
    }
    Ok(TfTensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        partitioned,
        shard,
        offset,
        size,
        crc32c: entry.crc32c,
    })
}
