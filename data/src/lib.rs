//! # couplet-data
//!
//! Input pipelines for couplet models, in the manner of `tf.data` and
//! `tf.feature_column`: lazy datasets, sequence batching and bucketing by length,
//! shuffling, prefetch, sharding, TFRecord files, vocabularies and feature columns.
//!
//! ```
//! use couplet_data::{Array, Dataset, PadLength, PaddedBatchConfig, Record};
//! let sentences: Vec<Vec<i64>> = vec![vec![5, 6], vec![7], vec![8, 9, 10]];
//! let batches = Dataset::from_vec(sentences)
//!     .map(|ids| Record::new().with("tokens", Array::ids(ids)))
//!     .shuffle(1000, 42)?
//!     .repeat(2)
//!     .padded_batch(2, PaddedBatchConfig::new().field("tokens", PadLength::Longest, 0.0))?
//!     .prefetch(2)?;
//! for batch in batches.iter() {
//!     let tokens = batch?.fields.remove("tokens").unwrap(); // [B, T] int64 and lengths [B]
//!     assert_eq!(tokens.values.size()[0] as usize, tokens.lengths.len());
//! }
//! // Resuming at step 3 (one batch per step): exactly what an uninterrupted run sees next.
//! let resumed = batches.iter_from(3);
//! # drop(resumed);
//! # Ok::<(), couplet_modules::Error>(())
//! ```

mod bucket;
pub mod columns;
mod dataset;
mod example;
mod hash;
mod interleave;
mod padded;
mod parallel;
mod record;
mod shuffle;
mod source;
mod tfrecord;
mod vocab;

pub use bucket::{BucketConfig, Bucketed};
pub use dataset::{epoch_key, Dataset, Iter};
pub use example::{
    parse_example, parse_sequence_example, BytesList, Example, Feature, FeatureList, FeatureLists, Features,
    FloatList, Int64List, Kind, SequenceExample,
};
pub use hash::{fingerprint64, fingerprint_cat64, hash_bucket};
pub use padded::{FieldPadding, PadLength, PaddedBatch, PaddedBatchConfig, PaddedField, PaddingReport};
pub use record::{Array, Record, Values};
pub use source::{csv_rows, json_lines, text_lines};
pub use tfrecord::{
    masked_crc32c, tfrecord, tfrecord_compressed, Compression, TfRecordReader, TfRecordWriter,
    MAX_RECORD_BYTES,
};
pub use vocab::{Vocabulary, VocabularyConfig};
