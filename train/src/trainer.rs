//! [`Trainer`]: Estimator's `train` / `evaluate` / `predict` / `train_and_evaluate` over a
//! user's [`Model`], resumable from its model directory exactly.

use crate::config::RunConfig;
use crate::context::{EvalContext, StepContext};
use crate::hooks::{
    CheckpointSaverHook, Hook, LogSink, LoggingHook, RunContext, StepCounterHook, SummarySaverHook,
};
use crate::model::{Model, Predictor, StepOutput};
use crate::schedule::Schedule;
use crate::summary::SummaryWriter;
use couplet_modules::{CheckpointManager, CheckpointManagerConfig, Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const MODULE: &str = "trainer";

/// One evaluation's metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The global step of the evaluated model.
    pub global_step: u64,
    /// The metrics by name: the weighted means of [`EvalContext::mean`] and the model's
    /// [`Model::eval_end`] values.
    pub metrics: BTreeMap<String, f64>,
    /// How many batches were evaluated.
    pub batches: u64,
}

/// What a `train` call did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// The global step training started from (the restored checkpoint's, or 0).
    pub start_step: u64,
    /// The global step training ended at.
    pub global_step: u64,
    /// Why it stopped: `max_steps`, the input ran out, or a hook's reason.
    pub stop_reason: String,
    /// The evaluations of `train_and_evaluate`, in order.
    pub evaluations: Vec<Evaluation>,
    /// The latest checkpoint in the model directory at the end.
    pub checkpoint: Option<PathBuf>,
}

/// When `train_and_evaluate` evaluates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalSpec {
    /// Evaluate (and checkpoint) every this many global steps. Default 1000.
    pub every_steps: u64,
    /// Also evaluate before the first step of the call. Default `false`.
    pub at_start: bool,
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec { every_steps: 1000, at_start: false }
    }
}

impl EvalSpec {
    /// Evaluates every `steps` steps.
    pub fn every(steps: u64) -> Self {
        EvalSpec { every_steps: steps, ..Default::default() }
    }
    /// Sets whether to evaluate before the first step.
    pub fn with_at_start(mut self, at_start: bool) -> Self {
        self.at_start = at_start;
        self
    }
}

/// Trains, evaluates and predicts with a [`Model`], as TensorFlow's Estimator.
///
/// The model directory is the run's only state: the first `train`, `evaluate` or `predict`
/// restores its latest checkpoint (variables, every optimizer's state, the global step), and
/// `train(input_fn, …)` calls `input_fn(global_step)`, so an input that skips that many
/// batches resumes at the right data position. Before every step `s`, libtorch's generator
/// is seeded with [`step_seed`](crate::step_seed)`(seed, s)`, so a run that was killed and resumed takes the
/// same steps, bit for bit on the CPU, as one that was not.
///
/// A learning-rate [`Schedule`] bound with [`Trainer::with_schedule`] sets its optimizer's
/// rate before every step from the global step, so a resumed run continues the schedule.
pub struct Trainer<M: Model> {
    model: M,
    config: RunConfig,
    /// The bound schedules, by the index of their optimizer in [`Trainable::optimizers`](crate::Trainable::optimizers)'s
    /// fixed order.
    schedules: Vec<(usize, Schedule)>,
    checkpoints: CheckpointManager,
    global_step: u64,
    restored: bool,
    train_writer: Option<Arc<SummaryWriter>>,
    eval_writer: Option<Arc<SummaryWriter>>,
}

/// The files a [`Trainer`] writes in `model_dir`: checkpoints (`ckpt-*.safetensors`) and
/// event files (`events.out.tfevents.*`, also under `eval/`).
fn is_run_file(name: &str) -> bool {
    (name.starts_with("ckpt-") && name.ends_with(".safetensors")) || name.starts_with("events.out.tfevents.")
}

/// Removes the checkpoints and event files a [`Trainer`] writes in `model_dir` (and
/// `model_dir/eval`), and nothing else, so the next run starts afresh. A missing folder is
/// fine.
///
/// # Errors
/// [`Error::Io`] if a folder cannot be listed or a file removed.
pub fn remove_run_files(model_dir: impl AsRef<Path>) -> Result<()> {
    let dir = model_dir.as_ref();
    for folder in [dir.to_path_buf(), dir.join("eval")] {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Io { context: format!("listing {}", folder.display()), source })
            }
        };
        for entry in entries {
            let entry = entry
                .map_err(|source| Error::Io { context: format!("listing {}", folder.display()), source })?;
            if entry.file_name().to_str().is_some_and(is_run_file) {
                std::fs::remove_file(entry.path()).map_err(|source| Error::Io {
                    context: format!("removing {}", entry.path().display()),
                    source,
                })?;
            }
        }
    }
    Ok(())
}

