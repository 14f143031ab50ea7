//! The program: training with periodic validation and checkpoints, the final test, sample
//! translations, the attention plot, and `--translate`.

use super::batch::{sources, Batch};
use super::data::{Dataset, Example, Vocab};
use super::model::{ModelConfig, Seq2Seq};
use super::{plot, Args, DecodeKind};
use couplet::attention::SampleOptions;
use couplet::optim::{clip_grad_norm, Adam, AdamConfig, Optimizer};
use couplet::rnn::{sequence_loss, SequenceLossOptions};
use couplet::tch::{self, Device, Kind, Tensor};
use couplet::train::hooks::{Goal, Hook, LogSink, MetricTargetHook, ProgressBarHook, StopAfterSecondsHook};
use couplet::train::summary::SummaryWriter;
use couplet::train::{
    remove_run_files, step_seed, EvalContext, EvalSpec, Evaluation as TrainerEvaluation, Model, RunConfig,
    RunContext, StepContext, StepOutput, Trainable, Trainer,
};
use couplet::{Error, Mode, Result, Store, TorchContext, Variable};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

const MODULE: &str = "seq2seq";
/// The longest output decoders may produce: 10 ISO characters and the end token, plus one
/// spare step so that a model that forgets to stop is visibly wrong rather than cut right.
pub const MAX_DECODE: i64 = 12;
/// Rows per evaluation batch.
const EVAL_BATCH: usize = 500;
/// How many checkpoints the manager keeps.
const KEEP: usize = 3;
/// How many test inputs get an attention heatmap.
const PLOTS: usize = 3;

/// One evaluation of the model on a set of examples.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The training step the model had taken.
    pub step: u64,
    /// Teacher-forced cross-entropy per target token (end token included).
    pub loss: f64,
    /// Teacher-forced per-token accuracy (the argmax is the right character).
    pub token_accuracy: f64,
    /// The fraction of examples whose greedy decoding is exactly the ISO date.
    pub exact_match: f64,
}

/// The beam search results for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// The text decoded.
    pub input: String,
    /// The right answer, when known.
    pub expected: Option<String>,
    /// The translations, best first: `(text, score)` with score the log-probability (`--beam-width`
    /// beams, or one with `--decode greedy` / `--decode sample`).
    pub beams: Vec<(String, f64)>,
}

/// What a run did, for the caller (tests) to check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The step training started from (the restored checkpoint's, or 0).
    pub start_step: u64,
    /// The step training ended at (after the last optimizer step).
    pub step: u64,
    /// Validations: one before the first step, then every `--eval-every` steps and at the end.
    pub validations: Vec<Evaluation>,
    /// The final evaluation on the test set (not for `--translate`).
    pub test: Option<Evaluation>,
    /// Seconds spent in the training loop (validation included).
    pub train_seconds: f64,
    /// The latest checkpoint written or read.
    pub checkpoint: Option<PathBuf>,
    /// Beam search results: samples of the test set, or the `--translate` inputs.
    pub translations: Vec<Translation>,
    /// The attention heatmaps written.
    pub plots: Vec<PathBuf>,
}

/// Prints unless `--quiet`.
struct Out {
    sink: Option<LogSink>,
}

impl Out {
    fn line(&self, text: &str) {
        if let Some(sink) = &self.sink {
            sink.line(text);
        }
    }
}

/// The model as the [`Trainer`] trains it: the encoder-decoder, Adam over every trainable
/// variable and gradient-norm clipping.
struct DateReader<'a> {
    store: Store,
    model: Seq2Seq,
    adam: Adam,
    clip_norm: f64,
    vocabs: &'a Vocabs<'a>,
}

impl Trainable for DateReader<'_> {
    fn store(&self) -> &Store {
        &self.store
    }
    fn optimizers(&self) -> Vec<(&str, &dyn Optimizer)> {
        vec![("adam", &self.adam)]
    }
    fn optimizers_mut(&mut self) -> Vec<(&str, &mut dyn Optimizer)> {
        vec![("adam", &mut self.adam)]
    }
}

