//! # couplet-rnn
//!
//! Recurrent cores stepped one time step at a time, wrappers that compose freely, and
//! length-aware unrolls with TensorFlow's `dynamic_rnn` semantics.
//!
//! # Layout
//! - Cores: [`RnnCore`] (one step) with its optional capabilities ([`InputProjection`],
//!   [`RnnCore::torch_layers`], [`RnnCore::split`]), and [`Wrapper`] for cores around a core.
//!   Cells: [`Lstm`], [`Gru`], [`VanillaRnn`], [`ConvLstm`] (1-D and 2-D), [`HighwayCore`], [`BatchNormLstm`]; wrappers: [`DropoutWrapper`],
//!   [`ZoneoutWrapper`], [`ResidualWrapper`]; [`StackedRnn`].
//! - Unrolls, one stage after the other (each file depends only on the earlier ones):
//!   options and validation ([`UnrollOptions`]) → the row plan (`plan.rs`) → the route
//!   choice ([`Route`], [`unroll_route`]) → the executors (`step_loop.rs`, `fused.rs`, and
//!   the split route in `unroll.rs`, which dispatches them: [`dynamic_rnn`]).

pub mod batch_norm_lstm;
pub mod bidirectional;
pub mod cell;
pub mod conv_lstm;
pub mod core;
pub mod dropout_wrapper;
mod fused;
pub mod gru;
pub mod highway;
pub mod ind_rnn;
pub mod lengths;
pub mod loss;
pub mod lstm;
mod options;
pub mod padded;
mod plan;
pub mod relational_memory;
pub mod residual;
pub mod route;
pub mod sequence;
pub mod stack;
pub mod state;
mod step_loop;
#[cfg(test)]
mod test_cores;
pub mod tf_weights;
pub mod torch_cell;
pub mod torch_rnn;
pub mod unroll;
pub mod vanilla;
pub mod zoneout;

pub use crate::core::{
    InnerStep, InputProjection, RnnCore, SequenceContext, SequenceMaps, Split, Wrapper, WrapperInput,
};
pub use batch_norm_lstm::{BatchNormLstm, BatchNormLstmConfig};
pub use bidirectional::{bidirectional_dynamic_rnn, BiRnnOptions, BiRnnOutput, MergeMode, Merged};
pub use cell::StateDict;
pub use conv_lstm::{ConvLstm, ConvLstmConfig};
pub use dropout_wrapper::{DropoutWrapper, DropoutWrapperConfig};
pub use gru::{Gru, GruConfig};
pub use highway::{HighwayCore, HighwayCoreConfig};
pub use ind_rnn::{IndRnn, IndRnnConfig};
pub use lengths::Lengths;
pub use loss::{sequence_loss, SequenceLossOptions};
pub use lstm::{Lstm, LstmConfig};
pub use options::{Route, UnrollOptions};
pub use padded::PaddedOutputs;
pub use relational_memory::{GateStyle, RelationalMemory, RelationalMemoryConfig};
pub use residual::ResidualWrapper;
pub use route::unroll_route;
pub use sequence::{
    last_relevant, lengths_from_padding, masked_mean, reverse_sequence, sequence_mask, zero_padded_steps,
};
pub use stack::{from_torch_layout, to_torch_layout, StackedRnn, StackedRnnConfig};
pub use state::{State, StateSize};
pub use torch_cell::{TorchCellKind, TorchCellWeights};
pub use torch_rnn::{StateDictKeys, TorchRnn, TorchRnnConfig, TorchRnnKind};
pub use unroll::dynamic_rnn;
pub use vanilla::{Nonlinearity, VanillaRnn, VanillaRnnConfig};
pub use zoneout::{ZoneoutConfig, ZoneoutWrapper};
