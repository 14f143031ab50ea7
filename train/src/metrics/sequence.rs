//! Sequence metrics over `[B, T]` targets with a [`TokenMask`]: [`ExactSequenceMatch`] and
//! [`MaskedTokenAccuracy`].

use super::check::{count, predicted_ids, ratio};
use super::mask::TokenMask;
use super::Metric;
use couplet_modules::{Error, Result, TorchContext};
use tch::Tensor;

/// The predicted ids and targets of a `[B, T]` batch (on the predictions' device) and the mask
/// of its real tokens.
fn aligned(scope: &str, predictions: &Tensor, targets: &Tensor, mask: TokenMask) -> Result<(Tensor, Tensor)> {
    let ids = predicted_ids(scope, predictions, targets)?;
    if targets.dim() != 2 {
        return Err(Error::shape(scope, "targets", "[B, T]", targets.size()));
    }
    let targets = targets.f_to_device(ids.device()).ctx(scope)?;
    let mask = mask.to_mask(scope, &targets.size(), ids.device())?;
    let right = ids.f_eq_tensor(&targets).ctx(scope)?;
    Ok((right, mask))
}

/// The fraction of sequences whose every real token is predicted right (seq2seq's exact
/// match). A sequence with no real token (length 0) counts as matched.
#[derive(Clone, Debug, Default)]
pub struct ExactSequenceMatch {
    matched: i64,
    total: i64,
}

const EXACT: &str = "metrics/exact_match";

impl ExactSequenceMatch {
    /// An empty exact match.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch: `predictions` are integer ids `[B, T]` or logits `[B, T, V]`, `targets`
    /// integer ids `[B, T]`, `mask` which steps are real.
    ///
    /// # Errors
    /// [`Error::Shape`] for shapes that do not pair up; [`Error::InvalidArgument`] for
    /// undefined tensors, wrong kinds or lengths out of `[0, T]`.
    pub fn update(&mut self, predictions: &Tensor, targets: &Tensor, mask: TokenMask) -> Result<()> {
        let (right, mask) = aligned(EXACT, predictions, targets, mask)?;
        // A step is fine when it is right or not real; a sequence matches when all are.
        let fine = right.f_logical_or(&mask.f_logical_not().ctx(EXACT)?).ctx(EXACT)?;
        let matched = fine.f_all_dim(1, false).ctx(EXACT)?;
        self.matched += count(EXACT, &matched)?;
        self.total += targets.size()[0];
        Ok(())
    }
}

impl Metric for ExactSequenceMatch {
    fn name(&self) -> &str {
        "exact_match"
    }

    fn result(&self) -> Result<f64> {
        ratio(EXACT, self.matched as f64, self.total as f64)
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The fraction of real tokens predicted right (padding excluded).
#[derive(Clone, Debug, Default)]
pub struct MaskedTokenAccuracy {
    right: i64,
    total: i64,
}

const TOKEN: &str = "metrics/token_accuracy";

impl MaskedTokenAccuracy {
    /// An empty token accuracy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch, as [`ExactSequenceMatch::update`].
    ///
    /// # Errors
    /// As [`ExactSequenceMatch::update`].
    pub fn update(&mut self, predictions: &Tensor, targets: &Tensor, mask: TokenMask) -> Result<()> {
        let (right, mask) = aligned(TOKEN, predictions, targets, mask)?;
        self.right += count(TOKEN, &right.f_logical_and(&mask).ctx(TOKEN)?)?;
        self.total += count(TOKEN, &mask)?;
        Ok(())
    }
}

impl Metric for MaskedTokenAccuracy {
    fn name(&self) -> &str {
        "token_accuracy"
    }

    fn result(&self) -> Result<f64> {
        ratio(TOKEN, self.right as f64, self.total as f64)
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}
