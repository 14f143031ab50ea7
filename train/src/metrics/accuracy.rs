//! [`Accuracy`] and [`TopKAccuracy`] over class ids or logits.

use super::check::{count, floating, ids_in_range, integer, predicted_ids, ratio};
use super::Metric;
use couplet_modules::{Error, Result, TorchContext};
use tch::Tensor;

/// The fraction of predictions equal to their labels (`sklearn.metrics.accuracy_score`).
#[derive(Clone, Debug, Default)]
pub struct Accuracy {
    correct: i64,
    total: i64,
}

const ACCURACY: &str = "metrics/accuracy";

impl Accuracy {
    /// An empty accuracy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch: `predictions` are integer class ids of the labels' shape, or logits with
    /// one more (class) dimension, `[.., C]`, whose argmax is the prediction; `labels` are
    /// integer class ids of any shape.
    ///
    /// # Errors
    /// [`Error::Shape`] when the shapes do not pair up; [`Error::InvalidArgument`] for
    /// undefined tensors or wrong kinds.
    pub fn update(&mut self, predictions: &Tensor, labels: &Tensor) -> Result<()> {
        let ids = predicted_ids(ACCURACY, predictions, labels)?;
        let labels = labels.f_to_device(ids.device()).ctx(ACCURACY)?;
        let same = ids.f_eq_tensor(&labels).ctx(ACCURACY)?;
        self.correct += count(ACCURACY, &same)?;
        self.total += labels.numel() as i64;
        Ok(())
    }
}

impl Metric for Accuracy {
    fn name(&self) -> &str {
        "accuracy"
    }

    fn result(&self) -> Result<f64> {
        ratio(ACCURACY, self.correct as f64, self.total as f64)
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The fraction of examples whose label is among the `k` classes with the largest logits
/// (`sklearn.metrics.top_k_accuracy_score`, `tf.keras.metrics.SparseTopKCategoricalAccuracy`).
/// Among tied logits, libtorch's `topk` picks which are in.
#[derive(Clone, Debug)]
pub struct TopKAccuracy {
    k: i64,
    name: String,
    correct: i64,
    total: i64,
}

impl TopKAccuracy {
    /// A top-`k` accuracy, named `top_<k>_accuracy`.
    ///
    /// # Errors
    /// [`Error::Config`] for `k < 1`.
    pub fn new(k: i64) -> Result<Self> {
        if k < 1 {
            return Err(Error::config("metrics/top_k_accuracy", format!("k must be >= 1, got {k}")));
        }
        Ok(TopKAccuracy { k, name: format!("top_{k}_accuracy"), correct: 0, total: 0 })
    }

    /// Adds a batch of logits `[N, C]` (floating point, `C >= k`) and integer labels `[N]` in
    /// `[0, C)`.
    ///
    /// # Errors
    /// [`Error::Shape`] for other shapes or `C < k`; [`Error::InvalidArgument`] for undefined
    /// tensors, wrong kinds or labels out of range.
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) -> Result<()> {
        let scope = format!("metrics/{}", self.name);
        floating(&scope, "logits", logits)?;
        integer(&scope, "labels", labels)?;
        let (p, l) = (logits.size(), labels.size());
        if p.len() != 2 || l.len() != 1 || p[0] != l[0] || p[1] < self.k {
            return Err(Error::shape(&scope, "logits, labels", format!("[N, C >= {}], [N]", self.k), (p, l)));
        }
        ids_in_range(&scope, "labels", labels, p[1])?;
        let (_, top) = logits.f_topk(self.k, -1, true, false).ctx(&scope)?;
        let labels = labels.f_to_device(top.device()).and_then(|l| l.f_unsqueeze(1)).ctx(&scope)?;
        let hit = top.f_eq_tensor(&labels).and_then(|h| h.f_any_dim(1, false)).ctx(&scope)?;
        self.correct += count(&scope, &hit)?;
        self.total += l[0];
        Ok(())
    }
}

impl Metric for TopKAccuracy {
    fn name(&self) -> &str {
        &self.name
    }

    fn result(&self) -> Result<f64> {
        ratio(&format!("metrics/{}", self.name), self.correct as f64, self.total as f64)
    }

    fn reset(&mut self) {
        self.correct = 0;
        self.total = 0;
    }
}
