//! # char_lm: a character language model over a text file, fed by `couplet::data`
//!
//! Reads the lines of a text file ([`couplet::data::text_lines`]), builds a character
//! [`couplet::data::Vocabulary`], turns each line into `{inputs: <s> c1 .. cn, targets: c1 .. cn </s>}`
//! records, shuffles them (seeded, reshuffled each epoch), groups them into length buckets
//! ([`couplet::data::Dataset::bucket_by_sequence_length`]) and prefetches batches on a
//! background thread. An LSTM reads each padded batch with its lengths
//! ([`couplet::rnn::dynamic_rnn`]) and is trained by [`couplet::rnn::sequence_loss`] with weights
//! from the lengths. It prints the padding fraction with and without bucketing, the loss, and
//! text sampled from the trained model.
//!
//! Without `--text`, it writes and reads a generated corpus (sentences of 3 to 150
//! characters from a small seeded grammar), so the default run needs no download:
//!
//! ```sh
//! cargo run --release --example char_lm                          # ~300 steps, under a minute
//! cargo run --release --example char_lm -- --text my.txt --steps 2000
//! ```

use clap::Parser;
use couplet::data::{
    text_lines, Array, BucketConfig, Dataset, PaddedBatch, PaddedBatchConfig, Record, Vocabulary,
    VocabularyConfig,
};
use couplet::optim::{clip_grad_norm, Adam, AdamConfig, Optimizer};
use couplet::rnn::{
    dynamic_rnn, sequence_loss, sequence_mask, Lstm, LstmConfig, RnnCore, SequenceLossOptions, State,
    UnrollOptions,
};
use couplet::tch::{Device, Kind, Tensor};
use couplet::{
    Embed, EmbedConfig, Error, Linear, LinearConfig, Mode, Result, Scope, Store, TorchContext, Variable,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

const MODULE: &str = "char_lm";
const SPECIALS: [&str; 3] = ["<pad>", "<s>", "</s>"];
const START: i64 = 1;
const END: i64 = 2;

/// Command-line arguments.
#[derive(Parser, Debug, Clone)]
#[command(about = "A character language model trained with length buckets (couplet::data).")]
pub struct Args {
    /// A text file, one training sequence per line (default: a generated corpus).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Training steps.
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// LSTM hidden size.
    #[arg(long, default_value_t = 128)]
    pub hidden: i64,
    /// Character embedding size.
    #[arg(long, default_value_t = 32)]
    pub embed_dim: i64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// Seed of the corpus, the shuffle, the initialisation and the sampling.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Characters sampled at the end.
    #[arg(long, default_value_t = 200)]
    pub sample_chars: usize,
    /// Lines of the generated corpus.
    #[arg(long, default_value_t = 4000)]
    pub corpus_lines: usize,
    /// Lines longer than this many characters are left out.
    #[arg(long, default_value_t = 1000)]
    pub max_line: usize,
    /// Print nothing but the final summary.
    #[arg(long)]
    pub quiet: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    /// Mean loss (nats per character) of the first and the last 20 steps.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
    /// Padding fraction of one epoch with plain `padded_batch`.
    pub padding_plain: f64,
    /// Padding fraction of one epoch with length buckets.
    pub padding_bucketed: f64,
    /// The sampled text.
    pub sample: String,
}

/// Writes a corpus of `lines` sentences from a small grammar (3 to ~150 characters each).
fn generate_corpus(path: &std::path::Path, lines: usize, seed: u64) -> Result<()> {
    const SUBJECTS: [&str; 8] = [
        "the cat",
        "a small dog",
        "the old sailor",
        "my sister",
        "the river",
        "a quiet bird",
        "the king",
        "we",
    ];
    const VERBS: [&str; 8] =
        ["sees", "follows", "remembers", "sings to", "walks past", "waits for", "dreams of", "finds"];
    const OBJECTS: [&str; 8] = [
        "the moon",
        "a red door",
        "the long road",
        "an open window",
        "the sea",
        "a lantern",
        "the garden",
        "her friend",
    ];
    const TAILS: [&str; 6] =
        ["at night", "in the rain", "before dawn", "again and again", "without a word", "by the water"];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text = String::new();
    for _ in 0..lines {
        let clauses = rng.gen_range(0..4);
        if clauses == 0 {
            text.push_str(["yes.", "no.", "oh!", "look.", "rain."][rng.gen_range(0..5)]);
        } else {
            let parts: Vec<String> = (0..clauses)
                .map(|_| {
                    let mut c = format!(
                        "{} {} {}",
                        SUBJECTS[rng.gen_range(0..8)],
                        VERBS[rng.gen_range(0..8)],
                        OBJECTS[rng.gen_range(0..8)]
                    );
                    if rng.gen_bool(0.5) {
                        c.push(' ');
                        c.push_str(TAILS[rng.gen_range(0..6)]);
                    }
                    c
                })
                .collect();
            text.push_str(&parts.join(", and "));
            text.push('.');
        }
        text.push('\n');
    }
    std::fs::write(path, text)
        .map_err(|e| Error::Io { context: format!("{MODULE}: writing {}", path.display()), source: e })
}

/// The record of one line: `inputs` = `<s>` + ids, `targets` = ids + `</s>`.
fn line_record(vocab: &Vocabulary, line: &str) -> Result<Record> {
    let ids = vocab.encode(line.chars().map(String::from))?;
    Ok(Record::new()
        .with("inputs", Array::ids([&[START], &ids[..]].concat()))
        .with("targets", Array::ids([&ids[..], &[END]].concat())))
}

/// The model: embeddings, an LSTM over the padded batch, a projection to the vocabulary.
struct Model {
    embed: Embed,
    lstm: Lstm,
    output: Linear,
}

impl Model {
    fn new(scope: &Scope, vocab: i64, args: &Args) -> Result<Model> {
        Ok(Model {
            embed: Embed::named(scope, "embed", EmbedConfig::new(vocab, args.embed_dim))?,
            lstm: Lstm::named(scope, "lstm", LstmConfig::new(args.hidden).with_input_size(args.embed_dim))?,
            output: Linear::named(scope, "output", LinearConfig::new(vocab))?,
        })
    }

    /// The loss of a padded batch: `inputs [B, T]`, `targets [B, T]`, lengths `[B]`.
    fn loss(&self, batch: &PaddedBatch) -> Result<Tensor> {
        let (inputs, targets) = (batch.get("inputs")?, batch.get("targets")?);
        let embedded = self.embed.forward(&inputs.values)?;
        let options = UnrollOptions::train().with_lengths(&inputs.lengths);
        let (outputs, _) = dynamic_rnn(&self.lstm, &embedded, &options)?;
        let logits = self.output.forward(&outputs)?;
        let weights = sequence_mask(&targets.lengths, Some(targets.values.size()[1]))?
            .f_to_kind(Kind::Float)
            .ctx(MODULE)?;
        sequence_loss(&logits, &targets.values, &weights, &SequenceLossOptions::default())
    }

    /// Samples up to `n` characters after `<s>` (stopping at `</s>`), from its own generator.
    fn sample(&self, vocab: &Vocabulary, n: usize, seed: u64) -> Result<String> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state: State = self.lstm.initial_state(1)?;
        let (mut id, mut text) = (START, String::new());
        couplet::tch::no_grad(|| {
            for _ in 0..n {
                let x = self.embed.forward(&Tensor::from_slice(&[id]))?;
                let (h, next) = self.lstm.step(&x, &state, Mode::Eval)?;
                state = next;
                let probs = self.output.forward(&h)?.f_softmax(-1, Kind::Double).ctx(MODULE)?;
                let probs = Vec::<f64>::try_from(probs.f_flatten(0, -1).ctx(MODULE)?)
                    .map_err(|e| Error::Torch { module: MODULE.into(), source: e })?;
                let mut u: f64 = rng.gen();
                id = probs
                    .iter()
                    .position(|&p| {
                        u -= p;
                        u <= 0.0
                    })
                    .unwrap_or(probs.len() - 1) as i64;
                match id {
                    END => text.push('\n'),
                    i if i > END => text.push_str(vocab.token(i).unwrap_or("?")),
                    _ => {}
                }
            }
            Ok(text)
        })
    }
}

