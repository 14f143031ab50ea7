//! couplet::data throughput on a synthetic corpus (lengths 1..=200, the same corpus as
//! `scripts/bench/tfdata.py` builds for tf.data): `padded_batch` and
//! `bucket_by_sequence_length`, each with `prefetch(2)`, as criterion benches, then a
//! side-by-side report (elements/s, median of 3 passes) and the time a training-like consumer
//! (2 ms of work per batch) waits for data, with the part spent on the first batch, for the
//! padded and bucketed pipelines and a bucketed one with a 16-batch prefetch buffer on top.
//!
//! `cargo bench --bench data -- --sample-size 10 --warm-up-time 1 --measurement-time 3`
//! (`COUPLET_DATA_BENCH_N` sets the number of sequences, default 200000).

use couplet::data::{Array, BucketConfig, Dataset, PaddedBatch, PaddedBatchConfig, Record};
use criterion::{criterion_group, Criterion, Throughput};
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn corpus_size() -> usize {
    std::env::var("COUPLET_DATA_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

/// Sequence `i` has length `1 + (i * 7919 + 13) % 200` and tokens `(i + j) % 1000`.
fn corpus(n: usize) -> Dataset<Record> {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let len = 1 + (i * 7919 + 13) % 200;
            Record::new().with("tokens", Array::ids((0..len).map(|j| ((i + j) % 1000) as i64).collect()))
        })
        .collect();
    Dataset::from_vec(records)
}

fn boundaries() -> Vec<i64> {
    (1..20).map(|k| 10 * k).collect()
}

fn padded(ds: &Dataset<Record>) -> Dataset<PaddedBatch> {
    ds.padded_batch(BATCH, PaddedBatchConfig::new()).and_then(|d| d.prefetch(2)).expect("valid configuration")
}

fn bucketed(ds: &Dataset<Record>) -> Dataset<PaddedBatch> {
    let sizes = vec![BATCH; boundaries().len() + 1];
    ds.bucket_by_sequence_length(|r| r.length("tokens"), boundaries(), sizes, BucketConfig::default())
        .and_then(|d| d.prefetch(2))
        .expect("valid configuration")
}

/// Elements per second of one full pass.
fn pass(ds: &Dataset<PaddedBatch>) -> f64 {
    let start = Instant::now();
    let n: usize = ds.iter().map(|b| b.expect("batch").size).sum();
    n as f64 / start.elapsed().as_secs_f64()
}

/// Total time the consumer waited in `next()` while doing `work` per batch, the part of it
/// spent waiting for the first batch (the pipeline filling up), and the run's time.
/// What a consumer doing `work` of busy work per batch waited for `ds`'s batches.
struct Wait {
    /// In all.
    total: Duration,
    /// For the first batch.
    first: Duration,
    /// The longest wait for a batch after the first.
    longest: Duration,
    /// Batches after the first whose request took over 100 µs (the channel hand-off takes
    /// a few µs; a longer request found the prefetch buffer empty).
    stalls: usize,
    /// Batches.
    batches: usize,
    /// The whole pass.
    elapsed: Duration,
}

fn consumer_wait(ds: &Dataset<PaddedBatch>, work: Duration) -> Wait {
    let start = Instant::now();
    let mut wait = Wait {
        total: Duration::ZERO,
        first: Duration::ZERO,
        longest: Duration::ZERO,
        stalls: 0,
        batches: 0,
        elapsed: Duration::ZERO,
    };
    let mut it = ds.iter();
    loop {
        let t = Instant::now();
        let Some(batch) = it.next() else { break };
        let waited = t.elapsed();
        wait.total += waited;
        if wait.batches == 0 {
            wait.first = waited;
        } else {
            wait.longest = wait.longest.max(waited);
            wait.stalls += usize::from(waited > Duration::from_micros(100));
        }
        wait.batches += 1;
        drop(batch.expect("batch"));
        let busy = Instant::now();
        while busy.elapsed() < work {
            std::hint::spin_loop();
        }
    }
    wait.elapsed = start.elapsed();
    wait
}

fn benches(c: &mut Criterion) {
    let n = corpus_size();
    let ds = corpus(n);
    let mut group = c.benchmark_group("data");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("padded_batch_prefetch", |b| b.iter(|| pass(&padded(&ds))));
    group.bench_function("bucket_by_sequence_length_prefetch", |b| b.iter(|| pass(&bucketed(&ds))));
    group.finish();
}

fn side_by_side() {
    let n = corpus_size();
    let ds = corpus(n);
    let median = |f: &dyn Fn() -> f64| {
        let mut xs: Vec<f64> = (0..3).map(|_| f()).collect();
        xs.sort_by(f64::total_cmp);
        xs[1]
    };
    println!("couplet.data corpus={n} batch={BATCH}");
    println!("padded_batch+prefetch elements/s: {:.0}", median(&|| pass(&padded(&ds))));
    println!("bucket_by_sequence_length+prefetch elements/s: {:.0}", median(&|| pass(&bucketed(&ds))));
    let small = corpus(n.min(64_000));
    // A deeper prefetch buffer covers longer stalls of the producer thread (descheduled on a
    // loaded machine) without making it any faster.
    let deep = bucketed(&small).prefetch(16).expect("valid configuration");
    for (name, pipeline) in
        [("padded", padded(&small)), ("bucketed", bucketed(&small)), ("bucketed + prefetch(16)", deep)]
    {
        let w = consumer_wait(&pipeline, Duration::from_millis(2));
        println!(
            "consumer wait ({name}, 2 ms work per batch, {} sequences): {:.1} ms of {:.1} ms ({:.2}%), of which {:.1} ms for the first batch; \
             {} of {} later batches waited over 100 us, the longest {:.3} ms",
            n.min(64_000),
            w.total.as_secs_f64() * 1e3,
            w.elapsed.as_secs_f64() * 1e3,
            100.0 * w.total.as_secs_f64() / w.elapsed.as_secs_f64(),
            w.first.as_secs_f64() * 1e3,
            w.stalls,
            w.batches.saturating_sub(1),
            w.longest.as_secs_f64() * 1e3
        );
    }
}

criterion_group!(data_benches, benches);

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        data_benches();
        Criterion::default().configure_from_args().final_summary();
        side_by_side();
    } else {
        // Under `cargo test --all-targets`: one small pass of each pipeline proves they run.
        let ds = corpus(500);
        assert!(pass(&padded(&ds)) > 0.0 && pass(&bucketed(&ds)) > 0.0);
    }
}
