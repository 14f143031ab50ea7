//! The hooks against hand-worked values: what the logging hook prints, which steps the
//! summary saver writes (read back from the events files), where the NaN guard stops and
//! what it names, the stop conditions, early stopping and the progress bar's count.

mod trainer_common;

use couplet_modules::{Error, Linear, LinearConfig, Module, Optimizer, Result, Sgd, SgdConfig, Store};
use couplet_train::hooks::{
    EarlyStoppingHook, Goal, Hook, LogSink, LoggingHook, NanGuardHook, ProgressBarHook, StopAfterSecondsHook,
    StopAtStepHook,
};
use couplet_train::{EvalContext, EvalSpec, Model, RunConfig, StepContext, StepOutput, Trainable, Trainer};
use std::sync::{Arc, Mutex};
use tch::Tensor;
use trainer_common::{scalars, TempDir};

/// What a scripted step does besides reporting its loss.
#[derive(Clone, Copy, PartialEq)]
enum Break {
    None,
    /// Gives `second/w` an infinite gradient.
    Gradient,
    /// Writes a NaN into `first/b`.
    Variable,
}

/// A model whose step `s` reports `loss = losses(s)`, optionally breaking a gradient or a
/// variable at `break_at`, and whose `k`-th evaluation reports `metric = evals[k]`.
struct Scripted {
    store: Store,
    sgd: Sgd,
    losses: fn(u64) -> f64,
    break_at: (u64, Break),
    evals: Vec<f64>,
    evaluated: usize,
    sleep_ms: u64,
}

impl Scripted {
    fn new(losses: fn(u64) -> f64) -> Self {
        let store = Store::cpu();
        let root = store.root();
        let first = Linear::named(&root, "first", LinearConfig::new(2).with_input_size(2)).unwrap();
        let second = Linear::named(&root, "second", LinearConfig::new(1).with_input_size(2)).unwrap();
        let mut vars = first.trainable_variables().unwrap();
        vars.extend(second.trainable_variables().unwrap());
        let sgd = Sgd::new(vars, SgdConfig::new(0.0)).unwrap();
        Scripted {
            store,
            sgd,
            losses,
            break_at: (0, Break::None),
            evals: Vec::new(),
            evaluated: 0,
            sleep_ms: 0,
        }
    }
}

impl Trainable for Scripted {
    fn store(&self) -> &Store {
        &self.store
    }
    fn optimizers(&self) -> Vec<(&str, &dyn Optimizer)> {
        vec![("sgd", &self.sgd)]
    }
    fn optimizers_mut(&mut self) -> Vec<(&str, &mut dyn Optimizer)> {
        vec![("sgd", &mut self.sgd)]
    }
}

impl Model for Scripted {
    type Batch = ();

    fn train_step(&mut self, (): (), ctx: &mut StepContext) -> Result<StepOutput> {
        std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
        // Finite gradients everywhere, then the scripted breakage.
        let total = self
            .store
            .variables()
            .iter()
            .map(|v| v.tensor().sum(tch::Kind::Float))
            .fold(Tensor::from(0.0f32), |a, b| a + b);
        self.sgd.zero_grad();
        total.backward();
        let (at, what) = self.break_at;
        if ctx.step() == at {
            let var = |name: &str| self.store.get(name).unwrap().tensor().shallow_clone();
            match what {
                Break::None => {}
                Break::Gradient => {
                    let _ = var("second/w").grad().fill_(f64::INFINITY);
                }
                Break::Variable => tch::no_grad(|| {
                    let _ = var("first/b").narrow(0, 1, 1).fill_(f64::NAN);
                }),
            }
        }
        let loss = Tensor::from((self.losses)(ctx.step()));
        Ok(StepOutput::new().with("loss", &loss).with("twice", &(&loss * 2.0)))
    }

    fn eval_step(&mut self, (): (), ctx: &mut EvalContext) -> Result<()> {
        let value = self.evals[self.evaluated];
        self.evaluated += 1;
        ctx.mean("metric", value, 1.0)
    }
}

fn units(start: u64) -> Result<impl Iterator<Item = Result<()>>> {
    Ok((start..).map(|_| Ok(())))
}

fn quiet(dir: &TempDir) -> RunConfig {
    RunConfig::new(&dir.0).with_log_step_count_steps(0).with_save_summary_steps(0)
}