impl Model for DateReader<'_> {
    type Batch = (Batch, Vec<Example>);

    fn train_step(&mut self, (batch, _): Self::Batch, ctx: &mut StepContext) -> Result<StepOutput> {
        let (loss, logits) = loss(&self.model, &batch, ctx.mode())?;
        self.adam.zero_grad();
        loss.f_backward().ctx(MODULE)?;
        clip_grad_norm(self.adam.variables(), self.clip_norm)?;
        self.adam.step()?;
        let (correct, total) = token_hits(&logits, &batch)?;
        Ok(StepOutput::new()
            .with("loss", &loss)
            .with("token_accuracy", &Tensor::from(correct / total.max(1.0))))
    }

    fn eval_step(&mut self, (batch, examples): Self::Batch, ctx: &mut EvalContext) -> Result<()> {
        let (loss, logits) = loss(&self.model, &batch, ctx.mode())?;
        let (correct, tokens) = token_hits(&logits, &batch)?;
        let decoded =
            self.model.greedy(&batch.source, &batch.source_lengths, &batch.source_mask, MAX_DECODE)?;
        let exact = decoded
            .tokens
            .iter()
            .zip(&examples)
            .filter(|(ids, e)| self.vocabs.target.decode(ids) == e.target && ids.contains(&super::data::END))
            .count();
        ctx.mean("loss", loss.f_double_value(&[]).ctx(MODULE)?, tokens)?;
        ctx.mean("token_accuracy", correct / tokens.max(1.0), tokens)?;
        ctx.mean("exact_match", exact as f64 / examples.len().max(1) as f64, examples.len() as f64)
    }
}

/// Prints each validation as it comes.
struct PrintValidations<'a> {
    out: &'a Out,
}

impl Hook for PrintValidations<'_> {
    fn after_evaluation(&mut self, _ctx: &mut RunContext, evaluation: &TrainerEvaluation) -> Result<()> {
        self.out.line(&describe("validation", &Evaluation::from(evaluation)));
        Ok(())
    }
}

impl From<&TrainerEvaluation> for Evaluation {
    fn from(e: &TrainerEvaluation) -> Self {
        let get = |name: &str| e.metrics.get(name).copied().unwrap_or(f64::NAN);
        Evaluation {
            step: e.global_step,
            loss: get("loss"),
            token_accuracy: get("token_accuracy"),
            exact_match: get("exact_match"),
        }
    }
}

