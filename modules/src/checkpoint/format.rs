//! The safetensors format, read and written without panicking.
//!
//! A file is an 8-byte little-endian header length `n`, a JSON header of `n` bytes (padded with
//! spaces to a multiple of 8) mapping each tensor name to `{"dtype", "shape", "data_offsets"}`
//! plus an optional `"__metadata__"` string map, then the tensors' raw little-endian bytes.
//! Tensors are laid out by descending element size, then name, as the `safetensors` library
//! does, so Python's `safetensors.torch.load_file` reads couplet's files and vice versa.

use super::atomic::{write_all, write_atomically};
use crate::error::{Error, Result};
use safetensors::tensor::{SafeTensorError, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The header entry that holds string metadata rather than a tensor.
pub(crate) const METADATA_KEY: &str = "__metadata__";

/// The metadata key under which couplet stores the CRC-32C of each tensor's raw bytes, as a
/// JSON object `{name: "8 hex digits"}`. Checked when a tensor is decoded; files without it
/// (written by other tools) are read unchecked. Not part of the metadata users see.
pub(crate) const CHECKSUM_KEY: &str = "couplet.crc32c";

/// Writes `tensors` (names must be unique) and `metadata` to `path`, atomically.
pub(crate) fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        if name == METADATA_KEY {
            return Err(Error::checkpoint(path, format!("a tensor cannot be named {METADATA_KEY:?}")));
        }
        let dtype = Dtype::try_from(tensor.kind()).map_err(|_| {
            Error::checkpoint(path, format!("{name}: kind {:?} has no safetensors dtype", tensor.kind()))
        })?;
        entries.push((name, tensor, dtype));
    }
    entries.sort_by(|(a, _, da), (b, _, db)| db.size().cmp(&da.size()).then(a.cmp(b)));

    let mut metadata = metadata.clone();
    if metadata.contains_key(CHECKSUM_KEY) {
        return Err(Error::checkpoint(path, format!("the metadata key {CHECKSUM_KEY:?} is reserved")));
    }
    // The header precedes the data but holds the data's checksums. Every checksum is 8 hex
    // digits, so a header with placeholder checksums has the final header's length: it is
    // written first, the tensors are copied to the host once each (checksummed as they are
    // written, at most one held at a time), and the final header overwrites the placeholder.
    let placeholders = entries.iter().map(|&(name, _, _)| (name.clone(), format!("{:08x}", 0))).collect();
    let placeholder = header_bytes(path, &entries, &mut metadata, &placeholders)?;

    write_atomically(path, |w| {
        write_all(w, &(placeholder.len() as u64).to_le_bytes(), path)?;
        write_all(w, &placeholder, path)?;
        let mut checksums = BTreeMap::new();
        for &(name, tensor, _) in &entries {
            let bytes = tensor_bytes(tensor)
                .map_err(|e| Error::checkpoint(path, format!("{name}: cannot copy to the CPU: {e}")))?;
            checksums.insert(name.clone(), format!("{:08x}", crc32c::crc32c(&bytes)));
            write_all(w, &bytes, path)?;
        }
        let header = header_bytes(path, &entries, &mut metadata, &checksums)?;
        if header.len() != placeholder.len() {
            return Err(Error::checkpoint(path, "the header changed length with its checksums"));
        }
        w.seek(SeekFrom::Start(8))
            .map_err(|e| Error::checkpoint(path, format!("cannot rewrite the header: {e}")))?;
        write_all(w, &header, path)
    })
}

/// The safetensors header of `entries` (in file order), with `checksums` stored in
/// `metadata` under [`CHECKSUM_KEY`], padded with spaces to a multiple of 8 bytes.
fn header_bytes(
    path: &Path,
    entries: &[(&String, &Tensor, Dtype)],
    metadata: &mut BTreeMap<String, String>,
    checksums: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    metadata.insert(CHECKSUM_KEY.to_string(), to_json(path, checksums)?.to_string());
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for &(name, tensor, dtype) in entries {
        let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
        let len = shape.iter().product::<usize>() * dtype.size();
        let info = TensorInfo { dtype, shape, data_offsets: (offset, offset + len) };
        header.insert(name.clone(), to_json(path, &info)?);
        offset += len;
    }
    header.insert(METADATA_KEY.to_string(), to_json(path, &*metadata)?);
    let mut header = to_json(path, &header)?.to_string().into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok(header)
}

