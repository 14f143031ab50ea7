//! # seq2seq: reading human-written dates
//!
//! A character-level sequence-to-sequence model with attention that turns dates written by
//! people (`Saturday, March 4th 2017`, `4 Mar 17`, `03/04/2017`, `the 4th of march, 2017`, …)
//! into ISO 8601 (`2017-03-04`), built only from couplet's public API:
//!
//! - **data** ([`data`]): 20 formats in three letter cases, generated in-process from `--seed`
//!   into disjoint train, validation and test sets (disjoint by input string, checked);
//!   character vocabularies with pad, start and end tokens.
//! - **encoder**: character embeddings ([`couplet::Embed`]) read by a bidirectional LSTM
//!   ([`couplet::rnn::bidirectional_dynamic_rnn`] over two [`couplet::rnn::Lstm`] cores, with the
//!   source lengths, outputs concatenated) into the attention memory.
//! - **decoder**: an LSTM wrapped in an attention decoder core (Luong or Bahdanau:
//!   `--attention`), trained with teacher forcing through [`couplet::rnn::dynamic_rnn`] (target
//!   lengths) and [`couplet::rnn::sequence_loss`] (weights from
//!   [`couplet::rnn::sequence_mask`]); decoded greedily (accuracy) and, for `--translate` and the samples, by beam
//!   search, greedily or by sampling (`--decode beam|greedy|sample`, `--temperature`).
//! - **training**: a [`couplet::train::Trainer`] over the model's own step (Adam with
//!   gradient-norm clipping), with a progress bar, validation every `--eval-every` steps
//!   (loss, token accuracy, exact match), checkpoints of the model and Adam in `--logdir`
//!   (`--resume` continues exactly from the latest), a wall-clock budget (`--max-minutes`)
//!   and a target accuracy, as hooks; TensorBoard summaries in `--logdir`.
//! - **output**: the test set's exact-match accuracy, sample translations with their beam
//!   scores, the checkpoint path, and PNG heatmaps of the attention alignments (also
//!   TensorBoard images).
//!
//! ```sh
//! cargo run --release --example seq2seq                        # train (≤ 5 min), test, plot
//! cargo run --release --example seq2seq -- --translate "4th of July, 1976" --translate "12.10.92"
//! cargo run --release --example seq2seq -- --help
//! tensorboard --logdir runs
//! ```

pub mod batch;
pub mod data;
pub mod model;
#[path = "../common/plot.rs"]
mod plot;
pub mod train;

use clap::{Parser, ValueEnum};
use couplet::tch::Device;
use std::path::PathBuf;

pub use train::run;

/// Which attention mechanism the decoder uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttentionKind {
    /// Multiplicative: `score = qᵀ W k` (Luong et al. 2015).
    Luong,
    /// Additive: `score = vᵀ tanh(W_k k + W_q q)` (Bahdanau et al. 2015).
    Bahdanau,
}

/// How translations are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecodeKind {
    /// Argmax at each step: one translation.
    Greedy,
    /// Beam search of `--beam-width` beams, best first.
    Beam,
    /// Ancestral sampling at `--temperature`, seeded by `--seed`: one translation.
    Sample,
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (an error if there is none).
    Cuda,
    /// CUDA if available, else the CPU.
    Auto,
}

impl DeviceArg {
    /// The device this choice names.
    pub fn device(self) -> couplet::Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Auto => Ok(Device::cuda_if_available()),
            DeviceArg::Cuda if couplet::tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceArg::Cuda => {
                Err(couplet::Error::invalid("seq2seq", "--device cuda: no CUDA device is available"))
            }
        }
    }
}

/// Trains a character-level seq2seq model with attention to read human-written dates
/// ("Saturday, March 4th 2017", "4.3.17", …) as ISO dates ("2017-03-04").
///
/// Numeric dates follow fixed conventions: slashes are month first (03/04/2017 is March 4th),
/// dots are day first (4.3.2017 is March 4th), a leading four-digit year is year-month-day,
/// and two-digit years 50–99 are 1950–1999, 00–49 are 2000–2049.
#[derive(Clone, Debug, Parser)]
#[command(name = "seq2seq", version, about, long_about)]
pub struct Args {
    /// Seed of the data and of the initial weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Device: cpu, cuda or auto (CUDA if available).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// CPU threads of each libtorch operation. This model's operations are small: extra
    /// threads mostly add synchronisation, and on a busy machine they slow it down many times.
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    /// Stop training after this many optimizer steps in total (counting resumed ones).
    #[arg(long, default_value_t = 6000)]
    pub steps: u64,
    /// Stop training after this many minutes of wall-clock time (evaluation included).
    #[arg(long, default_value_t = 5.0)]
    pub max_minutes: f64,
    /// Stop training once the validation exact-match accuracy reaches this fraction.
    #[arg(long, default_value_t = 1.0)]
    pub target_accuracy: f64,
    /// Examples per training step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 5.0)]
    pub clip_norm: f64,
    /// Size of the character embeddings (source and target).
    #[arg(long, default_value_t = 32)]
    pub embed_dim: i64,
    /// Hidden size of each direction of the bidirectional LSTM encoder.
    #[arg(long, default_value_t = 64)]
    pub encoder_hidden: i64,
    /// Hidden size of the decoder LSTM (also the attention size).
    #[arg(long, default_value_t = 128)]
    pub decoder_hidden: i64,
    /// Attention mechanism of the decoder.
    #[arg(long, value_enum, default_value_t = AttentionKind::Luong)]
    pub attention: AttentionKind,
    /// Number of distinct training examples.
    #[arg(long, default_value_t = 50_000)]
    pub train_size: usize,
    /// Number of validation examples.
    #[arg(long, default_value_t = 1000)]
    pub valid_size: usize,
    /// Number of test examples.
    #[arg(long, default_value_t = 2000)]
    pub test_size: usize,
    /// Validate (and save a checkpoint) every this many steps.
    #[arg(long, default_value_t = 250)]
    pub eval_every: u64,
    /// The run folder: checkpoints, TensorBoard summaries (`train/loss`, `eval/exact_match`,
    /// … and the attention images) and the attention heatmaps. A run without --resume
    /// deletes the checkpoints and summaries it holds.
    #[arg(long, default_value = "runs/seq2seq")]
    pub logdir: PathBuf,
    /// Continue training from the latest checkpoint in --logdir.
    #[arg(long)]
    pub resume: bool,
    /// Decode this text with the latest checkpoint instead of training (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub translate: Vec<String>,
    /// Beam width of beam search (translations and samples).
    #[arg(long, default_value_t = 5)]
    pub beam_width: i64,
    /// How translations and samples are decoded.
    #[arg(long, value_enum, default_value_t = DecodeKind::Beam)]
    pub decode: DecodeKind,
    /// Softmax temperature of `--decode sample` (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// How many sample translations to print after training.
    #[arg(long, default_value_t = 6)]
    pub samples: usize,
    /// No progress bar and no printing (for tests).
    #[arg(long)]
    pub quiet: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
