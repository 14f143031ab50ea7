//! [`Route::Fused`](crate::Route::Fused): plain cores run through libtorch's fused recurrent
//! kernels, one call per layer over the whole sequence, or with lengths one call per layer
//! and per segment of steps in which the same (sorted) rows are running; and
//! [`Route::Padded`](crate::Route::Padded): with lengths, one call per layer over the padded
//! batch.

use crate::options::UnrollOptions;
use crate::plan::{Plan, RunningRows};
use crate::state::State;
use crate::torch_cell::{layer_states, needs_grad, TorchCellKind, TorchCellWeights};
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, TchError, Tensor};

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

/// [`Route::Padded`](crate::Route::Padded): runs `layers` (bottom first) over the padded
/// batch, one kernel call per layer over the first `S = max(len)` steps of all `B` rows, and
/// returns exactly what the step loop returns.
///
/// Every layer reads its inputs with the padded steps set to zero and its outputs are set to
/// zero past each length (a `where` on the `[S, B, 1]` mask), so the padded steps, which
/// only come after a row's real steps, change no real output and receive no gradient. A row's
/// final `h` is its output at step `len − 1`, gathered with one `index_select` (rows of
/// length 0 keep the initial state). An LSTM's cell state is not an output, so it is carried
/// through the padded steps by the kernel itself: each layer gets one more input feature, 1
/// at padded steps and 0 at real ones, whose weights (not trained) are `−β` on the input gate
/// and `+β` on the forget gate, with `β` above any pre-activation the layer can reach with
/// zero inputs (`|b_ih| + |b_hh| + Σ|w_hh| · max|h|`, plus 1000, so that the gates saturate to exactly 0 and 1 even in `f64`). At a padded step the input
/// gate is then exactly 0 and the forget gate exactly 1, so `c` is carried unchanged to the
/// kernel's final state and every gradient through the padded steps is exactly zero; at real
/// steps the extra feature adds `0 · β`.
pub(crate) fn run_padded(
    func: &str,
    layers: &[TorchCellWeights],
    inputs: &Tensor,
    initial: State,
    plan: &Plan,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    let Some(lengths) = plan.lengths() else {
        return run(func, layers, inputs, initial, plan, options);
    };
    let tupled = matches!(initial, State::Tuple(_));
    let states = layer_states(&initial, layers.len())
        .ok_or_else(|| Error::invalid(func, "the initial state does not fit the core's layers"))?;
    let train = needs_grad(layers, inputs, &initial);
    let (kind, device) = (inputs.kind(), inputs.device());
    let (batch, time, steps) = (plan.batch(), plan.time(), plan.steps());
    let mut real = Vec::with_capacity((steps * batch) as usize);
    for t in 0..steps {
        real.extend(lengths.iter().map(|&l| if t < l { 1.0f32 } else { 0.0 }));
    }
    let index: Vec<i64> = lengths
        .iter()
        .enumerate()
        .map(|(b, &l)| if l > 0 { (l - 1) * batch } else { steps * batch } + b as i64)
        .collect();
    let mask = Tensor::from_slice(&real).f_to_kind(kind).and_then(|m| m.f_to_device(device)).ctx(func)?;
    let mask = mask.f_view([steps, batch, 1]).ctx(func)?;
    let index = Tensor::from_slice(&index).f_to_device(device).ctx(func)?;
    let time_major =
        if options.time_major { inputs.shallow_clone() } else { inputs.f_transpose(0, 1).ctx(func)? };
    // `where`, not a product: the padding may hold anything, NaN included.
    let running = mask.f_gt(0.5).ctx(func)?;
    let mut x =
        time_major.f_narrow(0, 0, steps).and_then(|x| x.f_where_scalarother(&running, 0.0)).ctx(func)?;
    let mut finals = Vec::with_capacity(layers.len());
    for (layer, state) in layers.iter().zip(states) {
        let (y, last) = match state {
            State::Lstm { h, c } if layer.kind == TorchCellKind::Lstm => {
                let carry = || -> Result<(Tensor, Tensor), TchError> {
                    let x = Tensor::f_cat(&[&x, &mask.f_neg()?.f_add_scalar(1.0)?], 2)?;
                    let column = carrying_column(layer)?;
                    let weight_ih = Tensor::f_cat(&[&layer.weight_ih, &column], 1)?;
                    let mut params = layer.params();
                    params[0] = &weight_ih;
                    let (h0, c0) = (h.f_unsqueeze(0)?, c.f_unsqueeze(0)?);
                    let bias = layer.bias.is_some();
                    let (y, _, c) = x.f_lstm(&[&h0, &c0], &params, bias, 1, 0.0, train, false, false)?;
                    Ok((y, c.f_squeeze_dim(0)?))
                };
                let (y, c) = carry().ctx(func)?;
                let y = y.f_where_scalarother(&running, 0.0).ctx(func)?;
                let h = gather_last(&y, h, &index).ctx(func)?;
                (y, State::Lstm { h, c })
            }
            State::Tensor(h) if layer.kind != TorchCellKind::Lstm => {
                let (y, _) = call(func, layer, &x, state, false, train)?;
                let y = y.f_where_scalarother(&running, 0.0).ctx(func)?;
                let h = gather_last(&y, h, &index).ctx(func)?;
                (y, State::Tensor(h))
            }
            _ => return Err(Error::invalid(func, "a layer's state does not fit its kind")),
        };
        finals.push(last);
        x = y;
    }
    if steps < time {
        let mut shape = x.size();
        shape[0] = time - steps;
        let zeros = Tensor::f_zeros(shape, (kind, device)).ctx(func)?;
        x = Tensor::f_cat(&[&x, &zeros], 0).ctx(func)?;
    }
    // Batch-major outputs are a transposed view, as on the fused route.
    let outputs = if options.time_major { x } else { x.f_transpose(0, 1).ctx(func)? };
    let state = if tupled { State::Tuple(finals) } else { finals.into_iter().next().unwrap_or(State::Empty) };
    Ok((outputs, state))
}

