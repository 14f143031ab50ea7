//! Writing a TensorBundle (V2) checkpoint that TensorFlow restores: one data shard and the
//! index, each written atomically.

use super::dtype::TfDType;
use super::proto::{BundleEntryProto, BundleHeaderProto, Dim, TensorShapeProto, VersionDef};
use super::reader::{data_path, index_path, BUNDLE_VERSION};
use super::table::{mask_crc, write_table};
use crate::checkpoint::atomic::{write_all, write_atomically};
use crate::error::{Error, Result, TorchContext};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Collects named tensors and writes them as a TensorFlow checkpoint
/// (`PREFIX.index` and `PREFIX.data-00000-of-00001`), which `tf.compat.v1.train.Saver`,
/// `tf.train.load_checkpoint` and [`TfCheckpoint`](super::TfCheckpoint) read.
///
/// ```no_run
/// # fn main() -> couplet_modules::Result<()> {
/// use couplet_modules::checkpoint::tf::TfCheckpointWriter;
/// let mut writer = TfCheckpointWriter::new();
/// writer.add("dense/kernel", &tch::Tensor::zeros([4, 3], (tch::Kind::Float, tch::Device::Cpu)))?;
/// writer.write("runs/export/model.ckpt-1")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct TfCheckpointWriter {
    tensors: BTreeMap<String, Tensor>,
}

impl TfCheckpointWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tensor` under `name` (a copy on the CPU is kept; the tensor may live anywhere).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `tf checkpoint writer` for an empty name, a name
    /// added twice, an undefined tensor or a dtype TensorFlow has no number for.
    pub fn add(&mut self, name: &str, tensor: &Tensor) -> Result<()> {
        const MODULE: &str = "tf checkpoint writer";
        if name.is_empty() {
            return Err(Error::invalid(
                MODULE,
                "a tensor name must not be empty (the empty key holds the header)",
            ));
        }
        if self.tensors.contains_key(name) {
            return Err(Error::invalid(MODULE, format!("tensor {name:?} added twice")));
        }
        if !tensor.defined() {
            return Err(Error::invalid(MODULE, format!("tensor {name:?} is undefined")));
        }
        if TfDType::from_kind(tensor.kind()).is_none() {
            return Err(Error::invalid(
                MODULE,
                format!("tensor {name:?} has kind {:?}, which TensorFlow has no dtype for", tensor.kind()),
            ));
        }
        let copy = tensor
            .f_detach()
            .and_then(|t| t.f_to_device(Device::Cpu))
            .and_then(|t| t.f_contiguous())
            .ctx(MODULE)?;
        self.tensors.insert(name.to_string(), copy);
        Ok(())
    }

    /// The names added so far, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Writes the checkpoint under `prefix` (`dir/model.ckpt-1`; the folder must exist).
    /// Returns the prefix.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the file that could not be written.
    pub fn write(&self, prefix: impl AsRef<Path>) -> Result<PathBuf> {
        let prefix = prefix.as_ref().to_path_buf();
        let data = data_path(&prefix, 0, 1);
        let mut entries = Vec::with_capacity(self.tensors.len() + 1);
        let header = BundleHeaderProto {
            num_shards: 1,
            endianness: 0,
            version: Some(VersionDef {
                producer: BUNDLE_VERSION,
                min_consumer: 0,
                bad_consumers: Vec::new(),
            }),
        };
        entries.push((Vec::new(), header.encode_to_vec()));
        let mut blob = Vec::new();
        for (name, tensor) in &self.tensors {
            let numel = tensor.numel();
            let mut bytes = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
            tensor.f_copy_data_u8(&mut bytes, numel).ctx("tf checkpoint writer")?;
            let dtype = TfDType::from_kind(tensor.kind()).map_or(0, TfDType::to_proto);
            let entry = BundleEntryProto {
                dtype,
                shape: Some(TensorShapeProto {
                    dim: tensor.size().into_iter().map(|size| Dim { size, name: String::new() }).collect(),
                    unknown_rank: false,
                }),
                shard_id: 0,
                offset: blob.len() as i64,
                size: bytes.len() as i64,
                crc32c: mask_crc(crc32c::crc32c(&bytes)),
                slices: Vec::new(),
            };
            blob.extend_from_slice(&bytes);
            entries.push((name.as_bytes().to_vec(), entry.encode_to_vec()));
        }
        let index = index_path(&prefix);
        let table = write_table(&entries).map_err(|e| Error::checkpoint(&index, e))?;
        write_atomically(&data, |w| write_all(w, &blob, &data))?;
        write_atomically(&index, |w| write_all(w, &table, &index))?;
        Ok(prefix)
    }
}
