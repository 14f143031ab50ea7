//! What the benches share: the shapes, inputs and lengths, the cores, the unroll routes and the
//! two passes (forward, forward + backward), so that `rnn`, `attention` and `compare` measure
//! exactly the same work. `scripts/bench/pytorch_bench.py` mirrors these definitions.
#![allow(dead_code)]

pub mod cases;

use cases::Case;
use couplet::attention::{
    AttentiveRead, MultiHeadAttention, MultiHeadAttentionConfig, TransformerEncoderLayer,
    TransformerEncoderLayerConfig,
};
use couplet::rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, BiRnnOptions, DropoutWrapper, DropoutWrapperConfig, Gru,
    GruConfig, InputProjection, Lstm, LstmConfig, RnnCore, StackedRnn, StackedRnnConfig, State, StateSize,
    UnrollOptions,
};
use couplet::{Mlp, MlpConfig, Mode, Module, Result, Scope, Store, Variable};
use criterion::{Criterion, SamplingMode};
use std::time::Duration;
use tch::{Kind, Tensor};

/// A recurrent benchmark shape: batch `b`, time steps `t`, input size `i`, hidden size `h`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub b: i64,
    pub t: i64,
    pub i: i64,
    pub h: i64,
}

impl Shape {
    /// `BxTxIxH`, the suffix of every case name (the PyTorch script uses the same).
    pub fn label(&self) -> String {
        format!("{}x{}x{}x{}", self.b, self.t, self.i, self.h)
    }
}

/// The shapes of issue 6, smallest first.
pub const SHAPES: [Shape; 3] = [
    Shape { b: 1, t: 100, i: 64, h: 128 },
    Shape { b: 32, t: 100, i: 64, h: 256 },
    Shape { b: 64, t: 50, i: 256, h: 512 },
];

/// The shape the targets are stated at.
pub const TARGET: Shape = SHAPES[1];

/// Multi-head attention and `AttentiveRead` sizes of the target: batch 32, 8 heads,
/// model size 256, length 100.
pub const ATTN_BATCH: i64 = 32;
pub const ATTN_HEADS: i64 = 8;
pub const ATTN_MODEL: i64 = 256;
pub const ATTN_LEN: i64 = 100;
/// Hidden size of `AttentiveRead`'s logit MLP (`[2·model] → 128 → relu → 1`).
pub const ATTN_LOGIT_HIDDEN: i64 = 128;
/// Feed-forward size of the Transformer encoder layer case (4 × model).
pub const ATTN_FF: i64 = 1024;

/// Pins libtorch's intra-op thread pool to the machine's cores (`COUPLET_BENCH_THREADS`
/// overrides) and returns the count. The PyTorch script calls `torch.set_num_threads` with
/// the same number, so both sides use the same threads.
pub fn pin_threads() -> i32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as i32);
    let threads = std::env::var("COUPLET_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(cores);
    tch::set_num_threads(threads);
    threads
}

/// A store on the CPU, with libtorch's RNG seeded so every run builds the same weights.
pub fn store() -> Store {
    tch::manual_seed(0);
    Store::cpu()
}

/// Standard-normal `shape` tensor.
pub fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, tch::Device::Cpu))
}

/// Inputs `[B, T, I]`.
pub fn inputs(shape: Shape) -> Tensor {
    randn(&[shape.b, shape.t, shape.i])
}

/// Per-row lengths uniform in `[T/2, T]` from a fixed seed: splitmix64 seeded with 6 (the
/// issue's number), `T/2 + x mod (T − T/2 + 1)`. The PyTorch script draws the same values.
pub fn lengths(shape: Shape) -> Vec<i64> {
    let mut x: u64 = 6;
    let low = shape.t / 2;
    let span = (shape.t - low + 1) as u64;
    (0..shape.b)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            low + (z % span) as i64
        })
        .collect()
}

/// How an unroll is routed. `Chosen` is whatever `dynamic_rnn` picks for the core (a fused
/// libtorch kernel where it has one); `Generic` hides the core behind [`GenericRoute`], which
/// only exposes the `RnnCore` step methods, so `dynamic_rnn` must step it one time step at a
/// time. Every unroll bench iterates over [`ROUTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Chosen,
    Generic,
}

impl Route {
    pub fn label(self) -> &'static str {
        match self {
            Route::Chosen => "chosen",
            Route::Generic => "generic",
        }
    }
}

/// The routes the unroll benches compare.
pub const ROUTES: [Route; 2] = [Route::Chosen, Route::Generic];

