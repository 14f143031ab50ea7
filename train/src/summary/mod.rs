//! TensorBoard summaries: [`SummaryWriter`] writes `events.out.tfevents.<time>.<host>` files
//! that TensorBoard (and TensorFlow) read: scalars, histograms in TensorFlow's default
//! buckets, PNG images, text, `SessionLog` START markers for resumed runs; [`Projector`]
//! writes the embedding projector's files; [`summarize_variables`] and
//! [`summarize_gradients`] add a histogram and a zero fraction per variable.
//!
//! The files are TFRecords (masked CRC-32C framing) of `tensorflow.Event` protocol buffers,
//! declared in [`proto`] with `prost`. [`read_events`] reads them back, checking every CRC.
//!
//! ```no_run
//! use couplet_train::summary::SummaryWriter;
//! # fn main() -> couplet_modules::Result<()> {
//! let writer = SummaryWriter::new("runs/mlp")?;
//! for step in 0..100 {
//!     writer.add_scalar("train/loss", 1.0 / (step + 1) as f64, step)?;
//! }
//! writer.flush()?;
//! # Ok(()) }
//! ```

mod event_file;
mod histogram;
mod image;
mod projector;
pub mod proto;
mod record;
mod variables;
mod writer;

#[cfg(test)]
mod writer_tests;

pub use event_file::{events_files, read_events, FILE_VERSION};
pub use histogram::{default_bucket_limits, zero_fraction, Histogram};
pub use projector::{EmbeddingMetadata, Projector, PROJECTOR_CONFIG};
pub use variables::{summarize_gradients, summarize_variables};
pub use writer::{SummaryWriter, SummaryWriterConfig};
