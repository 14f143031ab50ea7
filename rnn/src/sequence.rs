//! Sequence helpers over padded batches `[B, T, ..]`: masks, reversal within each row's
//! length, the last real output of each row, lengths from zero padding, and masked means.
//!
//! ```
//! use couplet_rnn::{last_relevant, reverse_sequence, sequence_mask};
//! use tch::Tensor;
//! # fn main() -> couplet_modules::Result<()> {
//! let x = Tensor::from_slice(&[1.0f32, 2., 3., 4., 5., 6.]).view([2, 3, 1]);
//! let lengths = [2i64, 0];
//! let mask = sequence_mask(&lengths, Some(3))?; // [[true, true, false], [false, false, false]]
//! assert_eq!(mask.size(), [2, 3]);
//! let r = reverse_sequence(&x, &lengths, false)?; // [[2, 1, 3], [4, 5, 6]]
//! assert_eq!(Vec::<f32>::try_from(r.flatten(0, -1)).unwrap(), [2., 1., 3., 4., 5., 6.]);
//! let last = last_relevant(&x, &lengths)?; // [[2], [0]]: a zero row for length 0
//! assert_eq!(Vec::<f32>::try_from(last.flatten(0, -1)).unwrap(), [2., 0.]);
//! # Ok(())
//! # }
//! ```

use crate::lengths::{check_values, Lengths};
use couplet_modules::util::checked_elements;
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

/// `mask [B, maxlen]` (bool, on the lengths' device) with `mask[b, t] = t < len[b]`
/// (TF `sequence_mask`). `maxlen` defaults to `max(len)` (0 for an empty batch).
///
/// # Errors
/// [`Error::Shape`] naming `sequence_mask` if a lengths tensor is not `[B]` integers;
/// [`Error::InvalidArgument`] for a negative `maxlen`, a length outside `0..=maxlen`
/// (couplet's rule for lengths; TF would truncate lengths above `maxlen`), or a mask of
/// more than `util::MAX_ELEMENTS` entries.
pub fn sequence_mask<'a>(lengths: impl Into<Lengths<'a>>, maxlen: Option<i64>) -> Result<Tensor> {
    const FUNC: &str = "sequence_mask";
    let lengths = lengths.into();
    let values = lengths.to_vec(FUNC)?;
    let maxlen = maxlen.unwrap_or_else(|| values.iter().copied().max().unwrap_or(0).max(0));
    if maxlen < 0 {
        return Err(Error::invalid(FUNC, format!("maxlen must be >= 0, got {maxlen}")));
    }
    check_values(FUNC, &values, maxlen)?;
    checked_elements(FUNC, "mask", &[values.len() as i64, maxlen])?;
    let device = lengths.device();
    let len = Tensor::from_slice(&values).to_device(device).f_unsqueeze(1).ctx(FUNC)?;
    let steps = Tensor::f_arange(maxlen, (Kind::Int64, device)).ctx(FUNC)?.f_unsqueeze(0).ctx(FUNC)?;
    steps.f_lt_tensor(&len).ctx(FUNC)
}

/// The batch and time sizes of `x` (`[B, T, ..]` or `[T, B, ..]`), checking rank >= 2 and
/// the bounds of [`check_sequence_size`].
fn batch_time(func: &str, x: &Tensor, time_major: bool) -> Result<(i64, i64)> {
    check_sequence_size(func, x)?;
    if x.dim() < 2 {
        let expected = if time_major { "[T, B, ..]" } else { "[B, T, ..]" };
        return Err(Error::shape(func, "input", expected, x.size()));
    }
    let size = x.size();
    Ok(if time_major { (size[1], size[0]) } else { (size[0], size[1]) })
}

/// Checks that a sequence input is defined and, at rank >= 2, that `B·T` (the size of the
/// host-side per-row, per-step bookkeeping of the sequence functions and unrolls) is at most
/// `util::MAX_ELEMENTS`: a stride-0 expanded batch of 2^40 rows is refused before anything is
/// allocated. Ranks are left to the caller's own check.
pub(crate) fn check_sequence_size(func: &str, x: &Tensor) -> Result<()> {
    couplet_modules::util::check_defined(func, "input", x)?;
    if let [a, b, ..] = x.size()[..] {
        checked_elements(func, "input's [B, T]", &[a, b])?;
    }
    Ok(())
}