impl<M: Model> Trainer<M> {
    /// A trainer over `model` (every variable built, its optimizers made) writing into
    /// `config.model_dir` (created if missing). Sets libtorch's intra-op threads to
    /// `config.threads`.
    ///
    /// # Errors
    /// [`RunConfig::validate`]'s errors; [`Error::Checkpoint`] if `model_dir` cannot be created.
    pub fn new(model: M, config: RunConfig) -> Result<Self> {
        config.validate()?;
        tch::set_num_threads(config.threads);
        let checkpoints = CheckpointManager::with_config(
            CheckpointManagerConfig::new(&config.model_dir).with_max_to_keep(config.keep_checkpoint_max),
        )?;
        Ok(Trainer {
            model,
            config,
            schedules: Vec::new(),
            checkpoints,
            global_step: 0,
            restored: false,
            train_writer: None,
            eval_writer: None,
        })
    }

    /// Binds `schedule` to the model's optimizer named `optimizer`: before every training
    /// step the trainer sets that optimizer's learning rate to
    /// [`Schedule::learning_rate`]`(global_step)`, the global step being the number of steps
    /// taken before this one (0 for the first step of a run, TensorFlow's convention), so a
    /// run resumed at step `s` takes its next step at the rate of step `s`. The rate is set
    /// before the hooks' `before_step`, which see it through the model's optimizers.
    ///
    /// # Errors
    /// [`Error::Config`] naming `trainer` if the model has no optimizer `optimizer` or one is
    /// already bound to it, or as [`Schedule::check`] for a bad schedule.
    pub fn with_schedule(mut self, optimizer: &str, schedule: Schedule) -> Result<Self> {
        schedule.check()?;
        let names: Vec<String> = self.model.optimizers().iter().map(|(n, _)| n.to_string()).collect();
        let Some(index) = names.iter().position(|n| n == optimizer) else {
            return Err(Error::config(
                MODULE,
                format!("with_schedule: no optimizer {optimizer:?}; the model has {names:?}"),
            ));
        };
        if self.schedules.iter().any(|(i, _)| *i == index) {
            return Err(Error::config(
                MODULE,
                format!("with_schedule: optimizer {optimizer:?} already has a schedule"),
            ));
        }
        self.schedules.push((index, schedule));
        Ok(self)
    }

