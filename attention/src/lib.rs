//! # couplet-attention
//!
//! Attention for sequence models: Sonnet's [`AttentiveRead`], dot, Luong and Bahdanau
//! mechanisms over a memory prepared once, and multi-head attention.

pub mod attentive_read;
pub mod mechanism;
pub mod multi_head;
pub mod softmax;

pub use attentive_read::{AttentionOutput, AttentiveRead};
pub use mechanism::{
    memory_mask, AttentionMechanism, AttentionMemory, BahdanauAttention, BahdanauConfig, DotAttention,
    LuongAttention, LuongConfig,
};
pub use multi_head::{AttentionMasks, MultiHeadAttention, MultiHeadAttentionConfig};
pub use softmax::{lowest_finite, masked_softmax};
