//! The Trainer: exact resumption (variables and two optimizers' states, bit for bit, with
//! dropout drawing from libtorch's generator), evaluation means, prediction, and the stop
//! conditions, against hand-worked values.

mod trainer_common;

use couplet_modules::{checkpoint, Linear, LinearConfig, Module, Result, Sgd, SgdConfig, Store};
use couplet_train::hooks::{Hook, StopAtStepHook};
use couplet_train::{EvalSpec, RunConfig, Trainable, Trainer};
use tch::Tensor;
use trainer_common::{batch, input_fn, rng_guard, TempDir, TwoStep};

/// A boxed input.
type Batches = Box<dyn Iterator<Item = Result<(Tensor, Tensor)>>>;

fn config(dir: &TempDir) -> RunConfig {
    RunConfig::new(&dir.0)
        .with_save_checkpoints_steps(5)
        .with_keep_checkpoint_max(None)
        .with_log_step_count_steps(0)
}

/// Every tensor of a checkpoint file (model and optimizer state), by name.
fn load(path: &std::path::Path) -> Vec<(String, Tensor)> {
    checkpoint::load(path).unwrap().into_iter().collect()
}

fn assert_bit_identical(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert!(x.equal(y), "{name} differs: {x} vs {y}");
    }
}

#[test]
fn interrupted_runs_resume_bit_identically() {
    let _rng = rng_guard();
    let straight = TempDir::new("straight");
    let mut trainer = Trainer::new(TwoStep::new(1), config(&straight)).unwrap();
    let report = trainer.train(input_fn, Some(23), vec![]).unwrap();
    assert_eq!((report.start_step, report.global_step), (0, 23));
    assert_eq!(report.stop_reason, "reached max_steps 23");
    let steps: Vec<u64> = trainer.checkpoints().checkpoints().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(steps, [5, 10, 15, 20, 23], "every 5 steps and at the end");
    let reference = load(&trainer.checkpoints().path_for(23));

    // Stopped by a hook at step 8 (a checkpoint at the end), then an error at step 13
    // (after the step-10 checkpoint, none at 13), then resumed to the end: the first run
    // starts as the reference; each resume from a model initialised differently, so
    // everything comes from the files.
    let broken = TempDir::new("broken");
    let mut first = Trainer::new(TwoStep::new(1), config(&broken)).unwrap();
    let hooks: Vec<Box<dyn Hook>> = vec![Box::new(StopAtStepHook::last_step(8))];
    let r = first.train(input_fn, Some(23), hooks).unwrap();
    assert_eq!((r.global_step, r.stop_reason.as_str()), (8, "stop_at_step: reached step 8"));
    let mut second = Trainer::new(TwoStep::new(3), config(&broken)).unwrap();
    let failing = |start: u64| -> Result<Batches> {
        Ok(Box::new((start + 1..).map(|s| {
            if s == 14 {
                Err(couplet_modules::Error::invalid("input", "disk gone"))
            } else {
                Ok(batch(s))
            }
        })))
    };
    let e = second.train(failing, Some(23), vec![]).unwrap_err();
    assert_eq!(e.to_string(), "input: disk gone");
    assert_eq!(second.checkpoints().latest_step().unwrap(), Some(10));
    let mut third = Trainer::new(TwoStep::new(4), config(&broken)).unwrap();
    let r = third.train(input_fn, Some(23), vec![]).unwrap();
    assert_eq!((r.start_step, r.global_step), (10, 23));
    assert_bit_identical(&load(&third.checkpoints().path_for(23)), &reference);

    // Without the per-step seeds the dropout masks would differ: a run of another seed ends
    // elsewhere.
    let other = TempDir::new("other-seed");
    let mut t = Trainer::new(TwoStep::new(1), config(&other).with_seed(9)).unwrap();
    t.train(input_fn, Some(23), vec![]).unwrap();
    let b = load(&t.checkpoints().path_for(23));
    assert!(b.iter().zip(&reference).any(|(x, y)| !x.1.equal(&y.1)));

    // Training again to the same max_steps takes no step.
    let r = third.train(input_fn, Some(23), vec![]).unwrap();
    assert_eq!((r.start_step, r.global_step), (23, 23));
    assert_eq!(r.stop_reason, "max_steps 23 already reached");
}