    /// Sets every bound schedule's optimizer to its rate at `global_step`.
    fn apply_schedules(&mut self, global_step: u64) -> Result<()> {
        if self.schedules.is_empty() {
            return Ok(());
        }
        let step = i64::try_from(global_step)
            .map_err(|_| Error::invalid(MODULE, format!("global step {global_step} exceeds i64")))?;
        let mut optimizers = self.model.optimizers_mut();
        for (index, schedule) in &self.schedules {
            let count = optimizers.len();
            let (_, optimizer) = optimizers.get_mut(*index).ok_or_else(|| {
                Error::config(
                    MODULE,
                    format!("the model now has {count} optimizers; a schedule is bound to #{index}"),
                )
            })?;
            schedule.apply(&mut **optimizer, step)?;
        }
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The model, mutably (between calls).
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// The model, giving up the trainer.
    pub fn into_model(self) -> M {
        self.model
    }

    /// The config.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The checkpoints of the model directory.
    pub fn checkpoints(&self) -> &CheckpointManager {
        &self.checkpoints
    }

    /// The global step: steps trained so far, restored ones included (restores the latest
    /// checkpoint first if no call did yet).
    ///
    /// # Errors
    /// As [`Trainer::restore`].
    pub fn global_step(&mut self) -> Result<u64> {
        self.restore()?;
        Ok(self.global_step)
    }

    /// Restores the model directory's latest checkpoint (variables and every optimizer's
    /// state) once; later calls do nothing. Returns the restored step, if any.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if the checkpoint does not match the model or its optimizers
    /// (every difference listed); nothing is changed then.
    pub fn restore(&mut self) -> Result<Option<u64>> {
        if self.restored {
            return Ok(None);
        }
        // A clone shares the variables: it only lets the optimizers be borrowed beside it.
        let store = self.model.store().clone();
        let mut optimizers = self.model.optimizers_mut();
        let step = self.checkpoints.restore_latest_with_optimizers(&store, &mut optimizers)?;
        drop(optimizers);
        self.global_step = step.unwrap_or(0);
        self.restored = true;
        Ok(step)
    }

    /// The training summary writer (`model_dir`), opened on first use (a new events file),
    /// e.g. to add images after training.
    ///
    /// # Errors
    /// [`Error::Io`] if the events file cannot be created.
    pub fn summary_writer(&mut self) -> Result<Arc<SummaryWriter>> {
        open_writer(&mut self.train_writer, &self.config.model_dir)
    }

    /// The evaluation summary writer (`model_dir/eval`), opened on first use.
    ///
    /// # Errors
    /// [`Error::Io`] if the events file cannot be created.
    pub fn eval_summary_writer(&mut self) -> Result<Arc<SummaryWriter>> {
        open_writer(&mut self.eval_writer, &self.config.eval_dir())
    }

    /// The trainer's own hooks, from the config: summary saver, step counter, logging, and
    /// the checkpoint saver last.
    fn default_hooks(&self) -> Result<Vec<Box<dyn Hook>>> {
        let mut hooks: Vec<Box<dyn Hook>> = Vec::new();
        if self.config.save_summary_steps > 0 {
            hooks.push(Box::new(SummarySaverHook::new(self.config.save_summary_steps)?));
        }
        if self.config.log_step_count_steps > 0 {
            hooks.push(Box::new(StepCounterHook::new(self.config.log_step_count_steps)?));
            hooks
                .push(Box::new(LoggingHook::every_steps(self.config.log_step_count_steps, LogSink::Stderr)?));
        }
        let saver = match (self.config.save_checkpoints_steps, self.config.save_checkpoints_secs) {
            (Some(steps), _) => CheckpointSaverHook::every_steps(steps)?,
            (None, Some(secs)) => CheckpointSaverHook::every_secs(secs)?,
            (None, None) => CheckpointSaverHook::at_end(),
        };
        hooks.push(Box::new(saver));
        Ok(hooks)
    }

    /// Trains from the latest checkpoint up to global step `max_steps` (`None`: until the
    /// input runs out or a hook stops), running `hooks` then the config's hooks (checkpoint
    /// saver, summary saver, logging) around every step. The input is `input_fn(global_step)`:
    /// an iterator whose first batch is the one for step `global_step + 1` (skip
    /// `global_step` batches of a deterministic pipeline). A `max_steps` already reached
    /// trains nothing.
    ///
    /// # Errors
    /// An error of the checkpoint, the input, the model's step or a hook; an error in a
    /// step or `after_step` ends training at once, without a final checkpoint.
    pub fn train<'h, F, I>(
        &mut self,
        input_fn: F,
        max_steps: Option<u64>,
        hooks: Vec<Box<dyn Hook + 'h>>,
    ) -> Result<TrainReport>
    where
        F: FnMut(u64) -> Result<I>,
        I: IntoIterator<Item = Result<M::Batch>>,
    {
        self.run(
            input_fn,
            max_steps,
            hooks,
            None::<(EvalSpec, fn() -> Result<std::iter::Empty<Result<M::Batch>>>)>,
        )
    }

