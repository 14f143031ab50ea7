//! [`sequence_loss`]: weighted per-token cross-entropy over padded sequences (TF seq2seq).

use couplet_modules::{util::check_rank, Error, Result, TorchContext};
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// How [`sequence_loss`] reduces the weighted per-token cross-entropy `ce·w [B, T]`
/// (TF `seq2seq.sequence_loss` / TF-Addons flags).
///
/// * `average_across_timesteps` (default `true`): `Σ_t ce·w / Σ_t w`.
/// * `average_across_batch` (default `true`): `Σ_b ce·w / Σ_b w`.
/// * `sum_over_timesteps` (default `false`): `Σ_t ce·w / #{t : w ≠ 0}`.
/// * `sum_over_batch` (default `false`): `Σ_b ce·w / #{b : w ≠ 0}`.
///
/// Two flags on both axes reduce to a scalar with one ratio of the two double sums; a flag on
/// one axis gives `[B]` (time reduced) or `[T]` (batch reduced); no flag gives `[B, T]`.
/// A zero denominator gives 0, not NaN (TF `div_no_nan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SequenceLossOptions {
    /// Average over time steps by the summed weights. Default `true`.
    pub average_across_timesteps: bool,
    /// Average over the batch by the summed weights. Default `true`.
    pub average_across_batch: bool,
    /// Sum over time steps divided by the count of non-zero weights. Default `false`.
    pub sum_over_timesteps: bool,
    /// Sum over the batch divided by the count of non-zero weights. Default `false`.
    pub sum_over_batch: bool,
}

impl Default for SequenceLossOptions {
    fn default() -> Self {
        SequenceLossOptions {
            average_across_timesteps: true,
            average_across_batch: true,
            sum_over_timesteps: false,
            sum_over_batch: false,
        }
    }
}

impl SequenceLossOptions {
    /// Sets `average_across_timesteps`.
    pub fn with_average_across_timesteps(mut self, on: bool) -> Self {
        self.average_across_timesteps = on;
        self
    }

    /// Sets `average_across_batch`.
    pub fn with_average_across_batch(mut self, on: bool) -> Self {
        self.average_across_batch = on;
        self
    }

    /// Sets `sum_over_timesteps`.
    pub fn with_sum_over_timesteps(mut self, on: bool) -> Self {
        self.sum_over_timesteps = on;
        self
    }

    /// Sets `sum_over_batch`.
    pub fn with_sum_over_batch(mut self, on: bool) -> Self {
        self.sum_over_batch = on;
        self
    }
}

const FUNC: &str = "sequence_loss";

/// `num / den` with 0 where `den` is 0.
fn div_no_nan(num: &Tensor, den: &Tensor) -> Result<Tensor> {
    let zero = den.f_eq(0).ctx(FUNC)?;
    let safe = den.f_masked_fill(&zero, 1).ctx(FUNC)?;
    num.f_div(&safe).ctx(FUNC)?.f_masked_fill(&zero, 0).ctx(FUNC)
}

