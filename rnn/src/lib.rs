//! # couplet-rnn
//!
//! Recurrent cores stepped one time step at a time, wrappers that compose freely, and
//! length-aware unrolls with TensorFlow's `dynamic_rnn` semantics.

pub mod core;
pub mod state;

pub use crate::core::RnnCore;
pub use state::{State, StateSize};
