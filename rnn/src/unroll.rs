//! [`dynamic_rnn`]: a length-aware unroll of any [`RnnCore`] with TensorFlow's semantics.
//!
//! # Algorithm
//! The unroll is the hot loop of every recurrent model, so it does its bookkeeping once,
//! on the host, and keeps the per-step work to the core's own step:
//!
//! 1. Validate the inputs, the lengths (copied to the host once) and the initial state.
//! 2. Sort the rows by length, longest first (stable); step `t` then runs on the first
//!    `n_t = #{b : len[b] > t}` sorted rows only, for `t < max(len)`.
//! 3. Pack the real steps of the inputs into `[Σ n_t, I]` (step 0 of the running rows, then
//!    step 1, …; PyTorch's `PackedSequence` layout) with one `index_select` of precomputed
//!    indices. If [`RnnCore::project_inputs`] returns `Some`, project the packed inputs in one
//!    call (padded steps are never projected). Split the (projected) packed inputs into the
//!    per-step tensors `[n_t, ..]` with one `split_with_sizes`: nothing is `narrow`ed or
//!    indexed per step, so the backward pass stays linear in `T`.
//! 4. Step the core on the running rows, with the initial state's rows sorted once by one
//!    `index_select`. When rows end, their states are set aside (a view of the state's last
//!    rows) and the state shrinks to the rows still running: finished rows cost nothing
//!    afterwards, and no gradient can flow through their padded steps.
//! 5. Unpack the outputs with one `cat` of the per-step outputs (plus one zero row) and one
//!    `index_select` of precomputed indices, which restores the original row order, puts
//!    zeros at padded positions and produces the batch- or time-major layout directly. The
//!    final state is the running state followed by the set-aside states, put back in the
//!    original row order with one `index_select`.
//!
//! Without lengths (or when every length is `T` and the rows need no sorting), steps 2, 3 and 5
//! reduce to one `unbind` of the (projected) time-major inputs and one `stack` of the outputs.
//!
//! This is [`Route::Loop`], which any core can take. Plain cores (stacks of PyTorch-style
//! LSTM, GRU and vanilla layers, see [`RnnCore::torch_layers`]) can also take
//! [`Route::Fused`], libtorch's fused kernels run once per layer over each segment of steps
//! with the same running rows; [`dynamic_rnn`] takes whichever the measurements in
//! [`unroll_route`](crate::unroll_route) found faster, and both compute the same function.
//! Cores that [`split`](RnnCore::split) (stacks, dropout wrappers without state dropout)
//! take [`Route::Split`] otherwise: their parts are unrolled one after another over the
//! whole sequence, each on its own route, so a plain layer inside runs fused.
//!
//! Cores are stepped on fewer rows as rows end, so a core must keep every per-row tensor in
//! its [`State`] (whose leaves are all batch-major), not in the core itself.
//!
//! Padded data without lengths is stepped like real data: the final state then includes the
//! padding, as in TF and PyTorch. Pass `lengths` to stop each row at its own end.
//!
//! Truncated backpropagation through time: feed a chunk's final state as the next chunk's
//! initial state after [`State::detach`].

use crate::core::{RnnCore, SequenceContext, Split};
use crate::fused;
use crate::lengths::Lengths;
use crate::plan::Plan;
use crate::route::{layer_states, select, Choice, Route};
use crate::state::{State, StateSize};
use couplet_modules::{util::check_rank, Error, Mode, Result, TorchContext};
use tch::Tensor;

/// The options of [`dynamic_rnn`]. There is no default [`Mode`]: start from
/// [`UnrollOptions::train`], [`UnrollOptions::eval`] or [`UnrollOptions::new`], then add the
/// optional parts with the `with_*` setters.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct UnrollOptions<'a> {
    /// Training or evaluation, passed to every step.
    pub mode: Mode,
    /// Per-row lengths `[B]`, each in `0..=T`. Default `None`: every row runs `T` steps.
    pub lengths: Option<Lengths<'a>>,
    /// The state before the first step; its structure and leaf shapes `[B, n]` must match
    /// the core's [`RnnCore::state_size`]. Default `None`: [`RnnCore::initial_state`].
    pub initial_state: Option<&'a State>,
    /// Inputs (and outputs) are `[T, B, ..]` instead of `[B, T, ..]`. Default `false`.
    pub time_major: bool,
    /// Forces a [`Route`]. Default `None`: the fastest exact route for the core and inputs
    /// (see [`unroll_route`](crate::unroll_route)).
    pub route: Option<Route>,
}

