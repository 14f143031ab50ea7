//! Binary classification counts and the metrics read from them: [`Precision`], [`Recall`],
//! [`F1`].

use super::check::{count, defined, ratio};
use super::Metric;
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

/// Checks binary `labels` (Bool, or 0/1 of any real kind) against `scores`' shape and returns
/// them as a Bool tensor on `scores`' device.
pub(crate) fn binary_labels(scope: &str, scores: &Tensor, labels: &Tensor) -> Result<Tensor> {
    defined(scope, "predictions", scores)?;
    defined(scope, "labels", labels)?;
    if scores.size() != labels.size() {
        return Err(Error::shape(
            scope,
            "labels",
            format!("{:?} (the predictions' shape)", scores.size()),
            labels.size(),
        ));
    }
    let labels = labels.f_to_device(scores.device()).ctx(scope)?;
    if labels.kind() == Kind::Bool {
        return Ok(labels);
    }
    let positive = labels.f_eq(1).ctx(scope)?;
    let negative = labels.f_eq(0).ctx(scope)?;
    let valid = positive.f_logical_or(&negative).ctx(scope)?;
    if count(scope, &valid)? != labels.numel() as i64 {
        return Err(Error::invalid(scope, "labels must be Bool or 0/1"));
    }
    Ok(positive)
}

/// True/false positives and negatives, counted with a threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Confusion {
    pub tp: i64,
    pub fp: i64,
    pub fn_: i64,
    pub tn: i64,
}

impl Confusion {
    /// Adds a batch: an example is predicted positive when it is `true` (Bool predictions) or
    /// its score is `> threshold`.
    fn update(&mut self, scope: &str, predictions: &Tensor, labels: &Tensor, threshold: f64) -> Result<()> {
        let labels = binary_labels(scope, predictions, labels)?;
        let predicted = if predictions.kind() == Kind::Bool {
            predictions.shallow_clone()
        } else {
            super::check::finite(scope, "predictions", &predictions.f_to_kind(Kind::Double).ctx(scope)?)?;
            predictions.f_gt(threshold).ctx(scope)?
        };
        let tp = count(scope, &predicted.f_logical_and(&labels).ctx(scope)?)?;
        let positives = count(scope, &predicted)?;
        let actual = count(scope, &labels)?;
        let n = labels.numel() as i64;
        self.tp += tp;
        self.fp += positives - tp;
        self.fn_ += actual - tp;
        self.tn += n - positives - actual + tp;
        Ok(())
    }

    fn total(&self) -> i64 {
        self.tp + self.fp + self.fn_ + self.tn
    }

    /// `num / den`, 0 when `den` is 0 (sklearn's `zero_division=0`); the empty-evaluation
    /// error when nothing was counted.
    fn safe(&self, scope: &str, num: i64, den: i64) -> Result<f64> {
        ratio(scope, 0.0, self.total() as f64)?;
        Ok(if den == 0 { 0.0 } else { num as f64 / den as f64 })
    }
}

fn check_threshold(scope: &str, threshold: f64) -> Result<()> {
    if threshold.is_finite() {
        Ok(())
    } else {
        Err(Error::config(scope, format!("threshold must be finite, got {threshold}")))
    }
}

macro_rules! binary_metric {
    ($(#[$doc:meta])* $name:ident, $tag:literal, |$c:ident| $num:expr, $den:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            threshold: f64,
            counts: Confusion,
        }

        impl $name {
            /// A metric predicting positive for Bool `true` or a score `> threshold` (0.5 for
            /// probabilities, 0 for logits).
            ///
            /// # Errors
            /// [`Error::Config`] for a non-finite threshold.
            pub fn new(threshold: f64) -> Result<Self> {
                check_threshold(concat!("metrics/", $tag), threshold)?;
                Ok($name { threshold, counts: Confusion::default() })
            }

            /// Adds a batch: `predictions` (Bool, or scores of any real kind) and `labels`
            /// (Bool or 0/1) of one shape.
            ///
            /// # Errors
            /// [`Error::Shape`] for different shapes; [`Error::InvalidArgument`] for undefined
            /// tensors, non-finite scores or labels other than 0/1.
            pub fn update(&mut self, predictions: &Tensor, labels: &Tensor) -> Result<()> {
                self.counts.update(concat!("metrics/", $tag), predictions, labels, self.threshold)
            }
        }

        impl Metric for $name {
            fn name(&self) -> &str {
                $tag
            }

            fn result(&self) -> Result<f64> {
                let $c = &self.counts;
                $c.safe(concat!("metrics/", $tag), $num, $den)
            }

            fn reset(&mut self) {
                self.counts = Confusion::default();
            }
        }
    };
}

binary_metric!(
    /// `tp / (tp + fp)`, 0 when nothing is predicted positive
    /// (`sklearn.metrics.precision_score`, `zero_division=0`).
    Precision, "precision", |c| c.tp, c.tp + c.fp
);
binary_metric!(
    /// `tp / (tp + fn)`, 0 when no label is positive (`sklearn.metrics.recall_score`).
    Recall, "recall", |c| c.tp, c.tp + c.fn_
);
binary_metric!(
    /// `2 tp / (2 tp + fp + fn)`, the harmonic mean of precision and recall, 0 when both are
    /// undefined (`sklearn.metrics.f1_score`).
    F1, "f1", |c| 2 * c.tp, 2 * c.tp + c.fp + c.fn_
);
