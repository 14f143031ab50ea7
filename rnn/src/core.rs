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
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        let scope = self.scope();
        State::zeros(&self.state_size(), batch_size, (scope.kind(), scope.device()))
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
}
