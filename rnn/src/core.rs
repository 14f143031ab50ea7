//! The [`RnnCore`] trait: one time step of a recurrent module.

use crate::state::{State, StateSize};
use crate::torch_cell::TorchCellWeights;
use couplet_modules::{Error, Mode, Module, Result};
use tch::Tensor;

/// A recurrent core: a module stepped one time step at a time (Sonnet's `RNNCore`, TF's
/// `RNNCell`). Unrolls ([`dynamic_rnn`](crate::dynamic_rnn)) and decoders are functions
/// over any core.
///
/// A step maps `input [B, I]` and a [`State`] to `(output [B, O], new state)`. Cores whose
/// step starts with an input-only affine map can expose it through
/// [`RnnCore::project_inputs`] and [`RnnCore::step_projected`], so unrolls compute it for
/// every time step in one matrix product.
pub trait RnnCore: Module {
    /// One time step: `input [B, I]`, `state` → `(output [B, O], new state)`.
    ///
    /// # Errors
    /// A typed [`Error`] naming the core when the input's rank or size, or the state's
    /// structure or batch size, is wrong.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)>;

    /// The output size `O`.
    fn output_size(&self) -> i64;

    /// The sizes of the state's leaves (without the batch dimension).
    fn state_size(&self) -> StateSize;

    /// The state before the first step for `batch_size` rows: zeros by default, on the
    /// store's device; cores with a trainable initial state tile their learned `[1, ..]`
    /// variables to the batch.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the core for a negative `batch_size`.
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        crate::cell::zero_state(self.scope(), &self.state_size(), batch_size)
    }

    /// The input-only part of the step for many steps at once: `inputs [.., I]` →
    /// `[.., P]`, or `None` (the default) if the core has no such part. When it returns
    /// `Some(p)`, `step_projected(p[t], s)` must equal `step(inputs[t], s)`.
    fn project_inputs(&self, _inputs: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// The rest of the step, from a row of [`RnnCore::project_inputs`]'s result `[B, P]`.
    ///
    /// # Errors
    /// [`Error::Config`] for cores that return `None` from `project_inputs`.
    fn step_projected(&self, _projected: &Tensor, _state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        Err(Error::config(self.name(), "this core has no input projection; call step"))
    }

    /// The layers of a *plain* core, one that computes exactly what a stack of PyTorch's
    /// `nn.LSTM` / `nn.GRU` / `nn.RNN` layers computes for inputs of size `input_size`
    /// (a lazy core is built for that size), bottom first; `None` (the default) for any
    /// other core. The core's state must then be the layer's state (`State::Lstm { h, c }`
    /// for an LSTM, `State::Tensor(h)` otherwise) for one layer, or `State::Tuple` of the
    /// layers' states, and its output the top layer's output.
    /// [`dynamic_rnn`](crate::dynamic_rnn) uses them to run libtorch's fused kernels (see
    /// [`Route`](crate::Route)) and never calls `step` then, so [`Mode`] must not change a
    /// plain core's function. Cores return `None` for an `input_size` they cannot take, so the
    /// step loop reports the error.
    fn torch_layers(&self, _input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        Ok(None)
    }

    /// How an unroll in `mode` may split this core into simpler unrolls, each taking its own
    /// fastest route ([`Route::Split`](crate::Route::Split)); `None` (the default) unrolls
    /// the core as a whole. A split must compute exactly what stepping the core computes:
    /// [`Split::Layers`] for cores whose layers each read only the layer below (a stack),
    /// [`Split::Around`] for wrappers that in `mode` only map each step's input and output
    /// element-wise, independently of the other steps and of the state (a dropout wrapper
    /// without state dropout, a residual wrapper).
    fn split(&self, _mode: Mode) -> Option<Split<'_>> {
        None
    }
}

/// A core seen as simpler parts that an unroll can run one after another over the whole
/// sequence (see [`RnnCore::split`]).
pub enum Split<'a> {
    /// Layers, bottom first: layer `k + 1` reads layer `k`'s outputs, the core's state is
    /// `State::Tuple` of the layers' states, and its output is the top layer's. Unrolling
    /// them layer by layer computes what stepping them step by step computes.
    Layers(Vec<&'a dyn RnnCore>),
    /// An inner core between maps of the whole input and output sequences.
    Around(&'a dyn SequenceMaps),
}

/// What an unroll tells a [`SequenceMaps`] wrapper about the sequences it maps.
pub struct SequenceContext<'a> {
    /// The wrapper's inputs, `[B, T, I]` (`[T, B, I]` when `time_major`).
    pub inputs: &'a Tensor,
    /// Whether sequences are `[T, B, ..]` instead of `[B, T, ..]`.
    pub time_major: bool,
    /// The wrapper's state before the first step.
    pub initial: &'a State,
    /// Training or evaluation.
    pub mode: Mode,
    /// Each row's length, in row order; `None` when every row runs every step.
    /// [`sequence_mask`](crate::sequence_mask) turns them into the real steps.
    pub lengths: Option<&'a [i64]>,
}

/// A wrapper that, in some mode, is its inner core between element-wise maps of the input
/// and output sequences (see [`Split::Around`]).
pub trait SequenceMaps {
    /// The inner core, unrolled on its own route.
    fn inner(&self) -> &dyn RnnCore;

    /// The inner core's part of the wrapper's `state`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the wrapper if `state` does not have its structure.
    fn inner_state(&self, state: &State) -> Result<State>;

    /// The inner core's inputs from the wrapper's (`seq.inputs`): what the wrapper's steps do
    /// to each step's input, for every step at once.
    ///
    /// # Errors
    /// A typed [`Error`] naming the wrapper for inputs it cannot take.
    fn map_inputs(&self, seq: &SequenceContext) -> Result<Tensor>;

    /// The wrapper's outputs from the inner core's `outputs` (shaped like `seq.inputs` but for
    /// the last dimension): what the wrapper's steps do to each step's output, for every step
    /// at once. Outputs past a row's length are zero and must stay zero (see `seq.lengths`).
    ///
    /// # Errors
    /// A typed [`Error`] naming the wrapper for outputs it cannot take.
    fn map_outputs(&self, outputs: &Tensor, seq: &SequenceContext) -> Result<Tensor>;

    /// The wrapper's final state from the inner core's final state.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the wrapper if `seq.initial` does not have its
    /// structure.
    fn outer_state(&self, inner_final: State, seq: &SequenceContext) -> Result<State>;
}

impl<C: RnnCore + ?Sized> RnnCore for Box<C> {
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        (**self).step(input, state, mode)
    }
    fn output_size(&self) -> i64 {
        (**self).output_size()
    }
    fn state_size(&self) -> StateSize {
        (**self).state_size()
    }
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        (**self).initial_state(batch_size)
    }
    fn project_inputs(&self, inputs: &Tensor) -> Result<Option<Tensor>> {
        (**self).project_inputs(inputs)
    }
    fn step_projected(&self, projected: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        (**self).step_projected(projected, state, mode)
    }
    fn torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        (**self).torch_layers(input_size)
    }
    fn split(&self, mode: Mode) -> Option<Split<'_>> {
        (**self).split(mode)
    }
}
