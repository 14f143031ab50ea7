//! The [`RnnCore`] trait (one time step of a recurrent module), its optional capabilities
//! ([`InputProjection`], [`Split`], PyTorch layers), and [`Wrapper`]: a core around an inner
//! core whose capabilities follow from the inner core's by construction.

use crate::state::{State, StateSize};
use crate::torch_cell::TorchCellWeights;
use couplet_modules::{Error, Mode, Module, Result};
use tch::Tensor;

/// A recurrent core: a module stepped one time step at a time (Sonnet's `RNNCore`, TF's
/// `RNNCell`). Unrolls ([`dynamic_rnn`](crate::dynamic_rnn)) and decoders are functions
/// over any core.
///
/// A step maps `input [B, ..]` and a [`State`] to `(output [B, ..output_shape], new state)`;
/// every state leaf is batch-major `[B, ..]`. A new core implements [`RnnCore::step`],
/// [`RnnCore::output_shape`] and [`RnnCore::state_size`]; the other methods are optional
/// capabilities unrolls use to run faster, each off by default:
/// - [`RnnCore::projection`]: an input-only first part of the step that unrolls compute for
///   every time step in one call ([`InputProjection`]);
/// - [`RnnCore::torch_layers`]: the core is a stack of PyTorch recurrent layers, so unrolls
///   may run libtorch's fused kernels ([`Route::Fused`](crate::Route::Fused));
/// - [`RnnCore::split`]: the core is simpler unrolls one after another
///   ([`Route::Split`](crate::Route::Split)).
///
/// A core wrapping another is best written as a [`Wrapper`], which keeps the inner core's
/// capabilities where they stay exact.
pub trait RnnCore: Module {
    /// One time step: `input [B, ..]`, `state` → `(output [B, ..output_shape], new state)`.
    ///
    /// # Errors
    /// A typed [`Error`] naming the core when the input's rank or size, or the state's
    /// structure or batch size, is wrong.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)>;

    /// The shape of one row of the output, without the batch dimension (`[O]` for the
    /// usual cores, `[H, W, C]` for a 2-D convolutional LSTM).
    fn output_shape(&self) -> Vec<i64>;

    /// The shapes of the state's leaves (without the batch dimension).
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

    /// The core's input projection, if its step starts with an input-only map (default
    /// `None`). Both halves live in one [`InputProjection`], so a core cannot offer one
    /// without the other.
    fn projection(&self) -> Option<&dyn InputProjection> {
        None
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
    ///
    /// # Errors
    /// The errors of building a lazy core for `input_size`.
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

/// The input-only first part of a core's step, computed by unrolls for every time step in
/// one call: `step_projected(project_inputs(x)[t], s) = step(x[t], s)`.
pub trait InputProjection {
    /// `inputs [.., I..]` (any leading dimensions: time and batch) → `[.., P]`.
    ///
    /// # Errors
    /// A typed [`Error`] naming the core for inputs of the wrong size or kind.
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor>;

    /// The rest of the step, from one step's rows `projected [B, P]` of
    /// [`InputProjection::project_inputs`]'s result.
    ///
    /// # Errors
    /// As [`RnnCore::step`].
    fn step_projected(&self, projected: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)>;
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
    /// The wrapper's inputs, `[B, T, ..]` (`[T, B, ..]` when `time_major`).
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
    fn inner_core(&self) -> &dyn RnnCore;

    /// The inner core's part of the wrapper's `state` (default: the whole state).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the wrapper if `state` does not have its structure.
    fn inner_state(&self, state: &State) -> Result<State> {
        Ok(state.clone())
    }

    /// The inner core's inputs from the wrapper's (`seq.inputs`): what the wrapper's steps do
    /// to each step's input, for every step at once (default: the inputs unchanged).
    ///
    /// # Errors
    /// A typed [`Error`] naming the wrapper for inputs it cannot take.
    fn map_inputs(&self, seq: &SequenceContext) -> Result<Tensor> {
        Ok(seq.inputs.shallow_clone())
    }

    /// The wrapper's outputs from the inner core's `outputs` (`[B, T, ..]` like `seq.inputs`
    /// but for the trailing dimensions): what the wrapper's steps do to each step's output,
    /// for every step at once. Outputs past a row's length are zero and must stay zero (see
    /// `seq.lengths` and [`zero_padded_steps`](crate::sequence::zero_padded_steps)).
    ///
    /// # Errors
    /// A typed [`Error`] naming the wrapper for outputs it cannot take.
    fn map_outputs(&self, outputs: &Tensor, seq: &SequenceContext) -> Result<Tensor>;

    /// The wrapper's final state from the inner core's final state (default: the inner
    /// core's final state).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the wrapper if `seq.initial` does not have its
    /// structure.
    fn outer_state(&self, inner_final: State, _seq: &SequenceContext) -> Result<State> {
        Ok(inner_final)
    }
}

/// One step of a [`Wrapper`]'s inner core: the step's input, raw or already projected by
/// the inner core's [`InputProjection`], and the inner core to run on it.
pub struct InnerStep<'a, C: ?Sized> {
    core: &'a C,
    input: StepInput<'a>,
}

enum StepInput<'a> {
    Raw(&'a Tensor),
    Projected(&'a Tensor, &'a dyn InputProjection),
}

impl<'a, C: RnnCore + ?Sized> InnerStep<'a, C> {
    /// The inner core's step on this step's input from `inner_state`.
    ///
    /// # Errors
    /// The inner core's errors.
    pub fn run(&self, inner_state: &State, mode: Mode) -> Result<(Tensor, State)> {
        match self.input {
            StepInput::Raw(x) => self.core.step(x, inner_state, mode),
            StepInput::Projected(p, projection) => projection.step_projected(p, inner_state, mode),
        }
    }

