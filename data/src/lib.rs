//! # couplet-data
//!
//! Input pipelines for couplet models, in the manner of `tf.data` and
//! `tf.feature_column`: lazy datasets, sequence batching and bucketing by length,
//! shuffling, prefetch, sharding, TFRecord files, vocabularies and feature columns.