/// Runs the program `args` describe: `--translate`, or training then testing.
///
/// # Errors
/// A bad argument, an unavailable device, a checkpoint that does not fit the model (another
/// `--attention` or sizes), a missing checkpoint for `--translate`, or an I/O error.
pub fn run(args: &Args) -> Result<Report> {
    check_args(args)?;
    let device = args.device.device()?;
    tch::manual_seed(args.seed as i64);
    let (source_vocab, target_vocab) = (Vocab::input(), Vocab::target());
    let store = Store::new(device);
    let config = ModelConfig {
        source_vocab: source_vocab.size(),
        target_vocab: target_vocab.size(),
        embed_dim: args.embed_dim,
        encoder_hidden: args.encoder_hidden,
        decoder_hidden: args.decoder_hidden,
        attention: args.attention,
    };
    let model = Seq2Seq::new(&store.root(), &config)?;
    let vocabs = Vocabs { source: &source_vocab, target: &target_vocab, device };
    // Lazily sized variables are created by a first call, so that every variable exists
    // before a checkpoint is restored or the optimizer is built.
    let probe = Example {
        input: "4 Mar 17".to_string(),
        target: "2017-03-04".to_string(),
        date: super::data::Date { year: 2017, month: 3, day: 4 },
        format: 7,
    };
    tch::no_grad(|| model.logits(&vocabs.batch(&[&probe])?, Mode::Eval).map(drop))?;
    if args.translate.is_empty() && !args.resume {
        remove_run_files(&args.logdir)?;
    }
    let variables = store.variables().into_iter().filter(Variable::trainable).collect::<Vec<_>>();
    let parameters: i64 = variables.iter().map(|v| v.tensor().numel() as i64).sum();
    let adam = Adam::new(variables, AdamConfig::new(args.lr))?;
    let reader = DateReader { store, model, adam, clip_norm: args.clip_norm, vocabs: &vocabs };
    let run_config = RunConfig::new(&args.logdir)
        .with_seed(args.seed)
        .with_device(device)
        .with_threads(args.threads)
        .with_save_checkpoints_steps(args.eval_every)
        .with_keep_checkpoint_max(Some(KEEP))
        .with_save_summary_steps(10)
        .with_log_step_count_steps(0);
    let mut trainer = Trainer::new(reader, run_config)?;
    let restored = trainer.restore().map_err(flag_hint)?;
    let progress = if args.quiet { ProgressBarHook::hidden() } else { ProgressBarHook::new(10)? };
    let out = Out { sink: (!args.quiet).then(|| LogSink::Bar(progress.bar())) };
    if !args.translate.is_empty() {
        return translate(args, &mut trainer, restored, &out);
    }

    let mut report = Report { start_step: restored.unwrap_or(0), ..Report::default() };
    if let Some(step) = restored {
        out.line(&format!("resuming from step {step}"));
    }
    let data = Dataset::generate(args.seed, args.train_size, args.valid_size, args.test_size)?;
    out.line(&format!(
        "data: {} train / {} validation / {} test examples (disjoint), e.g. {:?} -> {:?}; device {device:?}",
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        data.train[0].input,
        data.train[0].target
    ));
    out.line(&format!("model: {parameters} parameters, {:?} attention", args.attention));

    train(args, &mut trainer, &vocabs, &data, progress, &out, &mut report)?;

    let test = Evaluation::from(&trainer.evaluate_named(eval_batches(&vocabs, &data.test), "test")?);
    let writer = trainer.summary_writer()?;
    let model = &trainer.model().model;
    let samples: Vec<&Example> = data.test.iter().take(args.samples).collect();
    report.translations = translate_examples(model, &vocabs, args, &samples)?;
    let examples = &data.test[..PLOTS.min(data.test.len())];
    report.plots = plot_attention(args, model, &vocabs, examples, &writer, report.step)?;
    print_translations(&out, &report.translations);
    out.line(&format!(
        "test: exact match {:.2}% ({} examples), token accuracy {:.2}%, loss {:.4}",
        100.0 * test.exact_match,
        data.test.len(),
        100.0 * test.token_accuracy,
        test.loss
    ));
    report.test = Some(test);
    out.line(&format!("trained {} steps in {:.1} s", report.step - report.start_step, report.train_seconds));
    if let Some(path) = &report.checkpoint {
        out.line(&format!("checkpoint: {}", path.display()));
    }
    for path in &report.plots {
        out.line(&format!("attention heatmap: {}", path.display()));
    }
    out.line(&format!("summaries: tensorboard --logdir {}", args.logdir.display()));
    Ok(report)
}

/// A checkpoint of another model says which flags must match.
fn flag_hint(e: Error) -> Error {
    match e {
        Error::Checkpoint { path, message } => Error::checkpoint(
            path,
            format!(
                "{message} (the model flags must match the checkpoint's: --attention, --embed-dim, \
                 --encoder-hidden, --decoder-hidden)"
            ),
        ),
        other => other,
    }
}

fn check_args(args: &Args) -> Result<()> {
    let bad = |msg: &str| Err(Error::invalid(MODULE, msg));
    if args.translate.iter().any(|t| t.chars().count() == 0) {
        return bad("--translate needs a non-empty text");
    }
    if args.batch_size == 0 || args.eval_every == 0 {
        return bad("--batch-size and --eval-every must be > 0");
    }
    if args.train_size < args.batch_size || args.valid_size == 0 || args.test_size == 0 {
        return bad("--train-size must be at least --batch-size, --valid-size and --test-size > 0");
    }
    if args.beam_width < 1 || args.threads < 1 {
        return bad("--beam-width and --threads must be >= 1");
    }
    if args.max_minutes.is_nan() || args.max_minutes <= 0.0 {
        return bad("--max-minutes must be > 0");
    }
    if !(args.temperature.is_finite() && args.temperature > 0.0) {
        return bad("--temperature must be finite and > 0");
    }
    Ok(())
}

