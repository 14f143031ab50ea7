//! # couplet-rnn
//!
//! Recurrent cores stepped one time step at a time, wrappers that compose freely, and
//! length-aware unrolls with TensorFlow's `dynamic_rnn` semantics.

pub mod core;
pub mod dropout_wrapper;
pub mod residual;
pub mod stack;
pub mod state;
#[cfg(test)]
mod test_cores;
mod wrapped;
pub mod zoneout;

pub use crate::core::RnnCore;
pub use dropout_wrapper::{DropoutWrapper, DropoutWrapperConfig};
pub use residual::ResidualWrapper;
pub use stack::{from_torch_layout, to_torch_layout, StackedRnn, StackedRnnConfig};
pub use state::{State, StateSize};
pub use zoneout::{ZoneoutConfig, ZoneoutWrapper};
