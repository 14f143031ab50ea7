//! # couplet-train
//!
//! The training harness around a couplet model, in the manner of TensorFlow's Estimator and
//! Keras's `fit`: train / evaluate / predict with hooks, streaming metrics, learning-rate
//! schedules and TensorBoard summaries.

pub mod metrics;
pub mod schedule;
pub mod summary;
