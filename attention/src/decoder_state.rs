//! The state of an [`AttentionDecoderCore`](crate::AttentionDecoderCore): the cell's state,
//! the previous attention and alignments, the optional alignment history, and the prepared
//! memory, every leaf batch-major so unrolls and beam search can select, shrink and
//! concatenate rows.

use crate::mechanism::AttentionMemory;
use couplet_modules::{Error, Result, TorchContext};
use couplet_rnn::State;
use tch::{Kind, Tensor};

/// Number of slots of the `State::Tuple` a decoder state is stored as.
const SLOTS: usize = 8;

/// The alignment history of a decoder state: a pre-allocated buffer written one step at a
/// time at each row's own step counter.
#[derive(Debug)]
pub struct AlignmentHistory {
    /// The alignments of every step so far, batch-major `[B, max_steps, N]`; zeros at steps a
    /// row has not taken.
    pub alignments: Tensor,
    /// How many steps each row has taken, int64 `[B, 1]`.
    pub steps: Tensor,
}

impl Clone for AlignmentHistory {
    fn clone(&self) -> Self {
        AlignmentHistory { alignments: self.alignments.shallow_clone(), steps: self.steps.shallow_clone() }
    }
}

/// A typed view of an [`AttentionDecoderCore`](crate::AttentionDecoderCore) state (TF's
/// `AttentionWrapperState`), read with
/// [`AttentionDecoderCore::decoder_state`](crate::AttentionDecoderCore::decoder_state) and
/// turned back into a [`State`] with [`DecoderState::into_state`].
///
/// The [`State`] is a `State::Tuple` of 8 slots, every leaf `[B, ..]`:
/// `[cell state, attention [B, A], alignments [B, N], history [B, max_steps·N] (or Empty),
/// step counter int64 [B, 1] (or Empty), values [B, N·Dm], keys [B, N·U], mask bool [B, N]]`
/// (the memory is stored flattened to two dimensions so that every row operation of
/// [`State`] applies to it).
#[derive(Debug)]
pub struct DecoderState {
    /// The wrapped cell's state.
    pub cell: State,
    /// The previous step's attention `[B, A]` (zeros before the first step).
    pub attention: Tensor,
    /// The previous step's alignments `[B, N]` (the mechanism's initial alignments before the
    /// first step: zeros, or one-hot at slot 0 for a monotonic mechanism).
    pub alignments: Tensor,
    /// The alignment history, when enabled.
    pub history: Option<AlignmentHistory>,
    /// The prepared memory: values `[B, N, Dm]`, keys `[B, N, U]`, mask `Some(bool [B, N])`.
    pub memory: AttentionMemory,
}

impl Clone for DecoderState {
    fn clone(&self) -> Self {
        DecoderState {
            cell: self.cell.clone(),
            attention: self.attention.shallow_clone(),
            alignments: self.alignments.shallow_clone(),
            history: self.history.clone(),
            memory: self.memory.clone(),
        }
    }
}

/// Describes a state slot for error messages.
fn describe(state: &State) -> String {
    match state {
        State::Empty => "State::Empty".to_string(),
        State::Tensor(t) => format!("State::Tensor({:?} {:?})", t.kind(), t.size()),
        State::Lstm { .. } => "State::Lstm".to_string(),
        State::Tuple(v) => format!("State::Tuple of {} states", v.len()),
    }
}

/// The tensor of slot `what`, checked to be `[batch, cols]` with `cols` a multiple of `n`
/// (when `n` is given) and of `kind` (when given).
fn leaf<'s>(
    module: &str,
    what: &str,
    slot: &'s State,
    batch: i64,
    n: Option<i64>,
    kind: Option<Kind>,
) -> Result<&'s Tensor> {
    let expected = || {
        let cols = n.map_or("n".to_string(), |n| format!("k·{n}"));
        let kind = kind.map_or(String::new(), |k| format!("{k:?} "));
        format!("State::Tensor({kind}[{batch}, {cols}])")
    };
    let State::Tensor(t) = slot else {
        return Err(Error::shape(
            module,
            format!("state {what}"),
            expected(),
            format_args!("{}", describe(slot)),
        ));
    };
    let size = t.size();
    let ok = size.len() == 2
        && size[0] == batch
        && n.map_or(true, |n| size[1] % n == 0)
        && kind.map_or(true, |k| t.kind() == k);
    if !ok {
        return Err(Error::shape(
            module,
            format!("state {what}"),
            expected(),
            format_args!("{}", describe(slot)),
        ));
    }
    Ok(t)
}

