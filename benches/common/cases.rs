//! Every benchmark case, named `{model}/{…}/{shape}`, built lazily (a case's store, inputs and
//! module are created only when it runs). `benches/rnn.rs` and `benches/attention.rs` hand
//! them to criterion; `benches/compare.rs` times the ones that have a PyTorch counterpart in
//! `scripts/bench/pytorch_bench.py`.

use super::*;
use couplet::attention::{
    beam_search, sample_decode, AttentionMasks, AttentionMechanism, BahdanauAttention, BahdanauConfig,
    BeamSearchConfig, CoreDecoder, LuongAttention, LuongConfig, SampleOptions,
};
use couplet::rnn::RnnCore;
use couplet::rnn::{Lstm, LstmConfig};
use couplet::{Embed, EmbedConfig, Linear, LinearConfig};

/// Runs one iteration of a case.
pub type Runner = Box<dyn FnMut()>;

/// One benchmark case.
pub struct Case {
    /// Criterion group: `cell_step`, `lstm`, `gru`, `lstm_bi`, …, `attention`.
    pub group: &'static str,
    /// Name inside the group, e.g. `chosen/lengths/fwd_bwd/32x100x64x256`.
    pub id: String,
    /// Whether `compare` times it against PyTorch.
    pub compare: bool,
    /// The biggest shape: criterion measures it for longer (3 s instead of 2 s).
    pub heavy: bool,
    build: Box<dyn Fn() -> Runner>,
}

impl Case {
    fn new(
        group: &'static str,
        id: String,
        compare: bool,
        heavy: bool,
        build: impl Fn() -> Runner + 'static,
    ) -> Self {
        Case { group, id, compare, heavy, build: Box::new(build) }
    }

    /// `group/id`, the key of `compare`'s JSON.
    pub fn name(&self) -> String {
        format!("{}/{}", self.group, self.id)
    }

    /// Builds the case's modules and inputs; the runner does one iteration.
    pub fn build(&self) -> Runner {
        (self.build)()
    }
}

/// Padded inputs (every row runs `T` steps) or per-row lengths from [`lengths`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    Padded,
    Lengths,
}

impl Data {
    fn label(self) -> &'static str {
        match self {
            Data::Padded => "padded",
            Data::Lengths => "lengths",
        }
    }
}

const DATA: [Data; 2] = [Data::Padded, Data::Lengths];

/// The recurrent models unrolled over whole sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Lstm,
    Gru,
    /// One LSTM per direction, outputs concatenated.
    LstmBi,
    /// Two plain LSTM layers.
    LstmStack2,
    /// Two LSTM layers, dropout (keep 0.9) between them: generic route.
    LstmStack2Dropout,
    /// LSTM with output dropout (keep 0.9): generic route.
    LstmDropout,
    /// Layer-normalised LSTM: generic route.
    LstmLayerNorm,
}

impl Model {
    fn group(self) -> &'static str {
        match self {
            Model::Lstm => "lstm",
            Model::Gru => "gru",
            Model::LstmBi => "lstm_bi",
            Model::LstmStack2 => "lstm_stack2",
            Model::LstmStack2Dropout => "lstm_stack2_dropout",
            Model::LstmDropout => "lstm_dropout",
            Model::LstmLayerNorm => "lstm_layernorm",
        }
    }

    /// The routes worth measuring: the wrapped and layer-normalised cores only have the
    /// generic route, so routing them is measured once.
    fn routes(self) -> &'static [Route] {
        match self {
            Model::Lstm | Model::Gru | Model::LstmBi | Model::LstmStack2 => &ROUTES,
            Model::LstmStack2Dropout | Model::LstmDropout | Model::LstmLayerNorm => &[Route::Chosen],
        }
    }

    /// LSTM and GRU at every shape; the composite models at the target shape unless
    /// `COUPLET_BENCH_ALL_SHAPES` is set.
    fn shapes(self) -> Vec<Shape> {
        let all = matches!(self, Model::Lstm | Model::Gru)
            || std::env::var_os("COUPLET_BENCH_ALL_SHAPES").is_some();
        if all {
            SHAPES.to_vec()
        } else {
            vec![TARGET]
        }
    }
}

const MODELS: [Model; 7] = [
    Model::Lstm,
    Model::Gru,
    Model::LstmBi,
    Model::LstmStack2,
    Model::LstmStack2Dropout,
    Model::LstmDropout,
    Model::LstmLayerNorm,
];

