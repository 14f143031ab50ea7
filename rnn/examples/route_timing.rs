//! Times `dynamic_rnn`'s routes against each other and against PyTorch's own kernels
//! (`nn.LSTM`/`nn.GRU` on the padded batch, or on `pack_padded_sequence` with lengths), for
//! `B = 32, T = 100, I = 64, H = 256`: lengths fixed, uniform in `[T/2, T]`, or `1..=T` over
//! 100 rows (a one-step segment per step). Medians of `reps` (default 7), forward under
//! `no_grad` and forward + backward; `threads` sets libtorch's thread count:
//!
//! ```text
//! cargo run -p couplet-rnn --example route_timing \
//!     --config 'profile.dev.package.couplet-rnn.opt-level=2' -- [reps] [threads]
//! ```
//!
//! `route_timing lengths [reps] [threads]` instead times the length-aware routes of issue 14
//! at the same shape, forward + backward, for one LSTM, a bidirectional LSTM and a 2-layer
//! LSTM stack: [`Route::Fused`] (per segment), [`Route::Padded`] and the automatic route,
//! against libtorch's fused LSTM over the padded batch (what `nn.LSTM` runs), all in every
//! repetition, alternating; it prints the medians and each one's ratio to the padded kernel,
//! for lengths all `T`, uniform in `[T/2, T]`, uniform in `[1, T]`, one row of `T` and 31 of
//! 5, geometric (`T · 0.9^k`) and two clusters (16 rows near 20, 16 near 90).