/// The batch dimension of a reshape of `t`, `[B, ..]`: `-1` (so a TorchScript trace keeps
/// the batch size dynamic, see `couplet_modules::export`) unless `t` is empty (no rows, or an
/// alignment history of zero steps), where `-1` would be ambiguous.
fn batch_dim(t: &Tensor) -> i64 {
    if t.numel() > 0 {
        -1
    } else {
        t.size()[0]
    }
}

/// Reshapes a flat memory leaf `[B, N·D]` to `[B, N, D]`.
fn unflatten(module: &str, t: &Tensor, n: i64) -> Result<Tensor> {
    let s = t.size();
    t.f_view([batch_dim(t), n, s[1] / n]).ctx(module)
}

/// Flattens `what`, `[B, N, D]`, to `[B, N·D]` (copying only if not contiguous).
fn flatten(module: &str, what: &str, t: &Tensor) -> Result<State> {
    let s = t.size();
    if s.len() != 3 {
        return Err(Error::shape(module, what, "[B, N, D]", s));
    }
    Ok(State::Tensor(t.f_reshape([batch_dim(t), s[1] * s[2]]).ctx(module)?))
}

impl DecoderState {
    /// Reads a decoder state, checking its structure and every leaf's shape; `history` says
    /// whether the decoder records an alignment history.
    pub(crate) fn parse(module: &str, state: &State, history: bool) -> Result<DecoderState> {
        let slots = match state {
            State::Tuple(v) if v.len() == SLOTS => v,
            other => {
                return Err(Error::shape(
                    module,
                    "state",
                    "State::Tuple of 8 states (built by initial_state_with_memory)",
                    format_args!("{}", describe(other)),
                ))
            }
        };
        let alignments = match &slots[2] {
            State::Tensor(a) if a.dim() == 2 && a.size()[1] > 0 => a,
            other => {
                return Err(Error::shape(
                    module,
                    "state alignments",
                    "State::Tensor([B, N]) with N > 0",
                    format_args!("{}", describe(other)),
                ))
            }
        };
        let (b, n) = (alignments.size()[0], alignments.size()[1]);
        let attention = leaf(module, "attention", &slots[1], b, None, None)?;
        let values = leaf(module, "values", &slots[5], b, Some(n), None)?;
        let keys = leaf(module, "keys", &slots[6], b, Some(n), None)?;
        let mask = leaf(module, "mask", &slots[7], b, None, Some(Kind::Bool))?;
        if mask.size()[1] != n {
            return Err(Error::shape(
                module,
                "state mask",
                format!("State::Tensor(Bool [{b}, {n}])"),
                format_args!("{}", describe(&slots[7])),
            ));
        }
        let history = match (&slots[3], &slots[4], history) {
            (State::Empty, State::Empty, false) => None,
            (h, s, true) if !matches!(h, State::Empty) => {
                let flat = leaf(module, "alignment history", h, b, Some(n), None)?;
                let alignments = flat.f_view([batch_dim(flat), flat.size()[1] / n, n]).ctx(module)?;
                let steps = leaf(module, "step counter", s, b, None, Some(Kind::Int64))?;
                if steps.size()[1] != 1 {
                    return Err(Error::shape(
                        module,
                        "state step counter",
                        format!("State::Tensor(Int64 [{b}, 1])"),
                        format_args!("{}", describe(s)),
                    ));
                }
                Some(AlignmentHistory { alignments, steps: steps.shallow_clone() })
            }
            (_, _, enabled) => {
                let (want, why) = if enabled {
                    ("an alignment history", "alignment_history is enabled")
                } else {
                    ("no alignment history", "alignment_history is disabled")
                };
                return Err(Error::invalid(
                    module,
                    format!("state must have {want} ({why}): build it with this decoder's initial_state_with_memory"),
                ));
            }
        };
        Ok(DecoderState {
            cell: slots[0].clone(),
            attention: attention.shallow_clone(),
            alignments: alignments.shallow_clone(),
            history,
            memory: AttentionMemory {
                values: unflatten(module, values, n)?,
                keys: unflatten(module, keys, n)?,
                mask: Some(mask.shallow_clone()),
            },
        })
    }