/// Forward only (evaluation mode, no autograd graph) or forward + backward of the sum of
/// the outputs (training mode; gradients accumulate into the variables, as in PyTorch when
/// they are not zeroed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Forward,
    ForwardBackward,
}

pub const PASSES: [Pass; 2] = [Pass::Forward, Pass::ForwardBackward];

impl Pass {
    pub fn label(self) -> &'static str {
        match self {
            Pass::Forward => "fwd",
            Pass::ForwardBackward => "fwd_bwd",
        }
    }

    pub fn mode(self) -> Mode {
        match self {
            Pass::Forward => Mode::Eval,
            Pass::ForwardBackward => Mode::Train,
        }
    }

    /// Runs `f` (which returns the outputs) as this pass.
    pub fn run(self, f: impl FnOnce(Mode) -> Result<Tensor>) {
        match self {
            Pass::Forward => drop(tch::no_grad(|| f(Mode::Eval).expect("forward"))),
            Pass::ForwardBackward => f(Mode::Train).expect("forward").sum(Kind::Float).backward(),
        }
    }
}

/// A core behind a wall: it forwards the step and the input projection and nothing else, so an
/// unroll cannot recognise the core and take a specialised route.
pub struct GenericRoute<C>(pub C);

impl<C: RnnCore> Module for GenericRoute<C> {
    fn scope(&self) -> &Scope {
        self.0.scope()
    }
    fn is_built(&self) -> bool {
        self.0.is_built()
    }
    fn variables(&self) -> Result<Vec<Variable>> {
        self.0.variables()
    }
}

impl<C: RnnCore> RnnCore for GenericRoute<C> {
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        self.0.step(input, state, mode)
    }
    fn output_shape(&self) -> Vec<i64> {
        self.0.output_shape()
    }
    fn state_size(&self) -> StateSize {
        self.0.state_size()
    }
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        self.0.initial_state(batch_size)
    }
    fn projection(&self) -> Option<&dyn InputProjection> {
        self.0.projection()
    }
}

/// A core prepared for one [`Route`]; the concrete type is kept on the chosen route so that
/// `dynamic_rnn` sees exactly what a user's call would pass it.
pub enum Routed<C> {
    Chosen(C),
    Generic(GenericRoute<C>),
}

impl<C: RnnCore> Routed<C> {
    pub fn new(route: Route, core: C) -> Self {
        match route {
            Route::Chosen => Routed::Chosen(core),
            Route::Generic => Routed::Generic(GenericRoute(core)),
        }
    }

    /// `dynamic_rnn` over `inputs [B, T, I]`, with `lengths` if given; returns the outputs.
    pub fn unroll(&self, inputs: &Tensor, lengths: Option<&[i64]>, mode: Mode) -> Result<Tensor> {
        let mut options = UnrollOptions::new(mode);
        if let Some(l) = lengths {
            options = options.with_lengths(l);
        }
        Ok(match self {
            Routed::Chosen(c) => dynamic_rnn(c, inputs, &options)?.0,
            Routed::Generic(c) => dynamic_rnn(c, inputs, &options)?.0,
        })
    }

    /// `bidirectional_dynamic_rnn` with `self` forward and `bw` backward (same route);
    /// returns both directions' outputs concatenated, `[B, T, 2H]`.
    pub fn bidirectional(
        &self,
        bw: &Routed<C>,
        inputs: &Tensor,
        lengths: Option<&[i64]>,
        mode: Mode,
    ) -> Result<Tensor> {
        let mut options = BiRnnOptions::new(mode);
        if let Some(l) = lengths {
            options = options.with_lengths(l);
        }
        let out = match (self, bw) {
            (Routed::Chosen(f), Routed::Chosen(b)) => bidirectional_dynamic_rnn(f, b, inputs, &options)?,
            (Routed::Generic(f), Routed::Generic(b)) => bidirectional_dynamic_rnn(f, b, inputs, &options)?,
            _ => panic!("both directions must take the same route"),
        };
        Ok(Tensor::cat(&[out.fw_outputs, out.bw_outputs], 2))
    }
}

/// A PyTorch-default LSTM `I → H` built eagerly.
pub fn lstm(scope: &Scope, shape: Shape) -> Lstm {
    Lstm::new(scope, LstmConfig::new(shape.h).with_input_size(shape.i)).expect("lstm")
}