/// Weighted per-token cross-entropy (TF `seq2seq.sequence_loss`): `logits [B, T, V]`,
/// `targets [B, T]` (int64 class ids in `0..V`), `weights [B, T]` (floating, or Bool such as
/// a [`sequence_mask`](crate::sequence_mask): `true` weighs 1, `false` 0). `ce[b, t] = −log softmax(logits[b, t])[targets[b, t]]`,
/// multiplied by `weights[b, t]` and reduced as [`SequenceLossOptions`] says (default: a scalar
/// `Σ ce·w / Σ w`; all-zero weights give 0, not NaN).
///
/// # Errors
/// [`Error::Shape`] naming `sequence_loss` if `logits` is not rank 3, `targets` or `weights`
/// is not `[B, T]`, `targets` is not int64 or `weights` neither floating point nor Bool;
/// [`Error::InvalidArgument`] for a target outside `0..V` (naming its position and value);
/// [`Error::Config`] if an axis is both averaged and summed, or the averaging of one axis is
/// mixed with the summing of the other (TF silently ignores one of the flags there).
pub fn sequence_loss(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    options: &SequenceLossOptions,
) -> Result<Tensor> {
    let o = options;
    if (o.average_across_timesteps && o.sum_over_timesteps) || (o.average_across_batch && o.sum_over_batch) {
        return Err(Error::config(
            FUNC,
            "an axis cannot be both averaged (average_across_*) and summed (sum_over_*)",
        ));
    }
    let any_average = o.average_across_timesteps || o.average_across_batch;
    if any_average && (o.sum_over_timesteps || o.sum_over_batch) {
        return Err(Error::config(FUNC, "average_across_* and sum_over_* cannot be mixed"));
    }
    check_rank(FUNC, "logits", logits, 3, "[B, T, V]")?;
    let size = logits.size();
    let (b, t, v) = (size[0], size[1], size[2]);
    for (what, x) in [("targets", targets), ("weights", weights)] {
        if x.size() != [b, t] {
            return Err(Error::shape(FUNC, what, format!("[{b}, {t}]"), x.size()));
        }
    }
    if targets.kind() != Kind::Int64 {
        return Err(Error::shape(FUNC, "targets kind", "Int64", targets.kind()));
    }
    if !weights.is_floating_point() && weights.kind() != Kind::Bool {
        return Err(Error::shape(FUNC, "weights kind", "a floating-point kind or Bool", weights.kind()));
    }
    let bad = targets.f_lt(0).ctx(FUNC)?.f_logical_or(&targets.f_ge(v).ctx(FUNC)?).ctx(FUNC)?;
    if bad.f_any().ctx(FUNC)?.f_int64_value(&[]).ctx(FUNC)? != 0 {
        let at = Vec::<i64>::try_from(bad.f_nonzero().ctx(FUNC)?.f_get(0).ctx(FUNC)?).ctx(FUNC)?;
        let value = targets.f_int64_value(&at).ctx(FUNC)?;
        return Err(Error::invalid(
            FUNC,
            format!("targets must be in 0..V (V = {v}), got {value} at {at:?}"),
        ));
    }
    let ce = logits
        .f_reshape([b * t, v])
        .ctx(FUNC)?
        .f_cross_entropy_loss::<Tensor>(
            &targets.f_reshape([b * t]).ctx(FUNC)?,
            None,
            Reduction::None,
            -100,
            0.0,
        )
        .ctx(FUNC)?
        .f_view([b, t])
        .ctx(FUNC)?;
    let w = weights.f_to_kind(ce.kind()).ctx(FUNC)?;
    let weighted = ce.f_mul(&w).ctx(FUNC)?;
    let nonzero = w.f_ne(0).ctx(FUNC)?.f_to_kind(ce.kind()).ctx(FUNC)?;
    let (time_flag, batch_flag, den) = if any_average {
        (o.average_across_timesteps, o.average_across_batch, &w)
    } else {
        (o.sum_over_timesteps, o.sum_over_batch, &nonzero)
    };
    let dims: Vec<i64> =
        [(batch_flag, 0), (time_flag, 1)].iter().filter(|(on, _)| *on).map(|&(_, d)| d).collect();
    if dims.is_empty() {
        return Ok(weighted);
    }
    let sum = |x: &Tensor| x.f_sum_dim_intlist(dims.as_slice(), false, ce.kind()).ctx(FUNC);
    div_no_nan(&sum(&weighted)?, &sum(den)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn floats(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
    }

    fn close(a: &[f64], e: &[f64]) {
        assert_eq!(a.len(), e.len(), "{a:?} vs {e:?}");
        assert!(a.iter().zip(e).all(|(x, y)| (x - y).abs() < 1e-5), "{a:?} vs {e:?}");
    }

    /// Logits `[2, 2, 2]` whose per-token cross-entropies are hand-worked: a row of logits
    /// `[0, 0]` gives `ln 2` for either target; `[ln 3, 0]` gives `ln(4/3)` for target 0 and
    /// `ln 4` for target 1.
    fn case() -> (Tensor, Tensor, [f64; 4]) {
        let l3 = 3f64.ln();
        let logits =
            Tensor::from_slice(&[0.0, 0.0, l3, 0.0, l3, 0.0, 0.0, 0.0]).view([2, 2, 2]).to_kind(Kind::Float);
        let targets = Tensor::from_slice(&[1i64, 0, 1, 0]).view([2, 2]);
        let ln2 = 2f64.ln();
        (logits, targets, [ln2, (4.0f64 / 3.0).ln(), 4f64.ln(), ln2])
    }

    #[test]
    fn reductions_follow_tf_seq2seq() {
        let (logits, targets, ce) = case();
        let w = Tensor::from_slice(&[1.0f32, 0.5, 2.0, 0.0]).view([2, 2]);
        let wv = [1.0, 0.5, 2.0, 0.0];
        let wce: Vec<f64> = ce.iter().zip(wv).map(|(c, w)| c * w).collect();
        let run = |o: SequenceLossOptions| floats(&sequence_loss(&logits, &targets, &w, &o).unwrap());
        let d = SequenceLossOptions::default();
        close(&run(d), &[wce.iter().sum::<f64>() / 3.5]);
        let time_only = d.with_average_across_batch(false);
        close(&run(time_only), &[(wce[0] + wce[1]) / 1.5, (wce[2] + wce[3]) / 2.0]);
        let batch_only = d.with_average_across_timesteps(false);
        close(&run(batch_only), &[(wce[0] + wce[2]) / 3.0, (wce[1] + wce[3]) / 0.5]);
        let none = batch_only.with_average_across_batch(false);
        close(&run(none), &wce);
        let sums = none.with_sum_over_timesteps(true).with_sum_over_batch(true);
        close(&run(sums), &[wce.iter().sum::<f64>() / 3.0]);
        close(&run(none.with_sum_over_timesteps(true)), &[(wce[0] + wce[1]) / 2.0, wce[2] + wce[3]]);
        close(&run(none.with_sum_over_batch(true)), &[(wce[0] + wce[2]) / 2.0, wce[1] + wce[3]]);
    }

    #[test]
    fn zero_weights_give_zero_not_nan() {
        let (logits, targets, _) = case();
        let w = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        let d = SequenceLossOptions::default();
        close(&floats(&sequence_loss(&logits, &targets, &w, &d).unwrap()), &[0.0]);
        let per_row = d.with_average_across_batch(false);
        close(&floats(&sequence_loss(&logits, &targets, &w, &per_row).unwrap()), &[0.0, 0.0]);
        let empty = Tensor::zeros([0, 3, 4], (Kind::Float, Device::Cpu));
        let (t0, w0) = (
            Tensor::zeros([0, 3], (Kind::Int64, Device::Cpu)),
            Tensor::zeros([0, 3], (Kind::Float, Device::Cpu)),
        );
        close(&floats(&sequence_loss(&empty, &t0, &w0, &d).unwrap()), &[0.0]);
    }

    #[test]
    fn gradient_is_zero_for_zero_weight_tokens() {
        let (logits, targets, _) = case();
        let logits = logits.set_requires_grad(true);
        let w = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0]).view([2, 2]);
        sequence_loss(&logits, &targets, &w, &SequenceLossOptions::default()).unwrap().backward();
        let g = floats(&logits.grad());
        // Token (0, 0): logits [0, 0], target 1: d/dlogits = (softmax − onehot) / Σw = [0.5, −0.5] / 2.
        close(&g[..4], &[0.25, -0.25, 0.0, 0.0]);
        close(&g[6..], &[0.0, 0.0]);
    }

    #[test]
    fn a_bool_sequence_mask_weighs_like_ones_and_zeros() {
        let (logits, targets, ce) = case();
        let mask = crate::sequence_mask(&[2i64, 1], Some(2)).unwrap();
        assert_eq!(mask.kind(), Kind::Bool);
        let d = SequenceLossOptions::default();
        // Tokens (0, 0), (0, 1), (1, 0) are real: the mean of their cross-entropies.
        close(
            &floats(&sequence_loss(&logits, &targets, &mask, &d).unwrap()),
            &[(ce[0] + ce[1] + ce[2]) / 3.0],
        );
        let ones_zeros = mask.to_kind(Kind::Float);
        let none = d.with_average_across_batch(false).with_average_across_timesteps(false);
        close(
            &floats(&sequence_loss(&logits, &targets, &mask, &none).unwrap()),
            &floats(&sequence_loss(&logits, &targets, &ones_zeros, &none).unwrap()),
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (logits, targets, _) = case();
        let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        let d = SequenceLossOptions::default();
        let bad = Tensor::from_slice(&[1i64, 0, 2, 0]).view([2, 2]);
        let e = sequence_loss(&logits, &bad, &w, &d).unwrap_err();
        assert_eq!(e.to_string(), "sequence_loss: targets must be in 0..V (V = 2), got 2 at [1, 0]");
        let neg = Tensor::from_slice(&[1i64, -1, 0, 0]).view([2, 2]);
        assert!(matches!(sequence_loss(&logits, &neg, &w, &d), Err(Error::InvalidArgument { .. })));
        let e = sequence_loss(&logits.view([4, 2]), &targets, &w, &d).unwrap_err();
        assert_eq!(e.to_string(), "sequence_loss: logits must be [B, T, V], got [4, 2]");
        let e = sequence_loss(&logits, &targets.view([4]), &w, &d).unwrap_err();
        assert_eq!(e.to_string(), "sequence_loss: targets must be [2, 2], got [4]");
        let e = sequence_loss(&logits, &targets, &w.view([1, 4]), &d).unwrap_err();
        assert_eq!(e.to_string(), "sequence_loss: weights must be [2, 2], got [1, 4]");
        assert!(matches!(
            sequence_loss(&logits, &targets.to_kind(Kind::Int), &w, &d),
            Err(Error::Shape { .. })
        ));
        let e = sequence_loss(&logits, &targets, &targets, &d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sequence_loss: weights kind must be a floating-point kind or Bool, got Int64"
        );
        let both = d.with_sum_over_batch(true);
        assert!(matches!(sequence_loss(&logits, &targets, &w, &both), Err(Error::Config { .. })));
        let mixed = d.with_average_across_batch(false).with_sum_over_batch(true);
        assert!(matches!(sequence_loss(&logits, &targets, &w, &mixed), Err(Error::Config { .. })));
    }
}
