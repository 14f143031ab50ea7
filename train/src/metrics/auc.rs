//! [`Auc`]: the exact area under the ROC curve.

use super::binary::binary_labels;
use super::check::finite;
use super::Metric;
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

const SCOPE: &str = "metrics/auc";

/// The exact area under the ROC curve of binary scores, as
/// `sklearn.metrics.roc_auc_score`: the probability that a random positive scores above a
/// random negative, ties counting one half (the Mann-Whitney statistic, equal to the
/// trapezoidal area of the ROC curve through every distinct threshold). Not TensorFlow's
/// `tf.metrics.auc`, which approximates the curve with 200 fixed thresholds.
///
/// It keeps every score and label of the evaluation (16 bytes per example on the CPU).
#[derive(Clone, Debug, Default)]
pub struct Auc {
    scores: Vec<f64>,
    labels: Vec<bool>,
}

impl Auc {
    /// An empty AUC.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch of scores (any real kind, any shape; higher means more likely positive)
    /// and labels (Bool or 0/1) of the same shape.
    ///
    /// # Errors
    /// [`Error::Shape`] for different shapes; [`Error::InvalidArgument`] for undefined
    /// tensors, non-finite scores or labels other than 0/1.
    pub fn update(&mut self, scores: &Tensor, labels: &Tensor) -> Result<()> {
        let labels = binary_labels(SCOPE, scores, labels)?;
        let scores = scores.f_to_kind(Kind::Double).ctx(SCOPE)?;
        finite(SCOPE, "scores", &scores)?;
        let flat = |t: &Tensor| t.f_flatten(0, -1).and_then(|t| t.f_to_device(tch::Device::Cpu)).ctx(SCOPE);
        let s = Vec::<f64>::try_from(&flat(&scores)?).ctx(SCOPE)?;
        let l = Vec::<bool>::try_from(&flat(&labels)?).ctx(SCOPE)?;
        self.scores.extend(s);
        self.labels.extend(l);
        Ok(())
    }
}

impl Metric for Auc {
    fn name(&self) -> &str {
        "auc"
    }

    fn result(&self) -> Result<f64> {
        let positives = self.labels.iter().filter(|&&l| l).count();
        let negatives = self.labels.len() - positives;
        if self.labels.is_empty() {
            return Err(Error::invalid(SCOPE, "empty evaluation: no examples since the last reset"));
        }
        if positives == 0 || negatives == 0 {
            return Err(Error::invalid(
                SCOPE,
                format!("ROC AUC needs both classes, got {positives} positives and {negatives} negatives"),
            ));
        }
        // Ranks 1..=n by increasing score, tied scores sharing their mean rank.
        let mut order: Vec<usize> = (0..self.scores.len()).collect();
        order.sort_by(|&a, &b| self.scores[a].total_cmp(&self.scores[b]));
        let mut positive_rank_sum = 0.0;
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && self.scores[order[j + 1]] == self.scores[order[i]] {
                j += 1;
            }
            // Ranks i+1 ..= j+1 share their mean.
            let mean_rank = (i + j) as f64 / 2.0 + 1.0;
            let tied_positives = order[i..=j].iter().filter(|&&k| self.labels[k]).count();
            positive_rank_sum += mean_rank * tied_positives as f64;
            i = j + 1;
        }
        let (p, n) = (positives as f64, negatives as f64);
        Ok((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
    }

    fn reset(&mut self) {
        self.scores.clear();
        self.labels.clear();
    }
}