/// The pipeline's records: every line of `path` as a record.
fn records(path: PathBuf, vocab: &Vocabulary, max_line: usize) -> Dataset<Record> {
    let vocab = vocab.clone();
    text_lines(vec![path])
        .filter(move |l| !l.is_empty() && l.chars().count() <= max_line)
        .try_map(move |l| line_record(&vocab, &l))
}

/// Trains and samples; returns what it measured.
///
/// # Errors
/// A bad argument, an unreadable text file, libtorch errors.
pub fn run(args: &Args) -> Result<Report> {
    if args.steps == 0 || args.batch_size == 0 {
        return Err(Error::invalid(MODULE, "--steps and --batch-size must be > 0"));
    }
    let path = match &args.text {
        Some(p) => p.clone(),
        None => {
            let p = std::env::temp_dir().join(format!(
                "couplet-char-lm-corpus-{}-{}.txt",
                args.seed,
                std::process::id()
            ));
            generate_corpus(&p, args.corpus_lines, args.seed)?;
            p
        }
    };
    let lines = text_lines(vec![path.clone()]).collect()?;
    let config =
        VocabularyConfig { specials: SPECIALS.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let vocab = Vocabulary::build(lines.iter().flat_map(|l| l.chars().map(String::from)), &config)?;
    let data = records(path, &vocab, args.max_line).shuffle(10_000, args.seed)?;

    // Padding with and without buckets, over one epoch.
    let boundaries = vec![16, 32, 48, 64, 96, 128];
    let batch_sizes = vec![args.batch_size; boundaries.len() + 1];
    let plain = data.padded_batch(args.batch_size, PaddedBatchConfig::new())?.padding_report("inputs")?;
    let bucketed = |d: &Dataset<Record>| {
        d.bucket_by_sequence_length(
            |r| r.length("inputs"),
            boundaries.clone(),
            batch_sizes.clone(),
            BucketConfig::default(),
        )
    };
    let with_buckets = bucketed(&data)?.padding_report("inputs")?;
    println!(
        "{} lines, {} characters in the vocabulary; padding fraction: {:.1}% with padded_batch, {:.1}% with bucket_by_sequence_length",
        lines.len(),
        vocab.size(),
        100.0 * plain.padding_fraction(),
        100.0 * with_buckets.padding_fraction()
    );

    couplet::tch::manual_seed(args.seed as i64);
    let store = Store::new(Device::Cpu);
    let model = Model::new(&store.root(), vocab.size() as i64, args)?;
    let variables: Vec<Variable> = store.variables().into_iter().filter(Variable::trainable).collect();
    let mut optimizer = Adam::new(variables.clone(), AdamConfig::new(args.lr))?;
    // The training input: endless epochs, each reshuffled, bucketed, prefetched. A run resumed
    // at step N would read `batches.iter_from(N)`.
    let batches = bucketed(&data.repeat_forever())?.prefetch(4)?;
    let (mut losses, started) = (Vec::new(), Instant::now());
    for (step, batch) in (1..=args.steps).zip(batches.iter()) {
        let loss = model.loss(&batch?)?;
        optimizer.zero_grad();
        loss.f_backward().ctx(MODULE)?;
        clip_grad_norm(&variables, 5.0)?;
        optimizer.step()?;
        losses.push(loss.f_double_value(&[]).ctx(MODULE)?);
        if !args.quiet && (step % 50 == 0 || step == args.steps) {
            println!(
                "step {step}: loss {:.3} nats/char ({:.1} s)",
                losses[losses.len() - 1],
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let k = losses.len().min(20);
    let sample = model.sample(&vocab, args.sample_chars, args.seed)?;
    println!("sample:\n{sample}");
    Ok(Report {
        first_loss: mean(&losses[..k]),
        last_loss: mean(&losses[losses.len() - k..]),
        padding_plain: plain.padding_fraction(),
        padding_bucketed: with_buckets.padding_fraction(),
        sample,
    })
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(r) => println!(
            "loss {:.3} -> {:.3} nats/char; padding {:.1}% plain, {:.1}% bucketed",
            r.first_loss,
            r.last_loss,
            100.0 * r.padding_plain,
            100.0 * r.padding_bucketed
        ),
        Err(e) => {
            eprintln!("char_lm: {e}");
            std::process::exit(1);
        }
    }
}