fn to_json(path: &Path, value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::checkpoint(path, format!("cannot encode the header: {e}")))
}

fn tensor_bytes(tensor: &Tensor) -> std::result::Result<Vec<u8>, tch::TchError> {
    tch::no_grad(|| {
        let cpu = tensor.f_to_device(Device::Cpu)?.f_contiguous()?;
        let numel = cpu.numel();
        let mut bytes = vec![0u8; numel * cpu.kind().elt_size_in_bytes()];
        cpu.f_copy_data_u8(&mut bytes, numel)?;
        Ok(bytes)
    })
}

/// A checkpoint file read into memory and validated: the header parsed, every tensor's data
/// range checked against the file size. Tensors are decoded on demand.
pub(crate) struct ParsedFile {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    tensors: BTreeMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
    /// CRC-32C per tensor name, from [`CHECKSUM_KEY`] (`None`: the file has none).
    checksums: Option<BTreeMap<String, u32>>,
    /// Whether [`ParsedFile::tensor`] checks the checksums.
    verify: bool,
}

impl ParsedFile {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming `path` if it cannot be read, or is truncated, corrupted or
    /// not a safetensors file.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        Self::read_with(path, true)
    }

    /// Reads and validates `path`; with `verify`, every decoded tensor is checked against the
    /// checksum couplet stored for it.
    ///
    /// # Errors
    /// As [`ParsedFile::read`].
    pub(crate) fn read_with(path: &Path, verify: bool) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::checkpoint(path, format!("cannot read: {e}")))?;
        let invalid = |what: String| Error::checkpoint(path, format!("invalid safetensors file: {what}"));
        check_offsets(&bytes).map_err(invalid)?;
        let (header_len, header) = SafeTensors::read_metadata(&bytes).map_err(|e| invalid(describe(&e)))?;
        let tensors = header.tensors().into_iter().map(|(name, info)| (name, info.clone())).collect();
        let mut metadata: BTreeMap<String, String> =
            header.metadata().clone().unwrap_or_default().into_iter().collect();
        let checksums = metadata
            .remove(CHECKSUM_KEY)
            .map(|json| {
                let hex: BTreeMap<String, String> = serde_json::from_str(&json)
                    .map_err(|_| invalid(format!("the {CHECKSUM_KEY} metadata is not a JSON string map")))?;
                hex.into_iter()
                    .map(|(name, h)| {
                        u32::from_str_radix(&h, 16)
                            .map(|c| (name.clone(), c))
                            .map_err(|_| invalid(format!("{name}: checksum {h:?} is not hexadecimal")))
                    })
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .transpose()?;
        let data_start = 8 + header_len;
        Ok(ParsedFile { path: path.to_path_buf(), bytes, data_start, tensors, metadata, checksums, verify })
    }

    /// Tensor names, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The `__metadata__` map (empty if the file has none).
    pub(crate) fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| Error::checkpoint(&self.path, format!("no tensor {name:?}")))
    }

    /// The shape of tensor `name`.
    pub(crate) fn shape(&self, name: &str) -> Result<Vec<i64>> {
        self.info(name)?
            .shape
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::checkpoint(&self.path, format!("{name}: a dimension does not fit in i64")))
    }

    /// Decodes tensor `name` into a new CPU tensor of the file's dtype.
    pub(crate) fn tensor(&self, name: &str) -> Result<Tensor> {
        let info = self.info(name)?;
        let kind = Kind::try_from(info.dtype).map_err(|_| {
            Error::checkpoint(
                &self.path,
                format!("{name}: dtype {:?} is not supported by libtorch", info.dtype),
            )
        })?;
        let shape = self.shape(name)?;
        let (start, end) = info.data_offsets;
        let data = &self.bytes[self.data_start + start..self.data_start + end];
        if self.verify {
            if let Some(checksums) = &self.checksums {
                let stored = checksums.get(name).ok_or_else(|| {
                    Error::checkpoint(
                        &self.path,
                        format!("{name}: no checksum in {CHECKSUM_KEY} (corrupted)"),
                    )
                })?;
                let actual = crc32c::crc32c(data);
                if actual != *stored {
                    return Err(Error::checkpoint(
                        &self.path,
                        format!(
                            "{name}: checksum mismatch (stored {stored:08x}, data {actual:08x}): the file is \
                             corrupted; restore with RestoreOptions::skip_checksums to read it anyway"
                        ),
                    ));
                }
            }
        }
        Tensor::f_from_data_size(data, &shape, kind)
            .map_err(|e| Error::checkpoint(&self.path, format!("{name}: cannot decode: {e}")))
    }
}