#[test]
fn evaluate_predict_and_train_and_evaluate() {
    let _rng = rng_guard();
    let dir = TempDir::new("eval");
    let mut trainer = Trainer::new(TwoStep::new(1), config(&dir)).unwrap();
    // Two batches of 4 and 2 rows: the loss is their row-weighted mean.
    let (x, y) = batch(3);
    let halves =
        || vec![Ok((x.narrow(0, 0, 4), y.narrow(0, 0, 4))), Ok((x.narrow(0, 0, 2), y.narrow(0, 0, 2)))];
    let eval = trainer.evaluate(halves()).unwrap();
    let m = trainer.model();
    let l4 = m.loss(&x, &y, couplet_modules::Mode::Eval).unwrap().double_value(&[]);
    let l2 = m
        .loss(&x.narrow(0, 0, 2), &y.narrow(0, 0, 2), couplet_modules::Mode::Eval)
        .unwrap()
        .double_value(&[]);
    assert_eq!(eval.batches, 2);
    assert!((eval.metrics["loss"] - (4.0 * l4 + 2.0 * l2) / 6.0).abs() < 1e-12, "{eval:?}");
    assert_eq!(eval.global_step, 0);
    let empty = trainer.evaluate(Vec::<Result<(Tensor, Tensor)>>::new()).unwrap_err();
    assert_eq!(empty.to_string(), "trainer: evaluate: the input holds no batch");

    let predictions = trainer.predict(halves()).unwrap();
    assert_eq!(predictions.iter().map(|p| p.size()).collect::<Vec<_>>(), [vec![4, 1], vec![2, 1]]);
    assert!(!predictions[0].requires_grad(), "predictions run under no_grad");

    let report =
        trainer.train_and_evaluate(input_fn, || Ok(halves()), 7, EvalSpec::every(3), vec![]).unwrap();
    let at: Vec<u64> = report.evaluations.iter().map(|e| e.global_step).collect();
    assert_eq!(at, [3, 6, 7], "every 3 steps and at the end");
    let steps: Vec<u64> = trainer.checkpoints().checkpoints().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(steps, [3, 5, 6, 7], "checkpoints at each evaluation and every 5 steps");
}

#[test]
fn the_input_running_out_ends_training() {
    let _rng = rng_guard();
    let dir = TempDir::new("exhausted");
    let mut trainer = Trainer::new(TwoStep::new(1), config(&dir)).unwrap();
    let r = trainer.train(|start| Ok((start + 1..=4).map(|s| Ok(batch(s)))), None, vec![]).unwrap();
    assert_eq!((r.global_step, r.stop_reason.as_str()), (4, "the input ran out"));
    assert!(r.checkpoint.unwrap().ends_with("ckpt-00000004.safetensors"));
}

#[test]
fn a_checkpoint_of_another_model_is_an_error_naming_the_differences() {
    let _rng = rng_guard();
    let dir = TempDir::new("mismatch");
    let mut trainer = Trainer::new(TwoStep::new(1), config(&dir)).unwrap();
    trainer.train(input_fn, Some(2), vec![]).unwrap();
    let store = Store::cpu();
    let lin = Linear::new(&store.root(), LinearConfig::new(1).with_input_size(1)).unwrap();
    let sgd = Sgd::new(lin.trainable_variables().unwrap(), SgdConfig::new(0.1)).unwrap();
    let model = couplet_train::Supervised::new(store, lin, sgd, Box::new(couplet_train::mse));
    let mut other = Trainer::new(model, config(&dir)).unwrap();
    let e = other.global_step().unwrap_err();
    assert!(e.to_string().contains("holds the optimizers [adam, sgd], but [optimizer] were given"), "{e}");
}

