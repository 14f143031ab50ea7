//! Trains a small MLP to fit `y = sin(3x) · x` on [-1, 1] with couplet's [`Trainer`]: one
//! `Forward` module, one loss and one optimizer ([`Supervised`]), evaluated on a fixed grid.
//!
//! ```sh
//! cargo run --release --example mlp -- --steps 2000 --seed 1
//! tensorboard --logdir runs          # train/loss, eval/loss, the fit as an image
//! ```
//! Every batch is a function of its step (drawn from a generator seeded by the step), so a
//! run stopped and continued with `--resume` takes exactly the steps of one that was not.

use clap::Parser;
use couplet::tch::{Device, Kind, Tensor};
use couplet::train::hooks::{Hook, LogSink, LoggingHook, ProgressBarHook};
use couplet::train::{mse, remove_run_files, step_seed, EvalSpec, RunConfig, Supervised, Trainer};
use couplet::{Activation, Adam, AdamConfig, Mlp, MlpConfig, Module, Result, Store};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

#[path = "common/plot.rs"]
mod plot;

/// Fit `y = sin(3x) · x` with an MLP and report the validation error.
#[derive(Clone, Debug, Parser)]
#[command(name = "mlp")]
struct Args {
    /// Training steps (of 128 examples).
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Seed of the initial weights and of the data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// The run folder: checkpoints and TensorBoard summaries.
    #[arg(long, default_value = "runs/mlp")]
    logdir: PathBuf,
    /// Continue from the latest checkpoint in --logdir (else start afresh).
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The target function.
pub fn target(x: &Tensor) -> Tensor {
    (x * 3.0).sin() * x
}

/// The batch of step `step`: 128 points drawn uniformly from [-1, 1] by a generator seeded
/// with `(seed, step)`, whatever ran before.
pub fn batch(seed: u64, step: u64, device: Device) -> (Tensor, Tensor) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(seed ^ 0xDA7A, step));
    let xs: Vec<f32> = (0..128).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let x = Tensor::from_slice(&xs).view([-1, 1]).to_device(device);
    let y = target(&x);
    (x, y)
}

fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        "auto" => Ok(Device::cuda_if_available()),
        other => {
            Err(couplet::Error::invalid("mlp", format!("--device must be cpu, cuda or auto, got {other}")))
        }
    }
}

/// The model: a 1 → 64 → 64 → 1 tanh MLP initialised from `seed`, trained by Adam (lr 3e-3)
/// on the mean squared error.
///
/// # Errors
/// A libtorch error (e.g. an unavailable device).
pub fn model(seed: u64, device: Device) -> Result<Supervised<Mlp, Adam>> {
    couplet::tch::manual_seed(seed as i64);
    let store = Store::new(device);
    let config = MlpConfig::new(&[64, 64, 1]).with_activation(Activation::Tanh).with_input_size(1);
    let mlp = Mlp::new(&store.root(), config)?;
    let adam = Adam::new(mlp.trainable_variables()?, AdamConfig::new(3e-3))?;
    Ok(Supervised::new(store, mlp, adam, Box::new(mse)))
}

/// A boxed stream of `(x, y)` batches.
pub type Batches = Box<dyn Iterator<Item = Result<(Tensor, Tensor)>>>;

/// The training input from step `start + 1` on.
pub fn input_fn(seed: u64, device: Device) -> impl FnMut(u64) -> Result<Batches> {
    move |start| Ok(Box::new((start + 1..).map(move |s| Ok(batch(seed, s, device)))))
}

/// Points `[x, y]` of two `[N, 1]` tensors.
fn points(x: &Tensor, y: &Tensor) -> Result<Vec<[f32; 2]>> {
    let flat = |t: &Tensor| Vec::<f32>::try_from(t.to_device(Device::Cpu).flatten(0, -1));
    let torch = |e| couplet::Error::Torch { module: "mlp".into(), source: e };
    Ok(flat(x).map_err(torch)?.into_iter().zip(flat(y).map_err(torch)?).map(|(a, b)| [a, b]).collect())
}

/// Plots the target and the MLP's prediction on `grid` at `path` and as the TensorBoard
/// image `fit` at `step`.
fn plot_fit(
    trainer: &mut Trainer<Supervised<Mlp, Adam>>,
    grid: &Tensor,
    path: &std::path::Path,
    step: u64,
) -> Result<PathBuf> {
    let prediction = trainer.predict([Ok((grid.shallow_clone(), grid.shallow_clone()))])?;
    let (want, got) = (points(grid, &target(grid))?, points(grid, &prediction[0])?);
    let series = [
        plot::Series { label: "sin(3x)·x", points: &want, color: plot::PALETTE[0] },
        plot::Series { label: "mlp", points: &got, color: plot::PALETTE[1] },
    ];
    let options = plot::ScatterOptions {
        x_label: "x",
        y_label: "y",
        ..plot::ScatterOptions::new("fit", (-1.0, 1.0), (-1.0, 1.0))
    };
    let io = |e| couplet::Error::Io { context: format!("writing {}", path.display()), source: e };
    plot::scatter(&series, &options, path).map_err(io)?;
    let png = std::fs::read(path).map_err(io)?;
    trainer.summary_writer()?.add_image("fit", &png, step as i64)?;
    Ok(path.to_path_buf())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = device(&args.device)?;
    if !args.resume {
        remove_run_files(&args.logdir)?;
    }
    let model = model(args.seed, device)?;
    let run = RunConfig::new(&args.logdir)
        .with_seed(args.seed)
        .with_device(device)
        .with_save_checkpoints_steps((args.steps / 4).max(1))
        .with_save_summary_steps(10)
        .with_log_step_count_steps(0);
    let mut trainer = Trainer::new(model, run)?;

    let grid = Tensor::linspace(-1.0, 1.0, 256, (Kind::Float, device)).view([-1, 1]);
    let eval_input = || Ok([Ok((grid.shallow_clone(), target(&grid)))]);
    let progress = if args.quiet { ProgressBarHook::hidden() } else { ProgressBarHook::new(10)? };
    let log = LoggingHook::every_steps((args.steps / 10).max(1), LogSink::Bar(progress.bar()))?;
    let hooks: Vec<Box<dyn Hook>> = vec![Box::new(progress), Box::new(log)];
    let spec = EvalSpec::every((args.steps / 10).max(1)).with_at_start(true);
    let report =
        trainer.train_and_evaluate(input_fn(args.seed, device), eval_input, args.steps, spec, hooks)?;
    for e in &report.evaluations {
        println!("step {:5}  validation mse {:.6}", e.global_step, e.metrics["loss"]);
    }
    let last = trainer.evaluate(eval_input()?)?.metrics["loss"];
    let fit = plot_fit(&mut trainer, &grid, &args.logdir.join("fit.png"), report.global_step)?;
    println!("fit: {}", fit.display());
    println!(
        "final validation mse {last:.6} at step {} ({}); run folder {} (tensorboard --logdir {})",
        report.global_step,
        report.stop_reason,
        args.logdir.display(),
        args.logdir.display()
    );
    Ok(())
}
