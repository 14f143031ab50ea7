//! # couplet-train
//!
//! The training harness around a couplet model, in the manner of TensorFlow's Estimator and
//! Keras's `fit`: train / evaluate / predict with hooks, streaming metrics, learning-rate
//! schedules and TensorBoard summaries.
//!
//! - [`RunConfig`]: the model directory, checkpoint and summary periods, seed, device and
//!   CPU threads, with documented defaults.
//! - [`Model`] (and [`Trainable`], [`Predictor`]): the user's model function: its variables,
//!   named optimizers and its own training step, so one loss and a GAN's two updates are
//!   written alike.
//! - [`Trainer`]: `train` / `evaluate` / `predict` / `train_and_evaluate`, resuming from the
//!   model directory's latest checkpoint exactly (global step, optimizers, data position,
//!   per-step seeds).
//! - [`hooks`]: the `SessionRunHook` life cycle and the usual hooks.

pub mod config;
pub mod context;
pub mod hooks;
pub mod metrics;
pub mod model;
pub mod schedule;
pub mod summary;
pub mod supervised;
pub mod trainer;

pub use config::RunConfig;
pub use context::{step_seed, EvalContext, StepContext};
pub use hooks::{Hook, RunContext};
pub use model::{Model, Predictor, StepOutput, Trainable};
pub use supervised::{mse, LossFn, Supervised};
pub use trainer::{remove_run_files, EvalSpec, Evaluation, TrainReport, Trainer};
