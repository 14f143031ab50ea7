//! [`Route::Fused`](crate::Route::Fused): plain cores run through libtorch's fused recurrent
//! kernels, one call per layer over the whole sequence, or with lengths one call per layer
//! and per segment of steps in which the same (sorted) rows are running.

use crate::options::UnrollOptions;
use crate::plan::{Plan, RunningRows};
use crate::state::State;
use crate::torch_cell::{layer_states, needs_grad, TorchCellKind, TorchCellWeights};
use couplet_modules::{Error, Result, TorchContext};
use tch::{TchError, Tensor};

/// Runs `layers` (bottom first) over `inputs` from `initial` (already checked by
/// the route choice to fit them), with `dynamic_rnn`'s semantics.
///
/// Without lengths (or all `T`), each layer is one kernel call over `[B, T, ..]` (or
/// `[T, B, ..]`) directly. Otherwise the real steps are packed time-major in sorted row
/// order (one `index_select`), split into the segments `[steps, rows, ..]` (one
/// `split_with_sizes`, so the backward pass stays linear in `T`), and each layer runs the
/// kernel per segment on the rows still running, setting ended rows' states aside as the
/// step loop does; the top layer's segments are unpacked with one `cat` and one
/// `index_select`.
pub(crate) fn run(
    func: &str,
    layers: &[TorchCellWeights],
    inputs: &Tensor,
    initial: State,
    plan: &Plan,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    let tupled = matches!(initial, State::Tuple(_));
    let states = layer_states(&initial, layers.len())
        .ok_or_else(|| Error::invalid(func, "the initial state does not fit the core's layers"))?;
    let train = needs_grad(layers, inputs, &initial);
    let device = inputs.device();
    let (outputs, finals) = if plan.is_full() {
        let mut x = inputs.shallow_clone();
        let mut finals = Vec::with_capacity(layers.len());
        for (layer, state) in layers.iter().zip(states) {
            let (y, s) = call(func, layer, &x, state, !options.time_major, train)?;
            finals.push(s);
            x = y;
        }
        // With `batch_first` the kernels return a transposed view of their time-major
        // result, as PyTorch's `nn.LSTM` does; a copy would cost 13 % of the forward pass
        // (0.7 of 5.6 ms at B = 32, T = 100, H = 256).
        (x, finals)
    } else {
        let segments = plan.segments();
        let sizes: Vec<i64> = segments.iter().map(|(steps, rows)| steps * rows).collect();
        let packed = plan.pack(inputs, options.time_major, func)?;
        let mut pieces = packed
            .f_split_with_sizes(&sizes, 0)
            .ctx(func)?
            .iter()
            .zip(&segments)
            .map(|(p, &(steps, rows))| p.f_view([steps, rows, -1]))
            .collect::<Result<Vec<_>, _>>()
            .ctx(func)?;
        let mut finals = Vec::with_capacity(layers.len());
        for (layer, state) in layers.iter().zip(states) {
            let mut running = RunningRows::new(plan, state, device)?;
            let mut outs = Vec::with_capacity(pieces.len());
            for (x, &(_, rows)) in pieces.iter().zip(&segments) {
                let (y, next) = call(func, layer, x, running.running(rows)?, false, train)?;
                outs.push(y);
                running.advance(next);
            }
            finals.push(running.finish(plan, device)?);
            pieces = outs;
        }
        let flat = pieces.iter().map(|y| y.f_flatten(0, 1)).collect::<Result<Vec<_>, _>>().ctx(func)?;
        (plan.unpack(&flat, options.time_major, func)?, finals)
    };
    let state = if tupled { State::Tuple(finals) } else { finals.into_iter().next().unwrap_or(State::Empty) };
    Ok((outputs, state))
}

/// One kernel call of `layer` over `x` (`[T, n, ..]`, or `[n, T, ..]` if `batch_first`)
/// from the layer's `state` (`[n, ..]` leaves): `(outputs, final state)`.
fn call(
    func: &str,
    layer: &TorchCellWeights,
    x: &Tensor,
    state: &State,
    batch_first: bool,
    train: bool,
) -> Result<(Tensor, State)> {
    let params = layer.params();
    let bias = layer.bias.is_some();
    let run = || -> Result<Option<(Tensor, State)>, TchError> {
        Ok(match (layer.kind, state) {
            (TorchCellKind::Lstm, State::Lstm { h, c }) => {
                let (h, c) = (h.f_unsqueeze(0)?, c.f_unsqueeze(0)?);
                let (y, h, c) = x.f_lstm(&[&h, &c], &params, bias, 1, 0.0, train, false, batch_first)?;
                Some((y, State::Lstm { h: h.f_squeeze_dim(0)?, c: c.f_squeeze_dim(0)? }))
            }
            (TorchCellKind::Lstm, _) => None,
            (kind, State::Tensor(h)) => {
                let h = h.f_unsqueeze(0)?;
                let (y, h) = match kind {
                    TorchCellKind::Gru => x.f_gru(&h, &params, bias, 1, 0.0, train, false, batch_first)?,
                    TorchCellKind::RnnTanh => {
                        x.f_rnn_tanh(&h, &params, bias, 1, 0.0, train, false, batch_first)?
                    }
                    _ => x.f_rnn_relu(&h, &params, bias, 1, 0.0, train, false, batch_first)?,
                };
                Some((y, State::Tensor(h.f_squeeze_dim(0)?)))
            }
            _ => None,
        })
    };
    run().ctx(func)?.ok_or_else(|| Error::invalid(func, "a layer's state does not fit its kind"))
}
