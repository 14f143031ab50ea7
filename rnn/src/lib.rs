//! # couplet-rnn
//!
//! Recurrent cores stepped one time step at a time, wrappers that compose freely, and
//! length-aware unrolls with TensorFlow's `dynamic_rnn` semantics.

pub mod bidirectional;
pub mod core;
pub mod lengths;
pub mod loss;
mod plan;
pub mod sequence;
pub mod state;
pub mod unroll;

pub use crate::core::RnnCore;
pub use bidirectional::{bidirectional_dynamic_rnn, BiRnnOptions, BiRnnOutput, MergeMode, Merged};
pub use lengths::Lengths;
pub use loss::{sequence_loss, SequenceLossOptions};
pub use sequence::{last_relevant, lengths_from_padding, masked_mean, reverse_sequence, sequence_mask};
pub use state::{State, StateSize};
pub use unroll::{dynamic_rnn, UnrollOptions};