#[test]
fn logging_prints_every_n_steps_with_the_rate() {
    let dir = TempDir::new("logging");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let hook = LoggingHook::every_steps(2, LogSink::Lines(lines.clone())).unwrap();
    let mut trainer = Trainer::new(Scripted::new(|s| s as f64 / 4.0), quiet(&dir)).unwrap();
    trainer.train(units, Some(5), vec![Box::new(hook)]).unwrap();
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "step 2: loss = 0.500000, twice = 1.000000");
    assert!(lines[1].starts_with("step 4: loss = 1.000000, twice = 2.000000 ("), "{}", lines[1]);
    assert!(lines[1].ends_with(" steps/s)"), "{}", lines[1]);
    // Small and large values in scientific notation.
    let lines = Arc::new(Mutex::new(Vec::new()));
    let hook = LoggingHook::every_secs(3600.0, LogSink::Lines(lines.clone())).unwrap();
    let dir = TempDir::new("logging-secs");
    let mut trainer = Trainer::new(Scripted::new(|s| 1.5e-6 * s as f64), quiet(&dir)).unwrap();
    trainer.train(units, Some(3), vec![Box::new(hook)]).unwrap();
    assert_eq!(
        *lines.lock().unwrap(),
        ["step 1: loss = 1.50000e-6, twice = 3.00000e-6"],
        "the first step, then not for an hour"
    );
    assert!(LoggingHook::every_steps(0, LogSink::Stdout).is_err());
    assert!(LoggingHook::every_secs(f64::INFINITY, LogSink::Stdout).is_err());
}

#[test]
fn the_summary_saver_writes_train_scalars_and_the_step_counter_its_rate() {
    let dir = TempDir::new("summaries");
    let config = quiet(&dir).with_save_summary_steps(2);
    let mut trainer = Trainer::new(Scripted::new(|s| s as f64), config).unwrap();
    trainer.train(units, Some(5), vec![]).unwrap();
    let got = scalars(&dir.0);
    let want =
        [("train/loss", 2, 2.0), ("train/twice", 2, 4.0), ("train/loss", 4, 4.0), ("train/twice", 4, 8.0)];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((tag, step, value), (t, s, v)) in got.iter().zip(want) {
        assert_eq!((tag.as_str(), *step, *value), (t, s, v));
    }
    // A second call continues; evaluation writes under eval/.
    let config = RunConfig::new(&dir.0).with_save_summary_steps(0).with_log_step_count_steps(3);
    let mut model = Scripted::new(|s| s as f64);
    model.evals = vec![0.25];
    let mut trainer = Trainer::new(model, config).unwrap();
    trainer.train(units, Some(9), vec![]).unwrap();
    let rates: Vec<i64> = scalars(&dir.0).iter().filter(|s| s.0 == "global_step/sec").map(|s| s.1).collect();
    assert_eq!(rates, [6, 9], "every 3 steps from the resumed step 5");
    trainer.evaluate([Ok(())]).unwrap();
    assert_eq!(scalars(&dir.0.join("eval")), [("eval/metric".to_string(), 9, 0.25)]);
}

