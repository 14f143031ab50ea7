//! Argument checks and bookkeeping shared by the decoders.

use couplet_modules::{Error, Result, TorchContext};
use couplet_rnn::State;
use tch::{Device, Kind, Tensor};

/// A [`Error::Shape`] whose `actual` is written as given.
pub(crate) fn shape_error(name: &str, what: &str, expected: String, actual: String) -> Error {
    Error::Shape { module: name.to_string(), what: what.to_string(), expected, actual }
}

/// Checks `end_token >= 0` and `max_len >= 1`.
pub(crate) fn check_settings(name: &str, end_token: i64, max_len: i64) -> Result<()> {
    couplet_modules::export::ensure_not_tracing(
        name,
        "it stops at end tokens and (beam search) reorders rows on the host, which a trace would fix at one run's choices",
        "export one decoder step with couplet_attention::export::trace_decoder_step and loop in the caller",
    )?;
    if end_token < 0 {
        return Err(Error::config(name, format!("end_token must be >= 0, got {end_token}")));
    }
    if max_len < 1 {
        return Err(Error::config(name, format!("max_len must be >= 1, got {max_len}")));
    }
    Ok(())
}

/// Checks that `rows` is the batch size of every leaf of `state`.
fn check_state_rows(name: &str, what: &str, state: &State, rows: i64) -> Result<()> {
    for leaf in state.leaves() {
        couplet_modules::util::check_defined(name, what, leaf)?;
        if leaf.size().first() != Some(&rows) {
            return Err(shape_error(
                name,
                what,
                format!("batch-major leaves of {rows} rows"),
                format!("a leaf of shape {:?}", leaf.size()),
            ));
        }
    }
    Ok(())
}

/// Checks that `start_tokens` is an int64 `[B]` and that `state` has `B` rows; returns `B`.
pub(crate) fn check_start(name: &str, start_tokens: &Tensor, state: &State) -> Result<i64> {
    couplet_modules::util::check_defined(name, "start_tokens", start_tokens)?;
    // Decoders keep per-row host bookkeeping: a stride-0 expanded batch is refused first.
    couplet_modules::util::check_host_size(name, "start_tokens", start_tokens)?;
    let size = start_tokens.size();
    if start_tokens.kind() != Kind::Int64 || size.len() != 1 {
        return Err(shape_error(
            name,
            "start_tokens",
            "an int64 tensor [B]".to_string(),
            format!("{:?} {:?}", start_tokens.kind(), size),
        ));
    }
    check_state_rows(name, "initial_state", state, size[0])?;
    Ok(size[0])
}

/// Validates each step's logits and new state, and remembers the vocabulary size `V`.
pub(crate) struct StepCheck {
    name: &'static str,
    end_token: i64,
    vocab: Option<i64>,
}

impl StepCheck {
    pub(crate) fn new(name: &'static str, end_token: i64) -> Self {
        StepCheck { name, end_token, vocab: None }
    }

    /// Checks `logits [rows, V]` (floating, `V` as at the first step, `end_token < V`) and
    /// that `state` has `rows` rows; returns `V`.
    pub(crate) fn check(&mut self, logits: &Tensor, state: &State, rows: i64) -> Result<i64> {
        let name = self.name;
        let size = logits.size();
        let expected = match self.vocab {
            Some(v) => format!("a floating tensor [{rows}, {v}]"),
            None => format!("a floating tensor [{rows}, V] with V >= 1"),
        };
        let ok_shape = size.len() == 2 && size[0] == rows && size[1] >= 1;
        if !logits.is_floating_point() || !ok_shape || self.vocab.is_some_and(|v| v != size[1]) {
            let actual = format!("{:?} {:?}", logits.kind(), size);
            return Err(shape_error(name, "decoder logits", expected, actual));
        }
        let v = size[1];
        if self.vocab.is_none() && self.end_token >= v {
            let end = self.end_token;
            return Err(Error::config(name, format!("end_token {end} is outside the vocabulary 0..{v}")));
        }
        self.vocab = Some(v);
        check_state_rows(name, "decoder state", state, rows)?;
        Ok(v)
    }
}

