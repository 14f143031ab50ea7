//! What a model's step sees: [`StepContext`] for training steps (step number, mode, seeded
//! generator, summary access) and [`EvalContext`] for evaluation (weighted means); the
//! per-step seed [`step_seed`].

use crate::summary::SummaryWriter;
use couplet_modules::{Error, Mode, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use tch::Device;

/// The seed of training step `step` of a run seeded `seed`: SplitMix64 of both, so
/// neighbouring steps and seeds get unrelated streams. The trainer seeds libtorch's
/// generator and the step's [`StepContext::rng`] with it before every step, which makes
/// every draw of a step depend on `(seed, step)` only.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    splitmix64(seed ^ splitmix64(step.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

/// SplitMix64's output function (Steele, Lea & Flood 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a training step sees.
pub struct StepContext<'a> {
    step: u64,
    seed: u64,
    device: Device,
    rng: Option<StdRng>,
    summary: Option<&'a SummaryWriter>,
}

impl<'a> StepContext<'a> {
    /// The context of step `step` of a run seeded `seed`; `summary` is the writer when the
    /// step is a summary step.
    pub(crate) fn new(step: u64, seed: u64, device: Device, summary: Option<&'a SummaryWriter>) -> Self {
        StepContext { step, seed: step_seed(seed, step), device, rng: None, summary }
    }

    /// The step being taken, counted from 1: after it the global step is `step()`. A
    /// learning-rate schedule bound with [`Trainer::with_schedule`](crate::Trainer::with_schedule)
    /// has already set its optimizer's rate from the global step before it, `step() - 1`.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Always [`Mode::Train`]: pass it to the modules' `forward_t`.
    pub fn mode(&self) -> Mode {
        Mode::Train
    }

    /// The run's device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// This step's seed, [`step_seed`]`(config.seed, step)` (libtorch's generator was seeded
    /// with it just before the step).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A generator seeded with [`StepContext::seed`], the same for this step in every run.
    pub fn rng(&mut self) -> &mut StdRng {
        let seed = self.seed;
        self.rng.get_or_insert_with(|| StdRng::seed_from_u64(seed))
    }

    /// The training summary writer when this is a summary step (every
    /// [`RunConfig::save_summary_steps`](crate::RunConfig)), else `None`: write costly
    /// summaries (histograms, images) only then, at [`StepContext::step`].
    pub fn summary(&self) -> Option<&'a SummaryWriter> {
        self.summary
    }
}

/// What an evaluation step sees: the global step, the evaluation's summary writer, and the
/// weighted means accumulated over the evaluation.
#[derive(Debug)]
pub struct EvalContext<'a> {
    global_step: u64,
    summary: Option<&'a SummaryWriter>,
    means: BTreeMap<String, (f64, f64)>,
    batches: u64,
}

impl<'a> EvalContext<'a> {
    pub(crate) fn new(global_step: u64, summary: Option<&'a SummaryWriter>) -> Self {
        EvalContext { global_step, summary, means: BTreeMap::new(), batches: 0 }
    }

    /// The global step of the model being evaluated.
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// The evaluation's summary writer (`model_dir/eval`), e.g. for images of what the model
    /// produces at this step.
    pub fn summary(&self) -> Option<&'a SummaryWriter> {
        self.summary
    }

    pub(crate) fn next_batch(&mut self) {
        self.batches += 1;
    }

    /// The batch being evaluated, counted from 1.
    pub fn batch(&self) -> u64 {
        self.batches
    }

    /// Always [`Mode::Eval`].
    pub fn mode(&self) -> Mode {
        Mode::Eval
    }

    /// Adds `value` with `weight` (e.g. a batch's mean loss weighted by its size) to the
    /// weighted mean `name`: the evaluation reports `Σ wᵢ vᵢ / Σ wᵢ`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `evaluate` for a non-finite value, or a weight
    /// that is negative or not finite.
    pub fn mean(&mut self, name: &str, value: f64, weight: f64) -> Result<()> {
        if !(value.is_finite() && weight.is_finite() && weight >= 0.0) {
            return Err(Error::invalid(
                "evaluate",
                format!("metric {name:?}: value {value} with weight {weight}: the value must be finite and the weight finite and >= 0"),
            ));
        }
        let entry = self.means.entry(name.to_string()).or_insert((0.0, 0.0));
        entry.0 += value * weight;
        entry.1 += weight;
        Ok(())
    }

    /// The weighted means (a mean of zero total weight is absent).
    pub(crate) fn finish(self) -> BTreeMap<String, f64> {
        self.means.into_iter().filter(|(_, (_, w))| *w > 0.0).map(|(k, (s, w))| (k, s / w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn splitmix_matches_its_reference_values() {
        // SplitMix64 from state 0: the first outputs of the reference generator
        // (Vigna's splitmix64.c) are 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn step_seeds_differ_by_step_and_seed_and_repeat() {
        let seeds: std::collections::HashSet<u64> =
            (0..3).flat_map(|s| (0..1000).map(move |t| step_seed(s, t))).collect();
        assert_eq!(seeds.len(), 3000);
        let mut a = StepContext::new(7, 1, Device::Cpu, None);
        let mut b = StepContext::new(7, 1, Device::Cpu, None);
        assert_eq!(a.rng().gen::<u64>(), b.rng().gen::<u64>());
        assert_eq!((a.step(), a.mode(), a.seed()), (7, Mode::Train, step_seed(1, 7)));
        assert!(a.summary().is_none(), "not a summary step");
    }

    #[test]
    fn weighted_means_are_hand_worked() {
        let mut ctx = EvalContext::new(3, None);
        ctx.mean("loss", 2.0, 3.0).unwrap();
        ctx.mean("loss", 4.0, 1.0).unwrap();
        ctx.mean("empty", 4.0, 0.0).unwrap();
        assert!(ctx.mean("loss", f64::NAN, 1.0).is_err() && ctx.mean("loss", 1.0, -1.0).is_err());
        let means = ctx.finish();
        assert_eq!(means.len(), 1);
        assert_eq!(means["loss"], (2.0 * 3.0 + 4.0) / 4.0);
        assert_eq!(EvalContext::new(3, None).global_step(), 3);
    }
}