/// Checks, before the `safetensors` crate sees the header, that every tensor's `data_offsets`
/// end within the file: offsets near `u64::MAX` overflow its arithmetic (a panic in debug
/// builds). Other problems are left to its validation.
fn check_offsets(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))) else {
        return Ok(());
    };
    let Some(header) = usize::try_from(len).ok().and_then(|n| bytes.get(8..n.checked_add(8)?)) else {
        return Ok(());
    };
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice::<serde_json::Value>(header) else {
        return Ok(());
    };
    let room = (bytes.len() - header.len() - 8) as u64;
    for (name, entry) in entries.iter().filter(|(k, _)| k.as_str() != METADATA_KEY) {
        let offsets = entry.get("data_offsets").and_then(|o| o.as_array());
        let beyond = offsets.is_some_and(|o| o.iter().any(|v| v.as_u64().is_some_and(|v| v > room)));
        if beyond {
            return Err(format!("{name}: data offsets beyond the end of the file (truncated or corrupted)"));
        }
    }
    Ok(())
}

fn describe(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => {
            "shorter than the 8-byte header length (truncated, or not a safetensors file)".into()
        }
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => {
            "the header length runs past the end of the file (truncated, or not a safetensors file)".into()
        }
        SafeTensorError::InvalidHeader
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization => {
            "the header is not valid safetensors JSON (corrupted, or not a safetensors file)".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the tensor data does not match the header's offsets (truncated or corrupted)".into()
        }
        SafeTensorError::InvalidOffset(name) => format!("{name}: invalid data offsets (corrupted)"),
        SafeTensorError::TensorInvalidInfo | SafeTensorError::ValidationOverflow => {
            "a tensor's dtype and shape do not match its data size (corrupted)".into()
        }
        other => format!("{other:?}"),
    }
}

/// The scope under which a manager's checkpoint holds optimizer state:
/// `optimizer/{name}/{variable}/{slot}`.
pub(crate) const OPTIMIZER_SCOPE: &str = "optimizer";

