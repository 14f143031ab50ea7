//! The Trainer: exact resumption (variables and two optimizers' states, bit for bit, with
//! dropout drawing from libtorch's generator), evaluation means, prediction, and the stop
//! conditions, against hand-worked values.

use couplet_modules::{
    checkpoint, Adam, AdamConfig, Dropout, DropoutConfig, Forward, Linear, LinearConfig, Module, Optimizer, Result,
    Sgd, SgdConfig, Store,
};
use couplet_train::hooks::{Hook, StopAtStepHook};
use couplet_train::{EvalContext, EvalSpec, Model, Predictor, RunConfig, StepContext, StepOutput, Trainable, Trainer};
use rand::Rng;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tch::{Kind, Tensor};

/// libtorch's generator is process-wide: tests that train hold this lock.
static RNG: Mutex<()> = Mutex::new(());
fn rng_guard() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh folder, removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("couplet-trainer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two layers with dropout between, trained by two optimizers in two updates per step (as a
/// GAN's): Adam on the first layer, then SGD with momentum on the second, each from its own
/// forward pass. The step also draws a noise scale from the step's own generator.
struct TwoStep {
    store: Store,
    first: Linear,
    dropout: Dropout,
    second: Linear,
    adam: Adam,
    sgd: Sgd,
}

impl TwoStep {
    fn new(init_seed: i64) -> Self {
        tch::manual_seed(init_seed);
        let store = Store::cpu();
        let root = store.root();
        let first = Linear::named(&root, "first", LinearConfig::new(6).with_input_size(3)).unwrap();
        let dropout = Dropout::new(&root, DropoutConfig::new(0.3)).unwrap();
        let second = Linear::named(&root, "second", LinearConfig::new(1).with_input_size(6)).unwrap();
        let adam = Adam::new(first.trainable_variables().unwrap(), AdamConfig::new(0.01)).unwrap();
        let sgd = Sgd::new(second.trainable_variables().unwrap(), SgdConfig::new(0.05).with_momentum(0.9)).unwrap();
        TwoStep { store, first, dropout, second, adam, sgd }
    }

    fn loss(&self, x: &Tensor, y: &Tensor, mode: couplet_modules::Mode) -> Result<Tensor> {
        let h = self.first.forward(x)?.relu();
        let h = self.dropout.forward_t(&h, mode)?;
        Ok((self.second.forward(&h)? - y).square().mean(Kind::Float))
    }
}

impl Trainable for TwoStep {
    fn store(&self) -> &Store {
        &self.store
    }
    fn optimizers(&self) -> Vec<(&str, &dyn Optimizer)> {
        vec![("adam", &self.adam), ("sgd", &self.sgd)]
    }
    fn optimizers_mut(&mut self) -> Vec<(&str, &mut dyn Optimizer)> {
        vec![("adam", &mut self.adam), ("sgd", &mut self.sgd)]
    }
}

impl Model for TwoStep {
    type Batch = (Tensor, Tensor);

    fn train_step(&mut self, (x, y): Self::Batch, ctx: &mut StepContext) -> Result<StepOutput> {
        let noise: f64 = ctx.rng().gen_range(0.0..0.1);
        let x = &x + noise;
        // A schedule bound to the step.
        self.adam.set_learning_rate(0.01 / (1.0 + ctx.step() as f64 / 10.0));
        let first = self.loss(&x, &y, ctx.mode())?;
        self.adam.zero_grad();
        first.backward();
        self.adam.step()?;
        let second = self.loss(&x, &y, ctx.mode())?;
        self.sgd.zero_grad();
        second.backward();
        self.sgd.step()?;
        Ok(StepOutput::new().with("first", &first).with("second", &second))
    }

    fn eval_step(&mut self, (x, y): Self::Batch, ctx: &mut EvalContext) -> Result<()> {
        let loss = self.loss(&x, &y, ctx.mode())?.double_value(&[]);
        ctx.mean("loss", loss, x.size()[0] as f64)
    }
}

impl Predictor for TwoStep {
    type Prediction = Tensor;
    fn predict_step(&mut self, (x, _): Self::Batch) -> Result<Tensor> {
        self.second.forward(&self.first.forward(&x)?.relu())
    }
}

/// The batch of step `s`: a function of `s` only.
fn batch(s: u64) -> (Tensor, Tensor) {
    let x = (Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([4, 3]) * (0.1 * s as f64)).sin();
    let y = x.sum_dim_intlist(1, true, Kind::Float).cos();
    (x, y)
}

/// The input function: the batches of steps `start + 1, start + 2, …`.
fn input_fn(start: u64) -> Result<impl Iterator<Item = Result<(Tensor, Tensor)>>> {
    Ok((start + 1..).map(|s| Ok(batch(s))))
}

fn config(dir: &TempDir) -> RunConfig {
    RunConfig::new(&dir.0).with_save_checkpoints_steps(5).with_keep_checkpoint_max(None).with_log_step_count_steps(0)
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
    // (after the step-10 checkpoint, none at 13), then resumed to the end: each resume
    // starts from a model initialised differently, so everything comes from the files.
    let broken = TempDir::new("broken");
    let mut first = Trainer::new(TwoStep::new(2), config(&broken)).unwrap();
    let hooks: Vec<Box<dyn Hook>> = vec![Box::new(StopAtStepHook::last_step(8))];
    let r = first.train(input_fn, Some(23), hooks).unwrap();
    assert_eq!((r.global_step, r.stop_reason.as_str()), (8, "stop_at_step: reached step 8"));
    let mut second = Trainer::new(TwoStep::new(3), config(&broken)).unwrap();
    let failing = |start: u64| -> Result<Box<dyn Iterator<Item = Result<(Tensor, Tensor)>>>> {
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
    let halves = || vec![Ok((x.narrow(0, 0, 4), y.narrow(0, 0, 4))), Ok((x.narrow(0, 0, 2), y.narrow(0, 0, 2)))];
    let eval = trainer.evaluate(halves()).unwrap();
    let m = trainer.model();
    let l4 = m.loss(&x, &y, couplet_modules::Mode::Eval).unwrap().double_value(&[]);
    let l2 = m.loss(&x.narrow(0, 0, 2), &y.narrow(0, 0, 2), couplet_modules::Mode::Eval).unwrap().double_value(&[]);
    assert_eq!(eval.batches, 2);
    assert!((eval.metrics["loss"] - (4.0 * l4 + 2.0 * l2) / 6.0).abs() < 1e-12, "{eval:?}");
    assert_eq!(eval.global_step, 0);
    let empty = trainer.evaluate(Vec::<Result<(Tensor, Tensor)>>::new()).unwrap_err();
    assert_eq!(empty.to_string(), "trainer: evaluate: the input holds no batch");

    let predictions = trainer.predict(halves()).unwrap();
    assert_eq!(predictions.iter().map(|p| p.size()).collect::<Vec<_>>(), [vec![4, 1], vec![2, 1]]);
    assert!(!predictions[0].requires_grad(), "predictions run under no_grad");

    let report = trainer.train_and_evaluate(input_fn, || Ok(halves()), 7, EvalSpec::every(3), vec![]).unwrap();
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
