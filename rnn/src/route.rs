//! [`Route`]: how [`dynamic_rnn`](crate::dynamic_rnn) computes an unroll, and the one place
//! where it is chosen ([`unroll_route`] reports the choice).
//!
//! # Routes
//! - [`Route::Loop`] steps the core one time step at a time (any core: wrappers, peepholes,
//!   layer norm, zoneout, …), with the input projection of every step in one matrix product
//!   and the batch shrinking as rows end.
//! - [`Route::Split`] runs a core that [`RnnCore::split`]s into parts one part at a time
//!   over the whole sequence, each part on its own automatic route: a stack layer by layer
//!   (so a plain layer runs fused and every layer projects all its inputs in one product
//!   even when another layer is a wrapper), a dropout wrapper without state dropout as its
//!   inner core between dropouts of the whole input and output sequences (in evaluation,
//!   any dropout wrapper: there it is the identity), a residual wrapper as its inner core
//!   plus the whole input sequence.
//! - [`Route::Fused`] runs libtorch's fused recurrent kernels (oneDNN's LSTM on CPU, cuDNN
//!   on GPU) for *plain* cores, those whose [`RnnCore::torch_layers`] describes them as
//!   PyTorch layers. Each layer runs once over the whole sequence when every row runs every
//!   step; with lengths, the rows are sorted by length and the kernel runs once per layer
//!   and per *segment*, a run of steps between two distinct lengths, on the rows still
//!   running, carrying the state across segments: ended rows cost nothing and final states
//!   are exact.
//! - [`Route::Padded`] runs the same kernels once per layer over the padded batch (the first
//!   `max(len)` steps of every row), sets the outputs past each length to zero and takes each
//!   row's final state at its last step: exact too, because the padded steps only follow a
//!   row's real steps (an LSTM's cell state is carried through them by saturated gates, see
//!   `fused::run_padded`). One call per layer instead of one per segment, at the price of the
//!   padded steps.
//!
//! Every route computes the same function (to float rounding), with the same gradients; with
//! dropout the masks are drawn per sequence instead of per step, from the same distribution
//! (variational masks, carried in the state, give the same numbers on every route).
//!
//! # Choice
//! The fused route is taken for plain cores whose weights, inputs and initial state share
//! one floating kind and device, where it is faster: `f32` on the CPU, stacks of LSTM
//! layers without a projection (oneDNN; measured), and in inference at fixed lengths also
//! GRU and projected-LSTM stacks (libtorch's C++ loops; measured); every plain core on CUDA
//! (cuDNN); see [`unroll_route`] for the measurements. Otherwise a core that splits takes
//! [`Route::Split`], and any other core the step loop. With lengths, the fused kernels run
//! per segment or over the padded batch, whichever the cost model finds cheaper: a call costs
//! its row-steps (one row through one step) plus a fixed `CALL_COST` row-steps, so the padded
//! batch is taken when `B · max(len) ≤ Σ len + CALL_COST · (segments − 1)`. `CALL_COST`
//! was calibrated at `B = 32, T = 100, I = 64, H = 256` with `rnn/examples/route_timing.rs
//! lengths` (1 thread, a loaded machine: 42–63 row-steps per extra call over four length
//! distributions, median 47; BENCHMARKS.md has the figures). It underrates calls on few rows.

use crate::core::{RnnCore, Split};
use crate::options::{validate, Route, UnrollOptions};
use crate::plan::Plan;
use crate::state::State;
use crate::torch_cell::{layer_states, needs_grad, TorchCellKind, TorchCellWeights};
use couplet_modules::{Error, Mode, Result};
use tch::{Device, Kind, Tensor};