    /// Trains as [`Trainer::train`] up to `max_steps`, evaluating on `eval_input_fn()` every
    /// `spec.every_steps` steps and at the end (TensorFlow's `train_and_evaluate`). Each
    /// evaluation is written under `model_dir/eval`, checkpointed, and passed to the hooks'
    /// `after_evaluation` (early stopping).
    ///
    /// # Errors
    /// As [`Trainer::train`] and [`Trainer::evaluate`]; [`Error::Config`] if
    /// `spec.every_steps` is 0.
    pub fn train_and_evaluate<'h, F, I, E, J>(
        &mut self,
        train_input_fn: F,
        eval_input_fn: E,
        max_steps: u64,
        spec: EvalSpec,
        hooks: Vec<Box<dyn Hook + 'h>>,
    ) -> Result<TrainReport>
    where
        F: FnMut(u64) -> Result<I>,
        I: IntoIterator<Item = Result<M::Batch>>,
        E: FnMut() -> Result<J>,
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        if spec.every_steps == 0 {
            return Err(Error::config(MODULE, "EvalSpec::every_steps must be >= 1, got 0"));
        }
        self.run(train_input_fn, Some(max_steps), hooks, Some((spec, eval_input_fn)))
    }

    fn run<'h, F, I, E, J>(
        &mut self,
        mut input_fn: F,
        max_steps: Option<u64>,
        hooks: Vec<Box<dyn Hook + 'h>>,
        mut eval: Option<(EvalSpec, E)>,
    ) -> Result<TrainReport>
    where
        F: FnMut(u64) -> Result<I>,
        I: IntoIterator<Item = Result<M::Batch>>,
        E: FnMut() -> Result<J>,
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        self.restore()?;
        let start_step = self.global_step;
        let report = TrainReport {
            start_step,
            global_step: start_step,
            stop_reason: String::new(),
            evaluations: Vec::new(),
            checkpoint: None,
        };
        if max_steps.is_some_and(|m| m <= start_step) {
            let checkpoint = self.checkpoints.latest()?;
            let stop_reason = format!("max_steps {} already reached", max_steps.unwrap_or(0));
            return Ok(TrainReport { stop_reason, checkpoint, ..report });
        }
        let mut hooks = hooks;
        hooks.extend(self.default_hooks()?);
        let writer = self.summary_writer()?;
        // Events of steps after the restored checkpoint (written by a run that was killed)
        // are dropped by TensorBoard when it reads this marker.
        writer.add_session_start(crate::hooks::summary_step(start_step + 1)?)?;
        let result = self.run_with(&writer, &mut input_fn, max_steps, hooks, eval.as_mut(), report);
        let flushed = writer.flush();
        let report = result?;
        flushed?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_with<'h, F, I, E, J>(
        &mut self,
        writer: &SummaryWriter,
        input_fn: &mut F,
        max_steps: Option<u64>,
        mut hooks: Vec<Box<dyn Hook + 'h>>,
        mut eval: Option<&mut (EvalSpec, E)>,
        mut report: TrainReport,
    ) -> Result<TrainReport>
    where
        F: FnMut(u64) -> Result<I>,
        I: IntoIterator<Item = Result<M::Batch>>,
        E: FnMut() -> Result<J>,
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        let start_step = report.start_step;
        let started = Instant::now();
        let mut stop: Option<String> = None;
        macro_rules! ctx {
            () => {
                RunContext {
                    global_step: self.global_step,
                    start_step,
                    max_steps,
                    started,
                    model: &self.model,
                    checkpoints: &self.checkpoints,
                    summary: writer,
                    stop: &mut stop,
                }
            };
        }
        for hook in hooks.iter_mut() {
            hook.begin(&mut ctx!())?;
        }
        if let Some((spec, eval_fn)) = eval.as_deref_mut() {
            if spec.at_start {
                let evaluation = self.evaluate_at(eval_fn()?)?;
                for hook in hooks.iter_mut() {
                    hook.after_evaluation(&mut ctx!(), &evaluation)?;
                }
                report.evaluations.push(evaluation);
            }
        }
        let mut input = input_fn(self.global_step)?.into_iter();
        while stop.is_none() {
            if max_steps.is_some_and(|m| self.global_step >= m) {
                stop = Some(format!("reached max_steps {}", max_steps.unwrap_or(0)));
                break;
            }
            let Some(batch) = input.next() else {
                stop = Some("the input ran out".to_string());
                break;
            };
            let batch = batch?;
            self.apply_schedules(self.global_step)?;
            for hook in hooks.iter_mut() {
                hook.before_step(&mut ctx!())?;
            }
            let step = self.global_step + 1;
            let summarize = self.config.save_summary_steps > 0 && step % self.config.save_summary_steps == 0;
            let mut step_ctx =
                StepContext::new(step, self.config.seed, self.config.device, summarize.then_some(writer));
            tch::manual_seed(step_ctx.seed() as i64);
            let output: StepOutput = self.model.train_step(batch, &mut step_ctx)?;
            self.global_step = step;
            for hook in hooks.iter_mut() {
                hook.after_step(&mut ctx!(), &output)?;
            }
            if let Some((spec, eval_fn)) = eval.as_deref_mut() {
                let last = max_steps.is_some_and(|m| step >= m);
                if step % spec.every_steps == 0 || last {
                    let evaluation = self.evaluate_at(eval_fn()?)?;
                    writer.flush()?;
                    let opts = self.model.optimizers();
                    self.checkpoints.save_with_optimizers(self.model.store(), &opts, step)?;
                    drop(opts);
                    for hook in hooks.iter_mut() {
                        hook.after_evaluation(&mut ctx!(), &evaluation)?;
                    }
                    report.evaluations.push(evaluation);
                }
            }
        }
        let mut first_error = None;
        for hook in hooks.iter_mut() {
            if let Err(e) = hook.end(&mut ctx!()) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        report.global_step = self.global_step;
        report.stop_reason = stop.unwrap_or_default();
        report.checkpoint = self.checkpoints.latest()?;
        Ok(report)
    }

    /// Evaluates the model on every batch of `input` (restoring the latest checkpoint
    /// first if no call did yet), under `no_grad`, and writes the metrics under
    /// `model_dir/eval` as `eval/<metric>` at the global step.
    ///
    /// # Errors
    /// As [`Trainer::restore`], the input's and the model's errors; [`Error::InvalidArgument`]
    /// naming `trainer` if the input is empty.
    pub fn evaluate<J>(&mut self, input: J) -> Result<Evaluation>
    where
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        self.restore()?;
        self.evaluate_at(input)
    }

    /// As [`Trainer::evaluate`], writing the metrics under `model_dir/eval_<name>` instead
    /// (Estimator's `evaluate(name=…)`), e.g. `test`, so that TensorBoard shows the
    /// validation and test curves as two runs.
    ///
    /// # Errors
    /// As [`Trainer::evaluate`]; [`Error::InvalidArgument`] naming `trainer` unless `name` is
    /// non-empty ASCII letters, digits, `_` or `-`.
    pub fn evaluate_named<J>(&mut self, input: J, name: &str) -> Result<Evaluation>
    where
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Error::invalid(
                MODULE,
                format!("evaluation name {name:?} must be non-empty ASCII letters, digits, '_' or '-'"),
            ));
        }
        self.restore()?;
        let writer = SummaryWriter::new(self.config.model_dir.join(format!("eval_{name}")))?;
        let evaluation = self.compute_evaluation(input, &writer)?;
        write_evaluation(&writer, &evaluation)?;
        writer.close()?;
        Ok(evaluation)
    }

    fn evaluate_at<J>(&mut self, input: J) -> Result<Evaluation>
    where
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        let writer = self.eval_summary_writer()?;
        let evaluation = self.compute_evaluation(input, &writer)?;
        write_evaluation(&writer, &evaluation)?;
        Ok(evaluation)
    }

    fn compute_evaluation<J>(&mut self, input: J, writer: &SummaryWriter) -> Result<Evaluation>
    where
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        let evaluation = tch::no_grad(|| -> Result<Evaluation> {
            self.model.eval_begin()?;
            let mut ctx = EvalContext::new(self.global_step, Some(writer));
            for batch in input {
                ctx.next_batch();
                self.model.eval_step(batch?, &mut ctx)?;
            }
            let batches = ctx.batch();
            if batches == 0 {
                return Err(Error::invalid(MODULE, "evaluate: the input holds no batch"));
            }
            let mut metrics = ctx.finish();
            metrics.extend(self.model.eval_end()?);
            Ok(Evaluation { global_step: self.global_step, metrics, batches })
        })?;
        Ok(evaluation)
    }
}

