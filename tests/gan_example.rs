//! Drives the GAN example (`examples/gan.rs`) end to end in its short mode: it learns (losses
//! move, most ring modes captured where a fresh generator captures none), writes plots and
//! checkpoints, and `--resume` continues from the checkpoint with the variables restored.
//! Also checks the benchmark metrics on hand-worked inputs (the plotting module's tests are in
//! tests/plot.rs).

mod common;
#[allow(dead_code)]
#[path = "../examples/gan.rs"]
mod gan;

use clap::Parser;
use gan::{Args, Dataset, Mixture};
use std::path::{Path, PathBuf};
use tch::Device;

/// A fresh folder under the system's temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("couplet-gan-example-{}-{name}", std::process::id()));
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

/// The example's arguments, parsed as from a command line.
fn args(extra: &[&str]) -> Args {
    Args::try_parse_from(["gan", "--short", "--device", "cpu"].iter().chain(extra)).unwrap()
}

/// A PNG's width and height, read back with the `png` decoder.
fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn short_ring_run_learns_checkpoints_and_resumes() -> couplet::Result<()> {
    let _rng = common::rng_guard();
    let dir = TempDir::new("ring");
    let out = dir.0.to_str().unwrap();
    let ckpt = dir.0.clone();
    let first = gan::run(args(&["--dataset", "ring", "--seed", "3", "--logdir", out]))?;
    let steps = first.final_step;
    assert_eq!(first.start_step, 0);
    assert!(first.restored.is_none());
    assert_eq!(first.evaluations.len(), 10, "--eval-every defaults to steps / 10");
    assert_eq!(first.evaluations.last().unwrap().step, steps);

    // The losses move: the discriminator learns to separate, then the generator catches up.
    let (start, end) = (&first.evaluations[0], first.evaluations.last().unwrap());
    for e in &first.evaluations {
        assert!(e.d_loss.is_finite() && e.g_loss.is_finite(), "step {}: {e:?}", e.step);
    }
    let moved = |f: fn(&gan::Evaluation) -> f64| {
        let values: Vec<f64> = first.evaluations.iter().map(f).collect();
        values.iter().cloned().fold(f64::MIN, f64::max) - values.iter().cloned().fold(f64::MAX, f64::min)
    };
    assert!(moved(|e| e.d_loss) > 0.05, "discriminator loss did not move: {:?}", first.evaluations);
    assert!(moved(|e| e.g_loss) > 0.05, "generator loss did not move: {:?}", first.evaluations);

    // Learning: a fresh generator puts no mode above the threshold (0.8% high quality at
    // initialisation); the short run captures most of the ring.
    assert!(start.metrics.modes <= end.metrics.modes);
    let m = &first.metrics;
    assert!(m.modes >= 6, "short run captured only {m}");
    assert!(m.high_quality >= 0.5, "short run: {m}");
    assert!(m.kl < 0.5, "short run: {m}");

    // Plots: one per evaluation, and the final one.
    for e in &first.evaluations {
        assert_eq!(e.plot, dir.0.join(format!("step-{:06}.png", e.step)));
        assert!(e.plot.is_file());
    }
    assert_eq!(png_size(&first.plot), png_size(&first.evaluations[0].plot));

    // TensorBoard: train/loss (= d_loss + g_loss) beside the two losses, at the same steps.
    let mut scalars = std::collections::BTreeMap::<(String, i64), f32>::new();
    for file in couplet::train::summary::events_files(&dir.0)? {
        for event in couplet::train::summary::read_events(&file)? {
            if let Some(couplet::train::summary::proto::EventWhat::Summary(summary)) = event.what {
                for v in summary.value {
                    if let Some(couplet::train::summary::proto::Value::SimpleValue(x)) = v.value {
                        scalars.insert((v.tag, event.step), x);
                    }
                }
            }
        }
    }
    let loss_steps: Vec<i64> = scalars.keys().filter(|(t, _)| t == "train/loss").map(|(_, s)| *s).collect();
    let tags: std::collections::BTreeSet<_> = scalars.keys().map(|(tag, _)| tag).collect();
    assert!(!loss_steps.is_empty(), "no train/loss among {tags:?}");
    for step in loss_steps {
        let get = |tag: &str| scalars[&(tag.to_string(), step)];
        let (loss, d, g) = (get("train/loss"), get("train/d_loss"), get("train/g_loss"));
        assert!((loss - (d + g)).abs() <= 1e-5 * (1.0 + loss.abs()), "step {step}: {loss} != {d} + {g}");
    }

    // Checkpoint: every variable of both networks under its scoped name, and each
    // optimizer's Adam state for each of its network's variables.
    assert_eq!(first.checkpoint, ckpt.join(format!("ckpt-{steps:08}.safetensors")));
    let saved = couplet::checkpoint::load(&first.checkpoint)?;
    let mut expected = Vec::new();
    for net in ["discriminator", "generator"] {
        for layer in 0..4 {
            for v in ["b", "w"] {
                let name = format!("gan/{net}/linear_{layer}/{v}");
                for slot in ["exp_avg", "exp_avg_sq", "step"] {
                    expected.push(format!("optimizer/{net}/{name}/{slot}"));
                }
                expected.push(name);
            }
        }
    }
    expected.sort();
    assert_eq!(saved.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(saved["gan/generator/linear_0/w"].size(), [2, 128]);
    assert_eq!(saved["gan/discriminator/linear_3/w"].size(), [128, 1]);

    // Resume: the step count continues and the restored generator is the trained one (the
    // evaluation noise is fixed by the seed, so its metrics are the first run's exactly).
    let more = (steps + 100).to_string();
    let second =
        gan::run(args(&["--dataset", "ring", "--seed", "3", "--steps", &more, "--logdir", out, "--resume"]))?;
    assert_eq!(second.start_step, steps);
    assert_eq!(second.restored.as_ref(), Some(&first.metrics));
    assert_eq!(second.final_step, steps + 100);
    assert!(second.evaluations.iter().all(|e| e.step > steps));
    let manager = couplet::CheckpointManager::new(&ckpt, None)?;
    assert_eq!(manager.latest_step()?, Some(steps + 100));
    assert!(second.metrics.modes >= 6, "resumed run: {}", second.metrics);
    Ok(())
}

#[test]
fn resume_without_checkpoint_starts_fresh_and_bad_arguments_are_errors() -> couplet::Result<()> {
    let _rng = common::rng_guard();
    let dir = TempDir::new("fresh");
    let out = dir.0.to_str().unwrap();
    let report = gan::run(args(&["--steps", "4", "--eval-every", "2", "--logdir", out, "--resume"]))?;
    assert_eq!((report.start_step, report.final_step), (0, 4));
    assert_eq!(report.evaluations.iter().map(|e| e.step).collect::<Vec<_>>(), [2, 4]);
    assert!(dir.0.join("ckpt-00000004.safetensors").is_file());
    let e = gan::run(args(&["--steps", "0", "--logdir", out])).unwrap_err();
    assert!(e.to_string().starts_with("gan: "), "{e}");
    assert!(Args::try_parse_from(["gan", "--dataset", "spiral"]).is_err());
    Ok(())
}

#[test]
fn metrics_on_hand_placed_samples() {
    let ring = Mixture::new(Dataset::Ring, Device::Cpu);
    assert_eq!(ring.modes(), 8);
    let s = 0.5f32.sqrt() * 2.0;
    let centres = [[2.0, 0.0], [s, s], [0.0, 2.0], [-s, s], [-2.0, 0.0], [-s, -s], [0.0, -2.0], [s, -s]];
    // One sample on every centre: all high quality, every mode (threshold 8/8/4), KL 0.
    let m = ring.metrics(&centres);
    assert_eq!((m.high_quality, m.modes, m.counts.clone()), (1.0, 8, vec![1; 8]));
    assert!(m.kl.abs() < 1e-12);
    // 3σ = 0.06: a sample 0.05 from (2, 0) counts, 0.07 from it does not.
    let m = ring.metrics(&[[2.05, 0.0], [2.0, 0.07], [1.0, 1.0], [2.0, 0.0]]);
    assert_eq!(m.high_quality, 0.5);
    assert_eq!(m.counts, [2, 0, 0, 0, 0, 0, 0, 0]);
    // Threshold 4/8/4 = 0.125: one mode; KL = ln 8 when one mode holds every sample.
    assert_eq!(m.modes, 1);
    assert!((m.kl - 8f64.ln()).abs() < 1e-12);
    // Two modes with 3 and 1 samples: p = (3/4, 1/4), KL = 3/4 ln 6 + 1/4 ln 2.
    let m = ring.metrics(&[[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, -2.0]]);
    assert_eq!(m.modes, 2);
    assert!((m.kl - (0.75 * 6f64.ln() + 0.25 * 2f64.ln())).abs() < 1e-12);

    // The grid: 25 modes, 3σ = 0.15, threshold 2500/25/4 = 25 high-quality samples.
    let grid = Mixture::new(Dataset::Grid, Device::Cpu);
    assert_eq!(grid.modes(), 25);
    let mut samples = vec![[4.1f32, -3.9]; 25];
    samples.extend(vec![[-2.0f32, 2.0]; 24]);
    samples.extend(vec![[1.0f32, 1.0]; 2451]);
    let m = grid.metrics(&samples);
    assert_eq!(m.modes, 1, "{m}");
    assert_eq!(m.high_quality, 49.0 / 2500.0);
}

#[test]
fn mixture_samples_have_the_benchmark_statistics() {
    let _rng = common::rng_guard();
    tch::manual_seed(0);
    let ring = Mixture::new(Dataset::Ring, Device::Cpu);
    let x = ring.sample(20_000);
    assert_eq!(x.size(), [20_000, 2]);
    let points: Vec<[f32; 2]> =
        Vec::<f32>::try_from(x.flatten(0, -1)).unwrap().chunks_exact(2).map(|p| [p[0], p[1]]).collect();
    // Radius 2, std 0.02: every sample is within 3σ of a centre but for about 1.1% (the
    // 2D Gaussian's mass beyond 3σ is exp(-4.5)); modes are used evenly.
    let m = ring.metrics(&points);
    assert!((m.high_quality - (1.0 - (-4.5f64).exp())).abs() < 0.005, "{m}");
    assert_eq!(m.modes, 8);
    assert!(m.kl < 0.002, "{m}");
    let radius = x.square().sum_dim_intlist(1, false, tch::Kind::Float).sqrt();
    assert!((radius.mean(tch::Kind::Float).double_value(&[]) - 2.0).abs() < 0.002);
    let grid = Mixture::new(Dataset::Grid, Device::Cpu).sample(20_000);
    let (lo, hi) = (grid.min().double_value(&[]), grid.max().double_value(&[]));
    assert!(lo > -4.5 && lo < -4.0 && hi > 4.0 && hi < 4.5, "grid range [{lo}, {hi}]");
}