    /// The shape of this step's input as the inner core receives it (raw, or projected by
    /// its [`InputProjection`]); its first dimension is the batch.
    pub fn input_shape(&self) -> Vec<i64> {
        let (StepInput::Raw(x) | StepInput::Projected(x, _)) = self.input;
        x.size()
    }
}

/// How a [`Wrapper`]'s step uses its input, which decides whether unrolls may project the
/// inputs with the inner core's projection.
pub enum WrapperInput {
    /// The inner core sees the step's input unchanged and the wrapper never reads it: unrolls
    /// use the inner core's [`InputProjection`] if it has one ([`Wrapper::after_step`]).
    Passed,
    /// The wrapper reads or changes the input ([`Wrapper::read_step`]): no projection.
    Read,
}

/// A core around an inner core (Sonnet's wrappers, TF's `RNNCell` wrappers). Implement
/// [`Wrapper::inner`], then either [`Wrapper::after_step`] (the wrapper only maps the inner
/// step's result: unrolls keep the inner core's input projection) or [`Wrapper::read_step`]
/// with [`Wrapper::input_use`] returning [`WrapperInput::Read`] (the wrapper reads or changes the
/// input). Every `Wrapper` is an [`RnnCore`]: the output shape, the state size and the
/// initial state are the inner core's unless overridden (`wrapper_*` methods), and the capabilities follow by
/// construction — the input projection is kept only for [`WrapperInput::Passed`] and always
/// runs [`Wrapper::after_step`], the fused route needs [`Wrapper::wrapper_torch_layers`] (off by
/// default: a wrapper changes its core's function), and [`Wrapper::sequence_maps`] gives
/// [`Split::Around`].
///
/// Sonnet v2's `ResidualCore` is:
/// ```
/// # use couplet_modules::{Mode, Module, Result, Scope, TorchContext};
/// # use couplet_rnn::{InnerStep, RnnCore, State, Wrapper, WrapperInput};
/// # use tch::Tensor;
/// struct Residual<C> { scope: Scope, core: C }
/// # impl<C: RnnCore> Module for Residual<C> { fn scope(&self) -> &Scope { &self.scope } }
/// impl<C: RnnCore> Wrapper for Residual<C> {
///     type Inner = C;
///     fn inner(&self) -> &C { &self.core }
///     fn input_use(&self) -> WrapperInput { WrapperInput::Read }
///     fn read_step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
///         let (output, state) = self.core.step(input, state, mode)?;
///         Ok((input.f_add(&output).ctx(self.name())?, state))
///     }
/// }
/// ```
pub trait Wrapper: Module {
    /// The wrapped core's type.
    type Inner: RnnCore + ?Sized;

    /// The wrapped core.
    fn inner(&self) -> &Self::Inner;

    /// How steps use their input (default [`WrapperInput::Passed`]).
    fn input_use(&self) -> WrapperInput {
        WrapperInput::Passed
    }