/// One unroll iteration of `core` (a runner over owned inputs).
fn unroll_runner<C: RnnCore + 'static>(core: Routed<C>, shape: Shape, data: Data, pass: Pass) -> Runner {
    let x = inputs(shape);
    let lens = (data == Data::Lengths).then(|| lengths(shape));
    Box::new(move || pass.run(|mode| core.unroll(&x, lens.as_deref(), mode)))
}

fn build_model(model: Model, route: Route, shape: Shape, data: Data, pass: Pass) -> Runner {
    let store = store();
    let root = store.root();
    match model {
        Model::Lstm => unroll_runner(Routed::new(route, lstm(&root, shape)), shape, data, pass),
        Model::Gru => unroll_runner(Routed::new(route, gru(&root, shape)), shape, data, pass),
        Model::LstmStack2 => unroll_runner(Routed::new(route, lstm_stack(&root, shape)), shape, data, pass),
        Model::LstmStack2Dropout => {
            unroll_runner(Routed::new(route, dropout_lstm_stack(&root, shape)), shape, data, pass)
        }
        Model::LstmDropout => {
            unroll_runner(Routed::new(route, dropout_lstm(&root, shape)), shape, data, pass)
        }
        Model::LstmLayerNorm => {
            unroll_runner(Routed::new(route, layer_norm_lstm(&root, shape)), shape, data, pass)
        }
        Model::LstmBi => {
            let fw = Routed::new(route, lstm(&root, shape));
            let bw = Routed::new(route, lstm(&root, shape));
            let x = inputs(shape);
            let lens = (data == Data::Lengths).then(|| lengths(shape));
            Box::new(move || pass.run(|mode| fw.bidirectional(&bw, &x, lens.as_deref(), mode)))
        }
    }
}

/// One step of an LSTM or GRU cell from a zero state, forward only.
fn cell_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for shape in SHAPES {
        let heavy = shape.h == SHAPES[2].h;
        cases.push(Case::new("cell_step", format!("lstm/{}", shape.label()), true, heavy, move || {
            step_runner(lstm(&store().root(), shape), shape)
        }));
        cases.push(Case::new("cell_step", format!("gru/{}", shape.label()), true, heavy, move || {
            step_runner(gru(&store().root(), shape), shape)
        }));
    }
    cases
}

fn step_runner<C: RnnCore + 'static>(cell: C, shape: Shape) -> Runner {
    let x = randn(&[shape.b, shape.i]);
    let state = cell.initial_state(shape.b).expect("initial state");
    Box::new(move || drop(tch::no_grad(|| cell.step(&x, &state, Mode::Eval).expect("step"))))
}

/// Cell steps and unrolls of every recurrent model: `{group}/{route}/{data}/{pass}/{shape}`.
/// `compare` takes the chosen route at every shape and the generic route at the target shape.
pub fn rnn_cases() -> Vec<Case> {
    let mut cases = cell_cases();
    for model in MODELS {
        for shape in model.shapes() {
            for &route in model.routes() {
                for data in DATA {
                    for pass in PASSES {
                        let id =
                            format!("{}/{}/{}/{}", route.label(), data.label(), pass.label(), shape.label());
                        let compare = route == Route::Chosen || shape.label() == TARGET.label();
                        let heavy = shape.h == SHAPES[2].h;
                        cases.push(Case::new(model.group(), id, compare, heavy, move || {
                            build_model(model, route, shape, data, pass)
                        }));
                    }
                }
            }
        }
    }
    cases
}

/// `AttentiveRead` (query `[32, 256]` over memory `[32, 100, 256]`) and multi-head
/// self-attention (`[32, 100, 256]`, 8 heads): `attention/{module}/{pass}/{B}x{L}x{E}x{heads}`.
pub fn attention_cases() -> Vec<Case> {
    let label = format!("{ATTN_BATCH}x{ATTN_LEN}x{ATTN_MODEL}x{ATTN_HEADS}");
    let mut cases = Vec::new();
    for pass in PASSES {
        cases.push(Case::new(
            "attention",
            format!("attentive_read/{}/{label}", pass.label()),
            true,
            false,
            move || {
                let read = attentive_read(&store().root());
                let memory = randn(&[ATTN_BATCH, ATTN_LEN, ATTN_MODEL]);
                let query = randn(&[ATTN_BATCH, ATTN_MODEL]);
                Box::new(move || pass.run(|mode| Ok(read.forward_t(&memory, &query, None, mode)?.read)))
            },
        ));
        cases.push(Case::new("attention", format!("mha/{}/{label}", pass.label()), true, false, move || {
            let mha = multi_head(&store().root());
            let x = randn(&[ATTN_BATCH, ATTN_LEN, ATTN_MODEL]);
            Box::new(move || {
                pass.run(|mode| Ok(mha.forward_t(&x, &x, &x, &AttentionMasks::default(), mode)?.0))
            })
        }));
        cases.push(Case::new(
            "attention",
            format!("transformer_layer/{}/{label}", pass.label()),
            true,
            false,
            move || {
                let layer = transformer_layer(&store().root());
                let x = randn(&[ATTN_BATCH, ATTN_LEN, ATTN_MODEL]);
                Box::new(move || pass.run(|mode| layer.forward_t(&x, &AttentionMasks::default(), mode)))
            },
        ));
    }
    cases.extend(mechanism_cases(&label));
    cases.push(beam_search_case());
    cases.push(sample_decode_case());
    cases
}