impl<'a> UnrollOptions<'a> {
    /// Options for `mode`, without lengths or initial state, batch-major.
    pub fn new(mode: Mode) -> Self {
        UnrollOptions { mode, lengths: None, initial_state: None, time_major: false, route: None }
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
    /// [`Route::Fused`] and [`Route::Split`] fail for cores they cannot take).
    pub fn with_route(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }
}

const FUNC: &str = "dynamic_rnn";

/// Unrolls `core` over `inputs` with TensorFlow's `dynamic_rnn` semantics.
///
/// `inputs` is `[B, T, I]` (`[T, B, I]` if `options.time_major`). Returns
/// `(outputs [B, T, O] (or [T, B, O]), final_state)`: for `t < len[b]` row `b` steps
/// normally; for `t >= len[b]` its output is zero and its state is carried unchanged, so the
/// final state is the state after step `len[b] − 1`, and `len[b] = 0` gives zero outputs and
/// the initial state. No gradient flows through padded steps. Without lengths every row runs
/// `T` steps; `T = 0` gives empty outputs and the initial state. See the
/// [module documentation](self) for the algorithm (rows that have ended cost nothing);
/// plain cores run libtorch's fused kernels where that is faster (see
/// [`unroll_route`](crate::unroll_route); `options.route` forces a route).
///
/// The outputs may be a non-contiguous view (batch-major outputs of the fused kernels are a
/// transposed view of their time-major result, as with PyTorch's `nn.LSTM(batch_first =
/// True)`): use `reshape`, or `contiguous` before `view`.
///
/// # Errors
/// [`Error::Shape`] naming `dynamic_rnn` if `inputs` is not rank 3, the lengths are not
/// `[B]` integers, or an initial-state leaf is not `[B, n]`; [`Error::InvalidArgument`] for
/// a length outside `0..=T` (naming the row and value) or an initial state of another
/// structure than the core's; [`Error::Config`] if [`Route::Fused`] or [`Route::Split`] is
/// forced for a core that cannot take it; any error of the core's step (naming the core).
pub fn dynamic_rnn<C: RnnCore + ?Sized>(
    core: &C,
    inputs: &Tensor,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    unroll(FUNC, core, inputs, options)
}

/// [`dynamic_rnn`] with errors naming `func`.
pub(crate) fn unroll<C: RnnCore + ?Sized>(
    func: &str,
    core: &C,
    inputs: &Tensor,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    let (initial, plan) = validate(func, core, inputs, options)?;
    run_route(func, core, inputs, initial, &plan, options, options.route)
}

/// Runs `core` from `initial` on the route `forced`, or the automatic one.
fn run_route<C: RnnCore + ?Sized>(
    func: &str,
    core: &C,
    inputs: &Tensor,
    initial: State,
    plan: &Plan,
    options: &UnrollOptions,
    forced: Option<Route>,
) -> Result<(Tensor, State)> {
    match select(func, core, inputs, &initial, plan, options.mode, forced)? {
        Choice::Fused(layers) => fused::run(func, &layers, inputs, initial, plan, options),
        Choice::Split(split) => run_split(func, split, inputs, initial, plan, options),
        Choice::Loop => run(func, core, inputs, initial, plan, options),
    }
}

/// [`Route::Split`]: the parts one after another over the whole sequence, each on its own
/// automatic route.
fn run_split(
    func: &str,
    split: Split,
    inputs: &Tensor,
    initial: State,
    plan: &Plan,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    match split {
        Split::Layers(layers) => {
            let states = layer_states(&initial, layers.len())
                .ok_or_else(|| Error::invalid(func, "the initial state does not fit the core's layers"))?;
            let mut x = inputs.shallow_clone();
            let mut finals = Vec::with_capacity(layers.len());
            for (layer, state) in layers.into_iter().zip(states) {
                let (y, last) = run_route(func, layer, &x, state.clone(), plan, options, None)?;
                finals.push(last);
                x = y;
            }
            Ok((x, State::Tuple(finals)))
        }
        Split::Around(maps) => {
            let seq = SequenceContext {
                inputs,
                time_major: options.time_major,
                initial: &initial,
                mode: options.mode,
                lengths: plan.lengths(),
            };
            let inner_initial = maps.inner_state(&initial)?;
            let x = maps.map_inputs(&seq)?;
            let (y, last) = run_route(func, maps.inner(), &x, inner_initial, plan, options, None)?;
            Ok((maps.map_outputs(&y, &seq)?, maps.outer_state(last, &seq)?))
        }
    }
}

/// Step 1 of the module documentation: checks the inputs, lengths and initial state, and
/// returns the initial state and the row plan.
pub(crate) fn validate<C: RnnCore + ?Sized>(
    func: &str,
    core: &C,
    inputs: &Tensor,
    options: &UnrollOptions,
) -> Result<(State, Plan)> {
    let expected = if options.time_major { "[T, B, I]" } else { "[B, T, I]" };
    check_rank(func, "inputs", inputs, 3, expected)?;
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

/// Steps 2–5 of the module documentation.
fn run<C: RnnCore + ?Sized>(
    func: &str,
    core: &C,
    inputs: &Tensor,
    initial: State,
    plan: &Plan,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    let (batch, time) = (plan.batch(), plan.time());
    if plan.steps() == 0 {
        let scope = core.scope();
        let shape = if options.time_major {
            [time, batch, core.output_size()]
        } else {
            [batch, time, core.output_size()]
        };
        return Ok((Tensor::f_zeros(shape, (scope.kind(), scope.device())).ctx(func)?, initial));
    }
    let device = inputs.device();
    let mut state = match plan.perm(device) {
        Some(p) => initial.select_rows(&p)?,
        None => initial,
    };
    let (per_step, projected) = if plan.is_full() {
        let time_first =
            if options.time_major { inputs.shallow_clone() } else { inputs.f_transpose(0, 1).ctx(func)? };
        let projected = core.project_inputs(&time_first)?;
        let per_step = projected.as_ref().unwrap_or(&time_first).f_unbind(0).ctx(func)?;
        (per_step, projected.is_some())
    } else {
        let packed = plan.pack(inputs, options.time_major, func)?;
        let projected = core.project_inputs(&packed)?;
        let per_step =
            projected.as_ref().unwrap_or(&packed).f_split_with_sizes(plan.batch_sizes(), 0).ctx(func)?;
        (per_step, projected.is_some())
    };

    let mut active = batch;
    let mut ended = Vec::new();
    let mut outputs = Vec::with_capacity(per_step.len());
    for x in &per_step {
        let n = x.size()[0];
        if n < active {
            ended.push(state.narrow_rows(n, active - n)?);
            state = state.narrow_rows(0, n)?;
            active = n;
        }
        let (out, next) = if projected {
            core.step_projected(x, &state, options.mode)?
        } else {
            core.step(x, &state, options.mode)?
        };
        outputs.push(out);
        state = next;
    }

    let outputs = if plan.is_full() {
        Tensor::f_stack(&outputs, if options.time_major { 0 } else { 1 }).ctx(func)?
    } else {
        plan.unpack(&outputs, options.time_major, func)?
    };
    let state = if ended.is_empty() {
        state
    } else {
        ended.push(state);
        ended.reverse();
        State::cat_rows(&ended)?
    };
    let state = match plan.inverse_perm(device) {
        Some(inv) => state.select_rows(&inv)?,
        None => state,
    };
    Ok((outputs, state))
}

/// Checks that `state` has the structure of `size` and every leaf is `[batch, n]` (`[batch, ..]`
/// for a [`StateSize::Dynamic`] leaf).
pub(crate) fn check_state(func: &str, state: &State, size: &StateSize, batch: i64) -> Result<()> {
    let leaf = |t: &Tensor, n: i64| {
        if t.size() == [batch, n] {
            Ok(())
        } else {
            Err(Error::shape(func, "initial_state leaf", format!("[{batch}, {n}]"), t.size()))
        }
    };
    match (state, size) {
        (State::Empty, StateSize::Empty) => Ok(()),
        (State::Tensor(t), StateSize::Tensor(n)) => leaf(t, *n),
        (State::Lstm { h, c }, StateSize::Lstm { h: nh, c: nc }) => leaf(h, *nh).and_then(|()| leaf(c, *nc)),
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
