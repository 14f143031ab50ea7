//! # couplet-rnn
//!
//! Recurrent cores stepped one time step at a time, wrappers that compose freely, and
//! length-aware unrolls with TensorFlow's `dynamic_rnn` semantics.

pub mod cell;
pub mod core;
pub mod gru;
pub mod lstm;
pub mod state;
pub mod vanilla;

pub use crate::core::RnnCore;
pub use cell::StateDict;
pub use gru::{Gru, GruConfig};
pub use lstm::{Lstm, LstmConfig};
pub use state::{State, StateSize};
pub use vanilla::{Nonlinearity, VanillaRnn, VanillaRnnConfig};
