//! # couplet-rnn
//!
//! Recurrent cores stepped one time step at a time, wrappers that compose freely, and
//! length-aware unrolls with TensorFlow's `dynamic_rnn` semantics.

pub mod cell;
pub mod core;
pub mod dropout_wrapper;
pub mod gru;
pub mod lstm;
pub mod residual;
pub mod stack;
pub mod state;
#[cfg(test)]
mod test_cores;
pub mod vanilla;
mod wrapped;
pub mod zoneout;

pub use crate::core::RnnCore;
pub use cell::StateDict;
pub use dropout_wrapper::{DropoutWrapper, DropoutWrapperConfig};
pub use gru::{Gru, GruConfig};
pub use lstm::{Lstm, LstmConfig};
pub use residual::ResidualWrapper;
pub use stack::{from_torch_layout, to_torch_layout, StackedRnn, StackedRnnConfig};
pub use state::{State, StateSize};
pub use vanilla::{Nonlinearity, VanillaRnn, VanillaRnnConfig};
pub use zoneout::{ZoneoutConfig, ZoneoutWrapper};
