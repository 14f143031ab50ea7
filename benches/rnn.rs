//! Criterion benches of the recurrent toolkit: one cell step (LSTM, GRU) and whole unrolls
//! through `dynamic_rnn` / `bidirectional_dynamic_rnn`, per route (what `dynamic_rnn`
//! chooses, and the generic step-by-step route forced), padded or with lengths uniform in
//! `[T/2, T]`, forward and forward + backward, at (B, T, I, H) = (1, 100, 64, 128),
//! (32, 100, 64, 256), (64, 50, 256, 512). See BENCHMARKS.md.
//!
//! `cargo bench --bench rnn` (filter: `cargo bench --bench rnn -- lstm/chosen/lengths`).
//! libtorch's threads are pinned to the machine's cores (`COUPLET_BENCH_THREADS` overrides).

mod common;

use common::cases::rnn_cases;
use common::register;
use criterion::{criterion_group, criterion_main, Criterion};

fn rnn(c: &mut Criterion) {
    register(c, rnn_cases());
}

// No criterion plots: the workspace's `plotters` draws text with `ab_glyph` and only the
// fonts registered with it (see examples/common/plot.rs), so criterion's own charts would fail.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = rnn
}
criterion_main!(benches);
