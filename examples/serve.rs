//! # serve: the trained date translator behind HTTP
//!
//! Loads the latest checkpoint the `seq2seq` example wrote (the same model code, shared with
//! it) and serves it on 127.0.0.1:
//!
//! - `POST /translate` with `{"texts": ["4th of July, 1976", "12.10.92"], "beam_width": 3}`
//!   (`beam_width` optional) answers `{"translations": [{"text": "1976-07-04", "score": -0.01},
//!   …], "batch_texts": 2}`: each text's best beam and its log-probability, and how many texts
//!   were decoded together;
//! - `GET /health` answers `{"status": "ok", "queued": …, "requests": …, "decodes": …}`.
//!
//! One dedicated thread owns the model ([`worker`]); concurrent requests are batched into one
//! beam search (up to `--max-batch` texts, waiting at most `--max-wait-ms` for company).
//! Requests are bounded (body size, number and length of texts, beam width) and so is the
//! queue: past them the answer is a 4xx or a 503 with a JSON `{"error"}` ([`http`]), never a
//! crash. SIGTERM or Ctrl-C stops accepting connections, lets the requests in flight finish,
//! stops the worker and exits with status 0.
//!
//! ```sh
//! cargo run --release --example seq2seq                      # train, writes runs/seq2seq
//! cargo run --release --example serve -- --addr 127.0.0.1:8080
//! curl -s localhost:8080/translate -H 'content-type: application/json' \
//!      -d '{"texts": ["4th of July, 1976"]}'
//! ```

#[path = "serve/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "seq2seq/main.rs"]
mod seq2seq;
#[path = "serve/worker.rs"]
mod worker;

use clap::Parser;
use couplet::{CheckpointManager, Error, Result, Store};
use seq2seq::data::Vocab;
use seq2seq::model::{ModelConfig, Seq2Seq};
use seq2seq::{AttentionKind, DeviceArg};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Bounds on what one request may ask.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most texts in one request.
    pub max_texts: usize,
    /// Most characters in one text.
    pub max_chars: usize,
    /// Beam width when a request gives none.
    pub default_beam_width: i64,
    /// Largest beam width a request may ask.
    pub max_beam_width: i64,
    /// Requests that may wait for the worker.
    pub queue: usize,
}

/// Serves the seq2seq date translator over HTTP on 127.0.0.1.
#[derive(Clone, Debug, Parser)]
#[command(name = "serve", version, about)]
pub struct Args {
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// The seq2seq run folder (its `--logdir`), whose latest checkpoint is served.
    #[arg(long, default_value = "runs/seq2seq")]
    pub checkpoint_dir: PathBuf,
    /// Device: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// CPU threads of each libtorch operation.
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    /// Threads of the async runtime (HTTP only; the model has its own thread).
    #[arg(long, default_value_t = 2)]
    pub http_threads: usize,
    /// Size of the character embeddings (must match the checkpoint's --embed-dim).
    #[arg(long, default_value_t = 32)]
    pub embed_dim: i64,
    /// Hidden size of each encoder direction (must match the checkpoint's).
    #[arg(long, default_value_t = 64)]
    pub encoder_hidden: i64,
    /// Hidden size of the decoder LSTM (must match the checkpoint's).
    #[arg(long, default_value_t = 128)]
    pub decoder_hidden: i64,
    /// Attention mechanism (must match the checkpoint's).
    #[arg(long, value_enum, default_value_t = AttentionKind::Luong)]
    pub attention: AttentionKind,
    /// Most texts decoded together; 1 turns batching across requests off.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Longest wait, in milliseconds, of a batch's first request for others.
    #[arg(long, default_value_t = 3)]
    pub max_wait_ms: u64,
    /// Requests that may wait for the model; more are answered 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,
    /// Most texts in one request (a request is never split: one with more texts than
    /// --max-batch is decoded on its own).
    #[arg(long, default_value_t = 32)]
    pub max_texts: usize,
    /// Most characters in one text.
    #[arg(long, default_value_t = 64)]
    pub max_chars: usize,
    /// Beam width of requests that give none.
    #[arg(long, default_value_t = 1)]
    pub beam_width: i64,
    /// Largest beam width a request may ask.
    #[arg(long, default_value_t = 8)]
    pub max_beam_width: i64,
}