use couplet_modules::Store;
use couplet_rnn::{
    dynamic_rnn, Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, RnnCore, Route, TorchCellKind,
    UnrollOptions, VanillaRnn, VanillaRnnConfig,
};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("lengths") {
        return lengths_main();
    }
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let reps = args.first().copied().unwrap_or(7);
    if let Some(&threads) = args.get(1) {
        tch::set_num_threads(threads as i32);
    }
    let (b, t, i, h) = (32i64, 100i64, 64i64, 256i64);
    tch::manual_seed(0);
    let lengths: Vec<i64> =
        Vec::<i64>::try_from(Tensor::randint_low(t / 2, t + 1, [b], (Kind::Int64, Device::Cpu))).unwrap();
    let store = Store::cpu();
    let root = store.root();
    let cores: Vec<(&str, Box<dyn RnnCore>)> = vec![
        ("lstm", Box::new(Lstm::new(&root, LstmConfig::new(h).with_input_size(i)).unwrap())),
        (
            "lstm proj 128",
            Box::new(Lstm::new(&root, LstmConfig::new(h).with_input_size(i).with_proj_size(128)).unwrap()),
        ),
        ("gru", Box::new(Gru::new(&root, GruConfig::new(h).with_input_size(i)).unwrap())),
        (
            "rnn tanh",
            Box::new(
                VanillaRnn::new(
                    &root,
                    VanillaRnnConfig::new(h).with_input_size(i).with_activation(Nonlinearity::Tanh),
                )
                .unwrap(),
            ),
        ),
    ];
    let x = Tensor::randn([b, t, i], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    // Worst case for the fused route: B = 100 rows of lengths 1..=100, a segment per step.
    let ragged_x = Tensor::randn([100, t, i], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let ragged: Vec<i64> = (1..=t).collect();
    println!("threads {}, reps {reps}; milliseconds, median", tch::get_num_threads());
    for (name, core) in &cores {
        for (scenario, lens) in [("fixed", None), ("variable", Some(&lengths)), ("1..=T", Some(&ragged))] {
            let x = if scenario == "1..=T" { &ragged_x } else { &x };
            let mut options = UnrollOptions::train();
            if let Some(l) = lens {
                options = options.with_lengths(l.as_slice());
            }
            let auto = couplet_rnn::unroll_route(&**core, x, &options).unwrap();
            let run = |route: Route, backward: bool| {
                let start = Instant::now();
                if backward {
                    let (y, _) = dynamic_rnn(&**core, x, &options.with_route(route)).unwrap();
                    y.sum(Kind::Float).backward();
                } else {
                    let _ = tch::no_grad(|| dynamic_rnn(&**core, x, &options.with_route(route)).unwrap());
                }
                start.elapsed().as_secs_f64() * 1e3
            };
            // PyTorch's own route: `nn.LSTM` / `nn.GRU` on the padded batch, or on
            // `pack_padded_sequence` (rows sorted by length) with lengths.
            let layer = core.torch_layers(i).unwrap().map(|mut l| l.remove(0));
            let pytorch = |backward: bool| -> Option<f64> {
                let layer = layer.as_ref().filter(|l| l.kind != TorchCellKind::RnnTanh)?;
                let params = layer.params();
                let start = Instant::now();
                let go = || {
                    let h0 = Tensor::zeros(
                        [1, x.size()[0], layer.weight_hh.size()[1]],
                        (Kind::Float, Device::Cpu),
                    );
                    let c0 = Tensor::zeros([1, x.size()[0], h], (Kind::Float, Device::Cpu));
                    let lstm = layer.kind == TorchCellKind::Lstm;
                    match lens {
                        None if lstm => x.lstm(&[&h0, &c0], &params, true, 1, 0.0, true, false, true).0,
                        None => x.gru(&h0, &params, true, 1, 0.0, true, false, true).0,
                        Some(l) => {
                            let mut order: Vec<i64> = (0..l.len() as i64).collect();
                            order.sort_by_key(|&k| std::cmp::Reverse(l[k as usize]));
                            let sorted: Vec<i64> = order.iter().map(|&k| l[k as usize]).collect();
                            let xs = x.index_select(0, &Tensor::from_slice(&order));
                            let (data, sizes) =
                                xs.internal_pack_padded_sequence(&Tensor::from_slice(&sorted), true);
                            if lstm {
                                Tensor::lstm_data(
                                    &data,
                                    &sizes,
                                    &[&h0, &c0],
                                    &params,
                                    true,
                                    1,
                                    0.0,
                                    true,
                                    false,
                                )
                                .0
                            } else {
                                Tensor::gru_data(&data, &sizes, &h0, &params, true, 1, 0.0, true, false).0
                            }
                        }
                    }
                };
                if backward {
                    go().sum(Kind::Float).backward();
                } else {
                    let _ = tch::no_grad(go);
                }
                Some(start.elapsed().as_secs_f64() * 1e3)
            };
            let mut torch_times = vec![Vec::new(); 2];
            let mut times = vec![Vec::new(); 4];
            for rep in 0..=reps {
                for (k, (route, backward)) in
                    [(Route::Loop, false), (Route::Fused, false), (Route::Loop, true), (Route::Fused, true)]
                        .into_iter()
                        .enumerate()
                {
                    let ms = run(route, backward);
                    if rep > 0 {
                        times[k].push(ms);
                    }
                }
                for (k, backward) in [false, true].into_iter().enumerate() {
                    if let Some(ms) = pytorch(backward).filter(|_| rep > 0) {
                        torch_times[k].push(ms);
                    }
                }
            }
            let torch: Vec<String> = torch_times
                .into_iter()
                .map(|v| if v.is_empty() { "-".to_string() } else { format!("{:.1}", median(v)) })
                .collect();
            let m: Vec<f64> = times.into_iter().map(median).collect();
            println!(
                "{name:>14} {:>8}: fwd loop {:6.1} fused {:6.1} | fwd+bwd loop {:6.1} fused {:6.1} | pytorch fwd {:>6} fwd+bwd {:>6} | auto {auto:?}",
                scenario,
                m[0], m[1], m[2], m[3], torch[0], torch[1]
            );
        }
    }
}

/// The length distributions of issue 14, `b` rows of at most `t` steps.
fn distributions(b: i64, t: i64) -> Vec<(&'static str, Vec<i64>)> {
    let uniform = |low: i64| -> Vec<i64> {
        Vec::<i64>::try_from(Tensor::randint_low(low, t + 1, [b], (Kind::Int64, Device::Cpu))).unwrap()
    };
    let near = |centre: i64| {
        let jitter =
            Vec::<i64>::try_from(Tensor::randint_low(-3, 4, [b / 2], (Kind::Int64, Device::Cpu))).unwrap();
        jitter.into_iter().map(move |j| (centre + j).clamp(1, t))
    };
    vec![
        ("all T", vec![t; b as usize]),
        ("uniform [T/2, T]", uniform(t / 2)),
        ("uniform [1, T]", uniform(1)),
        ("one T, 31 of 5", (0..b).map(|k| if k == 0 { t } else { 5 }).collect()),
        ("geometric", (0..b).map(|k| ((t as f64) * 0.9f64.powi(k as i32)).ceil() as i64).collect()),
        ("two clusters", near(20).chain(near(90)).collect()),
    ]
}

fn lengths_main() {
    let args: Vec<usize> = std::env::args().skip(2).map(|a| a.parse().unwrap()).collect();
    let reps = args.first().copied().unwrap_or(7);
    if let Some(&threads) = args.get(1) {
        tch::set_num_threads(threads as i32);
    }
    let (b, t, i, h) = (32i64, 100i64, 64i64, 256i64);
    tch::manual_seed(0);
    let store = Store::cpu();
    let root = store.root();
    let lstm = |input: i64| Lstm::new(&root, LstmConfig::new(h).with_input_size(input)).unwrap();
    let single = lstm(i);
    let backward = lstm(i);
    let stack = couplet_rnn::StackedRnn::new(
        &root,
        vec![Box::new(lstm(i)), Box::new(lstm(h))],
        couplet_rnn::StackedRnnConfig::new(),
    )
    .unwrap();
    let x = Tensor::randn([b, t, i], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    println!(
        "threads {}, reps {reps}, B {b} T {t} I {i} H {h}, forward + backward; milliseconds, median; ratio to the padded kernel",
        tch::get_num_threads()
    );
    for (model, layers) in [("lstm", 1), ("bidirectional", 1), ("2-layer stack", 2)] {
        let core: &dyn RnnCore = if layers == 2 { &stack } else { &single };
        let bidirectional = model == "bidirectional";
        let mut params: Vec<Tensor> = core
            .torch_layers(i)
            .unwrap()
            .unwrap()
            .iter()
            .flat_map(|l| l.params().into_iter().map(Tensor::shallow_clone).collect::<Vec<_>>())
            .collect();
        if bidirectional {
            params.extend(
                backward.torch_layers(i).unwrap().unwrap()[0].params().into_iter().map(Tensor::shallow_clone),
            );
        }
        let directions = if bidirectional { 2 } else { 1 };
        // libtorch's fused LSTM over the padded batch, what `nn.LSTM(batch_first=True)` runs.
        let kernel = || {
            let start = Instant::now();
            let zeros = Tensor::zeros([directions * layers, b, h], (Kind::Float, Device::Cpu));
            let refs: Vec<&Tensor> = params.iter().collect();
            let (y, _, _) = x.lstm(&[&zeros, &zeros], &refs, true, layers, 0.0, true, bidirectional, true);
            y.sum(Kind::Float).backward();
            start.elapsed().as_secs_f64() * 1e3
        };
        for (name, lengths) in distributions(b, t) {
            let real: i64 = lengths.iter().sum();
            let run = |route: Option<Route>| {
                let start = Instant::now();
                let y = if bidirectional {
                    let mut options = couplet_rnn::BiRnnOptions::train().with_lengths(lengths.as_slice());
                    if let Some(route) = route {
                        options = options.with_route(route);
                    }
                    let out = couplet_rnn::bidirectional_dynamic_rnn(core, &backward, &x, &options).unwrap();
                    out.fw_outputs.sum(Kind::Float) + out.bw_outputs.sum(Kind::Float)
                } else {
                    let mut options = UnrollOptions::train().with_lengths(lengths.as_slice());
                    if let Some(route) = route {
                        options = options.with_route(route);
                    }
                    dynamic_rnn(core, &x, &options).unwrap().0.sum(Kind::Float)
                };
                y.backward();
                start.elapsed().as_secs_f64() * 1e3
            };
            let auto =
                couplet_rnn::unroll_route(core, &x, &UnrollOptions::train().with_lengths(lengths.as_slice()))
                    .unwrap();
            let mut times = vec![Vec::new(); 4];
            for rep in 0..=reps {
                let ms = [kernel(), run(Some(Route::Fused)), run(Some(Route::Padded)), run(None)];
                if rep > 0 {
                    ms.iter().zip(&mut times).for_each(|(&m, v)| v.push(m));
                }
            }
            let m: Vec<f64> = times.into_iter().map(median).collect();
            println!(
                "{model:>13} {name:>17} real/padded {:.2}: kernel {:6.1} | segmented {:6.1} ({:.2}) | padded {:6.1} ({:.2}) | auto {:6.1} ({:.2}) {auto:?}, {} segments",
                real as f64 / (b * t) as f64,
                m[0], m[1], m[1] / m[0], m[2], m[2] / m[0], m[3], m[3] / m[0],
                lengths.iter().collect::<std::collections::BTreeSet<_>>().len(),
            );
        }
    }
}