/// The route [`dynamic_rnn`](crate::dynamic_rnn) takes for `core`, `inputs` and `options`
/// (without running it; a lazy plain core is built for the inputs). Benchmarks and tests
/// call it to see the choice; [`UnrollOptions::with_route`] overrides it.
///
/// Automatic choice: [`Route::Fused`] on the CPU for plain cores (see
/// [`RnnCore::torch_layers`]) whose weights, inputs and initial state are all `f32` and that
/// are stacks of LSTM layers without a projection, or, in inference (no tensor needs a
/// gradient, or under `tch::no_grad`) at fixed lengths, stacks of GRU and LSTM layers; on
/// CUDA for every plain core whose tensors share one floating kind; otherwise
/// [`Route::Split`] for cores that split in the unroll's mode (see [`RnnCore::split`]), and
/// [`Route::Loop`] for the rest. Where the fused kernels are taken with lengths, they run over
/// the padded batch ([`Route::Padded`]) when the cost model of the
/// [module documentation](self) finds that cheaper than one call per segment.
/// Measured on the CPU (1 libtorch thread, a loaded 2-core machine, medians of 7 in one
/// run of `rnn/examples/route_timing.rs`), `B = 32, T = 100, I = 64, H = 256`,
/// milliseconds; "variable" = lengths uniform in `[T/2, T]` (27 segments), "1..=T" = 100
/// rows of lengths `1..=100` (a one-step segment per step, the fused route's worst case);
/// "pytorch" = `nn.LSTM` / `nn.GRU` on the padded batch, or on `pack_padded_sequence` with
/// lengths:
///
/// ```text
///                        forward                forward + backward
///                   loop   fused  pytorch     loop   fused  pytorch
/// lstm     fixed    88.5    28.9     26.5    257.4   136.2    143.5
/// lstm     variable 74.9    39.5     61.5    236.7   148.5    492.8
/// lstm     1..=T   136.7   128.1    128.3    463.1   368.9   1299.6
/// lstm P=128 fixed  63.3    61.0     65.6    211.4   190.2    197.6
/// lstm P=128 var.   45.9    39.4     36.1    143.2   148.4    273.4
/// lstm P=128 1..=T 107.1   111.5    101.2    344.8   425.0   1038.9
/// gru      fixed    68.1    60.5     60.7    209.4   217.6    227.9
/// gru      variable 56.1    56.2     55.5    196.4   191.2    340.4
/// gru      1..=T    82.1    89.3     60.2    257.0   329.5    461.7
/// rnn tanh fixed    16.4    16.7        -     50.1    54.5        -
/// rnn tanh variable 15.4    15.8        -     40.5    55.5        -
/// rnn tanh 1..=T    22.0    21.9        -     63.5    82.3        -
/// ```
///
/// oneDNN's LSTM wins in every case, even with one-step segments (so there is no
/// crossover to a loop for short segments). LSTMs with a projection (which oneDNN cannot
/// take: libtorch runs its generic kernel and warns once), GRUs and vanilla RNNs run
/// libtorch's step loops, which are slower than ours backward. Forward at fixed lengths
/// libtorch's GRU and projected-LSTM loops were ahead in later runs (2 threads, medians of 5,
/// inference): GRU 14.5–18.0 ms against couplet's loop 15.8–18.8 ms over four runs, LSTM
/// P=128 21.5 against 23.6 ms; so inference at fixed lengths takes them, and training keeps
/// couplet's loop.
/// On CUDA every plain core takes the fused route: cuDNN's recurrent kernels are the
/// standard fast path there (one launch per layer and segment instead of several per step).
/// That choice was not measured here (no GPU on the development machines); libtorch's cuDNN
/// path copies weights that are not one flat buffer at every call, and warns once.
/// Other devices take the loop unless [`Route::Fused`] is forced.
///
/// # Errors
/// As [`dynamic_rnn`](crate::dynamic_rnn) for bad inputs, lengths or initial state;
/// [`Error::Config`] naming `dynamic_rnn` if [`Route::Fused`] or [`Route::Padded`] is forced
/// for a core or tensors it cannot take, or [`Route::Split`] for a core that does not split in the mode.
pub fn unroll_route<C: RnnCore + ?Sized>(
    core: &C,
    inputs: &Tensor,
    options: &UnrollOptions,
) -> Result<Route> {
    const FUNC: &str = "dynamic_rnn";
    let (initial, plan) = validate(FUNC, core, inputs, options)?;
    Ok(match select(FUNC, core, inputs, &initial, &plan, options.mode, options.route)? {
        Choice::Fused(_) => Route::Fused,
        Choice::Padded(_) => Route::Padded,
        Choice::Split(_) => Route::Split,
        Choice::Loop => Route::Loop,
    })
}

/// What an unroll runs: the chosen [`Route`] and what it needs.
pub(crate) enum Choice<'a> {
    /// The step loop.
    Loop,
    /// The fused kernels over these layers, bottom first, per segment.
    Fused(Vec<TorchCellWeights>),
    /// The fused kernels over these layers, bottom first, over the padded batch.
    Padded(Vec<TorchCellWeights>),
    /// The core's parts.
    Split(Split<'a>),
}

