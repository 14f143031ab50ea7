//! # couplet
//!
//! DeepMind Sonnet's way of building networks, and a complete recurrent/sequence toolkit,
//! for libtorch through [`tch`].
//!
//! The parts are separate crates, re-exported here:
//! - [`modules`] (`couplet-modules`): variable stores with scoped names, modules that own
//!   their variables, initializers, regularizers, optimizers and checkpoints;
//! - [`rnn`] (`couplet-rnn`): recurrent cores, wrappers and length-aware unrolls;
//! - [`attention`] (`couplet-attention`): attention modules and decoders;
//! - [`data`] (`couplet-data`): input pipelines, sequence batching, TFRecord and feature columns;
//! - [`train`] (`couplet-train`): the training harness, hooks, metrics and TensorBoard summaries;
//! - [`distributed`] (`couplet-distributed`): data-parallel training on libtorch's c10d.
//!
//! The module core's items are also available at the top level (`couplet::Linear`).

pub use couplet_attention as attention;
pub use couplet_data as data;
pub use couplet_distributed as distributed;
pub use couplet_modules as modules;
pub use couplet_modules::*;
pub use couplet_rnn as rnn;
pub use couplet_train as train;
pub use tch;

/// The behaviour contract: what every module, cell, unroll and helper computes, and what
/// TensorFlow, Keras and PyTorch do where they differ (the text of `docs/semantics.md`).
#[doc = include_str!("../docs/semantics.md")]
pub mod semantics {}

/// The README's code blocks, compiled and run as doctests so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
