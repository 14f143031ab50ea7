//! The program: training with periodic validation and checkpoints, the final test, sample
//! translations, the attention plot, and `--translate`.

use super::batch::{sources, Batch};
use super::data::{Dataset, Example, Vocab};
use super::model::{ModelConfig, Seq2Seq};
use super::{plot, Args};
use couplet::optim::{clip_grad_norm, Adam, AdamConfig, Optimizer};
use couplet::rnn::{sequence_loss, SequenceLossOptions};
use couplet::tch::{self, Device, Kind, Tensor};
use couplet::{CheckpointManager, Error, Mode, Result, Store, TorchContext, Variable};
use indicatif::{ProgressBar, ProgressStyle};
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
    /// The beams, best first: `(text, score)` with score the length-normalised log-probability.
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
    quiet: bool,
}

impl Out {
    fn line(&self, bar: Option<&ProgressBar>, text: &str) {
        match (self.quiet, bar) {
            (true, _) => {}
            (false, Some(bar)) if !bar.is_hidden() => bar.println(text),
            (false, _) => println!("{text}"),
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
    tch::set_num_threads(args.threads);
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
    let out = Out { quiet: args.quiet };
    let vocabs = Vocabs { source: &source_vocab, target: &target_vocab, device };
    // Lazily sized variables are created by a first call, so that every variable exists
    // before a checkpoint is restored or an optimizer is built.
    let probe = Example {
        input: "4 Mar 17".to_string(),
        target: "2017-03-04".to_string(),
        date: super::data::Date { year: 2017, month: 3, day: 4 },
        format: 7,
    };
    tch::no_grad(|| model.logits(&vocabs.batch(&[&probe])?, Mode::Eval).map(drop))?;
    let manager = CheckpointManager::new(&args.checkpoint_dir, Some(KEEP))?;
    if !args.translate.is_empty() {
        return translate(args, &model, &store, &manager, &vocabs, &out);
    }

    let mut report = Report::default();
    if args.resume {
        report.start_step = restore(&manager, &store)?.unwrap_or(0);
        report.checkpoint = manager.latest()?;
        out.line(None, &format!("resuming from step {}", report.start_step));
    } else {
        let old = manager.checkpoints()?;
        if !old.is_empty() {
            out.line(
                None,
                &format!(
                    "starting afresh: deleting {} checkpoints in {}",
                    old.len(),
                    args.checkpoint_dir.display()
                ),
            );
        }
        for (_, path) in old {
            std::fs::remove_file(&path)
                .map_err(|e| Error::checkpoint(&path, format!("cannot delete: {e}")))?;
        }
    }

    let data = Dataset::generate(args.seed, args.train_size, args.valid_size, args.test_size)?;
    out.line(
        None,
        &format!(
            "data: {} train / {} validation / {} test examples (disjoint), e.g. {:?} -> {:?}; device {device:?}",
            data.train.len(),
            data.valid.len(),
            data.test.len(),
            data.train[0].input,
            data.train[0].target
        ),
    );
    let variables = store.variables().into_iter().filter(Variable::trainable).collect::<Vec<_>>();
    let parameters: i64 = variables.iter().map(|v| v.tensor().numel() as i64).sum();
    out.line(None, &format!("model: {parameters} parameters, {:?} attention", args.attention));

    train(args, &model, &store, &manager, &vocabs, &data, &variables, &out, &mut report)?;

    let test = evaluate(&model, &vocabs, &data.test, report.step)?;
    let samples: Vec<&Example> = data.test.iter().take(args.samples).collect();
    report.translations = beam_translate(&model, &vocabs, args.beam_width, &samples)?;
    report.plots = plot_attention(args, &model, &vocabs, &data.test[..PLOTS.min(data.test.len())])?;
    print_translations(&out, &report.translations);
    out.line(
        None,
        &format!(
            "test: exact match {:.2}% ({} examples), token accuracy {:.2}%, loss {:.4}",
            100.0 * test.exact_match,
            data.test.len(),
            100.0 * test.token_accuracy,
            test.loss
        ),
    );
    report.test = Some(test);
    out.line(
        None,
        &format!("trained {} steps in {:.1} s", report.step - report.start_step, report.train_seconds),
    );
    if let Some(path) = &report.checkpoint {
        out.line(None, &format!("checkpoint: {}", path.display()));
    }
    for path in &report.plots {
        out.line(None, &format!("attention heatmap: {}", path.display()));
    }
    Ok(report)
}

/// Restores the latest checkpoint into `store`, if there is one, and returns its step; a
/// checkpoint of another model says which flags must match.
fn restore(manager: &CheckpointManager, store: &Store) -> Result<Option<u64>> {
    manager.restore_latest(store).map_err(|e| match e {
        Error::Checkpoint { path, message } => Error::checkpoint(
            path,
            format!(
                "{message} (the model flags must match the checkpoint's: --attention, --embed-dim, \
                 --encoder-hidden, --decoder-hidden)"
            ),
        ),
        other => other,
    })
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

/// The training loop: from `report.start_step` to `--steps`, within `--max-minutes`.
#[allow(clippy::too_many_arguments)]
fn train(
    args: &Args,
    model: &Seq2Seq,
    store: &Store,
    manager: &CheckpointManager,
    vocabs: &Vocabs,
    data: &Dataset,
    variables: &[Variable],
    out: &Out,
    report: &mut Report,
) -> Result<()> {
    let mut optimizer = Adam::new(variables.to_vec(), AdamConfig::new(args.lr))?;
    if report.start_step > 0 {
        // Resuming: Adam's moments and step counts come back too, so training continues
        // exactly where it stopped (the model was restored from the same file).
        manager.restore_latest_with_optimizers(store, &mut [("adam", &mut optimizer)])?;
    }
    let mut rng = StdRng::seed_from_u64(args.seed ^ report.start_step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let mut cursor = order.len();
    let budget = args.max_minutes * 60.0;
    let started = Instant::now();
    let mut step = report.start_step;

    let validation = evaluate(model, vocabs, &data.valid, step)?;
    out.line(None, &describe("validation", &validation));
    let mut best = validation.exact_match;
    report.validations.push(validation);

    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(args.steps.max(step)) };
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:25}] {pos}/{len} steps, {per_sec}, eta {eta} | {msg}",
    )
    .map_err(|e| Error::invalid(MODULE, format!("progress bar template: {e}")))?
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_position(step);
    bar.reset_eta();

