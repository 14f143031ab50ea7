//! Decoding token sequences from any step-wise model: [`greedy_decode`], [`sample_decode`]
//! (temperature, top-k, top-p) and [`beam_search`] (GNMT length normalisation, n-best lists),
//! over the [`TokenDecoder`] abstraction; [`prime`] continues any of them from prompts; and
//! TensorFlow's [`BasicDecoder`] + [`dynamic_decode`] with its [`Helper`]s (teacher forcing,
//! greedy and sampling embedding helpers, scheduled sampling) over any core.
//!
//! A [`TokenDecoder`] maps the previous token of each row and a [`State`] to the next
//! token's logits and the new state. [`CoreDecoder`] composes one from an embedding, any
//! [`RnnCore`](couplet_rnn::RnnCore) (e.g. an attention decoder core whose state holds the
//! encoder memory) and an output projection.
//!
//! Conventions shared by the token decoders (TF's `dynamic_decode`):
//! - `max_len` bounds the number of generated tokens, the end token included;
//! - a sequence's length counts its end token; a sequence that reaches `max_len` without
//!   the end token has length `max_len`;
//! - tokens after a sequence's end are padded with the end token;
//! - a sequence's final state is the state returned by the step that produced the logits of
//!   its last token (the end token itself is never fed back);
//! - the start tokens, the state and the logits live on one device.

mod adapter;
mod basic_decoder;
mod beam;
mod check;
mod greedy;
mod helper;
mod prompt;
mod sample;
#[cfg(test)]
mod toy;

pub use adapter::{AttentionProbs, CoreDecoder};
pub use basic_decoder::{
    dynamic_decode, BasicDecoder, Decoder, DecoderStepOutput, DynamicDecodeOptions, DynamicDecodeOutput,
};
pub use beam::{beam_search, BeamOutput, BeamSearchConfig, Hypothesis};
pub use greedy::{greedy_decode, DecodeOutput, GreedyOptions};
pub use helper::{
    GreedyEmbeddingHelper, Helper, SampleEmbeddingHelper, ScheduledEmbeddingTrainingHelper, TrainingHelper,
};
pub use prompt::{prime, Primed};
pub use sample::{sample_decode, sampling_probs, SampleOptions};

use couplet_modules::Result;
use couplet_rnn::State;
use tch::Tensor;

/// One decoding step over token ids.
///
/// Decoders step on fewer rows as rows finish, and beam search reorders rows by their
/// parents, so an implementation must keep every per-row tensor in its [`State`] (whose
/// leaves are all batch-major), never in itself.
pub trait TokenDecoder {
    /// Maps `tokens [B]` (int64, the previous token of each row) and `state` (`B` rows) to
    /// `(logits [B, V], new state of B rows)`. `V` must be the same at every step.
    ///
    /// # Errors
    /// Whatever the model reports (a typed [`Error`](couplet_modules::Error) naming it).
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)>;

    /// The attention probabilities `[B, N]` (over `N` memory slots) of the step that returned
    /// `state`, e.g. an attention decoder core's alignments: what [`beam_search`]'s coverage
    /// penalty accumulates. Default `None`: the model does not attend.
    ///
    /// # Errors
    /// Whatever the model reports reading its state.
    fn attention_probs(&self, state: &State) -> Result<Option<Tensor>> {
        let _ = state;
        Ok(None)
    }
}

impl<T: TokenDecoder + ?Sized> TokenDecoder for &T {
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
        (**self).step(tokens, state)
    }
    fn attention_probs(&self, state: &State) -> Result<Option<Tensor>> {
        (**self).attention_probs(state)
    }
}

impl<T: TokenDecoder + ?Sized> TokenDecoder for Box<T> {
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
        (**self).step(tokens, state)
    }
    fn attention_probs(&self, state: &State) -> Result<Option<Tensor>> {
        (**self).attention_probs(state)
    }
}
