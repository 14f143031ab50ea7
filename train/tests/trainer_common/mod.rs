//! The model and input shared by the trainer and resume tests: two layers with dropout
//! trained by two optimizers in two updates per step (as a GAN's), and batches that are a
//! function of their step.
#![allow(dead_code)]

use couplet_modules::{
    Adam, AdamConfig, Dropout, DropoutConfig, Linear, LinearConfig, Module, Optimizer, Result, Sgd,
    SgdConfig, Store,
};
use couplet_train::summary::{events_files, proto, read_events};
use couplet_train::{EvalContext, Model, Predictor, StepContext, StepOutput, Trainable};
use rand::Rng;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tch::{Kind, Tensor};

/// libtorch's generator is process-wide: tests that train hold this lock.
static RNG: Mutex<()> = Mutex::new(());
pub fn rng_guard() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh folder, removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(name: &str) -> Self {
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
pub struct TwoStep {
    store: Store,
    first: Linear,
    dropout: Dropout,
    second: Linear,
    adam: Adam,
    sgd: Sgd,
}

impl TwoStep {
    /// A model initialised from `init_seed`.
    pub fn new(init_seed: i64) -> Self {
        tch::manual_seed(init_seed);
        let store = Store::cpu();
        let root = store.root();
        let first = Linear::named(&root, "first", LinearConfig::new(6).with_input_size(3)).unwrap();
        let dropout = Dropout::new(&root, DropoutConfig::new(0.3)).unwrap();
        let second = Linear::named(&root, "second", LinearConfig::new(1).with_input_size(6)).unwrap();
        let adam = Adam::new(first.trainable_variables().unwrap(), AdamConfig::new(0.01)).unwrap();
        let sgd =
            Sgd::new(second.trainable_variables().unwrap(), SgdConfig::new(0.05).with_momentum(0.9)).unwrap();
        TwoStep { store, first, dropout, second, adam, sgd }
    }

    /// The mean squared error of `x` against `y`.
    pub fn loss(&self, x: &Tensor, y: &Tensor, mode: couplet_modules::Mode) -> Result<Tensor> {
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
pub fn batch(s: u64) -> (Tensor, Tensor) {
    let x = (Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([4, 3]) * (0.1 * s as f64)).sin();
    let y = x.sum_dim_intlist(1, true, Kind::Float).cos();
    (x, y)
}

/// The input function: the batches of steps `start + 1, start + 2, …`.
pub fn input_fn(start: u64) -> Result<impl Iterator<Item = Result<(Tensor, Tensor)>>> {
    Ok((start + 1..).map(|s| Ok(batch(s))))
}

/// `(tag, step, value)` of every scalar in the run folder's events files, in order, with
/// TensorBoard's purge applied: a `SessionLog` START at step `s` drops the events read
/// before it whose step is `>= s`.
pub fn scalars(dir: &std::path::Path) -> Vec<(String, i64, f32)> {
    let mut out: Vec<(String, i64, f32)> = Vec::new();
    for file in events_files(dir).unwrap() {
        for event in read_events(&file).unwrap() {
            match event.what {
                Some(proto::EventWhat::SessionLog(log))
                    if log.status == proto::SessionStatus::Start as i32 =>
                {
                    out.retain(|(_, step, _)| *step < event.step);
                }
                Some(proto::EventWhat::Summary(summary)) => {
                    for v in summary.value {
                        if let Some(proto::Value::SimpleValue(x)) = v.value {
                            out.push((v.tag, event.step, x));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}
