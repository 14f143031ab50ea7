//! Criterion benches of the TensorBoard summary writer (`couplet_train::summary`):
//!
//! - `summary/scalars_10k`: 10 000 `add_scalar` calls then `flush` (queued, framed, CRC'd and
//!   written by the background thread): scalars per second end to end;
//! - `summary/scalars_10k_queued`: the training thread's side only, 10 000 `add_scalar`
//!   calls into a queue large enough to hold them (flushed outside the timing);
//! - `summary/histogram_1m`: `add_histogram` of 1 000 000 float values (binning into
//!   TensorFlow's 1551 default buckets on the calling thread, then queued).
//!
//! `cargo bench --bench summary -- --sample-size 10 --warm-up-time 1 --measurement-time 3`.
//! `scripts/bench/summary_pytorch.py` times the same with `torch.utils.tensorboard`. See
//! BENCHMARKS.md.

use couplet::train::summary::{SummaryWriter, SummaryWriterConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn logdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("couplet-bench-summary-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn summary(c: &mut Criterion) {
    let mut group = c.benchmark_group("summary");
    const SCALARS: i64 = 10_000;

    let dir = logdir("scalars");
    let writer = SummaryWriter::new(&dir).unwrap();
    group.throughput(Throughput::Elements(SCALARS as u64));
    let mut step = 0i64;
    group.bench_function("scalars_10k", |b| {
        b.iter(|| {
            for _ in 0..SCALARS {
                writer.add_scalar("train/loss", 1.0 / (step + 1) as f64, step).unwrap();
                step += 1;
            }
            writer.flush().unwrap();
        })
    });
    drop(writer);
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = logdir("queued");
    let config = SummaryWriterConfig::default().with_max_queue(4 * SCALARS as usize);
    let writer = SummaryWriter::with_config(&dir, config).unwrap();
    group.bench_function("scalars_10k_queued", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let start = std::time::Instant::now();
                for _ in 0..SCALARS {
                    writer.add_scalar("train/loss", 1.0 / (step + 1) as f64, step).unwrap();
                    step += 1;
                }
                total += start.elapsed();
                writer.flush().unwrap();
            }
            total
        })
    });
    drop(writer);
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = logdir("histogram");
    let writer = SummaryWriter::new(&dir).unwrap();
    let values = Tensor::randn([1_000_000], (Kind::Float, Device::Cpu));
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("histogram_1m", |b| {
        b.iter(|| {
            writer.add_histogram("weights", &values, step).unwrap();
            step += 1;
        })
    });
    group.finish();
    writer.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

// No criterion plots: the workspace's `plotters` draws text with `ab_glyph` and only the
// fonts registered with it (see examples/common/plot.rs), so criterion's own charts would fail.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = summary
}
criterion_main!(benches);
