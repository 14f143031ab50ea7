//! [`Supervised`]: one [`Forward`] module, one loss and one optimizer as a [`Model`]
//! (Keras's `compile` + `fit` / `evaluate` / `predict` through a [`Trainer`](crate::Trainer)).

use crate::context::{EvalContext, StepContext};
use crate::model::{Model, Predictor, StepOutput, Trainable};
use couplet_modules::{Forward, Mode, Optimizer, Result, Store, TorchContext};
use tch::Tensor;

/// A loss `(prediction, target) -> scalar`, e.g. the mean squared error.
pub type LossFn = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send>;

/// The mean squared error `mean((prediction - target)²)`.
///
/// # Errors
/// [`couplet_modules::Error::Torch`] naming `mse` if the shapes do not broadcast.
pub fn mse(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    prediction.f_sub(target).and_then(|d| d.f_square()).and_then(|s| s.f_mean(tch::Kind::Float)).ctx("mse")
}

/// A supervised model over batches `(x, y)`: `train_step` computes
/// `loss(module.forward_t(x, Train), y)`, resets the gradients, back-propagates and steps
/// the optimizer (named `"optimizer"` in checkpoints) and reports `loss`; `eval_step`
/// reports the mean `loss` weighted by the batch size (rows of `x`); `predict_step` returns
/// `module.forward_t(x, Eval)`.
pub struct Supervised<F: Forward, O: Optimizer> {
    store: Store,
    module: F,
    optimizer: O,
    loss: LossFn,
}

impl<F: Forward, O: Optimizer> Supervised<F, O> {
    /// The model of `module` (whose variables live in `store`) trained by `optimizer`
    /// on `loss`.
    pub fn new(store: Store, module: F, optimizer: O, loss: LossFn) -> Self {
        Supervised { store, module, optimizer, loss }
    }

    /// The module.
    pub fn module(&self) -> &F {
        &self.module
    }

    /// The optimizer (e.g. to set its learning rate from a schedule).
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }
}

impl<F: Forward, O: Optimizer> Trainable for Supervised<F, O> {
    fn store(&self) -> &Store {
        &self.store
    }
    fn optimizers(&self) -> Vec<(&str, &dyn Optimizer)> {
        vec![("optimizer", &self.optimizer)]
    }
    fn optimizers_mut(&mut self) -> Vec<(&str, &mut dyn Optimizer)> {
        vec![("optimizer", &mut self.optimizer)]
    }
}

impl<F: Forward, O: Optimizer> Model for Supervised<F, O> {
    type Batch = (Tensor, Tensor);

    fn train_step(&mut self, (x, y): Self::Batch, ctx: &mut StepContext) -> Result<StepOutput> {
        let loss = (self.loss)(&self.module.forward_t(&x, ctx.mode())?, &y)?;
        self.optimizer.zero_grad();
        loss.f_backward().ctx(self.module.name())?;
        self.optimizer.step()?;
        Ok(StepOutput::new().with("loss", &loss))
    }

    fn eval_step(&mut self, (x, y): Self::Batch, ctx: &mut EvalContext) -> Result<()> {
        let loss = (self.loss)(&self.module.forward_t(&x, ctx.mode())?, &y)?;
        let rows = x.size().first().copied().unwrap_or(1) as f64;
        ctx.mean("loss", loss.f_double_value(&[]).ctx(self.module.name())?, rows)
    }
}

impl<F: Forward, O: Optimizer> Predictor for Supervised<F, O> {
    type Prediction = Tensor;

    fn predict_step(&mut self, (x, _): Self::Batch) -> Result<Tensor> {
        self.module.forward_t(&x, Mode::Eval)
    }
}