/// `x` with each row's first `len[b]` steps reversed and the padding left in place, for
/// validated host lengths: one `index_select` of precomputed indices.
pub(crate) fn reverse_within(func: &str, x: &Tensor, lengths: &[i64], time_major: bool) -> Result<Tensor> {
    let size = x.size();
    let (b_n, t_n) = if time_major { (size[1], size[0]) } else { (size[0], size[1]) };
    // The index is a host buffer of B·T entries: bounded before it is allocated.
    let mut index = Vec::with_capacity(checked_elements(func, "input's [B, T]", &[b_n, t_n])? as usize);
    let source = |b: i64, t: i64| {
        let len = lengths[b as usize];
        let s = if t < len { len - 1 - t } else { t };
        if time_major {
            s * b_n + b
        } else {
            b * t_n + s
        }
    };
    if time_major {
        (0..t_n).for_each(|t| (0..b_n).for_each(|b| index.push(source(b, t))));
    } else {
        (0..b_n).for_each(|b| (0..t_n).for_each(|t| index.push(source(b, t))));
    }
    let index = Tensor::from_slice(&index).to_device(x.device());
    x.f_flatten(0, 1).ctx(func)?.f_index_select(0, &index).ctx(func)?.f_view(size.as_slice()).ctx(func)
}

/// `x [B, T, ..]` (`[T, B, ..]` if `time_major`) with every step at or past its row's
/// length set to zero (`lengths` `None`: `x` itself). What a [`SequenceMaps`]
/// wrapper's outputs need when it maps the real steps (e.g. adds its inputs).
///
/// # Errors
/// [`Error::Torch`] naming `module` if `x` is not `[B, T, ..]` for the lengths.
///
/// [`SequenceMaps`]: crate::SequenceMaps
pub fn zero_padded_steps(
    module: &str,
    x: &Tensor,
    lengths: Option<&[i64]>,
    time_major: bool,
) -> Result<Tensor> {
    let Some(lengths) = lengths else {
        return Ok(x.shallow_clone());
    };
    couplet_modules::util::check_defined(module, "input", x)?;
    let time = x.size().get(usize::from(!time_major)).copied().unwrap_or(0);
    let steps = sequence_mask(lengths, Some(time))?.f_to_device(x.device()).ctx(module)?;
    let steps = if time_major { steps.f_tr().ctx(module)? } else { steps };
    // Broadcast the [B, T] mask over the trailing dimensions, whatever their number.
    let mut shape = steps.size();
    shape.resize(x.dim().max(2), 1);
    x.f_where_scalarother(&steps.f_view(shape.as_slice()).ctx(module)?, 0.0).ctx(module)
}

/// Reverses each row within its length (TF `reverse_sequence`): `out[b, t] = x[b, len[b] − 1 − t]`
/// for `t < len[b]`, and `out[b, t] = x[b, t]` (padding left in place) otherwise.
/// `x` is `[B, T, ..]`, or `[T, B, ..]` if `time_major`; the result has its shape.
///
/// # Errors
/// [`Error::Shape`] naming `reverse_sequence` if `x` has rank < 2 or the lengths are not
/// `[B]` integers; [`Error::InvalidArgument`] for a length outside `0..=T`.
pub fn reverse_sequence<'a>(x: &Tensor, lengths: impl Into<Lengths<'a>>, time_major: bool) -> Result<Tensor> {
    const FUNC: &str = "reverse_sequence";
    let (batch, time) = batch_time(FUNC, x, time_major)?;
    let lengths = lengths.into().validate(FUNC, batch, time)?;
    reverse_within(FUNC, x, &lengths, time_major)
}

