//! # couplet-attention
//!
//! Attention for sequence models: Sonnet's [`AttentiveRead`], dot, Luong and Bahdanau
//! mechanisms over a memory prepared once, the attention decoder core (TF's
//! `AttentionWrapper`), multi-head attention, and greedy and beam-search decoding over any
//! step-wise token model.

pub mod attentive_read;
pub mod decoder_core;
pub mod decoder_state;
pub mod decoding;
pub mod export;
pub mod mechanism;
pub mod monotonic;
pub mod monotonic_mechanism;
pub mod multi_attention;
pub mod multi_head;
pub mod probability;
pub mod softmax;
pub mod sparsemax;
pub mod tf_weights;
pub mod transformer;
pub mod transformer_decoder;
pub mod transformer_decoder_stack;
pub mod transformer_encoder;

pub use attentive_read::{AttentionOutput, AttentiveRead};
pub use decoder_core::{AttentionDecoderConfig, AttentionDecoderCore};
pub use decoder_state::{AlignmentHistory, DecoderState};
pub use decoding::{
    beam_search, dynamic_decode, greedy_decode, prime, sample_decode, sampling_probs, AttentionProbs,
    BasicDecoder, BeamOutput, BeamSearchConfig, CoreDecoder, DecodeOutput, Decoder, DecoderStepOutput,
    DynamicDecodeOptions, DynamicDecodeOutput, GreedyEmbeddingHelper, GreedyOptions, Helper, Hypothesis,
    Primed, SampleEmbeddingHelper, SampleOptions, ScheduledEmbeddingTrainingHelper, TokenDecoder,
    TrainingHelper,
};
pub use mechanism::{
    memory_mask, AttentionMechanism, AttentionMemory, BahdanauAttention, BahdanauConfig, DotAttention,
    LuongAttention, LuongConfig,
};
pub use monotonic::{monotonic_attention, safe_cumprod, MonotonicMode};
pub use monotonic_mechanism::{
    BahdanauMonotonicAttention, LuongMonotonicAttention, MonotonicAttention, MonotonicConfig,
};
pub use multi_attention::{DecoderAttention, MultiAttentionDecoderCore, MultiAttentionOptions};
pub use multi_head::{AttentionMasks, MultiHeadAttention, MultiHeadAttentionConfig};
pub use probability::ProbabilityFn;
pub use softmax::{lowest_finite, masked_softmax};
pub use sparsemax::{hardmax, sparsemax};
pub use transformer::{TransformerEncoderLayer, TransformerEncoderLayerConfig};
pub use transformer_decoder::TransformerDecoderLayer;
pub use transformer_decoder_stack::TransformerDecoder;
pub use transformer_encoder::TransformerEncoder;