/// Luong and Bahdanau attention over a memory prepared once: one decoder step's scoring,
/// softmax and context (`attend`), forward only, as inside a decoder.
fn mechanism_cases(label: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for kind in ["luong", "bahdanau"] {
        cases.push(Case::new(
            "attention",
            format!("{kind}_attend/forward/{label}"),
            false,
            false,
            move || {
                let root = store().root();
                let mechanism: Box<dyn AttentionMechanism> = if kind == "luong" {
                    Box::new(LuongAttention::new(&root, LuongConfig::new(ATTN_MODEL)).expect("luong"))
                } else {
                    Box::new(
                        BahdanauAttention::new(&root, BahdanauConfig::new(ATTN_MODEL)).expect("bahdanau"),
                    )
                };
                let memory = randn(&[ATTN_BATCH, ATTN_LEN, ATTN_MODEL]);
                let prepared = tch::no_grad(|| mechanism.prepare(&memory, None)).expect("prepare");
                let query = randn(&[ATTN_BATCH, ATTN_MODEL]);
                Box::new(move || {
                    let _ = tch::no_grad(|| mechanism.attend(&query, &prepared)).expect("attend");
                })
            },
        ));
    }
    cases
}

/// One beam-search step (`max_len` 1) of an embedding + LSTM + projection decoder: batch 32,
/// beam width 8, vocabulary 64, hidden 256 — the top-k over `K·V` candidates, the state rows
/// reordered by beam parents, and the bookkeeping.
/// One sampling step (`max_len` 1, temperature 0.8, top-k 10, top-p 0.9) of the same
/// embedding + LSTM + projection decoder as [`beam_search_case`], batch 32.
fn sample_decode_case() -> Case {
    Case::new("attention", "sample_decode_step/32x64x256".to_string(), false, false, || {
        let root = store().root();
        let embed = Embed::new(&root, EmbedConfig::new(64, 64)).expect("embed");
        let lstm = Lstm::new(&root, LstmConfig::new(256).with_input_size(64)).expect("lstm");
        let projection = Linear::new(&root, LinearConfig::new(64).with_input_size(256)).expect("linear");
        let state = lstm.initial_state(ATTN_BATCH).expect("state");
        let start = Tensor::zeros([ATTN_BATCH], (Kind::Int64, tch::Device::Cpu));
        let options = SampleOptions::new(1, 1).with_temperature(0.8).with_top_k(10).with_top_p(0.9);
        Box::new(move || {
            let decoder = CoreDecoder::new(&embed, &lstm, &projection);
            tch::no_grad(|| sample_decode(&decoder, &state, &start, &options)).expect("sample decode");
        })
    })
}

fn beam_search_case() -> Case {
    Case::new("attention", "beam_search_step/32x8x64x256".to_string(), false, false, || {
        let root = store().root();
        let embed = Embed::new(&root, EmbedConfig::new(64, 64)).expect("embed");
        let lstm = Lstm::new(&root, LstmConfig::new(256).with_input_size(64)).expect("lstm");
        let projection = Linear::new(&root, LinearConfig::new(64).with_input_size(256)).expect("linear");
        let state = lstm.initial_state(ATTN_BATCH).expect("state");
        let start = Tensor::zeros([ATTN_BATCH], (Kind::Int64, tch::Device::Cpu));
        let config = BeamSearchConfig::new(8, 1, 1);
        Box::new(move || {
            let decoder = CoreDecoder::new(&embed, &lstm, &projection);
            tch::no_grad(|| beam_search(&decoder, &state, &start, &config)).expect("beam search");
        })
    })
}
