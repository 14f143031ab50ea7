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
//!    indices. If the core has an [`InputProjection`](crate::InputProjection), project the packed inputs in one
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
use crate::options::{validate, Route, UnrollOptions};
use crate::padded::{carry_last, PaddedOutputs};
use crate::plan::Plan;
use crate::route::{select, Choice};
use crate::state::State;
use crate::step_loop;
use crate::torch_cell::layer_states;
use couplet_modules::{Error, Result};
use tch::Tensor;

const FUNC: &str = "dynamic_rnn";

/// Unrolls `core` over `inputs` with TensorFlow's `dynamic_rnn` semantics.
///
/// `inputs` is `[B, T, ..]` (`[T, B, ..]` if `options.time_major`; `[B, T, I]` for the
/// usual cores, `[B, T, H, W, C]` for a 2-D convolutional LSTM). Returns
/// `(outputs [B, T, ..output_shape] (or [T, B, ..]), final_state)`: for `t < len[b]` row `b` steps
/// normally; for `t >= len[b]` its output is zero and its state is carried unchanged, so the
/// final state is the state after step `len[b] − 1`, and `len[b] = 0` gives zero outputs and
/// the initial state. No gradient flows through padded steps. Without lengths every row runs
/// `T` steps; `T = 0` gives empty outputs and the initial state. A length outside `0..=T` is
/// an error, where TF's `dynamic_rnn` silently reads one above `T` as `T` and a negative one
/// as 0. Keras writes the last output instead of zeros past a length (final states agree);
/// `docs/semantics.md` (`couplet::semantics`) has the whole contract. See the
/// [module documentation](self) for the algorithm (rows that have ended cost nothing);
/// plain cores run libtorch's fused kernels where that is faster (see
/// [`unroll_route`](crate::unroll_route); `options.route` forces a route).
///
/// The outputs may be a non-contiguous view (batch-major outputs of the fused kernels are a
/// transposed view of their time-major result, as with PyTorch's `nn.LSTM(batch_first =
/// True)`): use `reshape`, or `contiguous` before `view`.
///
/// # Errors
/// [`Error::Shape`] naming `dynamic_rnn` if `inputs` has rank below 3, the lengths are not
/// `[B]` integers, or an initial-state leaf does not have the core's shape `[B, ..]`; [`Error::InvalidArgument`] for
/// a length outside `0..=T` (naming the row and value) or an initial state of another
/// structure than the core's; [`Error::Config`] if [`Route::Fused`], [`Route::Padded`] or
/// [`Route::Split`] is forced for a core that cannot take it; any error of the core's step (naming the core).
pub fn dynamic_rnn<C: RnnCore + ?Sized>(
    core: &C,
    inputs: &Tensor,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    crate::sequence::check_sequence_size(FUNC, inputs)?;
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
    let (outputs, last) = run_route(func, core, inputs, initial, &plan, options, options.route)?;
    match (options.padded_outputs, &options.lengths) {
        (PaddedOutputs::CarryLast, Some(lengths)) => {
            let batch = inputs.size()[if options.time_major { 1 } else { 0 }];
            let time = inputs.size()[if options.time_major { 0 } else { 1 }];
            let lengths = lengths.validate(func, batch, time)?;
            Ok((carry_last(func, &outputs, &lengths, options.time_major)?, last))
        }
        _ => Ok((outputs, last)),
    }
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
        Choice::Padded(layers) => fused::run_padded(func, &layers, inputs, initial, plan, options),
        Choice::Split(split) => run_split(func, split, inputs, initial, plan, options),
        Choice::Loop => step_loop::run(func, core, inputs, initial, plan, options),
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
            let (y, last) = run_route(func, maps.inner_core(), &x, inner_initial, plan, options, None)?;
            Ok((maps.map_outputs(&y, &seq)?, maps.outer_state(last, &seq)?))
        }
    }
}
