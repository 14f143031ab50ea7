//! What an unroll writes past a row's length: TensorFlow's zeros (the default) or Keras'
//! repeated last output, applied to the outputs once the unroll is done (the final states are
//! the same either way).

use couplet_modules::{Result, TorchContext};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The outputs of an unroll at `t >= len[b]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddedOutputs {
    /// Zeros (TF `dynamic_rnn`). The default.
    #[default]
    Zeros,
    /// The row's last real output, `out[b, len[b] − 1]`, repeated (Keras recurrent layers fed
    /// a mask); a row of length 0 stays zero (Keras carries its zero initial output).
    CarryLast,
}

/// `outputs` (zero past each length, `[B, T, ..]`, or `[T, B, ..]` when `time_major`) with
/// every padded step replaced by the row's last real output. `lengths` are validated.
pub(crate) fn carry_last(func: &str, outputs: &Tensor, lengths: &[i64], time_major: bool) -> Result<Tensor> {
    let size = outputs.size();
    let time_dim = if time_major { 0 } else { 1 };
    let time = size[time_dim];
    if time == 0 {
        return Ok(outputs.shallow_clone());
    }
    // index[b, t] = min(t, len[b] − 1), and 0 for an empty row, whose outputs are all zero.
    let index: Vec<i64> = if time_major {
        (0..time).flat_map(|t| lengths.iter().map(move |&l| t.min(l - 1).max(0))).collect()
    } else {
        lengths.iter().flat_map(|&l| (0..time).map(move |t| t.min(l - 1).max(0))).collect()
    };
    let mut index_shape = vec![size[0], size[1]];
    index_shape.extend(size[2..].iter().map(|_| 1));
    let compute = || {
        Tensor::from_slice(&index)
            .f_to_device(outputs.device())?
            .f_view(index_shape.as_slice())?
            .f_expand(size.as_slice(), false)
            .and_then(|i| outputs.f_gather(time_dim as i64, &i, false))
    };
    compute().ctx(func)
}