/// The output at each row's last real step, `outputs[b, len[b] − 1]`: `outputs [B, T, ..]`
/// → `[B, ..]`. A row of length 0 gives a zero row (the classic gather idiom would return
/// the previous row's data).
///
/// # Errors
/// [`Error::Shape`] naming `last_relevant` if `outputs` has rank < 2 or the lengths are not
/// `[B]` integers; [`Error::InvalidArgument`] for a length outside `0..=T`.
pub fn last_relevant<'a>(outputs: &Tensor, lengths: impl Into<Lengths<'a>>) -> Result<Tensor> {
    const FUNC: &str = "last_relevant";
    let (batch, time) = batch_time(FUNC, outputs, false)?;
    let lengths = lengths.into().validate(FUNC, batch, time)?;
    let size = outputs.size();
    let row_shape: Vec<i64> = [batch].iter().chain(&size[2..]).copied().collect();
    if time == 0 {
        return Tensor::f_zeros(row_shape.as_slice(), (outputs.kind(), outputs.device())).ctx(FUNC);
    }
    let index: Vec<i64> =
        lengths.iter().enumerate().map(|(b, &l)| b as i64 * time + (l - 1).max(0)).collect();
    let device = outputs.device();
    let picked = outputs
        .f_flatten(0, 1)
        .ctx(FUNC)?
        .f_index_select(0, &Tensor::from_slice(&index).to_device(device))
        .ctx(FUNC)?;
    let mask_shape: Vec<i64> = [batch].iter().chain(size[2..].iter().map(|_| &1)).copied().collect();
    let nonempty: Vec<bool> = lengths.iter().map(|&l| l > 0).collect();
    let mask = Tensor::from_slice(&nonempty).to_device(device).f_view(mask_shape.as_slice()).ctx(FUNC)?;
    picked.f_where_scalarother(&mask, 0.0).ctx(FUNC)
}

/// Lengths from zero padding (the TF idiom `reduce_sum(sign(reduce_sum(abs(x), 2)), 1)`):
/// `x [B, T, ..]` → int64 `[B]`, the number of steps whose features are not all zero.
///
/// It **counts** such steps; it does not find the last one, so a real step whose features
/// are all zero (inside or before the padding) is not counted, exactly as TF's idiom.
/// A `[B, T]` input counts its non-zero entries (e.g. token ids padded with 0).
///
/// # Errors
/// [`Error::Shape`] naming `lengths_from_padding` if `x` has rank < 2.
pub fn lengths_from_padding(x: &Tensor) -> Result<Tensor> {
    const FUNC: &str = "lengths_from_padding";
    batch_time(FUNC, x, false)?;
    let nonzero = x.f_ne(0).ctx(FUNC)?;
    let per_step = if x.dim() > 2 {
        nonzero.f_flatten(2, -1).ctx(FUNC)?.f_any_dim(2, false).ctx(FUNC)?
    } else {
        nonzero
    };
    per_step.f_sum_dim_intlist(1, false, Kind::Int64).ctx(FUNC)
}

