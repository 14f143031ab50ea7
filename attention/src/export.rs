//! TorchScript export of decoders, which tracing cannot record whole: [`greedy_decode`] and
//! [`beam_search`](crate::beam_search) stop at end tokens and reorder beams on the host, so
//! they refuse to run while tracing. What can be exported is **one decoder step**: traced
//! into a method `(tokens [B], state leaves…) → (logits [B, V], new state leaves…)`, with the
//! loop (greedy or beam) written in the caller. Export the encoder (whatever builds the
//! decoder's initial state) as a second method of the same
//! [`Exporter`], with [`trace_state`].
//!
//! A [`State`] is passed as its leaves in order ([`State::leaves`]: `h` before `c`, tuples in
//! order); [`state_from_leaves`] rebuilds one of the same structure from the method's outputs.
//! Every leaf is batch-major, and the attention decoder state's reshapes keep the batch
//! dimension symbolic, so a traced step of [`AttentionDecoderCore`] accepts another batch
//! size. An initial state, though, is built from host sizes (a core's
//! [`initial_state`](couplet_rnn::RnnCore::initial_state)`(b)`, the decoder's zero attention and
//! empty alignment history), which a trace fixes at the example's batch: build it with
//! [`rebatch`] (a core's initial state, e.g. an encoder's) and [`traceable_initial_state`]
//! (the decoder's) instead, and the traced encoder serves any batch size (tests/export.rs
//! exports at one batch and runs at others). A fused recurrent kernel given a state of
//! another batch than its input raises an exception (see
//! [`couplet_modules::export`]) rather than reading out of bounds.
//!
//! [`greedy_decode`]: crate::greedy_decode

use crate::decoding::TokenDecoder;
use crate::{AlignmentHistory, AttentionDecoderCore};
use couplet_modules::export::{check_traced_size, repeat_to_batch_of, Exporter};
use couplet_modules::{Error, Result, TorchContext};
use couplet_rnn::State;
use tch::{Kind, Tensor};

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
/// Register the decoder's variables on `exporter` first. Returns the eager outputs. The
/// method serves any batch size `B`; every other dimension of a state leaf must be the traced
/// one (the method checks it when it runs and raises an exception naming the leaf otherwise).
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
        // The step serves any batch size; a leaf's other sizes are the model's, fixed by the
        // trace (reshapes to them): another one is refused when the method runs.
        for (i, leaf) in inputs[1..].iter().enumerate() {
            for dim in 1..leaf.dim() as i64 {
                check_traced_size(leaf, dim, &format!("{method}: state leaf {i}"))?;
            }
        }
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

/// `state` with every leaf's rows following `like`'s batch size (`like [B, ..]`) by tensor
/// operations a trace records: each leaf `[B0, ..]` must hold one row `B0` times (as an initial
/// state does: zeros, or a learned initial state repeated) and becomes that row repeated to `B`
/// ([`repeat_to_batch_of`]). Use it for initial states built inside a trace, e.g.
/// `rebatch(&encoder.initial_state(1)?, &source)` as an unroll's initial state, so the traced
/// method serves any batch size.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the leaf if its rows differ (a per-row state cannot follow
/// another batch) or it has no rows; [`Error::Shape`] if `like` has rank 0.
pub fn rebatch(state: &State, like: &Tensor) -> Result<State> {
    const FUNC: &str = "rebatch";
    let mut index = 0;
    state.try_map(&mut |leaf| {
        index += 1;
        let shape = leaf.size();
        if leaf.dim() == 0 || shape[0] == 0 {
            return Err(Error::invalid(FUNC, format!("state leaf {} {shape:?} has no rows", index - 1)));
        }
        let row = leaf.f_narrow(0, 0, 1).ctx(FUNC)?;
        let same = leaf.f_eq_tensor(&row).and_then(|e| e.f_all()).ctx(FUNC)?;
        // NaN rows (never an initial state) compare unequal and are refused too.
        if !bool::try_from(&same).map_err(|source| Error::Torch { module: FUNC.into(), source })? {
            return Err(Error::invalid(
                FUNC,
                format!(
                    "state leaf {} {shape:?} holds different rows: only a state whose rows are \
                     all the same (an initial state) can follow another batch size",
                    index - 1
                ),
            ));
        }
        repeat_to_batch_of(like, &row)
    })
}

