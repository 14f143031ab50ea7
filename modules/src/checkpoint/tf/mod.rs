//! TensorFlow checkpoints: reading and writing the TensorBundle (V2) format that
//! `tf.compat.v1.train.Saver` and `tf.train.Checkpoint` use (`PREFIX.index`, a sorted string
//! table of entries, and `PREFIX.data-0000N-of-0000M` shards of raw little-endian bytes),
//! TF's `checkpoint` state file, and loading TF/Keras layers into couplet modules.
//!
//! - [`TfCheckpoint`] lists names, dtypes and shapes and reads tensors (checking the CRC-32C
//!   of every block and tensor); corrupt or truncated files are [`Error::Checkpoint`](crate::Error)
//!   values naming the file and the tensor.
//! - [`latest_checkpoint`] / [`write_checkpoint_state`] read and write the `checkpoint` file.
//! - [`TfCheckpointWriter`] writes a checkpoint TensorFlow restores.
//! - [`TfLoader`] applies converters (one per TF scope) and reports missing, unexpected and
//!   mismatched tensors together.

mod dtype;
mod latest;
mod layers;
mod loader;
mod proto;
mod reader;
mod table;
mod writer;

pub use dtype::TfDType;
pub use latest::{latest_checkpoint, write_checkpoint_state};
pub use loader::{module_variable, TfLoadReport, TfLoader, OBJECT_SUFFIX};
pub use reader::{TfCheckpoint, TfTensorInfo};
pub use writer::TfCheckpointWriter;

#[cfg(test)]
mod tests;