/// Writes `evaluation`'s metrics as `eval/<metric>` at its global step, and flushes.
fn write_evaluation(writer: &SummaryWriter, evaluation: &Evaluation) -> Result<()> {
    let step = crate::hooks::summary_step(evaluation.global_step)?;
    for (name, value) in &evaluation.metrics {
        writer.add_scalar(&format!("eval/{name}"), *value, step)?;
    }
    writer.flush()
}

/// The summary writer in `slot`, opening one into `dir` first if there is none.
fn open_writer(slot: &mut Option<Arc<SummaryWriter>>, dir: &Path) -> Result<Arc<SummaryWriter>> {
    if let Some(writer) = slot {
        return Ok(Arc::clone(writer));
    }
    let writer = Arc::new(SummaryWriter::new(dir)?);
    *slot = Some(Arc::clone(&writer));
    Ok(writer)
}

impl<M: Predictor> Trainer<M> {
    /// Predicts every batch of `input` (restoring the latest checkpoint first if no call did
    /// yet), under `no_grad`, in order.
    ///
    /// # Errors
    /// As [`Trainer::restore`], the input's and the model's errors.
    pub fn predict<J>(&mut self, input: J) -> Result<Vec<M::Prediction>>
    where
        J: IntoIterator<Item = Result<M::Batch>>,
    {
        self.restore()?;
        tch::no_grad(|| input.into_iter().map(|batch| self.model.predict_step(batch?)).collect())
    }
}
