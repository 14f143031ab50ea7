//! [`RunConfig`]: where a [`Trainer`](crate::Trainer) writes and how often, as TensorFlow's
//! `tf.estimator.RunConfig`.

use couplet_modules::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::Device;

const MODULE: &str = "run_config";

/// Where a run writes (checkpoints, summaries), how often, and how it runs (seed, device,
/// CPU threads). Every field has a documented default; build with [`RunConfig::new`] and
/// the `with_*` setters, then [`RunConfig::validate`] (the trainer validates it too).
///
/// Layout of `model_dir` (TensorFlow's):
/// - `ckpt-{step:08}.safetensors`: checkpoints (model variables and every optimizer's
///   state), the `keep_checkpoint_max` most recent;
/// - `events.out.tfevents.*`: training summaries (`train/loss`, …);
/// - `eval/events.out.tfevents.*`: evaluation summaries (`eval/<metric>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// The run's folder; created if missing. Default `runs/model`.
    pub model_dir: PathBuf,
    /// Save a checkpoint every this many global steps (`None`: not by steps). Default `None`.
    /// A checkpoint is always saved at the end of `train`.
    pub save_checkpoints_steps: Option<u64>,
    /// Save a checkpoint when this many seconds have passed since the last one (`None`: not
    /// by time). Default `Some(600.0)` (TensorFlow's). Only one of the two may be set.
    pub save_checkpoints_secs: Option<f64>,
    /// How many checkpoints to keep (`None`: all). Default `Some(5)` (TensorFlow's).
    pub keep_checkpoint_max: Option<usize>,
    /// Write the step's scalars (losses, learning rates) every this many steps (`0`: never).
    /// Default 100 (TensorFlow's).
    pub save_summary_steps: u64,
    /// Log the losses and steps per second every this many steps (`0`: never). Default 100
    /// (TensorFlow's).
    pub log_step_count_steps: u64,
    /// The run's seed. Before each training step `s` libtorch's generator is seeded from
    /// `(seed, s)` and the step's own generator ([`StepContext::rng`](crate::StepContext::rng))
    /// too, so dropout and noise draws depend only on the step, never on whether the run was
    /// interrupted and resumed. Default 0.
    pub seed: u64,
    /// The device the model and its inputs live on. Default the CPU.
    #[serde(skip, default = "default_device")]
    pub device: Device,
    /// libtorch's intra-op CPU threads, set with `tch::set_num_threads` when the trainer is
    /// made. Default 1: libtorch's default (one per core) makes small models many times
    /// slower on a loaded machine (a small LSTM language model took 149 s with the default
    /// against 18 s with one thread while a build ran beside it), and couplet's models are
    /// mostly small. Raise it for large matrix products on an idle machine.
    pub threads: i32,
}

fn default_device() -> Device {
    Device::Cpu
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model_dir: PathBuf::from("runs/model"),
            save_checkpoints_steps: None,
            save_checkpoints_secs: Some(600.0),
            keep_checkpoint_max: Some(5),
            save_summary_steps: 100,
            log_step_count_steps: 100,
            seed: 0,
            device: Device::Cpu,
            threads: 1,
        }
    }
}

impl RunConfig {
    /// A config writing into `model_dir`, every other field at its default.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        RunConfig { model_dir: model_dir.into(), ..Default::default() }
    }
    /// Checkpoints every `steps` steps (and no longer by time).
    pub fn with_save_checkpoints_steps(mut self, steps: u64) -> Self {
        self.save_checkpoints_steps = Some(steps);
        self.save_checkpoints_secs = None;
        self
    }
    /// Checkpoints every `secs` seconds (and no longer by steps).
    pub fn with_save_checkpoints_secs(mut self, secs: f64) -> Self {
        self.save_checkpoints_secs = Some(secs);
        self.save_checkpoints_steps = None;
        self
    }
    /// Sets how many checkpoints to keep (`None`: all).
    pub fn with_keep_checkpoint_max(mut self, keep: Option<usize>) -> Self {
        self.keep_checkpoint_max = keep;
        self
    }
    /// Sets the summary period in steps (`0`: never).
    pub fn with_save_summary_steps(mut self, steps: u64) -> Self {
        self.save_summary_steps = steps;
        self
    }
    /// Sets the logging period in steps (`0`: never).
    pub fn with_log_step_count_steps(mut self, steps: u64) -> Self {
        self.log_step_count_steps = steps;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the device.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
    /// Sets libtorch's intra-op CPU threads.
    pub fn with_threads(mut self, threads: i32) -> Self {
        self.threads = threads;
        self
    }

    /// The folder of evaluation summaries, `model_dir/eval`.
    pub fn eval_dir(&self) -> PathBuf {
        self.model_dir.join("eval")
    }

    /// Checks the config.
    ///
    /// # Errors
    /// [`Error::Config`] naming `run_config` for an empty `model_dir`, a zero checkpoint
    /// period, both or a non-finite/non-positive `save_checkpoints_secs`,
    /// `keep_checkpoint_max` of `Some(0)`, or `threads < 1`.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::config(MODULE, message));
        if self.model_dir.as_os_str().is_empty() {
            return bad("model_dir must not be empty".into());
        }
        if self.save_checkpoints_steps == Some(0) {
            return bad("save_checkpoints_steps must be >= 1 (or None), got 0".into());
        }
        if let Some(secs) = self.save_checkpoints_secs {
            if !(secs.is_finite() && secs > 0.0) {
                return bad(format!("save_checkpoints_secs must be finite and > 0 (or None), got {secs}"));
            }
            if self.save_checkpoints_steps.is_some() {
                return bad("set save_checkpoints_steps or save_checkpoints_secs, not both".into());
            }
        }
        if self.keep_checkpoint_max == Some(0) {
            return bad("keep_checkpoint_max must be >= 1 (or None to keep all), got 0".into());
        }
        if self.threads < 1 {
            return bad(format!("threads must be >= 1, got {}", self.threads));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_tensorflows_but_one_thread() {
        let c = RunConfig::default();
        assert_eq!(c.save_checkpoints_secs, Some(600.0));
        assert_eq!(c.save_checkpoints_steps, None);
        assert_eq!(c.keep_checkpoint_max, Some(5));
        assert_eq!((c.save_summary_steps, c.log_step_count_steps, c.threads), (100, 100, 1));
        assert!(c.validate().is_ok());
        assert_eq!(RunConfig::new("m").eval_dir(), PathBuf::from("m/eval"));
        let steps = RunConfig::new("m").with_save_checkpoints_steps(10);
        assert_eq!((steps.save_checkpoints_steps, steps.save_checkpoints_secs), (Some(10), None));
    }

    #[test]
    fn bad_configs_are_config_errors() {
        let cases = [
            (RunConfig::new(""), "model_dir must not be empty"),
            (RunConfig::new("m").with_save_checkpoints_steps(0), "save_checkpoints_steps must be >= 1"),
            (
                RunConfig::new("m").with_save_checkpoints_secs(f64::NAN),
                "save_checkpoints_secs must be finite",
            ),
            (RunConfig::new("m").with_keep_checkpoint_max(Some(0)), "keep_checkpoint_max must be >= 1"),
            (RunConfig::new("m").with_threads(0), "threads must be >= 1, got 0"),
            (RunConfig { save_checkpoints_steps: Some(5), ..RunConfig::new("m") }, "not both"),
        ];
        for (config, message) in cases {
            let e = config.validate().unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            assert!(e.to_string().starts_with("run_config: bad configuration: "), "{e}");
            assert!(e.to_string().contains(message), "{e} lacks {message}");
        }
    }
}