/// A loss script, where to break what, and the expected message.
type NanCase = (fn(u64) -> f64, (u64, Break), &'static str);

#[test]
fn the_nan_guard_names_the_first_non_finite_loss_gradient_or_variable() {
    let cases: [NanCase; 4] = [
        (
            |s| if s == 3 { f64::NAN } else { 1.0 },
            (0, Break::None),
            "nan_guard: step 3: loss \"loss\" is NaN",
        ),
        (
            |s| if s >= 2 { f64::NEG_INFINITY } else { 1.0 },
            (0, Break::None),
            "nan_guard: step 2: loss \"loss\" is -inf",
        ),
        (
            |_| 1.0,
            (4, Break::Gradient),
            "nan_guard: step 4: gradient of \"second/w\" has 2 non-finite values (NaN or ±inf) of 2",
        ),
        (
            |_| 1.0,
            (2, Break::Variable),
            "nan_guard: step 2: variable \"first/b\" has 1 non-finite values (NaN or ±inf) of 2",
        ),
    ];
    for (i, (losses, break_at, message)) in cases.into_iter().enumerate() {
        let dir = TempDir::new(&format!("nan-{i}"));
        let mut model = Scripted::new(losses);
        model.break_at = break_at;
        let config = quiet(&dir).with_save_checkpoints_steps(1);
        let mut trainer = Trainer::new(model, config).unwrap();
        let e = trainer.train(units, Some(10), vec![Box::new(NanGuardHook::new())]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert_eq!(e.to_string(), message);
        let step: u64 = message[16..17].parse().unwrap();
        assert_eq!(
            trainer.checkpoints().latest_step().unwrap(),
            Some(step - 1),
            "no checkpoint of the broken step"
        );
    }
    // Losses only: a broken gradient passes.
    let dir = TempDir::new("nan-losses-only");
    let mut model = Scripted::new(|_| 1.0);
    model.break_at = (2, Break::Gradient);
    let mut trainer = Trainer::new(model, quiet(&dir)).unwrap();
    assert!(trainer.train(units, Some(3), vec![Box::new(NanGuardHook::losses_only())]).is_ok());
}

#[test]
fn stop_hooks_stop_where_they_say() {
    let dir = TempDir::new("stop");
    let mut trainer = Trainer::new(Scripted::new(|_| 1.0), quiet(&dir)).unwrap();
    let r = trainer.train(units, Some(100), vec![Box::new(StopAtStepHook::last_step(4))]).unwrap();
    assert_eq!((r.global_step, r.stop_reason.as_str()), (4, "stop_at_step: reached step 4"));
    let r = trainer.train(units, Some(100), vec![Box::new(StopAtStepHook::num_steps(3))]).unwrap();
    assert_eq!((r.start_step, r.global_step), (4, 7));
    // Each step sleeps 30 ms; the 75 ms budget is spent after the third step at the
    // earliest (a loaded machine may take longer per step, never shorter).
    let dir = TempDir::new("budget");
    let mut model = Scripted::new(|_| 1.0);
    model.sleep_ms = 30;
    let mut trainer = Trainer::new(model, quiet(&dir)).unwrap();
    let r =
        trainer.train(units, Some(100), vec![Box::new(StopAfterSecondsHook::new(0.075).unwrap())]).unwrap();
    assert!(r.global_step >= 3 && r.global_step < 100, "{r:?}");
    assert_eq!(r.stop_reason, "stop_after_seconds: the 0.075 s budget is spent");
    assert!(StopAfterSecondsHook::new(0.0).is_err() && StopAfterSecondsHook::new(f64::NAN).is_err());
}

#[test]
fn early_stopping_counts_evaluations_without_improvement() {
    // Minimise with min_delta 0.1 and patience 2: 1.0 (best), 0.95 (not better by 0.1: 1),
    // 0.5 (best), 0.45 (1), 0.44 (2: stop after the fifth evaluation, at step 10).
    let dir = TempDir::new("early");
    let mut model = Scripted::new(|_| 1.0);
    model.evals = vec![1.0, 0.95, 0.5, 0.45, 0.44, 0.1, 0.1];
    let mut trainer = Trainer::new(model, quiet(&dir)).unwrap();
    let hook = EarlyStoppingHook::new("metric", Goal::Minimize, 2, 0.1).unwrap();
    let r = trainer
        .train_and_evaluate(units, || Ok([Ok(())]), 100, EvalSpec::every(2), vec![Box::new(hook)])
        .unwrap();
    assert_eq!(r.global_step, 10);
    assert_eq!(r.evaluations.len(), 5);
    assert_eq!(r.stop_reason, "early_stopping: metric has not improved on 0.5 (step 6) for 2 evaluations");
    // Maximise: 0.1, 0.2 (best), 0.2 (1): patience 1 stops at the third.
    let dir = TempDir::new("early-max");
    let mut model = Scripted::new(|_| 1.0);
    model.evals = vec![0.1, 0.2, 0.2, 0.9];
    let mut trainer = Trainer::new(model, quiet(&dir)).unwrap();
    let hook = EarlyStoppingHook::new("metric", Goal::Maximize, 1, 0.0).unwrap();
    let r = trainer
        .train_and_evaluate(units, || Ok([Ok(())]), 100, EvalSpec::every(1), vec![Box::new(hook)])
        .unwrap();
    assert_eq!(r.global_step, 3);
    // A metric the evaluation lacks is an error naming those it has.
    let dir = TempDir::new("early-missing");
    let mut model = Scripted::new(|_| 1.0);
    model.evals = vec![0.1];
    let mut trainer = Trainer::new(model, quiet(&dir)).unwrap();
    let hook = EarlyStoppingHook::new("accuracy", Goal::Maximize, 1, 0.0).unwrap();
    let e = trainer
        .train_and_evaluate(units, || Ok([Ok(())]), 100, EvalSpec::every(1), vec![Box::new(hook)])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "early_stopping_hook: no metric \"accuracy\" in the evaluation; it has [\"metric\"]"
    );
    assert!(EarlyStoppingHook::new("m", Goal::Minimize, 0, 0.0).is_err());
}

#[test]
fn the_progress_bar_counts_steps_and_checkpoints_come_at_the_end_by_default_time() {
    let dir = TempDir::new("progress");
    let hook = ProgressBarHook::hidden();
    let bar = hook.bar();
    let mut trainer = Trainer::new(Scripted::new(|_| 1.0), quiet(&dir)).unwrap();
    let hooks: Vec<Box<dyn Hook>> = vec![Box::new(hook)];
    trainer.train(units, Some(6), hooks).unwrap();
    assert_eq!((bar.position(), bar.length()), (6, Some(6)));
    // The default config saves every 600 s: a 6-step run saves once, at its end.
    let steps: Vec<u64> = trainer.checkpoints().checkpoints().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(steps, [6]);
    assert!(ProgressBarHook::new(0).is_err());
}
