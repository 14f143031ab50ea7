//! The model worker: one dedicated thread owns the seq2seq model and decodes batches of
//! requests, so inference never runs on (or blocks) the async runtime's threads.
//!
//! Requests wait in a bounded queue ([`std::sync::mpsc::sync_channel`]; a full queue is the
//! caller's 503). The worker takes the first waiting request, then keeps collecting until the
//! batch holds `max_batch` texts or `max_wait` has passed since that first request (a request
//! is never split: one that would overflow the batch opens the next), and decodes each beam
//! width present in one beam search. A failed or panicking decode answers its requests with
//! an error and the worker goes on.

use super::seq2seq::batch::sources;
use super::seq2seq::data::Vocab;
use super::seq2seq::model::Seq2Seq;
use super::seq2seq::train::MAX_DECODE;
use couplet::tch::Device;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How the worker groups requests.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// Most texts decoded together (1: no batching across requests beyond one request).
    pub max_batch: usize,
    /// Longest time the first request of a batch waits for others.
    pub max_wait: Duration,
}

/// One translated text: the best beam and its log-probability.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Translation {
    /// The ISO date the model wrote.
    pub text: String,
    /// The beam's log-probability (sum over its tokens, the end token included).
    pub score: f64,
}

/// What the worker sends back for one request.
#[derive(Debug)]
pub struct Reply {
    /// One translation per text, in order.
    pub translations: Vec<Translation>,
    /// How many texts were decoded together with this request's (its own included).
    pub batch_texts: usize,
}

/// A request waiting for the worker.
pub struct Job {
    /// The texts (already checked against the input vocabulary).
    pub texts: Vec<String>,
    /// Beam width, `1..=max_beam`.
    pub beam_width: i64,
    /// Where the answer goes (an error message for a failed decode).
    pub reply: oneshot::Sender<Result<Reply, String>>,
}

/// Counters shared by the worker and `/health`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests waiting in the queue.
    pub queued: AtomicUsize,
    /// Requests answered by the worker.
    pub requests: AtomicU64,
    /// Decodes run (one per beam width per batch).
    pub decodes: AtomicU64,
    /// Texts decoded.
    pub texts: AtomicU64,
    /// Decodes that failed or panicked.
    pub failures: AtomicU64,
}

/// The worker's model and vocabularies.
pub struct Model {
    /// The restored seq2seq model.
    pub model: Seq2Seq,
    /// Its input vocabulary.
    pub source: Vocab,
    /// Its output vocabulary.
    pub target: Vocab,
    /// Where it runs.
    pub device: Device,
}

/// Serves jobs from `queue` until every sender is gone and the queue is empty.
pub fn run(model: &Model, queue: &Receiver<Job>, policy: BatchPolicy, stats: &Stats) {
    let received = |job: Job| {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        job
    };
    let mut carried: Option<Job> = None;
    loop {
        let Some(first) = carried.take().or_else(|| queue.recv().ok().map(received)) else { return };
        let deadline = Instant::now() + policy.max_wait;
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        while texts < policy.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(left).map(received) {
                Ok(job) if texts + job.texts.len() > policy.max_batch => {
                    carried = Some(job);
                    break;
                }
                Ok(job) => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        answer(model, jobs, texts, stats);
    }
}

/// Decodes `jobs` (one beam search per beam width) and answers each.
fn answer(model: &Model, jobs: Vec<Job>, batch_texts: usize, stats: &Stats) {
    let mut by_width: BTreeMap<i64, Vec<Job>> = BTreeMap::new();
    for job in jobs {
        by_width.entry(job.beam_width).or_default().push(job);
    }
    for (width, jobs) in by_width {
        let texts: Vec<&str> = jobs.iter().flat_map(|j| j.texts.iter().map(String::as_str)).collect();
        stats.decodes.fetch_add(1, Ordering::Relaxed);
        stats.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        let result = catch_unwind(AssertUnwindSafe(|| decode(model, &texts, width)))
            .unwrap_or_else(|_| Err("the decoder panicked".to_string()));
        if result.is_err() {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut translations = result.map(Vec::into_iter);
        for job in jobs {
            let reply = match &mut translations {
                Ok(all) => Ok(Reply { translations: all.take(job.texts.len()).collect(), batch_texts }),
                Err(message) => Err(message.clone()),
            };
            stats.requests.fetch_add(1, Ordering::Relaxed);
            // A client that went away no longer waits for its answer: nothing to do.
            let _ = job.reply.send(reply);
        }
    }
}

/// Beam search over `texts`: each text's best beam.
fn decode(model: &Model, texts: &[&str], width: i64) -> Result<Vec<Translation>, String> {
    let (ids, lengths, mask) = sources(texts, &model.source, model.device).map_err(|e| e.to_string())?;
    let beams = couplet::tch::no_grad(|| model.model.beam(&ids, &lengths, &mask, width, MAX_DECODE))
        .map_err(|e| e.to_string())?;
    beams
        .into_iter()
        .map(|row| {
            let (tokens, score) = row.into_iter().next().ok_or("beam search returned no beam")?;
            Ok(Translation { text: model.target.decode(&tokens), score })
        })
        .collect()
}