impl Args {
    /// The request limits, checked.
    fn limits(&self) -> Result<Limits> {
        let bad = |m: String| Err(Error::invalid("serve", m));
        if self.max_batch == 0 || self.queue == 0 || self.max_texts == 0 || self.max_chars == 0 {
            return bad("--max-batch, --queue, --max-texts and --max-chars must be >= 1".into());
        }
        if self.max_beam_width < 1 || !(1..=self.max_beam_width).contains(&self.beam_width) {
            return bad(format!("--beam-width must be in 1..=--max-beam-width ({})", self.max_beam_width));
        }
        Ok(Limits {
            max_body_bytes: self.max_body_bytes,
            max_texts: self.max_texts,
            max_chars: self.max_chars,
            default_beam_width: self.beam_width,
            max_beam_width: self.max_beam_width,
            queue: self.queue,
        })
    }
}

/// Builds the model and restores the latest checkpoint.
fn load(args: &Args) -> Result<worker::Model> {
    let device = args.device.device()?;
    couplet::tch::set_num_threads(args.threads);
    let (source, target) = (Vocab::input(), Vocab::target());
    let store = Store::new(device);
    let config = ModelConfig {
        source_vocab: source.size(),
        target_vocab: target.size(),
        embed_dim: args.embed_dim,
        encoder_hidden: args.encoder_hidden,
        decoder_hidden: args.decoder_hidden,
        attention: args.attention,
    };
    let model = Seq2Seq::new(&store.root(), &config)?;
    // Lazily sized variables (the attention's memory layer) exist after a first call.
    let (ids, _, mask) = seq2seq::batch::sources(&["4 Mar 17"], &source, device)?;
    couplet::tch::no_grad(|| model.initial_state_unpadded(&ids, &mask, 0))?;
    let manager = CheckpointManager::new(&args.checkpoint_dir, None)?;
    match manager.restore_latest(&store)? {
        Some(_) => Ok(worker::Model { model, source, target, device }),
        None => Err(Error::checkpoint(
            &args.checkpoint_dir,
            "no checkpoint: train one with `cargo run --release --example seq2seq`",
        )),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

fn serve(args: &Args) -> Result<()> {
    let limits = args.limits()?;
    let io = |context: &str| {
        let context = context.to_string();
        move |source| Error::Io { context, source }
    };
    // The worker thread loads and owns the model; it reports whether loading worked.
    let (queue, jobs) = std::sync::mpsc::sync_channel::<worker::Job>(args.queue);
    let (ready, loaded) = std::sync::mpsc::channel::<Result<Vocab>>();
    let stats = Arc::new(worker::Stats::default());
    let policy =
        worker::BatchPolicy { max_batch: args.max_batch, max_wait: Duration::from_millis(args.max_wait_ms) };
    let worker_args = args.clone();
    let worker_stats = Arc::clone(&stats);
    let worker = std::thread::Builder::new()
        .name("model".into())
        .spawn(move || match load(&worker_args) {
            Ok(model) => {
                let _ = ready.send(Ok(model.source.clone()));
                worker::run(&model, &jobs, policy, &worker_stats);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        })
        .map_err(io("serve: starting the model thread"))?;
    let vocab =
        loaded.recv().map_err(|_| Error::invalid("serve", "the model thread stopped while loading"))??;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_threads.max(1))
        .enable_all()
        .build()
        .map_err(io("serve: starting the runtime"))?;
    let state = http::AppState { queue, stats, limits, vocab: Arc::new(vocab) };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr).await.map_err(io("serve: binding"))?;
        let addr = listener.local_addr().map_err(io("serve: reading the bound address"))?;
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(io("serve: serving"))
    })?;
    // The router (and with it the queue's last sender) is gone: the worker drains and stops.
    worker.join().map_err(|_| Error::invalid("serve", "the model thread panicked"))?;
    eprintln!("serve: shut down cleanly");
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = serve(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