/// Records the learning rate of the model's first optimizer before every step, with the
/// global step it is taken from.
struct RateLog(std::rc::Rc<std::cell::RefCell<Vec<(u64, f64)>>>);
impl Hook for RateLog {
    fn before_step(&mut self, ctx: &mut couplet_train::RunContext) -> Result<()> {
        let lr = ctx.model.optimizers()[0].1.learning_rate();
        self.0.borrow_mut().push((ctx.global_step, lr));
        Ok(())
    }
}

/// `w · x` with `w` = 1 and no bias, trained by SGD (its own rate 9, which the schedule
/// must override) on `(w · 1 - 0)²`: the gradient is `2w`, so a step at rate `lr` makes
/// `w ← w (1 - 2 lr)`.
fn scalar_model() -> couplet_train::Supervised<Linear, Sgd> {
    let store = Store::cpu();
    let config = LinearConfig::new(1)
        .with_input_size(1)
        .with_bias(false)
        .with_initializer("w", couplet_modules::Initializer::Constant { value: 1.0 });
    let linear = Linear::new(&store.root(), config).unwrap();
    let sgd = Sgd::new(linear.trainable_variables().unwrap(), SgdConfig::new(9.0)).unwrap();
    couplet_train::Supervised::new(store, linear, sgd, Box::new(couplet_train::mse))
}

fn scalar_input(_start: u64) -> Result<impl Iterator<Item = Result<(Tensor, Tensor)>>> {
    Ok(std::iter::repeat_with(|| {
        Ok((Tensor::from_slice(&[1.0f32]).view([1, 1]), Tensor::zeros([1, 1], tch::kind::FLOAT_CPU)))
    }))
}

#[test]
fn a_bound_schedule_sets_the_rate_from_the_global_step_and_resumes() {
    let _rng = rng_guard();
    let dir = TempDir::new("schedule");
    // 0.1 · 0.5^floor(step / 2): 0.1, 0.1, 0.05, 0.05, 0.025, 0.025 at global steps 0..6.
    let schedule = couplet_train::schedule::Schedule::exponential_decay(0.1, 2, 0.5, true).unwrap();
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let weight = |t: &Trainer<couplet_train::Supervised<Linear, Sgd>>| {
        t.model().store().variables()[0].tensor().double_value(&[0, 0])
    };
    let mut first = Trainer::new(scalar_model(), config(&dir))
        .unwrap()
        .with_schedule("optimizer", schedule.clone())
        .unwrap();
    first.train(scalar_input, Some(3), vec![Box::new(RateLog(log.clone()))]).unwrap();
    assert_eq!(*log.borrow(), [(0, 0.1), (1, 0.1), (2, 0.05)]);
    approx::assert_abs_diff_eq!(weight(&first), 0.8 * 0.8 * 0.9, epsilon = 1e-6);

    // Resumed from the step-3 checkpoint by a fresh model (rate 9 again): the schedule goes
    // on at global step 3, not 0.
    log.borrow_mut().clear();
    let mut second = Trainer::new(scalar_model(), config(&dir))
        .unwrap()
        .with_schedule("optimizer", schedule.clone())
        .unwrap();
    let report = second.train(scalar_input, Some(6), vec![Box::new(RateLog(log.clone()))]).unwrap();
    assert_eq!(report.start_step, 3);
    assert_eq!(*log.borrow(), [(3, 0.05), (4, 0.025), (5, 0.025)]);
    approx::assert_abs_diff_eq!(weight(&second), 0.8 * 0.8 * 0.9 * 0.9 * 0.95 * 0.95, epsilon = 1e-6);

    let unknown = Trainer::new(scalar_model(), config(&dir)).unwrap().with_schedule("adam", schedule.clone());
    let e = unknown.err().unwrap().to_string();
    assert!(e.contains("no optimizer \"adam\"; the model has [\"optimizer\"]"), "{e}");
    let twice = Trainer::new(scalar_model(), config(&dir))
        .unwrap()
        .with_schedule("optimizer", schedule.clone())
        .unwrap()
        .with_schedule("optimizer", schedule);
    assert!(twice.err().unwrap().to_string().contains("already has a schedule"));
}
