//! Criterion benches of the attention modules at the target size (batch 32, 8 heads,
//! model 256, length 100): `AttentiveRead` (Sonnet's, with an MLP `512 → 128 → 1` scoring
//! memory-query pairs) and multi-head self-attention, forward and forward + backward; Luong
//! and Bahdanau scoring over a prepared memory; one beam-search step (batch 32, width 8).
//!
//! `cargo bench --bench attention`. libtorch's threads are pinned to the machine's cores.

mod common;

use common::cases::attention_cases;
use common::register;
use criterion::{criterion_group, criterion_main, Criterion};

fn attention(c: &mut Criterion) {
    register(c, attention_cases());
}

// No criterion plots: the workspace's `plotters` draws text with `ab_glyph` and only the
// fonts registered with it (see examples/common/plot.rs), so criterion's own charts would fail.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = attention
}
criterion_main!(benches);