/// Log-softmax of `logits [N, V]` in `Float` (`Double` for double logits).
pub(crate) fn log_softmax(name: &str, logits: &Tensor) -> Result<Tensor> {
    let kind = if logits.kind() == Kind::Double { Kind::Double } else { Kind::Float };
    logits.f_log_softmax(-1, kind).ctx(name)
}

/// Row-wise choice for leaves of any rank: rows where `mask [B]` (bool) is true come from
/// `old`, the others from `new`. (`State::where_rows` only handles `[B, n]` leaves.)
pub(crate) fn keep_rows(name: &str, mask: &Tensor, old: &State, new: &State) -> Result<State> {
    old.try_zip_map(new, &mut |a, b| {
        let mut shape = vec![1i64; a.dim().max(1)];
        shape[0] = -1;
        let m = mask.f_view(shape.as_slice()).ctx(name)?;
        a.f_where_self(&m, b).ctx(name)
    })
}

/// `[n]` int64 on `device`.
pub(crate) fn index(name: &str, values: &[i64], device: Device) -> Result<Tensor> {
    Tensor::from_slice(values).f_to_device(device).ctx(name)
}

/// The index that puts rows stored in `order` (original row ids, each with `k` sub-rows)
/// back in original order: entry `i * k + j` is `position(i) * k + j`.
pub(crate) fn restore_index(name: &str, order: &[i64], k: i64, device: Device) -> Result<Tensor> {
    let mut position = vec![0i64; order.len()];
    for (p, &row) in order.iter().enumerate() {
        position[row as usize] = p as i64;
    }
    let flat: Vec<i64> = position.iter().flat_map(|&p| (0..k).map(move |j| p * k + j)).collect();
    index(name, &flat, device)
}

/// The rows of `host` (one flag per row) that are true and false, as two lists of positions.
pub(crate) fn split_rows(flags: &[bool]) -> (Vec<i64>, Vec<i64>) {
    let (done, keep): (Vec<usize>, Vec<usize>) = (0..flags.len()).partition(|&i| flags[i]);
    (done.into_iter().map(|i| i as i64).collect(), keep.into_iter().map(|i| i as i64).collect())
}

/// The flags of a bool tensor `[n]` on the host.
pub(crate) fn host_flags(name: &str, t: &Tensor) -> Result<Vec<bool>> {
    let t = t.f_to_device(Device::Cpu).ctx(name)?;
    Vec::<bool>::try_from(&t).map_err(|e| Error::Torch { module: name.to_string(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_index_inverts_the_storage_order() {
        let idx = restore_index("t", &[2, 0, 1], 2, Device::Cpu).unwrap();
        assert_eq!(Vec::<i64>::try_from(&idx).unwrap(), [2, 3, 4, 5, 0, 1]);
        assert_eq!(split_rows(&[true, false, true]), (vec![0, 2], vec![1]));
    }

    #[test]
    fn keep_rows_handles_leaves_of_any_rank() {
        // A memory-like leaf [B, N, D] with B = 2, N = 2 (where a [B, 1] mask would broadcast wrongly).
        let old = State::Tuple(vec![
            State::Tensor(Tensor::zeros([2, 2, 3], (Kind::Float, Device::Cpu))),
            State::Tensor(Tensor::zeros([2, 1], (Kind::Float, Device::Cpu))),
        ]);
        let new = old.try_map(&mut |t| Ok(t.ones_like())).unwrap();
        let kept = keep_rows("t", &Tensor::from_slice(&[true, false]), &old, &new).unwrap();
        let sums: Vec<Vec<f64>> = kept
            .leaves()
            .iter()
            .map(|l| Vec::<f64>::try_from(l.flatten(1, -1).sum_dim_intlist(1, false, Kind::Double)).unwrap())
            .collect();
        assert_eq!(sums, [vec![0.0, 6.0], vec![0.0, 1.0]]);
    }
}
