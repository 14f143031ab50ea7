//! The options of an unroll ([`UnrollOptions`], with the [`Route`] it may force) and their
//! validation against a core and its inputs: the first stage of every unroll (options →
//! plan → route choice → executor).

use crate::core::RnnCore;
use crate::lengths::Lengths;
use crate::padded::PaddedOutputs;
use crate::plan::Plan;
use crate::state::{with_batch, State, StateSize};
use couplet_modules::{Error, Mode, Result};
use tch::Tensor;

/// The options of [`dynamic_rnn`](crate::dynamic_rnn). There is no default [`Mode`]: start from
/// [`UnrollOptions::train`], [`UnrollOptions::eval`] or [`UnrollOptions::new`], then add the
/// optional parts with the `with_*` setters.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct UnrollOptions<'a> {
    /// Training or evaluation, passed to every step.
    pub mode: Mode,
    /// Per-row lengths `[B]`, each in `0..=T`. Default `None`: every row runs `T` steps.
    pub lengths: Option<Lengths<'a>>,
    /// The state before the first step; its structure and leaf shapes `[B, ..]` must match
    /// the core's [`RnnCore::state_size`]. Default `None`: [`RnnCore::initial_state`].
    pub initial_state: Option<&'a State>,
    /// Inputs (and outputs) are `[T, B, ..]` instead of `[B, T, ..]`. Default `false`.
    pub time_major: bool,
    /// Forces a [`Route`]. Default `None`: the fastest exact route for the core and inputs
    /// (see [`unroll_route`](crate::unroll_route)).
    pub route: Option<Route>,
    /// The outputs past each row's length: [`PaddedOutputs::Zeros`] (TF `dynamic_rnn`, the
    /// default) or [`PaddedOutputs::CarryLast`] (Keras with a mask). Final states are the same.
    pub padded_outputs: PaddedOutputs,
}

impl<'a> UnrollOptions<'a> {
    /// Options for `mode`, without lengths or initial state, batch-major.
    pub fn new(mode: Mode) -> Self {
        UnrollOptions {
            mode,
            lengths: None,
            initial_state: None,
            time_major: false,
            route: None,
            padded_outputs: PaddedOutputs::Zeros,
        }
    }

    /// [`UnrollOptions::new`] in [`Mode::Train`].
    pub fn train() -> Self {
        Self::new(Mode::Train)
    }

    /// [`UnrollOptions::new`] in [`Mode::Eval`].
    pub fn eval() -> Self {
        Self::new(Mode::Eval)
    }

    /// Sets the per-row lengths (an integer tensor `[B]` or a slice of `i64`).
    pub fn with_lengths(mut self, lengths: impl Into<Lengths<'a>>) -> Self {
        self.lengths = Some(lengths.into());
        self
    }

    /// Sets what the outputs are past each row's length (Keras' masking is
    /// [`PaddedOutputs::CarryLast`]).
    pub fn with_padded_outputs(mut self, padded_outputs: PaddedOutputs) -> Self {
        self.padded_outputs = padded_outputs;
        self
    }

    /// Sets the initial state.
    pub fn with_initial_state(mut self, state: &'a State) -> Self {
        self.initial_state = Some(state);
        self
    }

    /// Sets whether inputs and outputs are time-major (`[T, B, ..]`).
    pub fn with_time_major(mut self, time_major: bool) -> Self {
        self.time_major = time_major;
        self
    }

    /// Forces `route` instead of the automatic choice (both compute the same function;
    /// [`Route::Fused`], [`Route::Padded`] and [`Route::Split`] fail for cores they cannot
    /// take).
    pub fn with_route(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }
}

/// How [`dynamic_rnn`](crate::dynamic_rnn) computes an unroll (see the
/// [route module documentation](crate::route)). By default the unroll picks the fastest exact route
/// itself; [`UnrollOptions::with_route`] forces one (e.g. to compare them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// The core's own steps, one time step at a time (any core).
    Loop,
    /// libtorch's fused recurrent kernels over runs of steps (plain cores only).
    Fused,
    /// libtorch's fused recurrent kernels over the padded batch, one call per layer, with the
    /// outputs past each length set to zero and each row's final state taken at its last
    /// step (plain cores only; without lengths the same as [`Route::Fused`]).
    Padded,
    /// The core's parts one after another over the whole sequence, each on its own
    /// automatic route (cores with an [`RnnCore::split`] only).
    Split,
}

/// Checks the inputs, lengths and initial state of an unroll of `core` and returns the
/// initial state and the row plan.
///
/// # Errors
/// [`Error::Shape`] naming `func` if `inputs` is not `[B, T, ..]` (rank 3 or more), the
/// lengths are not `[B]` integers, or an initial-state leaf does not have the core's shape;
/// [`Error::InvalidArgument`] for a length outside `0..=T` or an initial state of another
/// structure than the core's.
pub(crate) fn validate<C: RnnCore + ?Sized>(
    func: &str,
    core: &C,
    inputs: &Tensor,
    options: &UnrollOptions,
) -> Result<(State, Plan)> {
    if inputs.dim() < 3 {
        let expected = if options.time_major { "[T, B, I..]" } else { "[B, T, I..]" };
        return Err(Error::shape(func, "inputs", expected, inputs.size()));
    }
    let size = inputs.size();
    let (batch, time) = if options.time_major { (size[1], size[0]) } else { (size[0], size[1]) };
    let lengths = options.lengths.map(|l| l.validate(func, batch, time)).transpose()?;
    let initial = match options.initial_state {
        Some(state) => {
            check_state(func, state, &core.state_size(), batch)?;
            state.clone()
        }
        None => core.initial_state(batch)?,
    };
    Ok((initial, Plan::new(batch, time, lengths.as_deref())))
}

/// Checks that `state` has the structure of `size` and every leaf is `[batch, ..shape]`
/// (`[batch, ..]` for a [`StateSize::Dynamic`] leaf).
pub(crate) fn check_state(func: &str, state: &State, size: &StateSize, batch: i64) -> Result<()> {
    let leaf = |t: &Tensor, shape: &[i64]| {
        let expected = with_batch(batch, shape);
        if t.size() == expected {
            Ok(())
        } else {
            Err(Error::shape(func, "initial_state leaf", format!("{expected:?}"), t.size()))
        }
    };
    match (state, size) {
        (State::Empty, StateSize::Empty) => Ok(()),
        (State::Tensor(t), StateSize::Tensor(n) | StateSize::Drawn(n)) => leaf(t, n),
        (State::Lstm { h, c }, StateSize::Lstm { h: nh, c: nc }) => leaf(h, nh).and_then(|()| leaf(c, nc)),
        (State::Tensor(t), StateSize::Dynamic) if t.size().first() == Some(&batch) => Ok(()),
        (State::Tensor(t), StateSize::Dynamic) => {
            Err(Error::shape(func, "initial_state leaf", format!("[{batch}, ..]"), t.size()))
        }
        (State::Tuple(states), StateSize::Tuple(sizes)) if states.len() == sizes.len() => {
            states.iter().zip(sizes).try_for_each(|(s, n)| check_state(func, s, n, batch))
        }
        _ => Err(Error::invalid(
            func,
            format!("initial_state must have the core's structure {size:?}, got {:?}", state.size()),
        )),
    }
}