/// An LSTM `I → H` with layer normalisation on the gates (a generic-route core).
pub fn layer_norm_lstm(scope: &Scope, shape: Shape) -> Lstm {
    let config = LstmConfig::new(shape.h).with_input_size(shape.i).with_layer_norm(true);
    Lstm::new(scope, config).expect("layer-norm lstm")
}

/// A PyTorch-default GRU `I → H` built eagerly.
pub fn gru(scope: &Scope, shape: Shape) -> Gru {
    Gru::new(scope, GruConfig::new(shape.h).with_input_size(shape.i)).expect("gru")
}

/// Dropout rate of the dropout-wrapped benches (PyTorch `dropout = 0.1`).
pub const DROPOUT: f64 = 0.1;

/// An LSTM `I → H` whose outputs go through a (non-variational) dropout wrapper.
pub fn dropout_lstm(scope: &Scope, shape: Shape) -> DropoutWrapper<Lstm> {
    let config = DropoutWrapperConfig::new().with_output_dropout(DROPOUT);
    DropoutWrapper::new(scope, lstm(scope, shape), config).expect("dropout wrapper")
}

/// Two plain LSTM layers `I → H → H` in a `StackedRnn`.
pub fn lstm_stack(scope: &Scope, shape: Shape) -> StackedRnn {
    let second = Shape { i: shape.h, ..shape };
    let cores: Vec<Box<dyn RnnCore>> = vec![Box::new(lstm(scope, shape)), Box::new(lstm(scope, second))];
    StackedRnn::new(scope, cores, StackedRnnConfig::new()).expect("stack")
}

/// Two LSTM layers with dropout on the first layer's outputs (PyTorch `nn.LSTM(num_layers=2,
/// dropout=0.1)`: dropout between layers, not after the last).
pub fn dropout_lstm_stack(scope: &Scope, shape: Shape) -> StackedRnn {
    let second = Shape { i: shape.h, ..shape };
    let cores: Vec<Box<dyn RnnCore>> =
        vec![Box::new(dropout_lstm(scope, shape)), Box::new(lstm(scope, second))];
    StackedRnn::new(scope, cores, StackedRnnConfig::new()).expect("stack")
}

/// Multi-head self-attention, model size [`ATTN_MODEL`], [`ATTN_HEADS`] heads.
pub fn multi_head(scope: &Scope) -> MultiHeadAttention {
    MultiHeadAttention::new(scope, MultiHeadAttentionConfig::new(ATTN_MODEL, ATTN_HEADS)).expect("mha")
}

/// A post-norm Transformer encoder layer (PyTorch's defaults: ReLU, dropout 0.1), model size
/// [`ATTN_MODEL`], [`ATTN_HEADS`] heads, feed-forward size [`ATTN_FF`].
pub fn transformer_layer(scope: &Scope) -> TransformerEncoderLayer {
    let config = TransformerEncoderLayerConfig::new(ATTN_MODEL, ATTN_HEADS).with_dim_feedforward(ATTN_FF);
    TransformerEncoderLayer::new(scope, config).expect("transformer layer")
}

/// `AttentiveRead` whose logit module is `Mlp [2·model → 128 → 1]` (relu).
pub fn attentive_read(scope: &Scope) -> AttentiveRead {
    let config = MlpConfig::new(&[ATTN_LOGIT_HIDDEN, 1]).with_input_size(2 * ATTN_MODEL);
    let mlp = Mlp::new(scope, config).expect("mlp");
    AttentiveRead::new(scope, mlp).expect("attentive read")
}

/// Registers `cases` with short settings (a default run stays within minutes on 2 cores):
/// 10 flat samples (the same iteration count each) over 2 s after 0.5 s of warm-up, 3 s for
/// the biggest shape.
pub fn register(c: &mut Criterion, cases: Vec<Case>) {
    let threads = pin_threads();
    eprintln!("libtorch intra-op threads: {threads}");
    let mut groups: Vec<&'static str> = cases.iter().map(|c| c.group).collect();
    groups.dedup();
    for name in groups {
        let mut group = c.benchmark_group(name);
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).sampling_mode(SamplingMode::Flat);
        for case in cases.iter().filter(|c| c.group == name) {
            group.measurement_time(Duration::from_secs(if case.heavy { 3 } else { 2 }));
            let mut runner: Option<cases::Runner> = None;
            group.bench_function(&case.id, |b| {
                let run = runner.get_or_insert_with(|| case.build());
                b.iter(run)
            });
        }
        group.finish();
    }
}