    let (mut loss_sum, mut correct, mut tokens) = (0.0, 0.0, 0.0);
    while step < args.steps && started.elapsed().as_secs_f64() < budget && best < args.target_accuracy {
        let mut examples = Vec::with_capacity(args.batch_size);
        while examples.len() < args.batch_size {
            if cursor == order.len() {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            examples.push(&data.train[order[cursor]]);
            cursor += 1;
        }
        let batch = vocabs.batch(&examples)?;
        let (loss, logits) = loss(model, &batch, Mode::Train)?;
        optimizer.zero_grad();
        loss.f_backward().ctx(MODULE)?;
        clip_grad_norm(variables, args.clip_norm)?;
        optimizer.step()?;
        step += 1;
        bar.set_position(step);

        let (c, n) = token_hits(&logits, &batch)?;
        loss_sum += loss.f_double_value(&[]).ctx(MODULE)? * n;
        correct += c;
        tokens += n;
        if step % 10 == 0 {
            let left = (budget - started.elapsed().as_secs_f64()).max(0.0);
            bar.set_message(format!(
                "loss {:.4}, token acc {:.1}%, val exact {:.1}%, budget {:.0} s left",
                loss_sum / tokens,
                100.0 * correct / tokens,
                100.0 * best,
                left
            ));
            (loss_sum, correct, tokens) = (0.0, 0.0, 0.0);
        }
        if step % args.eval_every == 0 {
            let validation = evaluate(model, vocabs, &data.valid, step)?;
            out.line(Some(&bar), &describe("validation", &validation));
            best = best.max(validation.exact_match);
            report.validations.push(validation);
            report.checkpoint = Some(manager.save_with_optimizers(store, &[("adam", &optimizer)], step)?);
        }
    }
    bar.finish_and_clear();
    if report.validations.last().map(|v| v.step) != Some(step) {
        let validation = evaluate(model, vocabs, &data.valid, step)?;
        out.line(None, &describe("validation", &validation));
        report.validations.push(validation);
    }
    if report.checkpoint.is_none() || manager.latest_step()? != Some(step) {
        report.checkpoint = Some(manager.save_with_optimizers(store, &[("adam", &optimizer)], step)?);
    }
    report.step = step;
    report.train_seconds = started.elapsed().as_secs_f64();
    let why = if step >= args.steps {
        "step limit"
    } else if best >= args.target_accuracy {
        "target accuracy reached"
    } else {
        "time budget spent"
    };
    out.line(None, &format!("training stopped at step {step} ({why})"));
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

/// Teacher-forced loss and token accuracy, and greedy exact match, over `examples`.
pub fn evaluate(model: &Seq2Seq, vocabs: &Vocabs, examples: &[Example], step: u64) -> Result<Evaluation> {
    tch::no_grad(|| {
        let (mut loss_sum, mut correct, mut tokens, mut exact) = (0.0, 0.0, 0.0, 0usize);
        for chunk in examples.chunks(EVAL_BATCH) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let batch = vocabs.batch(&refs)?;
            let (loss, logits) = loss(model, &batch, Mode::Eval)?;
            let (c, n) = token_hits(&logits, &batch)?;
            loss_sum += loss.f_double_value(&[]).ctx(MODULE)? * n;
            correct += c;
            tokens += n;
            let decoded =
                model.greedy(&batch.source, &batch.source_lengths, &batch.source_mask, MAX_DECODE)?;
            exact += decoded
                .tokens
                .iter()
                .zip(chunk)
                .filter(|(ids, e)| vocabs.target.decode(ids) == e.target && ids.contains(&super::data::END))
                .count();
        }
        let n = examples.len().max(1) as f64;
        Ok(Evaluation {
            step,
            loss: loss_sum / tokens.max(1.0),
            token_accuracy: correct / tokens.max(1.0),
            exact_match: exact as f64 / n,
        })
    })
}

/// Beam search over `examples`.
fn beam_translate(
    model: &Seq2Seq,
    vocabs: &Vocabs,
    width: i64,
    examples: &[&Example],
) -> Result<Vec<Translation>> {
    let texts: Vec<&str> = examples.iter().map(|e| e.input.as_str()).collect();
    let mut translations = beam_texts(model, vocabs, width, &texts)?;
    for (t, e) in translations.iter_mut().zip(examples) {
        t.expected = Some(e.target.clone());
    }
    Ok(translations)
}

/// Beam search over raw texts.
fn beam_texts(model: &Seq2Seq, vocabs: &Vocabs, width: i64, texts: &[&str]) -> Result<Vec<Translation>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    tch::no_grad(|| {
        let (ids, lengths, mask) = sources(texts, vocabs.source, vocabs.device)?;
        let beams = model.beam(&ids, &lengths, &mask, width, MAX_DECODE)?;
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
        out.line(None, &format!("{:>32} -> {best}{mark}", format!("{:?}", t.input)));
        for (text, score) in &t.beams {
            out.line(None, &format!("{:>36}{text}  score {score:.4}", ""));
        }
    }
}

/// `--translate`: restores the latest checkpoint and beam-decodes the texts.
fn translate(
    args: &Args,
    model: &Seq2Seq,
    store: &Store,
    manager: &CheckpointManager,
    vocabs: &Vocabs,
    out: &Out,
) -> Result<Report> {
    let step = restore(manager, store)?.ok_or_else(|| {
        Error::invalid(
            MODULE,
            format!(
                "--translate needs a checkpoint, and {} has none: train first",
                args.checkpoint_dir.display()
            ),
        )
    })?;
    let checkpoint = manager.latest()?;
    if let Some(path) = &checkpoint {
        out.line(None, &format!("checkpoint: {} (step {step})", path.display()));
    }
    let texts: Vec<&str> = args.translate.iter().map(String::as_str).collect();
    let translations = beam_texts(model, vocabs, args.beam_width, &texts)?;
    print_translations(out, &translations);
    Ok(Report { start_step: step, step, checkpoint, translations, ..Report::default() })
}

/// Writes one heatmap per example: output characters (rows) against input characters (columns).
fn plot_attention(
    args: &Args,
    model: &Seq2Seq,
    vocabs: &Vocabs,
    examples: &[Example],
) -> Result<Vec<PathBuf>> {
    let dir = &args.plot_dir;
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
            paths.push(path);
        }
        Ok(paths)
    })
}