/// [`AttentionDecoderCore::initial_state_with_memory`] built by tensor operations from
/// `memory [B, N, Dm]` alone, so that inside a trace every leaf follows the memory's batch
/// size `B` at run time (the eager state is the same, leaf for leaf): the cell's initial state
/// [`rebatch`]ed, zero attention `[B, A]` and alignments `[B, N]`, and with
/// `alignment_history` an empty history of `max_steps` steps; `mask` (bool `[B, N]`; `None`:
/// all slots) as given. Without an alignment history `N` follows the memory too; with one
/// (the state holds it flattened to `[B, max_steps · N]`), `N` is the traced one, and the
/// traced method refuses another when it runs ([`check_traced_size`]).
///
/// # Errors
/// As [`AttentionDecoderCore::initial_state_with_memory`]; [`rebatch`]'s for the cell's
/// initial state.
pub fn traceable_initial_state(
    decoder: &AttentionDecoderCore,
    memory: &Tensor,
    mask: Option<&Tensor>,
    max_steps: Option<i64>,
) -> Result<State> {
    const FUNC: &str = "traceable_initial_state";
    // Zeros [B, N] of the memory's kind: the sum over an empty slice of its last dimension.
    let zeros =
        memory.f_narrow(2, 0, 0).and_then(|m| m.f_sum_dim_intlist(2, false, None::<Kind>)).ctx(FUNC)?;
    let all = zeros.f_eq(0.0).ctx(FUNC)?;
    let state = decoder.initial_state_with_memory(memory, Some(mask.unwrap_or(&all)), max_steps)?;
    let s = decoder.decoder_state(&state)?;
    let history = match s.history {
        Some(h) => {
            // The state holds the history flattened to [B, max_steps · N]: its reshapes fix N.
            check_traced_size(memory, 1, "traceable_initial_state: the memory [B, N, Dm] (N)")?;
            Some(AlignmentHistory {
                alignments: zeros
                    .f_unsqueeze(1)
                    .and_then(|z| z.f_expand([-1, h.alignments.size()[1], -1], false))
                    .and_then(|z| z.f_contiguous())
                    .ctx(FUNC)?,
                steps: repeat_to_batch_of(memory, &h.steps.f_narrow(0, 0, 1).ctx(FUNC)?)?,
            })
        }
        None => None,
    };
    crate::DecoderState {
        cell: rebatch(&s.cell, memory)?,
        attention: repeat_to_batch_of(memory, &s.attention.f_narrow(0, 0, 1).ctx(FUNC)?)?,
        alignments: zeros,
        history,
        memory: s.memory,
    }
    .into_state()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttentionDecoderConfig, LuongAttention, LuongConfig};
    use couplet_modules::Store;
    use couplet_rnn::{Lstm, LstmConfig, RnnCore};
    use tch::Device;

    #[test]
    fn the_traceable_initial_state_is_the_decoders_leaf_for_leaf() {
        let store = Store::cpu();
        let root = store.root();
        let cell = Lstm::new(&root, LstmConfig::new(3).with_input_size(5).with_trainable_initial_state(true))
            .unwrap();
        let mechanism = LuongAttention::new(&root, LuongConfig::new(4)).unwrap();
        let config = AttentionDecoderConfig::new(3).with_memory_size(Some(4)).with_alignment_history(true);
        let decoder = AttentionDecoderCore::new(&root, Box::new(cell), Box::new(mechanism), config).unwrap();
        let memory = Tensor::randn([2, 6, 4], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[
            true, true, false, true, true, true, true, false, false, false, false, false,
        ])
        .reshape([2, 6]);
        for mask in [Some(&mask), None] {
            let want = decoder.initial_state_with_memory(&memory, mask, Some(7)).unwrap();
            let got = traceable_initial_state(&decoder, &memory, mask, Some(7)).unwrap();
            let (want, got) = (want.leaves(), got.leaves());
            assert_eq!(want.len(), got.len());
            for (w, g) in want.iter().zip(&got) {
                assert_eq!((w.size(), w.kind()), (g.size(), g.kind()));
                assert!(w.equal(g));
            }
        }
    }

    #[test]
    fn only_states_whose_rows_agree_are_rebatched() {
        let store = Store::cpu();
        let lstm = Lstm::new(&store.root(), LstmConfig::new(3).with_input_size(2)).unwrap();
        let like = Tensor::zeros([5, 2], (Kind::Float, Device::Cpu));
        let state = rebatch(&lstm.initial_state(2).unwrap(), &like).unwrap();
        assert!(state.leaves().iter().all(|t| t.size() == [5, 3]));
        let rows = Tensor::from_slice(&[1.0f32, 2.0]).reshape([2, 1]);
        let err = rebatch(&State::Tensor(rows), &like).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains("state leaf 0 [2, 1] holds different rows"), "{err}");
        let empty = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
        assert!(rebatch(&State::Tensor(empty), &like).unwrap_err().to_string().contains("has no rows"));
    }
}