/// The metadata key listing the optimizers of a checkpoint, comma-separated (present, maybe
/// empty, exactly in files written by
/// [`CheckpointManager::save_with_optimizers`](super::CheckpointManager::save_with_optimizers)).
pub(crate) const OPTIMIZERS_KEY: &str = "optimizers";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TestDir;

    fn write_raw(path: &Path, header: &str, data: &[u8]) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn reads_a_hand_made_file() {
        let dir = TestDir::new("format_hand_made");
        let path = dir.join("a.safetensors");
        let header = r#"{"__metadata__":{"step":"3"},"x":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}}"#;
        write_raw(&path, header, &[1, 0, 0xff, 0xff]);
        let file = ParsedFile::read(&path).unwrap();
        assert_eq!(file.names().collect::<Vec<_>>(), ["x"]);
        assert_eq!(file.metadata().get("step").map(String::as_str), Some("3"));
        let x = file.tensor("x").unwrap();
        assert_eq!(x.kind(), Kind::Int16);
        assert_eq!(Vec::<i64>::try_from(x).unwrap(), [1, -1]);
    }

    #[test]
    fn writes_sorted_padded_layout() {
        let dir = TestDir::new("format_layout");
        let path = dir.join("a.safetensors");
        let tensors = vec![
            ("b".to_string(), Tensor::from_slice(&[1.0f32, 2.0])),
            ("a".to_string(), Tensor::from_slice(&[7i16])),
            ("c".to_string(), Tensor::from_slice(&[0.5f64])),
        ];
        write_file(&path, &tensors, &BTreeMap::new()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        // Largest elements first: c (8 bytes), b (4), a (2).
        assert_eq!(header["c"]["data_offsets"], serde_json::json!([0, 8]));
        assert_eq!(header["b"]["data_offsets"], serde_json::json!([8, 16]));
        assert_eq!(header["a"]["data_offsets"], serde_json::json!([16, 18]));
        // The only metadata is the checksums (CRC-32C of each tensor's bytes).
        let sums: BTreeMap<String, String> =
            serde_json::from_str(header[METADATA_KEY][CHECKSUM_KEY].as_str().unwrap()).unwrap();
        assert_eq!(
            sums["b"],
            format!("{:08x}", crc32c::crc32c(&[1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat()))
        );
        assert_eq!(sums.len(), 3);
        assert_eq!(bytes.len(), 8 + n + 18);
        assert_eq!(&bytes[8 + n + 8..8 + n + 12], 1.0f32.to_le_bytes());
    }

    #[test]
    fn invalid_files_are_described() {
        let dir = TestDir::new("format_invalid");
        let path = dir.join("a.safetensors");
        let cases: [(&[u8], &str); 4] = [
            (b"abc", "shorter than the 8-byte header length"),
            (&[200, 0, 0, 0, 0, 0, 0, 0, b'{', b'}'], "header length runs past the end"),
            (&[2, 0, 0, 0, 0, 0, 0, 0, b'x', b'}'], "not valid safetensors JSON"),
            (&[0xff; 64], "header length runs past the end"),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, bytes).unwrap();
            let e = ParsedFile::read(&path).err().unwrap();
            assert!(matches!(&e, Error::Checkpoint { path: p, .. } if p == &path), "{e}");
            assert!(e.to_string().contains(expected), "{e}");
        }
        let header = r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        write_raw(&path, header, &[0; 4]);
        let e = ParsedFile::read(&path).err().unwrap();
        assert!(e.to_string().contains("x: data offsets beyond the end of the file (truncated"), "{e}");
        write_raw(&path, header, &[0; 12]);
        let e = ParsedFile::read(&path).err().unwrap();
        assert!(e.to_string().contains("does not match the header's offsets"), "{e}");
        write_raw(&path, r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8]);
        let e = ParsedFile::read(&path).err().unwrap();
        assert!(e.to_string().contains("do not match its data size"), "{e}");
    }

    #[test]
    fn flipped_bits_fail_the_checksum_unless_verification_is_off() {
        let dir = TestDir::new("format_checksum");
        let path = dir.join("a.safetensors");
        let tensors = vec![("w".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]))];
        let meta = BTreeMap::from([("step".to_string(), "7".to_string())]);
        write_file(&path, &tensors, &meta).unwrap();
        let file = ParsedFile::read(&path).unwrap();
        assert_eq!(file.metadata(), &meta, "the checksums are not user metadata");
        assert!(file.tensor("w").is_ok());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let e = ParsedFile::read(&path).unwrap().tensor("w").unwrap_err();
        assert!(e.to_string().contains("w: checksum mismatch"), "{e}");
        let unchecked = ParsedFile::read_with(&path, false).unwrap().tensor("w").unwrap();
        assert_ne!(Vec::<f32>::try_from(unchecked).unwrap(), [1.0, 2.0, 3.0]);
        let reserved = BTreeMap::from([(CHECKSUM_KEY.to_string(), "{}".to_string())]);
        assert!(write_file(&path, &tensors, &reserved).unwrap_err().to_string().contains("reserved"));
    }

    #[test]
    fn offsets_near_u64_max_are_errors() {
        let dir = TestDir::new("format_offsets");
        let path = dir.join("a.safetensors");
        let big = u64::MAX - 8;
        write_raw(
            &path,
            &format!(r#"{{"x":{{"dtype":"U8","shape":[{big}],"data_offsets":[0,{big}]}}}}"#),
            &[0; 8],
        );
        let e = ParsedFile::read(&path).err().unwrap();
        assert!(e.to_string().contains("x: data offsets beyond the end of the file"), "{e}");
    }

    #[test]
    fn unsupported_dtypes_are_errors_when_decoded() {
        let dir = TestDir::new("format_dtype");
        let path = dir.join("a.safetensors");
        write_raw(&path, r#"{"x":{"dtype":"U32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]);
        let file = ParsedFile::read(&path).unwrap();
        let e = file.tensor("x").unwrap_err();
        assert!(e.to_string().ends_with("x: dtype U32 is not supported by libtorch"), "{e}");
    }
}
