//! Trains a small MLP to fit `y = sin(3x) · x` on [-1, 1] with a hand-written loop, on one process or data-parallel under torchrun (`--distributed`).
//!
//! ```sh
//! cargo run --release --example mlp_distributed -- --steps 2000 --seed 1
//! # data-parallel, 2 processes, the same global batch of 128 (README, "Distributed training")
//! .venv/bin/torchrun --nproc-per-node 2 --no-python target/release/examples/mlp_distributed --distributed --device cpu
//! ```
//! Shows the module core end to end: a store on the chosen device, a lazily built `Mlp`, its
//! trainable variables handed to `Adam`, and a checkpoint of the result.

use couplet::distributed::{DataParallel, DataParallelConfig, ProcessGroup};
use couplet::tch::{self, Device, Kind, Tensor};
use couplet::{checkpoint, Activation, Adam, AdamConfig, Mlp, MlpConfig, Mode, Module, Optimizer, Store};

struct Args {
    steps: usize,
    seed: i64,
    device: Device,
    distributed: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { steps: 2000, seed: 0, device: Device::cuda_if_available(), distributed: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--steps" => args.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--device" => {
                args.device = match value()?.as_str() {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::Cuda(0),
                    "auto" => Device::cuda_if_available(),
                    other => return Err(format!("--device must be cpu, cuda or auto, got {other}")),
                }
            }
            "--distributed" => args.distributed = true,
            "--help" | "-h" => {
                return Err(
                    "usage: mlp [--steps N] [--seed S] [--device cpu|cuda|auto] [--distributed]".into()
                );
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    Ok(args)
}

fn target(x: &Tensor) -> Tensor {
    (x * 3.0).sin() * x
}

fn main() -> couplet::Result<()> {
    let args = parse_args().unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2)
    });
    tch::manual_seed(args.seed);
    let store = Store::new(args.device);
    let mlp = Mlp::new(&store.root(), MlpConfig::new(&[64, 64, 1]).with_activation(Activation::Tanh))?;
    let options = (Kind::Float, args.device);
    let x_val = Tensor::linspace(-1.0, 1.0, 256, options).view([-1, 1]);
    let y_val = target(&x_val);
    let mut optimizer: Option<Adam> = None;
    let group = if args.distributed { Some(std::sync::Arc::new(ProcessGroup::from_env()?)) } else { None };
    let mut dp: Option<DataParallel> = None;
    let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank() as i64, g.world_size() as i64));
    let mut first = None;
    let mut last = 0.0;
    for step in 0..=args.steps {
        // Every rank draws the same global batch and trains on its shard of 128 / world rows.
        let x = (Tensor::rand([128, 1], options) * 2.0 - 1.0).narrow(0, rank * 128 / world, 128 / world);
        let loss = (mlp.forward_t(&x, Mode::Train)? - target(&x)).square().mean(Kind::Float);
        // The MLP builds its variables on its first call, so the optimizer comes after it.
        let opt = match &mut optimizer {
            Some(opt) => opt,
            None => optimizer.insert(Adam::new(mlp.trainable_variables()?, AdamConfig::new(3e-3))?),
        };
        if let (Some(group), None) = (&group, &dp) {
            dp = Some(DataParallel::new(group.clone(), mlp.variables()?, DataParallelConfig::default())?);
        }
        opt.zero_grad();
        match &mut dp {
            Some(dp) => dp.backward(&loss)?,
            None => loss.backward(),
        }
        opt.step()?;
        if rank == 0 && step % (args.steps / 10).max(1) == 0 {
            let val = tch::no_grad(|| mlp.forward_t(&x_val, Mode::Eval))?;
            last = (val - &y_val).square().mean(Kind::Float).double_value(&[]);
            let start = *first.get_or_insert(last);
            println!(
                "step {step:5}  validation mse {last:.6}  ({:.1}× below the start)",
                start / last.max(1e-12)
            );
        }
    }
    let path = std::env::temp_dir().join("couplet-mlp.safetensors");
    match &dp {
        Some(dp) => dp.save_checkpoint(&mlp, &path)?,
        None => checkpoint::save(&mlp, &path)?,
    }
    if rank > 0 {
        return Ok(());
    }
    let names: Vec<_> = mlp.variables()?.iter().map(|v| v.name().to_string()).collect();
    println!("final validation mse {last:.6}; saved {} to {}", names.join(", "), path.display());
    Ok(())
}
