//! What a [`Trainer`](crate::Trainer) trains: the [`Trainable`] state (variables and named
//! optimizers, what a checkpoint holds) and the [`Model`]'s steps, with the named scalars a
//! step reports ([`StepOutput`]).

use crate::context::{EvalContext, StepContext};
use couplet_modules::{Error, Optimizer, Result, Store, TorchContext};
use std::cell::OnceCell;
use tch::Tensor;

/// The state a checkpoint holds: the model's variables and its optimizers, each under a
/// name (`"adam"`, or `"generator"` and `"discriminator"` for a GAN). Object safe, so hooks
/// see it as `&dyn Trainable`.
pub trait Trainable {
    /// The store holding every variable of the model (all of them are checkpointed).
    fn store(&self) -> &Store;

    /// The optimizers, by name (ASCII letters, digits, `_`, `-`; unique), in a fixed order.
    fn optimizers(&self) -> Vec<(&str, &dyn Optimizer)>;

    /// The same optimizers, mutably, with the same names in the same order.
    fn optimizers_mut(&mut self) -> Vec<(&str, &mut dyn Optimizer)>;
}

/// A model the [`Trainer`](crate::Trainer) trains and evaluates: what Estimator's
/// `model_fn` is. The model owns its modules and optimizers and writes its own steps, so
/// a GAN's discriminator-then-generator update is as natural as a classifier's one loss.
///
/// Every variable must exist when the model is handed to the trainer (build lazy modules
/// with a first call), so that a checkpoint restores into them before the first step.
pub trait Model: Trainable {
    /// One batch of input, as the input function yields it.
    type Batch;

    /// One training step on `batch`: compute the losses, run the backward passes and step
    /// the optimizers. Returns the losses (and any other scalar) by name, e.g.
    /// `StepOutput::new().with("loss", loss)`; the summary saver writes them as
    /// `train/<name>`, the logging hook prints them and the NaN guard checks them.
    ///
    /// `ctx` gives the step number, the mode ([`Mode::Train`](couplet_modules::Mode)), a
    /// generator seeded from `(seed, step)` and the step's summary access.
    ///
    /// # Errors
    /// Any error of the model; it ends training (no checkpoint is written).
    fn train_step(&mut self, batch: Self::Batch, ctx: &mut StepContext) -> Result<StepOutput>;

    /// Accumulates evaluation metrics over one batch, under `no_grad` and in
    /// [`Mode::Eval`](couplet_modules::Mode): weighted means through
    /// [`EvalContext::mean`], or the model's own streaming metrics (updated here, reset in
    /// [`Model::eval_begin`], read in [`Model::eval_end`]).
    ///
    /// # Errors
    /// Any error of the model; it ends the evaluation.
    fn eval_step(&mut self, batch: Self::Batch, ctx: &mut EvalContext) -> Result<()>;

    /// Called before the first batch of an evaluation: reset the model's own streaming
    /// metrics. The default does nothing.
    ///
    /// # Errors
    /// Any error of the model.
    fn eval_begin(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called after the last batch of an evaluation: the values of the model's own
    /// streaming metrics, by name (added to the weighted means). The default has none.
    ///
    /// # Errors
    /// Any error of the model (e.g. a metric that saw no example).
    fn eval_end(&mut self) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }
}

/// A model that also predicts (Estimator's `predict`).
pub trait Predictor: Model {
    /// What one batch predicts.
    type Prediction;

    /// Predicts one batch, under `no_grad` and in [`Mode::Eval`](couplet_modules::Mode).
    ///
    /// # Errors
    /// Any error of the model.
    fn predict_step(&mut self, batch: Self::Batch) -> Result<Self::Prediction>;
}

/// The named scalars a training step reports (losses first, then anything else: learning
/// rates, norms). Values are detached scalar tensors; they are read back to the host only
/// when a hook asks (logging, summaries, the NaN guard), once per step.
#[derive(Debug, Default)]
pub struct StepOutput {
    values: Vec<(String, Tensor)>,
    host: OnceCell<Vec<(String, f64)>>,
}

impl StepOutput {
    /// No values.
    pub fn new() -> Self {
        StepOutput::default()
    }

    /// Adds the scalar `value` (a one-element tensor, detached here) under `name`.
    pub fn with(mut self, name: impl Into<String>, value: &Tensor) -> Self {
        self.push(name, value);
        self
    }

    /// Adds the scalar `value` under `name`.
    pub fn push(&mut self, name: impl Into<String>, value: &Tensor) {
        self.values.push((name.into(), value.detach()));
        self.host = OnceCell::new();
    }

    /// The values as tensors, in the order added.
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.values
    }

    /// Whether no value was reported.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values on the host, in the order added (read once, then cached).
    ///
    /// # Errors
    /// [`Error::Shape`] naming `step_output` if a value has more than one element;
    /// [`Error::Torch`] if reading it fails.
    pub fn scalars(&self) -> Result<&[(String, f64)]> {
        if let Some(host) = self.host.get() {
            return Ok(host);
        }
        let host = self
            .values
            .iter()
            .map(|(name, t)| {
                if t.numel() != 1 {
                    return Err(Error::shape(
                        "step_output",
                        format!("value {name:?}"),
                        "one element",
                        t.size(),
                    ));
                }
                let value = t.f_flatten(0, -1).and_then(|t| t.f_double_value(&[0])).ctx("step_output")?;
                Ok((name.clone(), value))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.host.get_or_init(|| host))
    }

    /// The host value of `name`, if reported.
    ///
    /// # Errors
    /// As [`StepOutput::scalars`].
    pub fn scalar(&self, name: &str) -> Result<Option<f64>> {
        Ok(self.scalars()?.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_read_in_order_and_cached() {
        let out =
            StepOutput::new().with("loss", &Tensor::from(1.5f32)).with("lr", &Tensor::from_slice(&[0.25f64]));
        assert_eq!(out.scalars().unwrap(), [("loss".to_string(), 1.5), ("lr".to_string(), 0.25)]);
        assert_eq!(out.scalar("lr").unwrap(), Some(0.25));
        assert_eq!(out.scalar("missing").unwrap(), None);
        let bad = StepOutput::new().with("loss", &Tensor::from_slice(&[1.0f32, 2.0]));
        assert_eq!(
            bad.scalars().unwrap_err().to_string(),
            "step_output: value \"loss\" must be one element, got [2]"
        );
    }
}