/// The vocabularies and the device, to turn text into batches.
pub struct Vocabs<'a> {
    /// The input characters.
    pub source: &'a Vocab,
    /// The ISO characters.
    pub target: &'a Vocab,
    /// The model's device.
    pub device: Device,
}

impl Vocabs<'_> {
    fn batch(&self, examples: &[&Example]) -> Result<Batch> {
        Batch::new(examples, self.source, self.target, self.device)
    }
}

/// The teacher-forced loss (scalar tensor) of a batch.
fn loss(model: &Seq2Seq, batch: &Batch, mode: Mode) -> Result<(Tensor, Tensor)> {
    let logits = model.logits(batch, mode)?;
    let loss = sequence_loss(
        &logits,
        &batch.decoder_targets,
        &batch.target_weights,
        &SequenceLossOptions::default(),
    )?;
    Ok((loss, logits))
}

/// The training batches from step `start + 1` on: epoch `e` visits the training set in the
/// order of a permutation seeded by `(seed, e)`, and step `s` takes the `batch_size`
/// examples from position `(s - 1) · batch_size` of that endless stream, so resuming at any
/// step reads exactly the batches an uninterrupted run would.
fn train_batches<'a>(
    data: &'a [Example],
    vocabs: &'a Vocabs<'a>,
    batch_size: usize,
    seed: u64,
    start: u64,
) -> impl Iterator<Item = Result<(Batch, Vec<Example>)>> + 'a {
    let n = data.len();
    let order = move |epoch: u64| {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(step_seed(seed, epoch)));
        order
    };
    let mut position = start as u128 * batch_size as u128;
    let mut epoch = (position / n as u128) as u64;
    let mut current = order(epoch);
    std::iter::from_fn(move || {
        let mut examples = Vec::with_capacity(batch_size);
        while examples.len() < batch_size {
            let e = (position / n as u128) as u64;
            if e != epoch {
                epoch = e;
                current = order(epoch);
            }
            examples.push(&data[current[(position % n as u128) as usize]]);
            position += 1;
        }
        Some(vocabs.batch(&examples).map(|b| (b, Vec::new())))
    })
}

/// Evaluation batches of `EVAL_BATCH` examples, with the examples (for exact match).
fn eval_batches<'a>(
    vocabs: &'a Vocabs<'a>,
    examples: &'a [Example],
) -> impl Iterator<Item = Result<(Batch, Vec<Example>)>> + 'a {
    examples.chunks(EVAL_BATCH).map(move |chunk| {
        let refs: Vec<&Example> = chunk.iter().collect();
        Ok((vocabs.batch(&refs)?, chunk.to_vec()))
    })
}

/// Training with validation every `--eval-every` steps: to `--steps`, within
/// `--max-minutes`, or until the validation exact match reaches `--target-accuracy`.
fn train(
    args: &Args,
    trainer: &mut Trainer<DateReader>,
    vocabs: &Vocabs,
    data: &Dataset,
    progress: ProgressBarHook,
    out: &Out,
    report: &mut Report,
) -> Result<()> {
    let started = Instant::now();
    let first = Evaluation::from(&trainer.evaluate(eval_batches(vocabs, &data.valid))?);
    out.line(&describe("validation", &first));
    let reached = first.exact_match >= args.target_accuracy;
    report.validations.push(first);
    let (batch_size, seed) = (args.batch_size, args.seed);
    let input_fn = |start: u64| Ok(train_batches(&data.train, vocabs, batch_size, seed, start));
    let hooks: Vec<Box<dyn Hook + '_>> = vec![
        Box::new(progress),
        Box::new(StopAfterSecondsHook::new(args.max_minutes * 60.0)?),
        Box::new(MetricTargetHook::new("exact_match", Goal::Maximize, args.target_accuracy)?),
        Box::new(PrintValidations { out }),
    ];
    let steps = if reached { report.start_step } else { args.steps };
    let result = trainer.train_and_evaluate(
        input_fn,
        || Ok(eval_batches(vocabs, &data.valid)),
        steps,
        EvalSpec::every(args.eval_every),
        hooks,
    )?;
    report.validations.extend(result.evaluations.iter().map(Evaluation::from));
    let step = result.global_step;
    if report.validations.last().map(|v| v.step) != Some(step) {
        let last = Evaluation::from(&trainer.evaluate(eval_batches(vocabs, &data.valid))?);
        out.line(&describe("validation", &last));
        report.validations.push(last);
    }
    report.step = step;
    report.checkpoint = result.checkpoint.or(trainer.checkpoints().latest()?);
    report.train_seconds = started.elapsed().as_secs_f64();
    let why = if reached { "target accuracy reached".to_string() } else { result.stop_reason };
    out.line(&format!("training stopped at step {step} ({why})"));
    Ok(())
}