/// The route for `core` (`forced`, or the automatic choice): the one place routes are chosen.
pub(crate) fn select<'a, C: RnnCore + ?Sized>(
    func: &str,
    core: &'a C,
    inputs: &Tensor,
    initial: &State,
    plan: &Plan,
    mode: Mode,
    forced: Option<Route>,
) -> Result<Choice<'a>> {
    if forced == Some(Route::Loop) || plan.steps() == 0 {
        return Ok(Choice::Loop);
    }
    if forced == Some(Route::Split) {
        return core.split(mode).map(Choice::Split).ok_or_else(|| {
            Error::config(
                func,
                format!(
                    "Route::Split needs a core that splits in {mode:?} mode (RnnCore::split); {} does not",
                    core.name()
                ),
            )
        });
    }
    // The fused kernels take `[B, T, I]` inputs only.
    let layers = match inputs.size().as_slice() {
        [_, _, i] => core.torch_layers(*i)?.filter(|l| fits(l, inputs, initial)),
        _ => None,
    };
    match (forced, layers) {
        (Some(route @ (Route::Fused | Route::Padded)), None) => Err(Error::config(
            func,
            format!(
                "Route::{route:?} needs a plain core (RnnCore::torch_layers) whose weights, inputs and \
                 initial state share one floating kind and device; {} is not",
                core.name()
            ),
        )),
        (Some(Route::Fused), Some(layers)) => Ok(Choice::Fused(layers)),
        (Some(Route::Padded), Some(layers)) => Ok(Choice::Padded(layers)),
        (_, Some(layers)) if faster(&layers, inputs, initial, plan) => {
            Ok(if padding_pays(plan) { Choice::Padded(layers) } else { Choice::Fused(layers) })
        }
        _ => Ok(core.split(mode).map_or(Choice::Loop, Choice::Split)),
    }
}

/// Whether the fused route is the faster one for `layers` and `inputs` (see
/// [`unroll_route`]): on the CPU (measured), `f32` LSTM layers without a projection
/// (oneDNN), and in inference at fixed lengths also GRU layers and LSTM layers with a
/// projection (libtorch's C++ step loop, which is ahead of couplet's forward but behind its
/// backward); on CUDA, every plain core (cuDNN's kernels; not measured here, no GPU).
fn faster(layers: &[TorchCellWeights], inputs: &Tensor, initial: &State, plan: &Plan) -> bool {
    match inputs.device() {
        Device::Cpu if inputs.kind() == Kind::Float => {
            let onednn = |l: &TorchCellWeights| l.kind == TorchCellKind::Lstm && l.weight_hr.is_none();
            let inference_loop =
                |l: &TorchCellWeights| matches!(l.kind, TorchCellKind::Lstm | TorchCellKind::Gru);
            layers.iter().all(onednn)
                || (plan.is_full()
                    && !needs_grad(layers, inputs, initial)
                    && layers.iter().all(inference_loop))
        }
        Device::Cuda(_) => true,
        _ => false,
    }
}

/// The fused kernels' fixed cost per call, in row-steps (one row through one step) of the
/// kernel's own work, measured by `rnn/examples/route_timing.rs lengths` (see the module docs).
const CALL_COST: i64 = 50;

/// Whether the padded route is cheaper than the segmented one for `plan`'s lengths: one
/// kernel call over `B · max(len)` row-steps against one call per segment over `Σ len`
/// row-steps (ties go to padding, which has the simpler graph).
fn padding_pays(plan: &Plan) -> bool {
    let Some(lengths) = plan.lengths() else { return false };
    let real: i64 = lengths.iter().sum();
    let segments = plan.segments().len() as i64;
    plan.batch() * plan.steps() <= real + CALL_COST * (segments - 1)
}

/// Whether the fused kernels can take `layers` with `inputs` and `initial` as they are.
fn fits(layers: &[TorchCellWeights], inputs: &Tensor, initial: &State) -> bool {
    let (kind, device) = (inputs.kind(), inputs.device());
    let floating = matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
    let same = |t: &Tensor| t.kind() == kind && t.device() == device;
    let weights_fit = layers.iter().all(|l| l.params().into_iter().all(same));
    let states_fit = layer_states(initial, layers.len()).is_some_and(|states| {
        states.iter().zip(layers).all(|(s, l)| match (s, l.kind) {
            (State::Lstm { h, c }, TorchCellKind::Lstm) => same(h) && same(c),
            (State::Tensor(h), k) => k != TorchCellKind::Lstm && same(h),
            _ => false,
        })
    });
    floating && weights_fit && states_fit
}