    /// One step of a wrapper that passes its input unchanged ([`WrapperInput::Passed`]):
    /// `inner.run(inner state, mode)` runs the inner core on it (raw or projected). Default:
    /// the inner core's step on the whole state.
    ///
    /// # Errors
    /// The wrapper's and the inner core's errors.
    fn after_step(
        &self,
        inner: InnerStep<'_, Self::Inner>,
        state: &State,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        inner.run(state, mode)
    }

    /// One step of a wrapper that reads its input ([`WrapperInput::Read`]). Default: the
    /// [`Wrapper::after_step`] of the raw input.
    ///
    /// # Errors
    /// The wrapper's and the inner core's errors.
    fn read_step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        self.after_step(InnerStep { core: self.inner(), input: StepInput::Raw(input) }, state, mode)
    }

    /// The output shape (default: the inner core's).
    fn wrapper_output_shape(&self) -> Vec<i64> {
        self.inner().output_shape()
    }

    /// The state size (default: the inner core's).
    fn wrapper_state_size(&self) -> StateSize {
        self.inner().state_size()
    }

    /// The initial state (default: the inner core's).
    ///
    /// # Errors
    /// As [`RnnCore::initial_state`].
    fn wrapper_initial_state(&self, batch_size: i64) -> Result<State> {
        self.inner().initial_state(batch_size)
    }

    /// The wrapper as PyTorch layers (default `None`): only for wrappers that compute exactly
    /// their inner core's function.
    ///
    /// # Errors
    /// As [`RnnCore::torch_layers`].
    fn wrapper_torch_layers(&self, _input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        Ok(None)
    }

    /// The wrapper as its inner core between element-wise maps in `mode` (default `None`);
    /// unrolls then run the inner core on its own route ([`Split::Around`]).
    fn sequence_maps(&self, _mode: Mode) -> Option<&dyn SequenceMaps> {
        None
    }

    /// How unrolls split the wrapper (default: [`Split::Around`] from
    /// [`Wrapper::sequence_maps`]).
    fn wrapper_split(&self, mode: Mode) -> Option<Split<'_>> {
        self.sequence_maps(mode).map(Split::Around)
    }
}

impl<W: Wrapper> RnnCore for W {
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        match self.input_use() {
            WrapperInput::Passed => {
                self.after_step(InnerStep { core: self.inner(), input: StepInput::Raw(input) }, state, mode)
            }
            WrapperInput::Read => self.read_step(input, state, mode),
        }
    }
    fn output_shape(&self) -> Vec<i64> {
        self.wrapper_output_shape()
    }
    fn state_size(&self) -> StateSize {
        self.wrapper_state_size()
    }
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        self.wrapper_initial_state(batch_size)
    }
    /// `Some` for a [`WrapperInput::Passed`] wrapper around a core with a projection.
    fn projection(&self) -> Option<&dyn InputProjection> {
        match self.input_use() {
            WrapperInput::Passed => self.inner().projection().map(|_| self as &dyn InputProjection),
            WrapperInput::Read => None,
        }
    }
    fn torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        self.wrapper_torch_layers(input_size)
    }
    fn split(&self, mode: Mode) -> Option<Split<'_>> {
        self.wrapper_split(mode)
    }
}

/// A wrapper's projection: the inner core's, with every projected step going through the
/// wrapper's [`Wrapper::after_step`].
impl<W: Wrapper> InputProjection for W {
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        self.inner().projection().ok_or_else(|| no_projection(self.name()))?.project_inputs(inputs)
    }
    fn step_projected(&self, projected: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let projection = match self.input_use() {
            WrapperInput::Passed => self.inner().projection(),
            WrapperInput::Read => None,
        };
        let projection = projection.ok_or_else(|| no_projection(self.name()))?;
        let inner = InnerStep { core: self.inner(), input: StepInput::Projected(projected, projection) };
        self.after_step(inner, state, mode)
    }
}

fn no_projection(name: &str) -> Error {
    Error::config(name, "this core has no input projection; call step")
}

/// A boxed core is a wrapper that changes nothing: every capability is the inner core's.
impl<C: RnnCore + ?Sized> Wrapper for Box<C> {
    type Inner = C;
    fn inner(&self) -> &C {
        self
    }
    fn wrapper_torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        (**self).torch_layers(input_size)
    }
    fn wrapper_split(&self, mode: Mode) -> Option<Split<'_>> {
        (**self).split(mode)
    }
}