    /// The [`State`] this view describes (the layout of [`DecoderState`]'s documentation).
    ///
    /// # Errors
    /// [`Error::Shape`] naming `decoder_state` if the memory's values or keys or the alignment
    /// history are not rank 3, or the memory's mask is missing.
    pub fn into_state(self) -> Result<State> {
        const MODULE: &str = "decoder_state";
        let memory = self.memory;
        let Some(mask) = memory.mask else {
            return Err(Error::shape(MODULE, "memory mask", "Some(bool [B, N])", "None"));
        };
        let (history, steps) = match self.history {
            Some(h) => (flatten(MODULE, "alignment history", &h.alignments)?, State::Tensor(h.steps)),
            None => (State::Empty, State::Empty),
        };
        Ok(State::Tuple(vec![
            self.cell,
            State::Tensor(self.attention),
            State::Tensor(self.alignments),
            history,
            steps,
            flatten(MODULE, "memory values", &memory.values)?,
            flatten(MODULE, "memory keys", &memory.keys)?,
            State::Tensor(mask),
        ]))
    }
}

impl AlignmentHistory {
    /// A history of `max_steps` zero steps for `alignments [B, N]`'s rows.
    pub(crate) fn zeros(module: &str, alignments: &Tensor, max_steps: i64) -> Result<AlignmentHistory> {
        let (b, n) = (alignments.size()[0], alignments.size()[1]);
        let options = (alignments.kind(), alignments.device());
        Ok(AlignmentHistory {
            alignments: Tensor::f_zeros([b, max_steps, n], options).ctx(module)?,
            steps: Tensor::f_zeros([b, 1], (Kind::Int64, alignments.device())).ctx(module)?,
        })
    }

    /// Writes `alignments [B, N]` at each row's step counter and increments the counters. A row
    /// past `max_steps` writes nothing (its counter still grows, so
    /// [`AlignmentHistory::time_major`] reports the overflow).
    pub(crate) fn record(&self, module: &str, alignments: &Tensor) -> Result<AlignmentHistory> {
        let t = self.alignments.size()[1];
        let positions = Tensor::f_arange(t, (Kind::Int64, alignments.device())).ctx(module)?;
        let at = positions.f_unsqueeze(0).and_then(|p| p.f_eq_tensor(&self.steps)).ctx(module)?;
        let written = alignments
            .f_unsqueeze(1)
            .and_then(|a| a.f_where_self(&at.f_unsqueeze(2)?, &self.alignments))
            .ctx(module)?;
        Ok(AlignmentHistory { alignments: written, steps: self.steps.f_add_scalar(1).ctx(module)? })
    }

    /// The history time-major, `[T, B, N]` with `T` the most steps any row took (TF's
    /// `alignment_history.stack()`); a row that took fewer steps has zeros after its last.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a row took more than `max_steps` steps.
    pub(crate) fn time_major(&self, module: &str) -> Result<Tensor> {
        let max_steps = self.alignments.size()[1];
        let taken = if self.steps.numel() == 0 {
            0
        } else {
            self.steps.f_max().and_then(|m| m.f_to_device(tch::Device::Cpu)).ctx(module)?.int64_value(&[])
        };
        if taken > max_steps {
            return Err(Error::invalid(
                module,
                format!(
                    "the alignment history holds max_steps = {max_steps} steps but a row took {taken}: \
                     pass a larger max_steps to initial_state_with_memory"
                ),
            ));
        }
        self.alignments.f_narrow(1, 0, taken).and_then(|h| h.f_transpose(0, 1)).ctx(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMemory;
    use tch::Device;

    fn zeros(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn into_state_refuses_a_history_or_memory_that_is_not_rank_3() {
        let state = |history: Tensor, values: Tensor| DecoderState {
            cell: State::Empty,
            attention: zeros(&[2, 3]),
            alignments: zeros(&[2, 4]),
            history: Some(AlignmentHistory {
                alignments: history,
                steps: Tensor::zeros([2, 1], (Kind::Int64, Device::Cpu)),
            }),
            memory: AttentionMemory {
                values,
                keys: zeros(&[2, 4, 5]),
                mask: Some(Tensor::ones([2, 4], (Kind::Bool, Device::Cpu))),
            },
        };
        // A rank-2 history used to index its missing third dimension and panic.
        let e = state(zeros(&[2, 4]), zeros(&[2, 4, 5])).into_state().unwrap_err();
        assert!(matches!(e, Error::Shape { .. }));
        assert_eq!(e.to_string(), "decoder_state: alignment history must be [B, N, D], got [2, 4]");
        let e = state(zeros(&[2, 3, 4]), zeros(&[])).into_state().unwrap_err();
        assert_eq!(e.to_string(), "decoder_state: memory values must be [B, N, D], got []");
        let ok = state(zeros(&[2, 3, 4]), zeros(&[2, 4, 5])).into_state().unwrap();
        assert!(matches!(&ok, State::Tuple(v) if v.len() == SLOTS));
        assert_eq!(ok.leaves()[2].size(), [2, 12], "the history, flattened");
    }
}