fn describe(what: &str, e: &Evaluation) -> String {
    format!(
        "step {:>5} {what}: loss {:.4}, token accuracy {:.2}%, exact match {:.2}%",
        e.step,
        e.loss,
        100.0 * e.token_accuracy,
        100.0 * e.exact_match
    )
}

/// `(correct, total)` target tokens of a teacher-forced batch (argmax of the logits).
fn token_hits(logits: &Tensor, batch: &Batch) -> Result<(f64, f64)> {
    tch::no_grad(|| {
        let hits = logits
            .f_argmax(-1, false)
            .and_then(|p| p.f_eq_tensor(&batch.decoder_targets))
            .and_then(|h| h.f_to_kind(Kind::Float))
            .and_then(|h| h.f_mul(&batch.target_weights))
            .and_then(|h| h.f_sum(Kind::Double))
            .ctx(MODULE)?;
        let total = batch.target_weights.f_sum(Kind::Double).ctx(MODULE)?;
        Ok((hits.f_double_value(&[]).ctx(MODULE)?, total.f_double_value(&[]).ctx(MODULE)?))
    })
}

/// Decodes `examples` as `--decode` says.
fn translate_examples(
    model: &Seq2Seq,
    vocabs: &Vocabs,
    args: &Args,
    examples: &[&Example],
) -> Result<Vec<Translation>> {
    let texts: Vec<&str> = examples.iter().map(|e| e.input.as_str()).collect();
    let mut translations = decode_texts(model, vocabs, args, &texts)?;
    for (t, e) in translations.iter_mut().zip(examples) {
        t.expected = Some(e.target.clone());
    }
    Ok(translations)
}

/// Decodes raw texts as `--decode` says: `--beam-width` beams, or one greedy or sampled
/// (`--temperature`, `--seed`) translation each.
fn decode_texts(model: &Seq2Seq, vocabs: &Vocabs, args: &Args, texts: &[&str]) -> Result<Vec<Translation>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    tch::no_grad(|| {
        let (ids, lengths, mask) = sources(texts, vocabs.source, vocabs.device)?;
        let beams = match args.decode {
            DecodeKind::Beam => model.beam(&ids, &lengths, &mask, args.beam_width, MAX_DECODE)?,
            DecodeKind::Greedy => model.decode_one(&ids, &lengths, &mask, None, MAX_DECODE)?,
            DecodeKind::Sample => {
                let options =
                    SampleOptions::new(0, 1).with_temperature(args.temperature).with_seed(args.seed);
                model.decode_one(&ids, &lengths, &mask, Some(&options), MAX_DECODE)?
            }
        };
        Ok(texts
            .iter()
            .zip(beams)
            .map(|(text, beams)| Translation {
                input: text.to_string(),
                expected: None,
                beams: beams.into_iter().map(|(ids, score)| (vocabs.target.decode(&ids), score)).collect(),
            })
            .collect())
    })
}

