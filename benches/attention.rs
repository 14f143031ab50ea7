//! Criterion benches of the attention modules at the target size (batch 32, 8 heads,
//! model 256, length 100): `AttentiveRead` (Sonnet's, with an MLP `512 → 128 → 1` scoring
//! memory-query pairs) and multi-head self-attention, forward and forward + backward.
//!
//! A beam-search step is not benched here yet: beam search is being written in
//! `attention/src/decoding` and has not landed on this branch; its bench joins this file
//! (as one more entry of `attention_cases`) when it does.
//!
//! `cargo bench --bench attention`. libtorch's threads are pinned to the machine's cores.

mod common;

use common::cases::attention_cases;
use common::register;
use criterion::{criterion_group, criterion_main, Criterion};

fn attention(c: &mut Criterion) {
    register(c, attention_cases());
}

criterion_group!(benches, attention);
criterion_main!(benches);
