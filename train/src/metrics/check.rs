//! Input checks and reductions shared by the metrics.

use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

/// Refuses an undefined tensor.
pub(crate) fn defined(scope: &str, what: &str, t: &Tensor) -> Result<()> {
    if t.defined() {
        Ok(())
    } else {
        Err(Error::invalid(scope, format!("{what} is an undefined tensor")))
    }
}

fn is_integer(kind: Kind) -> bool {
    matches!(kind, Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64)
}

/// Refuses a tensor that is not of an integer kind (class ids, targets, lengths).
pub(crate) fn integer(scope: &str, what: &str, t: &Tensor) -> Result<()> {
    defined(scope, what, t)?;
    if is_integer(t.kind()) {
        Ok(())
    } else {
        Err(Error::invalid(scope, format!("{what} must hold integer class ids, got kind {:?}", t.kind())))
    }
}

/// Refuses a tensor that is not of a floating kind (logits, scores).
pub(crate) fn floating(scope: &str, what: &str, t: &Tensor) -> Result<()> {
    defined(scope, what, t)?;
    if t.is_floating_point() {
        Ok(())
    } else {
        Err(Error::invalid(scope, format!("{what} must be floating point, got kind {:?}", t.kind())))
    }
}

/// Refuses non-finite elements of a floating tensor, naming the first one's flat index.
pub(crate) fn finite(scope: &str, what: &str, t: &Tensor) -> Result<()> {
    let bad = t.f_isfinite().and_then(|f| f.f_logical_not()).ctx(scope)?;
    if count(scope, &bad)? == 0 {
        return Ok(());
    }
    let first = bad
        .f_flatten(0, -1)
        .and_then(|b| b.f_to_kind(Kind::Int))
        .and_then(|b| b.f_argmax(0, false))
        .ctx(scope)?;
    let first = i64::try_from(&first).ctx(scope)?;
    Err(Error::invalid(scope, format!("{what} has a NaN or infinite element at flat index {first}")))
}

/// The number of true (non-zero) elements.
pub(crate) fn count(scope: &str, t: &Tensor) -> Result<i64> {
    let n = t.f_count_nonzero(None::<i64>).ctx(scope)?;
    i64::try_from(&n).ctx(scope)
}

/// Checks `ids` against `[0, classes)`.
pub(crate) fn ids_in_range(scope: &str, what: &str, ids: &Tensor, classes: i64) -> Result<()> {
    if ids.numel() == 0 {
        return Ok(());
    }
    let lo = i64::try_from(&ids.f_min().ctx(scope)?).ctx(scope)?;
    let hi = i64::try_from(&ids.f_max().ctx(scope)?).ctx(scope)?;
    if lo < 0 || hi >= classes {
        return Err(Error::invalid(
            scope,
            format!("{what} must be in [0, {classes}), got values in [{lo}, {hi}]"),
        ));
    }
    Ok(())
}

/// The predicted class ids: the argmax of `predictions` over its last dimension when it has
/// one more dimension than `labels` (logits `[.., C]` for labels `[..]`), else `predictions`
/// itself when it holds integer ids of the labels' shape.
pub(crate) fn predicted_ids(scope: &str, predictions: &Tensor, labels: &Tensor) -> Result<Tensor> {
    defined(scope, "predictions", predictions)?;
    integer(scope, "labels", labels)?;
    let (p, l) = (predictions.size(), labels.size());
    if p.len() == l.len() + 1 && p[..l.len()] == l[..] {
        floating(scope, "logits", predictions)?;
        if p[l.len()] == 0 {
            return Err(Error::shape(scope, "logits", "[.., C >= 1]", p));
        }
        return predictions.f_argmax(-1, false).ctx(scope);
    }
    if p == l {
        integer(scope, "predictions", predictions)?;
        return Ok(predictions.shallow_clone());
    }
    Err(Error::shape(
        scope,
        "predictions",
        format!("class ids {l:?} or logits {l:?} + [C] (the labels' shape)"),
        p,
    ))
}

/// A ratio of counts, or the empty-evaluation error when the denominator is zero.
pub(crate) fn ratio(scope: &str, numerator: f64, denominator: f64) -> Result<f64> {
    if denominator > 0.0 {
        Ok(numerator / denominator)
    } else {
        Err(Error::invalid(scope, "empty evaluation: no examples since the last reset"))
    }
}