/// The mean of the entries of `x` where `mask` is true: `Σ x·mask / Σ mask` as a scalar,
/// `0` (not NaN) if no entry is selected. `mask` (bool) has the leading dimensions of `x`
/// (e.g. `[B, T]` from [`sequence_mask`] for `x [B, T, F]`) and covers the trailing ones.
/// Masked-out entries never contribute, even if they are NaN.
///
/// # Errors
/// [`Error::Shape`] naming `masked_mean` if `x` is not floating point, `mask` is not bool,
/// or `mask`'s shape is not a prefix of `x`'s; [`Error::InvalidArgument`] if either is
/// undefined.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    const FUNC: &str = "masked_mean";
    couplet_modules::util::check_floating(FUNC, "x", x)?;
    couplet_modules::util::check_defined(FUNC, "mask", mask)?;
    if mask.kind() != Kind::Bool {
        return Err(Error::shape(FUNC, "mask kind", "Bool", mask.kind()));
    }
    let (xs, ms) = (x.size(), mask.size());
    if ms.len() > xs.len() || ms[..] != xs[..ms.len()] {
        return Err(Error::shape(FUNC, "mask", format!("a prefix of x's shape {xs:?}"), ms));
    }
    let trailing: i64 = xs[ms.len()..].iter().product();
    let view: Vec<i64> = ms.iter().copied().chain(xs[ms.len()..].iter().map(|_| 1)).collect();
    let m = mask.f_view(view.as_slice()).ctx(FUNC)?;
    let total = x.f_where_scalarother(&m, 0.0).ctx(FUNC)?.f_sum(x.kind()).ctx(FUNC)?;
    let count = mask.f_sum(x.kind()).ctx(FUNC)?.f_mul_scalar(trailing).ctx(FUNC)?.f_clamp_min(1).ctx(FUNC)?;
    total.f_div(&count).ctx(FUNC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
    }

    /// `x[b, t] = 10 b + t`, shape `[B, T, 1]`.
    fn ramp(b: i64, t: i64) -> Tensor {
        (Tensor::arange(b, (Kind::Float, tch::Device::Cpu)).view([b, 1, 1]) * 10.0
            + Tensor::arange(t, (Kind::Float, tch::Device::Cpu)).view([1, t, 1]))
        .contiguous()
    }

    #[test]
    fn sequence_mask_marks_steps_before_each_length() {
        let m = sequence_mask(&[2i64, 0, 3], None).unwrap();
        assert_eq!(m.kind(), Kind::Bool);
        assert_eq!(m.size(), [3, 3]);
        let expected = [true, true, false, false, false, false, true, true, true];
        assert_eq!(Vec::<bool>::try_from(m.flatten(0, -1)).unwrap(), expected);
        let t = Tensor::from_slice(&[1i64, 2]);
        let m = sequence_mask(&t, Some(4)).unwrap();
        assert_eq!(
            Vec::<bool>::try_from(m.flatten(0, -1)).unwrap(),
            [true, false, false, false, true, true, false, false]
        );
        assert_eq!(sequence_mask(&[0i64; 0], None).unwrap().size(), [0, 0]);
        let e = sequence_mask(&[1i64, 5], Some(4)).unwrap_err();
        assert_eq!(e.to_string(), "sequence_mask: lengths must be in 0..=T (T = 4), row 1 has 5");
        let e = sequence_mask(&[-1i64], None).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert!(matches!(sequence_mask(&[1i64], Some(-1)), Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn reverse_sequence_reverses_within_length_and_leaves_padding() {
        let x = ramp(3, 4);
        let y = reverse_sequence(&x, &[3i64, 0, 4], false).unwrap();
        assert_eq!(y.size(), [3, 4, 1]);
        assert_eq!(floats(&y), [2., 1., 0., 3., 10., 11., 12., 13., 23., 22., 21., 20.]);
        let yt = reverse_sequence(&x.transpose(0, 1), &[3i64, 0, 4], true).unwrap();
        assert_eq!(floats(&yt.transpose(0, 1)), floats(&y));
        // Reversing twice is the identity.
        assert_eq!(floats(&reverse_sequence(&y, &[3i64, 0, 4], false).unwrap()), floats(&x));
        let e = reverse_sequence(&x, &[5i64, 0, 0], false).unwrap_err();
        assert_eq!(e.to_string(), "reverse_sequence: lengths must be in 0..=T (T = 4), row 0 has 5");
        let e = reverse_sequence(&Tensor::zeros([3], (Kind::Float, tch::Device::Cpu)), &[0i64; 3], false);
        assert!(matches!(e, Err(Error::Shape { .. })));
        let empty = reverse_sequence(&ramp(2, 0), &[0i64, 0], false).unwrap();
        assert_eq!(empty.size(), [2, 0, 1]);
    }

    #[test]
    fn last_relevant_picks_the_last_real_step_and_zero_for_empty_rows() {
        let x = ramp(3, 4) + 1.0;
        let y = last_relevant(&x, &[2i64, 0, 4]).unwrap();
        assert_eq!(y.size(), [3, 1]);
        assert_eq!(floats(&y), [2., 0., 24.]);
        let nan = Tensor::full([2, 2, 1], f64::NAN, (Kind::Float, tch::Device::Cpu));
        assert_eq!(floats(&last_relevant(&nan, &[0i64, 0]).unwrap()), [0., 0.]);
        assert_eq!(last_relevant(&ramp(2, 0), &[0i64, 0]).unwrap().size(), [2, 1]);
        let e = last_relevant(&x, &[1i64, 2]).unwrap_err();
        assert_eq!(e.to_string(), "last_relevant: lengths must be [3], got [2]");
    }

    #[test]
    fn lengths_from_padding_counts_nonzero_steps() {
        let x = Tensor::from_slice(&[1.0f32, 0., 2., 0., 0., 0., 0., 0., -3., 0., 0., 0.]).view([2, 3, 2]);
        // Row 0: steps [1, 0], [2, 0], [0, 0] -> 2; row 1: [0, 0], [-3, 0], [0, 0] -> 1 (counted,
        // although the first step is all zero: the idiom counts, it does not find the last).
        let l = lengths_from_padding(&x).unwrap();
        assert_eq!(l.kind(), Kind::Int64);
        assert_eq!(Vec::<i64>::try_from(&l).unwrap(), [2, 1]);
        let ids = Tensor::from_slice(&[5i64, 3, 0, 7, 0, 0]).view([2, 3]);
        assert_eq!(Vec::<i64>::try_from(&lengths_from_padding(&ids).unwrap()).unwrap(), [2, 1]);
        let e = lengths_from_padding(&Tensor::from_slice(&[1.0f32])).unwrap_err();
        assert_eq!(e.to_string(), "lengths_from_padding: input must be [B, T, ..], got [1]");
    }

    #[test]
    fn masked_mean_averages_selected_entries_only() {
        let x = Tensor::from_slice(&[1.0f32, 2., 3., f32::NAN, 5., 6.]).view([2, 3]);
        let m = Tensor::from_slice(&[true, true, false, false, true, false]).view([2, 3]);
        assert_eq!(floats(&masked_mean(&x, &m).unwrap()), [(1. + 2. + 5.) / 3.]);
        let x3 = Tensor::from_slice(&[1.0f32, 3., 10., 20.]).view([2, 1, 2]);
        let m2 = Tensor::from_slice(&[true, false]).view([2, 1]);
        assert_eq!(floats(&masked_mean(&x3, &m2).unwrap()), [2.0]);
        let none = Tensor::from_slice(&[false; 6]).view([2, 3]);
        assert_eq!(floats(&masked_mean(&x, &none).unwrap()), [0.0]);
        let e = masked_mean(&x, &m.transpose(0, 1)).unwrap_err();
        assert_eq!(e.to_string(), "masked_mean: mask must be a prefix of x's shape [2, 3], got [3, 2]");
        assert!(matches!(masked_mean(&x, &x), Err(Error::Shape { .. })));
        assert!(matches!(masked_mean(&m, &m), Err(Error::Shape { .. })));
    }

    #[test]
    fn huge_sizes_and_undefined_tensors_are_typed_errors() {
        // These used to panic in tch's scalar conversion or abort on a host allocation.
        let e = sequence_mask(&[3, 1 << 40], None).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert!(e.to_string().contains("too large"), "{e}");
        assert!(sequence_mask(&[3], Some(i64::MAX)).unwrap_err().to_string().contains("too large"));
        let expanded = Tensor::from_slice(&[1i64]).expand([1 << 40], false);
        let e = sequence_mask(&expanded, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sequence_mask: lengths [1099511627776] is too large (more than 2147483648 elements)"
        );
        let x = Tensor::zeros([1, 1, 1], (Kind::Float, tch::Device::Cpu)).expand([2, 1 << 40, 1], false);
        let e = reverse_sequence(&x, &[0i64, 0], false).unwrap_err();
        assert!(
            e.to_string().starts_with("reverse_sequence: input's [B, T] [2, 1099511627776] is too large"),
            "{e}"
        );
        for e in [
            reverse_sequence(&Tensor::new(), &[1i64], false).unwrap_err(),
            last_relevant(&Tensor::new(), &[1i64]).unwrap_err(),
            lengths_from_padding(&Tensor::new()).unwrap_err(),
            masked_mean(&Tensor::new(), &Tensor::new()).unwrap_err(),
            sequence_mask(&Tensor::new(), None).unwrap_err(),
        ] {
            assert!(e.to_string().contains("is an undefined tensor"), "{e}");
        }
    }
}
