//! TorchScript export of decoders, which tracing cannot record whole: [`greedy_decode`] and
//! [`beam_search`](crate::beam_search) stop at end tokens and reorder beams on the host, so
//! they refuse to run while tracing. What can be exported is **one decoder step**: traced
//! into a method `(tokens [B], state leaves…) → (logits [B, V], new state leaves…)`, with the
//! loop (greedy or beam) written in the caller. Export the encoder (whatever builds the
//! decoder's initial state) as a second method of the same
//! [`Exporter`](couplet_modules::export::Exporter), with [`trace_state`].
//!
//! A [`State`] is passed as its leaves in order ([`State::leaves`]: `h` before `c`, tuples in
//! order); [`state_from_leaves`] rebuilds one of the same structure from the method's outputs.
//! Every leaf is batch-major, and the attention decoder state's reshapes keep the batch
//! dimension symbolic, so a traced step of [`AttentionDecoderCore`](crate::AttentionDecoderCore)
//! accepts another batch size (tests/export.rs checks it). An initial state, though, is made
//! of zeros of host-given sizes (the cell's zero state, an empty alignment history), so a
//! traced encoder returning it keeps the traced batch size: call it with that batch size
//! (libtorch's traced LSTM does not check it) or build the zero leaves in the caller.
//!
//! [`greedy_decode`]: crate::greedy_decode

use crate::decoding::TokenDecoder;
use couplet_modules::export::Exporter;
use couplet_modules::{Error, Result};
use couplet_rnn::State;
use tch::Tensor;

/// A state of `like`'s structure whose leaves are `leaves`, in order (shared, not copied).
///
/// # Errors
/// [`Error::InvalidArgument`] if the number of leaves differs from `like`'s.
pub fn state_from_leaves(like: &State, leaves: &[Tensor]) -> Result<State> {
    let want = like.leaves().len();
    if leaves.len() != want {
        return Err(Error::invalid(
            "state_from_leaves",
            format!("the state has {want} leaves, got {} tensors", leaves.len()),
        ));
    }
    let mut next = leaves.iter();
    // Cannot run out: the counts match and try_map visits the leaves in `leaves()` order.
    like.try_map(&mut |_| Ok(next.next().map(Tensor::shallow_clone).unwrap_or_default()))
}

/// Traces one step of `decoder` from `tokens [B]` (int64) and `state` into `method` of
/// `exporter`: inputs `(tokens, *state.leaves())`, outputs `(logits [B, V], *new leaves)`.
/// Register the decoder's variables on `exporter` first. Returns the eager outputs.
///
/// # Errors
/// The decoder's own errors; [`Error::Untraceable`] when the step cannot be traced; the
/// exporter's errors (a taken method name).
pub fn trace_decoder_step<D: TokenDecoder + ?Sized>(
    exporter: &mut Exporter,
    method: &str,
    decoder: &D,
    tokens: &Tensor,
    state: &State,
) -> Result<Vec<Tensor>> {
    let mut inputs = vec![tokens.shallow_clone()];
    inputs.extend(state.leaves().into_iter().map(Tensor::shallow_clone));
    exporter.trace(method, &inputs, |inputs| {
        let state = state_from_leaves(state, &inputs[1..])?;
        let (logits, new_state) = decoder.step(&inputs[0], &state)?;
        let mut outputs = vec![logits];
        outputs.extend(new_state.leaves().into_iter().map(Tensor::shallow_clone));
        Ok(outputs)
    })
}

/// Traces `build` (e.g. an encoder followed by the decoder's initial state) on `inputs` into
/// `method` of `exporter`; the method returns the state's leaves in order. Returns the eager
/// state.
///
/// # Errors
/// `build`'s errors; [`Error::Untraceable`] when it cannot be traced (e.g. per-row lengths
/// on the step-loop route); the exporter's errors.
pub fn trace_state<F>(exporter: &mut Exporter, method: &str, inputs: &[Tensor], build: F) -> Result<State>
where
    F: FnOnce(&[Tensor]) -> Result<State>,
{
    let mut built = None;
    exporter.trace(method, inputs, |inputs| {
        let state = build(inputs)?;
        let leaves = state.leaves().into_iter().map(Tensor::shallow_clone).collect();
        built = Some(state);
        Ok(leaves)
    })?;
    built.ok_or_else(|| Error::invalid("trace_state", "the traced function did not run"))
}