/// Each row's output at its last real step: `y [S, B, P]` (time-major, masked) flattened and
/// followed by `initial [B, P]`, rows picked by `index` (`(len − 1)·B + b`, or `S·B + b` for
/// rows of length 0).
fn gather_last(y: &Tensor, initial: &Tensor, index: &Tensor) -> Result<Tensor, TchError> {
    Tensor::f_cat(&[&y.f_flatten(0, 1)?, initial], 0)?.f_index_select(0, index)
}

/// The extra input column of an LSTM `layer` on the padded route `[4H, 1]`: `−β` on the
/// input gate's rows, `+β` on the forget gate's, 0 on the others (PyTorch's gate order i, f,
/// g, o), computed without a gradient, so that an input of 1 in that column carries the cell
/// state exactly (see [`run_padded`]).
fn carrying_column(layer: &TorchCellWeights) -> Result<Tensor, TchError> {
    tch::no_grad(|| {
        let w_hh = &layer.weight_hh;
        let hidden = w_hh.size()[0] / 4;
        let row_sums = |w: &Tensor| w.f_abs()?.f_sum_dim_intlist(1, false, None::<Kind>);
        let mut reach = row_sums(w_hh)?;
        if let Some(w_hr) = &layer.weight_hr {
            reach = reach.f_mul(&row_sums(w_hr)?.f_max()?)?;
        }
        if let Some((b_ih, b_hh)) = &layer.bias {
            reach = reach.f_add(&b_ih.f_abs()?)?.f_add(&b_hh.f_abs()?)?;
        }
        let beta = reach.f_max()?.f_add_scalar(1000.0)?;
        let ones = Tensor::f_ones([hidden, 1], (w_hh.kind(), w_hh.device()))?;
        let zeros = ones.f_zeros_like()?;
        Tensor::f_cat(&[&ones.f_neg()?, &ones, &zeros, &zeros], 0)?.f_mul(&beta)?.f_detach()
    })
}
