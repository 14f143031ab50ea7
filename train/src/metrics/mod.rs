//! Streaming evaluation metrics, as `tf.metrics` / `tf.keras.metrics`: each accumulates over
//! the batches of one evaluation with its own `update`, reports with [`Metric::result`] and
//! starts the next evaluation with [`Metric::reset`].
//!
//! | metric | `update` takes | result |
//! |---|---|---|
//! | [`Mean`] | values (optionally weighted) | weighted mean |
//! | [`Accuracy`] | logits `[.., C]` or class ids, labels | correct / total |
//! | [`TopKAccuracy`] | logits `[N, C]`, labels `[N]` | labels among the `k` largest logits / total |
//! | [`Precision`], [`Recall`], [`F1`] | binary scores or Bool predictions, 0/1 labels | as `sklearn.metrics` (`average="binary"`, 0 when undefined) |
//! | [`Auc`] | binary scores, 0/1 labels | exact ROC AUC, as `sklearn.metrics.roc_auc_score` |
//! | [`Perplexity`] | logits `[.., V]`, targets, a [`TokenMask`] | `exp(mean token NLL)` |
//! | [`ExactSequenceMatch`] | ids or logits `[B, T(, V)]`, targets `[B, T]`, a [`TokenMask`] | sequences right at every real step / sequences |
//! | [`MaskedTokenAccuracy`] | ids or logits `[B, T(, V)]`, targets `[B, T]`, a [`TokenMask`] | right real tokens / real tokens |
//!
//! Inputs may live on any device; counts are reduced there and only scalars (or, for
//! [`Auc`], the scores) come to the CPU. Bad inputs are typed errors naming the metric and the
//! shapes; a result with nothing accumulated is [`couplet_modules::Error::InvalidArgument`]
//! ("empty evaluation") rather than a NaN.

mod accuracy;
mod auc;
mod binary;
mod check;
mod mask;
mod mean;
mod perplexity;
mod sequence;

pub use accuracy::{Accuracy, TopKAccuracy};
pub use auc::Auc;
pub use binary::{Precision, Recall, F1};
pub use mask::TokenMask;
pub use mean::Mean;
pub use perplexity::Perplexity;
pub use sequence::{ExactSequenceMatch, MaskedTokenAccuracy};

use couplet_modules::Result;

/// What every streaming metric shares: a name, a result over everything accumulated since the
/// last reset, and the reset.
pub trait Metric: Send {
    /// The metric's name, used as its summary tag (`eval/<name>`), e.g. `accuracy`.
    fn name(&self) -> &str;

    /// The value over every update since construction or the last [`Metric::reset`].
    ///
    /// # Errors
    /// [`couplet_modules::Error::InvalidArgument`] when nothing was accumulated (an empty
    /// evaluation), or when the metric is undefined on what was (AUC with one class).
    fn result(&self) -> Result<f64>;

    /// Forgets everything accumulated.
    fn reset(&mut self);
}

#[cfg(test)]
mod tests;