fn print_translations(out: &Out, translations: &[Translation]) {
    for t in translations {
        let best = t.beams.first().map_or("", |b| b.0.as_str());
        let mark = match &t.expected {
            Some(e) if e == best => " (right)",
            Some(_) => " (WRONG)",
            None => "",
        };
        out.line(&format!("{:>32} -> {best}{mark}", format!("{:?}", t.input)));
        for (text, score) in &t.beams {
            out.line(&format!("{:>36}{text}  score {score:.4}", ""));
        }
    }
}

/// `--translate`: decodes the texts (as `--decode` says) with the restored checkpoint of step
/// `restored`.
fn translate(
    args: &Args,
    trainer: &mut Trainer<DateReader>,
    restored: Option<u64>,
    out: &Out,
) -> Result<Report> {
    let step = restored.ok_or_else(|| {
        Error::invalid(
            MODULE,
            format!("--translate needs a checkpoint, and {} has none: train first", args.logdir.display()),
        )
    })?;
    let checkpoint = trainer.checkpoints().latest()?;
    let reader = trainer.model();
    let (model, vocabs) = (&reader.model, reader.vocabs);
    if let Some(path) = &checkpoint {
        out.line(&format!("checkpoint: {} (step {step})", path.display()));
    }
    let texts: Vec<&str> = args.translate.iter().map(String::as_str).collect();
    let translations = decode_texts(model, vocabs, args, &texts)?;
    print_translations(out, &translations);
    Ok(Report { start_step: step, step, checkpoint, translations, ..Report::default() })
}

/// Writes one heatmap per example, output characters (rows) against input characters
/// (columns), as `attention_{i}.png` in `--logdir` and as the TensorBoard image
/// `attention/{i}` at `step`.
fn plot_attention(
    args: &Args,
    model: &Seq2Seq,
    vocabs: &Vocabs,
    examples: &[Example],
    writer: &SummaryWriter,
    step: u64,
) -> Result<Vec<PathBuf>> {
    let dir = &args.logdir;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Io { context: format!("creating {}", dir.display()), source: e })?;
    tch::no_grad(|| {
        let refs: Vec<&Example> = examples.iter().collect();
        let batch = vocabs.batch(&refs)?;
        let decoded = model.greedy(&batch.source, &batch.source_lengths, &batch.source_mask, MAX_DECODE)?;
        let mut paths = Vec::new();
        for (i, example) in examples.iter().enumerate() {
            let ids = &decoded.tokens[i];
            let out_len = ids.iter().position(|&t| t == super::data::END).map_or(ids.len(), |p| p + 1);
            let in_len = batch.source_lengths[i];
            let weights =
                decoded.alignments.f_get(i as i64).ctx(MODULE)?.f_narrow(0, 0, out_len as i64).ctx(MODULE)?;
            let weights = weights.f_narrow(1, 0, in_len).ctx(MODULE)?.f_to_kind(Kind::Float).ctx(MODULE)?;
            let matrix: Vec<Vec<f32>> = (0..out_len as i64)
                .map(|r| {
                    Vec::<f32>::try_from(weights.get(r))
                        .map_err(|e| Error::Torch { module: MODULE.into(), source: e })
                })
                .collect::<Result<_>>()?;
            let rows: Vec<String> = ids[..out_len].iter().map(|&t| vocabs.target.label(t)).collect();
            // Spaces are drawn as `_` so that every column has a visible label.
            let cols: Vec<String> =
                example.input.chars().map(|c| if c == ' ' { "_".into() } else { c.to_string() }).collect();
            let path = dir.join(format!("attention_{}.png", i + 1));
            let title = format!("{} -> {}", example.input, vocabs.target.decode(ids));
            plot::heatmap(&matrix, &rows, &cols, &title, &path)
                .map_err(|e| Error::Io { context: format!("writing {}", path.display()), source: e })?;
            let png = std::fs::read(&path)
                .map_err(|e| Error::Io { context: format!("reading {}", path.display()), source: e })?;
            writer.add_image(&format!("attention/{}", i + 1), &png, step as i64)?;
            paths.push(path);
        }
        writer.flush()?;
        Ok(paths)
    })
}
