//! The cases of the child-process suite: every tensor argument of the public functions and
//! module calls below is tried with each input class, every constructor with non-finite,
//! zero, negative and near-`i64::MAX` configurations, checkpoint files with corruptions, and
//! masked padding holding NaN or infinities. Built identically in the parent and the child
//! (the random part from a fixed seed).

use super::harness::{outs, Case, Expect, KINDS};
use couplet::attention::{
    beam_search, greedy_decode, masked_softmax, memory_mask, AttentionDecoderConfig, AttentionDecoderCore,
    AttentionMasks, AttentionMechanism, AttentiveRead, BahdanauAttention, BahdanauConfig, BeamSearchConfig,
    CoreDecoder, DotAttention, GreedyOptions, LuongAttention, LuongConfig, MultiHeadAttention,
    MultiHeadAttentionConfig,
};
use couplet::rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, from_torch_layout, last_relevant, lengths_from_padding,
    masked_mean, reverse_sequence, sequence_loss, sequence_mask, BiRnnOptions, Gru, GruConfig, HighwayCore,
    HighwayCoreConfig, Lstm, LstmConfig, RnnCore, SequenceLossOptions, State, TorchRnn, TorchRnnConfig,
    UnrollOptions, VanillaRnn, VanillaRnnConfig,
};
use couplet::{
    checkpoint, save_tensors, Activation, Adam, AdamConfig, AddBias, AddBiasConfig, BatchFlatten,
    BatchFlattenConfig, BatchNorm, BatchNormConfig, BatchReshape, BatchReshapeConfig, CheckpointManager,
    Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv2dTranspose, Conv2dTransposeConfig, Dropout,
    DropoutConfig, Embed, EmbedConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, Mlp,
    MlpConfig, Mode, Optimizer, Regularizer, RestoreOptions, RmsProp, RmsPropConfig, Sequential, Sgd,
    SgdConfig, Store, TrainableVariable, TrainableVariableConfig,
};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

type Result<T> = couplet::Result<T>;
type Call = fn(&[Tensor]) -> Result<Vec<Tensor>>;

const F32: (Kind, Device) = (Kind::Float, Device::Cpu);

/// One tensor argument of a target: its valid shape and kind, and the valid integer range.
#[derive(Clone)]
struct Arg {
    shape: Vec<i64>,
    kind: Kind,
    range: (i64, i64),
}

fn arg(shape: &[i64], kind: Kind, range: (i64, i64)) -> Arg {
    Arg { shape: shape.to_vec(), kind, range }
}

fn f(shape: &[i64]) -> Arg {
    arg(shape, Kind::Float, (-3, 3))
}

/// A function of tensors, with its valid arguments.
struct Target {
    name: &'static str,
    args: Vec<Arg>,
    call: Call,
}

fn target(name: &'static str, args: Vec<Arg>, call: Call) -> Target {
    Target { name, args, call }
}

/// How one argument is drawn.
#[derive(Clone, Debug)]
enum Class {
    Valid,
    Undefined,
    Empty,
    Rank(usize),
    Kind(Kind),
    /// The valid shape with the first dimension a stride-0 expansion to 2^40.
    Huge,
    Nan,
    Inf,
    /// A random shape of rank 0..=4 with entries 0..5 and random values.
    Random(Vec<i64>, u64),
}

impl Class {
    fn expect(&self) -> Expect {
        match self {
            Class::Undefined => Expect::Error,
            _ => Expect::Either,
        }
    }

    fn finite(&self) -> bool {
        !matches!(self, Class::Nan | Class::Inf)
    }
}

/// A deterministic tensor of `shape` and `kind` (integers in `range`).
fn values(shape: &[i64], kind: Kind, range: (i64, i64), seed: u64) -> Tensor {
    tch::manual_seed(seed as i64);
    let t = if matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 | Kind::ComplexFloat) {
        Tensor::randn(shape, F32)
    } else {
        let hi = range.1.max(range.0 + 1);
        Tensor::randint_low(range.0, hi, shape, (Kind::Int64, Device::Cpu))
    };
    t.to_kind(kind)
}

fn draw(a: &Arg, class: &Class, seed: u64) -> Tensor {
    let valid = || values(&a.shape, a.kind, a.range, seed);
    match class {
        Class::Valid => valid(),
        Class::Undefined => Tensor::new(),
        Class::Empty => {
            let mut s = a.shape.clone();
            if let Some(d) = s.first_mut() {
                *d = 0;
            }
            values(&s, a.kind, a.range, seed)
        }
        Class::Rank(r) => {
            let s: Vec<i64> = (0..*r).map(|i| a.shape.get(i).copied().unwrap_or(2)).collect();
            values(&s, a.kind, a.range, seed)
        }
        Class::Kind(k) => values(&a.shape, *k, a.range, seed),
        Class::Huge => {
            let mut one = a.shape.clone();
            let mut big = a.shape.clone();
            if one.is_empty() {
                one.push(1);
                big.push(1);
            }
            one[0] = 1;
            big[0] = 1 << 40;
            values(&one, a.kind, a.range, seed).expand(big.as_slice(), false)
        }
        Class::Nan | Class::Inf => {
            let v = valid();
            if v.is_floating_point() {
                let bad = if matches!(class, Class::Nan) { f64::NAN } else { f64::INFINITY };
                // Half of the entries.
                let pick = Tensor::rand(a.shape.as_slice(), F32).lt(0.5);
                v.where_self(&pick.logical_not(), &Tensor::from(bad).to_kind(v.kind()))
            } else {
                // Integers have no NaN: out-of-range values instead.
                v + (a.range.1 + 3)
            }
        }
        Class::Random(s, k) => {
            let kinds = [a.kind, a.kind, Kind::Float, Kind::Int64, Kind::Bool, Kind::Double];
            values(s, kinds[(*k % kinds.len() as u64) as usize], a.range, seed)
        }
    }
}

fn grid() -> Vec<Class> {
    let mut classes = vec![Class::Valid, Class::Undefined, Class::Empty, Class::Huge, Class::Nan, Class::Inf];
    classes.extend((0..=5).map(Class::Rank));
    classes.extend(KINDS.into_iter().map(Class::Kind));
    classes
}

fn linear(s: &Store, o: i64) -> Linear {
    try_linear(s, o).expect("a valid output size")
}

fn try_linear(s: &Store, o: i64) -> Result<Linear> {
    Linear::new(&s.root(), LinearConfig::new(o))
}

fn one(t: Tensor) -> Result<Vec<Tensor>> {
    Ok(vec![t])
}

fn targets() -> Vec<Target> {
    vec![
        target("linear.forward", vec![f(&[2, 3])], |x| one(linear(&Store::cpu(), 2).forward(&x[0])?)),
        target("mlp.forward_t", vec![f(&[2, 3])], |x| {
            let s = Store::cpu();
            one(Mlp::new(&s.root(), MlpConfig::new(&[4, 2]))?.forward_t(&x[0], Mode::Train)?)
        }),
        target("sequential.forward_t", vec![f(&[2, 3])], |x| {
            let s = Store::cpu();
            let seq =
                Sequential::new(&s.root())?.push(linear(&s, 2)).add_fn(|x, _| Activation::Relu.apply(x));
            one(seq.forward_t(&x[0], Mode::Eval)?)
        }),
        target("dropout.forward_t", vec![f(&[2, 3])], |x| {
            let s = Store::cpu();
            one(Dropout::new(&s.root(), DropoutConfig::new(0.5))?.forward_t(&x[0], Mode::Train)?)
        }),
        target("activation.apply", vec![f(&[2, 3])], |x| {
            let mut out = Vec::new();
            for a in [
                Activation::Relu,
                Activation::Gelu,
                Activation::LeakyRelu { negative_slope: 0.2 },
                Activation::Softplus,
            ] {
                out.push(a.apply(&x[0])?);
            }
            Ok(out)
        }),
        target("embed.forward", vec![arg(&[2, 3], Kind::Int64, (0, 5))], |x| {
            let s = Store::cpu();
            one(Embed::new(&s.root(), EmbedConfig::new(5, 3))?.forward(&x[0])?)
        }),
        target("embed.from_pretrained", vec![f(&[5, 3])], |x| {
            let s = Store::cpu();
            one(Embed::from_pretrained(&s.root(), &x[0], EmbedConfig::new(5, 3))?
                .embeddings()
                .shallow_clone())
        }),
        target("layer_norm.forward", vec![f(&[2, 3])], |x| {
            let s = Store::cpu();
            one(LayerNorm::new(&s.root(), LayerNormConfig::new())?.forward(&x[0])?)
        }),
        target("batch_norm.forward_t", vec![f(&[2, 3, 4])], |x| {
            let s = Store::cpu();
            one(BatchNorm::new(&s.root(), BatchNormConfig::new())?.forward_t(&x[0], Mode::Train)?)
        }),
        target("add_bias.forward", vec![f(&[2, 3])], |x| {
            let s = Store::cpu();
            one(AddBias::new(&s.root(), AddBiasConfig::new())?.forward(&x[0])?)
        }),
        target("batch_reshape.forward", vec![f(&[2, 3, 4])], |x| {
            let s = Store::cpu();
            one(BatchReshape::new(&s.root(), BatchReshapeConfig::new(&[-1]))?.forward(&x[0])?)
        }),
        target("batch_flatten.forward", vec![f(&[2, 3, 4])], |x| {
            let s = Store::cpu();
            one(BatchFlatten::new(&s.root(), BatchFlattenConfig::new(1))?.forward(&x[0])?)
        }),
        target("conv1d.forward", vec![f(&[2, 5, 3])], |x| {
            let s = Store::cpu();
            one(Conv1d::new(&s.root(), Conv1dConfig::new(2, 3))?.forward(&x[0])?)
        }),
        target("conv2d.forward", vec![f(&[2, 5, 4, 3])], |x| {
            let s = Store::cpu();
            one(Conv2d::new(&s.root(), Conv2dConfig::new(2, 3))?.forward(&x[0])?)
        }),
        target("conv2d_transpose.forward", vec![f(&[2, 5, 4, 3])], |x| {
            let s = Store::cpu();
            one(Conv2dTranspose::new(&s.root(), Conv2dTransposeConfig::new(2, 3).with_stride(2))?
                .forward(&x[0])?)
        }),
        target("lstm.step", vec![f(&[2, 4]), f(&[2, 3]), f(&[2, 3])], |x| {
            let s = Store::cpu();
            let lstm = Lstm::new(&s.root(), LstmConfig::new(3))?;
            let state = State::Lstm { h: x[1].shallow_clone(), c: x[2].shallow_clone() };
            let (y, next) = lstm.step(&x[0], &state, Mode::Eval)?;
            Ok(std::iter::once(y).chain(next.leaves().into_iter().map(|t| t.shallow_clone())).collect())
        }),
        target("gru.step", vec![f(&[2, 4]), f(&[2, 3])], |x| {
            let s = Store::cpu();
            let (y, _) = Gru::new(&s.root(), GruConfig::new(3))?.step(
                &x[0],
                &State::Tensor(x[1].shallow_clone()),
                Mode::Eval,
            )?;
            one(y)
        }),
        target("vanilla.step", vec![f(&[2, 4]), f(&[2, 3])], |x| {
            let s = Store::cpu();
            let rnn = VanillaRnn::new(&s.root(), VanillaRnnConfig::new(3))?;
            one(rnn.step(&x[0], &State::Tensor(x[1].shallow_clone()), Mode::Eval)?.0)
        }),
        target("dynamic_rnn", vec![f(&[3, 4, 2]), arg(&[3], Kind::Int64, (0, 5))], |x| {
            let s = Store::cpu();
            let gru = Gru::new(&s.root(), GruConfig::new(3))?;
            let (y, _) = dynamic_rnn(&gru, &x[0], &UnrollOptions::eval().with_lengths(&x[1]))?;
            one(y)
        }),
        target("bidirectional_dynamic_rnn", vec![f(&[3, 4, 2]), arg(&[3], Kind::Int64, (0, 5))], |x| {
            let s = Store::cpu();
            let (fw, bw) = (Gru::new(&s.root(), GruConfig::new(3))?, Gru::new(&s.root(), GruConfig::new(2))?);
            let out = bidirectional_dynamic_rnn(
                &fw,
                &bw,
                &x[0],
                &BiRnnOptions::new(Mode::Eval).with_lengths(&x[1]),
            )?;
            match out.merge(couplet::rnn::MergeMode::Concat)? {
                couplet::rnn::Merged::One(t) => one(t),
                couplet::rnn::Merged::Pair { fw, bw } => Ok(vec![fw, bw]),
            }
        }),
        target("torch_rnn.forward_t", vec![f(&[4, 3, 2]), f(&[2, 3, 5]), f(&[2, 3, 5])], |x| {
            let s = Store::cpu();
            let rnn = TorchRnn::new(&s.root(), TorchRnnConfig::lstm(2, 5).with_num_layers(2))?;
            let (y, h, c) = rnn.forward_t(&x[0], None, Some((&x[1], Some(&x[2]))), Mode::Eval)?;
            Ok(vec![y, h, c.unwrap_or_else(Tensor::new)])
        }),
        target("from_torch_layout", vec![f(&[2, 3, 4]), f(&[2, 3, 4])], |x| {
            let states = from_torch_layout(&x[0], Some(&x[1]), 2, 1)?;
            Ok(states.iter().flat_map(|s| s.leaves().into_iter().map(|t| t.shallow_clone())).collect())
        }),
        target("sequence_mask", vec![arg(&[3], Kind::Int64, (0, 5))], |x| one(sequence_mask(&x[0], None)?)),
        target("reverse_sequence", vec![f(&[3, 4, 2]), arg(&[3], Kind::Int64, (0, 5))], |x| {
            one(reverse_sequence(&x[0], &x[1], false)?)
        }),
        target("last_relevant", vec![f(&[3, 4, 2]), arg(&[3], Kind::Int64, (0, 5))], |x| {
            one(last_relevant(&x[0], &x[1])?)
        }),
        target("lengths_from_padding", vec![f(&[3, 4, 2])], |x| one(lengths_from_padding(&x[0])?)),
        target("masked_mean", vec![f(&[3, 4]), arg(&[3, 4], Kind::Bool, (0, 2))], |x| {
            one(masked_mean(&x[0], &x[1])?)
        }),
        target(
            "sequence_loss",
            vec![f(&[2, 3, 4]), arg(&[2, 3], Kind::Int64, (0, 4)), arg(&[2, 3], Kind::Float, (0, 2))],
            |x| one(sequence_loss(&x[0], &x[1], &x[2], &SequenceLossOptions::default())?),
        ),
        target("masked_softmax", vec![f(&[2, 3]), arg(&[2, 3], Kind::Bool, (0, 2))], |x| {
            let (w, _) = masked_softmax("m", &x[0], Some(&x[1]))?;
            one(w)
        }),
        target("memory_mask", vec![f(&[2, 3, 4]), arg(&[2], Kind::Int64, (0, 4))], |x| {
            one(memory_mask(&x[0], &x[1])?)
        }),
        target(
            "attentive_read.forward_t",
            vec![f(&[2, 3, 4]), f(&[2, 2]), arg(&[2, 3], Kind::Bool, (0, 2))],
            |x| {
                let s = Store::cpu();
                let read = AttentiveRead::new(&s.root(), linear(&s, 1))?;
                let out = read.forward_t(&x[0], &x[1], Some(&x[2]), Mode::Eval)?;
                Ok(outs(&[&out.read, &out.weights]))
            },
        ),
        target(
            "luong.prepare_with_lengths",
            vec![f(&[2, 3, 4]), arg(&[2], Kind::Int64, (0, 4)), f(&[2, 4])],
            |x| {
                let s = Store::cpu();
                let m = LuongAttention::new(&s.root(), LuongConfig::new(4))?;
                let mem = m.prepare_with_lengths(&x[0], &x[1])?;
                let (c, a) = m.attend(&x[2], &mem)?;
                Ok(vec![c, a])
            },
        ),
        target(
            "bahdanau.prepare_with_lengths",
            vec![f(&[2, 3, 4]), arg(&[2], Kind::Int64, (0, 4)), f(&[2, 4])],
            |x| {
                let s = Store::cpu();
                let m = BahdanauAttention::new(&s.root(), BahdanauConfig::new(3))?;
                let mem = m.prepare_with_lengths(&x[0], &x[1])?;
                let (c, a) = m.attend(&x[2], &mem)?;
                Ok(vec![c, a])
            },
        ),
        target("dot.prepare", vec![f(&[2, 3, 4]), arg(&[2, 3], Kind::Bool, (0, 2)), f(&[2, 4])], |x| {
            let s = Store::cpu();
            let m = DotAttention::new(&s.root())?;
            let mem = m.prepare(&x[0], Some(&x[1]))?;
            let (c, a) = m.attend(&x[2], &mem)?;
            Ok(vec![c, a])
        }),
        target(
            "multi_head_attention.forward_t",
            vec![f(&[2, 3, 4]), f(&[2, 5, 4]), f(&[2, 5, 4]), arg(&[2, 5], Kind::Bool, (0, 2))],
            |x| {
                let s = Store::cpu();
                let mha = MultiHeadAttention::new(&s.root(), MultiHeadAttentionConfig::new(4, 2))?;
                let masks = AttentionMasks { key_mask: Some(&x[3]), causal: false, need_weights: true };
                let (y, w) = mha.forward_t(&x[0], &x[1], &x[2], &masks, Mode::Eval)?;
                Ok(vec![y, w.unwrap_or_else(Tensor::new)])
            },
        ),
        target(
            "attention_decoder.step",
            vec![f(&[2, 3, 4]), arg(&[2], Kind::Int64, (0, 4)), f(&[2, 2])],
            |x| {
                let s = Store::cpu();
                let cell = Gru::new(&s.root(), GruConfig::new(3))?;
                let mech = LuongAttention::new(&s.root(), LuongConfig::new(3))?;
                let dec = AttentionDecoderCore::new(
                    &s.root(),
                    Box::new(cell),
                    Box::new(mech),
                    AttentionDecoderConfig::new(3),
                )?;
                let s0 = dec.initial_state_with_memory_lengths(&x[0], &x[1], None)?;
                one(dec.step(&x[2], &s0, Mode::Eval)?.0)
            },
        ),
        target("greedy_decode", vec![arg(&[2], Kind::Int64, (0, 5))], |x| {
            let s = Store::cpu();
            let (embed, lstm, proj) = decoder_parts(&s)?;
            let dec = CoreDecoder::new(&embed, &lstm, &proj);
            let batch = x[0].size().first().copied().unwrap_or(0);
            let state = dec.initial_state(batch.min(8))?;
            let out = greedy_decode(&dec, &state, &x[0], &GreedyOptions::new(0, 3))?;
            Ok(vec![out.scores])
        }),
        target("beam_search", vec![arg(&[2], Kind::Int64, (0, 5))], |x| {
            let s = Store::cpu();
            let (embed, lstm, proj) = decoder_parts(&s)?;
            let dec = CoreDecoder::new(&embed, &lstm, &proj);
            let batch = x[0].size().first().copied().unwrap_or(0);
            let state = dec.initial_state(batch.min(8))?;
            let out = beam_search(&dec, &state, &x[0], &BeamSearchConfig::new(2, 0, 3))?;
            Ok(vec![out.scores])
        }),
        target("save_tensors", vec![f(&[2, 3])], |x| {
            let dir = scratch("save_tensors");
            let path = dir.join("a.safetensors");
            save_tensors(&[("w".to_string(), x[0].shallow_clone())], &path, &BTreeMap::new())?;
            let back = checkpoint::load(&path)?;
            Ok(back.into_values().collect())
        }),
    ]
}

fn decoder_parts(s: &Store) -> Result<(Embed, Lstm, Linear)> {
    let root = s.root();
    Ok((
        Embed::new(&root, EmbedConfig::new(5, 3))?,
        Lstm::new(&root, LstmConfig::new(4).with_input_size(3))?,
        Linear::new(&root, LinearConfig::new(5).with_input_size(4))?,
    ))
}

/// A fresh folder for one case (in the child; removed with the process's temp files).
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("couplet-robustness-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// A config or constructor case: the call must be refused (`Error`) or succeed (`Ok`).
fn config(name: &str, expect: Expect, run: impl Fn() -> Result<Vec<Tensor>> + 'static) -> Case {
    Case::new(format!("config: {name}"), expect, true, run)
}

fn x23() -> Tensor {
    Tensor::randn([2, 3], F32)
}

fn with_init(init: Initializer) -> Result<Vec<Tensor>> {
    let s = Store::cpu();
    let lin = Linear::new(&s.root(), LinearConfig::new(2).with_initializer("w", init))?;
    one(lin.forward(&x23())?)
}

fn config_cases() -> Vec<Case> {
    use Expect::{Error as E, Ok as O};
    let mut cases = Vec::new();
    let big = [i64::MAX, i64::MAX - 1, 1 << 62, 1 << 40, -1, 0];
    for &n in &big {
        cases.push(config(&format!("LinearConfig::new({n})"), E, move || {
            one(try_linear(&Store::cpu(), n)?.forward(&x23())?)
        }));
        cases.push(config(&format!("EmbedConfig::new({n}, 3)"), E, move || {
            let s = Store::cpu();
            one(Embed::new(&s.root(), EmbedConfig::new(n, 3))?.forward(&Tensor::from_slice(&[0i64]))?)
        }));
        cases.push(config(&format!("LstmConfig::new({n})"), E, move || {
            let s = Store::cpu();
            let l = Lstm::new(&s.root(), LstmConfig::new(n))?;
            one(l.step(&x23(), &l.initial_state(2)?, Mode::Eval)?.0)
        }));
        cases.push(config(&format!("GruConfig::new({n})"), E, move || {
            let s = Store::cpu();
            let g = Gru::new(&s.root(), GruConfig::new(n))?;
            one(g.step(&x23(), &g.initial_state(2)?, Mode::Eval)?.0)
        }));
        cases.push(config(&format!("VanillaRnnConfig::new(3).with_input_size({n})"), E, move || {
            let s = Store::cpu();
            VanillaRnn::new(&s.root(), VanillaRnnConfig::new(3).with_input_size(n)).map(|_| vec![])
        }));
        cases.push(config(&format!("TorchRnnConfig::rnn_relu(2, 3).with_num_layers({n})"), E, move || {
            let s = Store::cpu();
            TorchRnn::new(&s.root(), TorchRnnConfig::rnn_relu(2, 3).with_num_layers(n)).map(|_| vec![])
        }));
        cases.push(config(&format!("TorchRnnConfig::gru({n}, 3)"), E, move || {
            let s = Store::cpu();
            TorchRnn::new(&s.root(), TorchRnnConfig::gru(n, 3)).map(|_| vec![])
        }));
        cases.push(config(&format!("HighwayCoreConfig::new(3, {n})"), E, move || {
            let s = Store::cpu();
            HighwayCore::new(&s.root(), HighwayCoreConfig::new(3, n)).map(|_| vec![])
        }));
        cases.push(config(&format!("Conv2dConfig::new(2, {n})"), E, move || {
            let s = Store::cpu();
            one(Conv2d::new(&s.root(), Conv2dConfig::new(2, n))?
                .forward(&Tensor::randn([1, 5, 5, 3], F32))?)
        }));
        cases.push(config(&format!("Conv1dConfig::new(2, 3).with_stride({n})"), E, move || {
            let s = Store::cpu();
            one(Conv1d::new(&s.root(), Conv1dConfig::new(2, 3).with_stride(n))?
                .forward(&Tensor::randn([1, 5, 3], F32))?)
        }));
        cases.push(config(&format!("Conv1dConfig::new(2, 3).with_rate({n})"), E, move || {
            let s = Store::cpu();
            one(Conv1d::new(&s.root(), Conv1dConfig::new(2, 3).with_rate(n))?
                .forward(&Tensor::randn([1, 5, 3], F32))?)
        }));
        cases.push(config(&format!("BatchReshapeConfig::new(&[{n}, {n}])"), E, move || {
            let s = Store::cpu();
            one(BatchReshape::new(&s.root(), BatchReshapeConfig::new(&[n, n]))?
                .forward(&Tensor::randn([2, 4], F32))?)
        }));
        // [0, 0] is a valid (empty) variable.
        let expect = if n == 0 { Expect::Either } else { E };
        cases.push(config(&format!("TrainableVariableConfig::new(&[{n}, {n}])"), expect, move || {
            let s = Store::cpu();
            one(TrainableVariable::new(&s.root(), TrainableVariableConfig::new(&[n, n]))?.forward())
        }));
        cases.push(config(&format!("from_torch_layout(.., {n}, 1)"), E, move || {
            from_torch_layout(&Tensor::zeros([2, 3, 4], F32), None, n, 1).map(|_| vec![])
        }));
        cases.push(config(&format!("MultiHeadAttentionConfig::new(4, {n})"), E, move || {
            let s = Store::cpu();
            MultiHeadAttention::new(&s.root(), MultiHeadAttentionConfig::new(4, n)).map(|_| vec![])
        }));
        cases.push(config(&format!("BeamSearchConfig::new({n}, 0, 3)"), E, move || {
            let s = Store::cpu();
            let (embed, lstm, proj) = decoder_parts(&s)?;
            let dec = CoreDecoder::new(&embed, &lstm, &proj);
            let out = beam_search(
                &dec,
                &dec.initial_state(2)?,
                &Tensor::from_slice(&[1i64, 2]),
                &BeamSearchConfig::new(n, 0, 3),
            )?;
            Ok(vec![out.scores])
        }));
    }
    for (what, maxlen) in [("[3, 2^40]", None), ("[3] maxlen i64::MAX", Some(i64::MAX)), ("[-1]", None)] {
        cases.push(config(&format!("sequence_mask({what})"), E, move || {
            let lengths: &[i64] = if what.starts_with("[3, ") {
                &[3, 1 << 40]
            } else if what == "[-1]" {
                &[-1]
            } else {
                &[3]
            };
            one(sequence_mask(lengths, maxlen)?)
        }));
    }
    let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    for v in bad {
        for init in [
            Initializer::Constant { value: v },
            Initializer::Uniform { low: v, high: 1.0 },
            Initializer::Normal { mean: v, std: 1.0 },
            Initializer::Normal { mean: 0.0, std: v },
            Initializer::TruncatedNormal { mean: v, std: 1.0 },
            Initializer::VarianceScaling {
                scale: v,
                mode: couplet::FanMode::FanIn,
                distribution: couplet::Distribution::Uniform,
            },
            Initializer::Orthogonal { gain: v },
        ] {
            cases.push(config(&format!("initializer {init:?}"), E, move || with_init(init.clone())));
        }
        cases.push(config(&format!("LeakyRelu slope {v}"), E, move || {
            one(Activation::LeakyRelu { negative_slope: v }.apply(&x23())?)
        }));
        cases.push(config(&format!("L2 regularizer scale {v}"), E, move || {
            let s = Store::cpu();
            let lin = Linear::new(
                &s.root(),
                LinearConfig::new(2).with_regularizer("w", Regularizer::L2 { scale: v }),
            )?;
            one(lin.forward(&x23())?)
        }));
        cases.push(config(&format!("LstmConfig forget_bias {v}"), E, move || {
            let s = Store::cpu();
            Lstm::new(&s.root(), LstmConfig::new(3).with_forget_bias(v)).map(|_| vec![])
        }));
        cases.push(config(&format!("load_tf_kernel forget_bias {v}"), E, move || {
            let s = Store::cpu();
            let l = Lstm::new(&s.root(), LstmConfig::new(2).with_input_size(1))?;
            l.load_tf_kernel(&Tensor::zeros([3, 8], F32), &Tensor::zeros([8], F32), v).map(|_| vec![])
        }));
        cases.push(config(&format!("layer_norm_epsilon {v}"), E, move || {
            let s = Store::cpu();
            Lstm::new(&s.root(), LstmConfig::new(3).with_layer_norm(true).with_layer_norm_epsilon(v))
                .map(|_| vec![])
        }));
        cases.push(config(&format!("LayerNormConfig eps {v}"), E, move || {
            let s = Store::cpu();
            LayerNorm::new(&s.root(), LayerNormConfig::new().with_eps(v)).map(|_| vec![])
        }));
        cases.push(config(&format!("DropoutConfig rate {v}"), E, move || {
            let s = Store::cpu();
            one(Dropout::new(&s.root(), DropoutConfig::new(v))?.forward_t(&x23(), Mode::Train)?)
        }));
        cases.push(config(&format!("AdamConfig lr {v}"), E, move || adam(AdamConfig::new(v))));
        cases.push(config(&format!("beam length_penalty {v}"), E, move || {
            let s = Store::cpu();
            let (embed, lstm, proj) = decoder_parts(&s)?;
            let dec = CoreDecoder::new(&embed, &lstm, &proj);
            let c = BeamSearchConfig::new(2, 0, 3).with_length_penalty(v);
            Ok(vec![beam_search(&dec, &dec.initial_state(2)?, &Tensor::from_slice(&[1i64, 2]), &c)?.scores])
        }));
    }
    cases.push(config("AdamConfig eps 0 (0/0 on a zero gradient)", E, || {
        adam(AdamConfig::new(0.1).with_eps(0.0))
    }));
    cases.push(config("RmsPropConfig eps 0", E, || {
        let s = Store::cpu();
        let w = s.root().var("w", &[2]).create()?;
        let mut o = RmsProp::new(s.variables(), RmsPropConfig::new(0.1).with_eps(0.0))?;
        w.sum(Kind::Float).backward();
        o.step()?;
        one(w)
    }));
    cases.push(config("Normal { mean: 1e6 } in a Half store", E, || {
        let s = Store::with_kind(Device::Cpu, Kind::Half)?;
        one(s.root().var("w", &[4]).init(Initializer::Normal { mean: 1e6, std: 1.0 }).create()?)
    }));
    cases.push(config("Constant { value: 1e6 } in a Half store", E, || {
        let s = Store::with_kind(Device::Cpu, Kind::Half)?;
        one(s.root().var("w", &[4]).init(Initializer::Constant { value: 1e6 }).create()?)
    }));
    cases.push(config("Embed::from_pretrained NaN matrix", E, || {
        let s = Store::cpu();
        Embed::from_pretrained(&s.root(), &Tensor::full([5, 3], f64::NAN, F32), EmbedConfig::new(5, 3))
            .map(|_| vec![])
    }));
    cases.push(config("Embed::from_pretrained Int64 matrix", E, || {
        let s = Store::cpu();
        Embed::from_pretrained(
            &s.root(),
            &Tensor::zeros([5, 3], (Kind::Int64, Device::Cpu)),
            EmbedConfig::new(5, 3),
        )
        .map(|_| vec![])
    }));
    cases.push(config("AttentiveRead Int64 query", E, || {
        let s = Store::cpu();
        let read = AttentiveRead::new(&s.root(), linear(&s, 1))?;
        let q = Tensor::zeros([2, 2], (Kind::Int64, Device::Cpu));
        Ok(vec![read.forward_t(&Tensor::randn([2, 3, 4], F32), &q, None, Mode::Eval)?.read])
    }));
    for (name, kind) in [("Int64", Kind::Int64), ("NaN", Kind::Float)] {
        cases.push(config(&format!("Lstm::load_torch {name} weights"), E, move || {
            let s = Store::cpu();
            let l = Lstm::new(&s.root(), LstmConfig::new(2).with_input_size(1))?;
            let fill = if kind == Kind::Float { f64::NAN } else { 1.0 };
            let dict: Vec<(String, Tensor)> = l
                .torch_state_dict("")?
                .into_iter()
                .map(|(k, t)| (k, Tensor::full(t.size().as_slice(), fill, (kind, Device::Cpu))))
                .collect();
            l.load_torch(dict.as_slice(), "").map(|_| vec![])
        }));
        cases.push(config(&format!("TorchRnn::load_torch {name} weights"), E, move || {
            let s = Store::cpu();
            let r = TorchRnn::new(&s.root(), TorchRnnConfig::lstm(2, 3))?;
            let fill = if kind == Kind::Float { f64::NAN } else { 1.0 };
            let dict: Vec<(String, Tensor)> = r
                .torch_state_dict()?
                .into_iter()
                .map(|(k, t)| (k, Tensor::full(t.size().as_slice(), fill, (kind, Device::Cpu))))
                .collect();
            r.load_torch(dict.as_slice()).map(|_| vec![])
        }));
    }
    // Valid input that used to be refused.
    cases.push(config("optimizer over two stores sharing a scoped name", O, || {
        let (a, b) = (Store::cpu(), Store::cpu());
        let wa = a.root().var("w", &[2]).create()?;
        let wb = b.root().var("w", &[2]).create()?;
        let mut o = Sgd::new(a.variables().into_iter().chain(b.variables()).collect(), SgdConfig::new(1.0))?;
        (wa.sum(Kind::Float) + wb.sum(Kind::Float)).backward();
        o.step()?;
        Ok(vec![wa, wb])
    }));
    cases.push(config("save over a stale temporary file of a crashed process with the same pid", O, || {
        let dir = scratch("stale_temp");
        let m = CheckpointManager::new(&dir, None)?;
        let pid = std::process::id();
        std::fs::write(dir.join(format!(".ckpt-00000001.safetensors.{pid}-0.tmp")), b"partial")
            .map_err(io)?;
        let s = Store::cpu();
        let _ = s.root().var("w", &[2]).create()?;
        m.save(&s, 1)?;
        let m2 = CheckpointManager::new(&dir, None)?;
        let stray = std::fs::read_dir(&dir)
            .map_err(io)?
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp")))
            .count();
        if stray != 0 || m2.latest_step()? != Some(1) {
            return Err(couplet::Error::invalid("robustness", format!("{stray} temporary files left")));
        }
        Ok(vec![])
    }));
    cases
}

fn io(e: std::io::Error) -> couplet::Error {
    couplet::Error::Io { context: "robustness".into(), source: e }
}

fn adam(config: AdamConfig) -> Result<Vec<Tensor>> {
    let s = Store::cpu();
    let w = s.root().var("w", &[2]).create()?;
    let mut o = Adam::new(s.variables(), config)?;
    // A zero gradient: eps = 0 would give 0 / 0.
    (w.sum(Kind::Float) * 0.0).backward();
    o.step()?;
    one(w)
}

/// Masked padding holding NaN or infinities: the result must be finite (and is compared with
/// zero padding in attention/tests/masked_padding.rs).
fn padding_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for pad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let memory = move || {
            let v = [0.5f32, -1.0, 1.5, 0.25, pad, pad, -0.5, 2.0, pad, pad, pad, pad];
            Tensor::from_slice(&v).view([2, 3, 2])
        };
        let lengths = [2i64, 1];
        let mask = || Tensor::from_slice(&[true, true, false, true, false, false]).view([2, 3]);
        cases.push(Case::new(format!("padding {pad}: AttentiveRead"), Expect::Ok, true, move || {
            let s = Store::cpu();
            let read = AttentiveRead::new(&s.root(), linear(&s, 1))?;
            let out = read.forward_t(&memory(), &Tensor::randn([2, 2], F32), Some(&mask()), Mode::Eval)?;
            Ok(vec![out.read, out.weights])
        }));
        cases.push(Case::new(
            format!("padding {pad}: Luong prepare_with_lengths"),
            Expect::Ok,
            true,
            move || {
                let s = Store::cpu();
                let m = LuongAttention::new(&s.root(), LuongConfig::new(2))?;
                let (c, a) =
                    m.attend(&Tensor::randn([2, 2], F32), &m.prepare_with_lengths(&memory(), &lengths)?)?;
                Ok(vec![c, a])
            },
        ));
        cases.push(Case::new(
            format!("padding {pad}: Dot prepare_with_lengths"),
            Expect::Ok,
            true,
            move || {
                let s = Store::cpu();
                let m = DotAttention::new(&s.root())?;
                let (c, a) =
                    m.attend(&Tensor::randn([2, 2], F32), &m.prepare_with_lengths(&memory(), &lengths)?)?;
                Ok(vec![c, a])
            },
        ));
        cases.push(Case::new(
            format!("padding {pad}: Bahdanau prepare_with_lengths"),
            Expect::Ok,
            true,
            move || {
                let s = Store::cpu();
                let m = BahdanauAttention::new(&s.root(), BahdanauConfig::new(3).with_normalize(true))?;
                let (c, a) =
                    m.attend(&Tensor::randn([2, 2], F32), &m.prepare_with_lengths(&memory(), &lengths)?)?;
                Ok(vec![c, a])
            },
        ));
        cases.push(Case::new(
            format!("padding {pad}: attention decoder core"),
            Expect::Ok,
            true,
            move || {
                let s = Store::cpu();
                let cell = VanillaRnn::new(&s.root(), VanillaRnnConfig::new(2).with_input_size(3))?;
                let mech = LuongAttention::new(&s.root(), LuongConfig::new(2))?;
                let dec = AttentionDecoderCore::new(
                    &s.root(),
                    Box::new(cell),
                    Box::new(mech),
                    AttentionDecoderConfig::new(2),
                )?;
                let s0 = dec.initial_state_with_memory_lengths(&memory(), &lengths, None)?;
                let (y, s1) = dec.step(&Tensor::ones([2, 1], F32), &s0, Mode::Eval)?;
                Ok(vec![y, dec.step(&Tensor::ones([2, 1], F32), &s1, Mode::Eval)?.0])
            },
        ));
        cases.push(Case::new(
            format!("padding {pad}: MultiHeadAttention key padding"),
            Expect::Ok,
            true,
            move || {
                let s = Store::cpu();
                let mha = MultiHeadAttention::new(&s.root(), MultiHeadAttentionConfig::new(2, 2))?;
                let mut out = Vec::new();
                for need_weights in [false, true] {
                    let m = mask();
                    let masks = AttentionMasks { key_mask: Some(&m), causal: false, need_weights };
                    let (y, w) = mha.forward_t(
                        &Tensor::randn([2, 4, 2], F32),
                        &memory(),
                        &memory(),
                        &masks,
                        Mode::Eval,
                    )?;
                    out.push(y);
                    out.extend(w);
                }
                Ok(out)
            },
        ));
        cases.push(Case::new(format!("padding {pad}: masked_mean"), Expect::Ok, true, move || {
            one(masked_mean(&memory(), &mask())?)
        }));
    }
    cases
}

/// A small valid checkpoint's bytes, written once per case.
fn checkpoint_bytes(dir: &std::path::Path) -> Result<(Store, Vec<u8>)> {
    let s = Store::cpu();
    let lin = Linear::new(&s.root(), LinearConfig::new(3).with_input_size(4))?;
    let path = dir.join("good.safetensors");
    checkpoint::save(&lin, &path)?;
    Ok((s, std::fs::read(&path).map_err(io)?))
}

/// Corrupt files: truncations, flipped bits (data region: must fail the checksum), random
/// garbage, and headers with wild offsets and shapes.
fn file_cases(rng: &mut rand::rngs::StdRng, extra: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for k in 0..(8 + extra) {
        let (cut, bit, pick): (f64, u32, f64) = (rng.gen(), rng.gen_range(0..8), rng.gen());
        cases.push(Case::new(format!("file: truncated at {cut:.3}"), Expect::Error, true, move || {
            let dir = scratch("truncated");
            let (s, bytes) = checkpoint_bytes(&dir)?;
            let path = dir.join("bad.safetensors");
            std::fs::write(&path, &bytes[..(bytes.len() as f64 * cut) as usize]).map_err(io)?;
            checkpoint::restore(&s, &path).map(|_| vec![])
        }));
        cases.push(Case::new(format!("file: data bit flip {k}"), Expect::Error, true, move || {
            let dir = scratch("data_flip");
            let (s, mut bytes) = checkpoint_bytes(&dir)?;
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8])) as usize;
            let data = bytes.len() - (8 + n);
            let at = 8 + n + ((data as f64 * pick) as usize).min(data - 1);
            bytes[at] ^= 1 << bit;
            let path = dir.join("bad.safetensors");
            std::fs::write(&path, &bytes).map_err(io)?;
            checkpoint::restore(&s, &path).map(|_| vec![])
        }));
        cases.push(Case::new(format!("file: header bit flip {k}"), Expect::Either, true, move || {
            let dir = scratch("header_flip");
            let (s, mut bytes) = checkpoint_bytes(&dir)?;
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8])) as usize;
            let at = ((8 + n) as f64 * pick) as usize;
            bytes[at] ^= 1 << bit;
            let path = dir.join("bad.safetensors");
            std::fs::write(&path, &bytes).map_err(io)?;
            let _ = checkpoint::load(&path);
            checkpoint::restore(&s, &path)
                .map(|_| s.variables().into_iter().map(|v| v.tensor().shallow_clone()).collect())
        }));
    }
    let wild = [u64::MAX, u64::MAX - 8, 1 << 63, 1 << 40, 0];
    for (i, &a) in wild.iter().enumerate() {
        for &b in &wild[i..] {
            cases.push(Case::new(
                format!("file: header offsets [{b}, {a}]"),
                Expect::Error,
                true,
                move || {
                    let dir = scratch("wild");
                    let s = Store::cpu();
                    let _ = s.root().var("x", &[2]).create()?;
                    let header =
                        format!(r#"{{"x":{{"dtype":"F32","shape":[{a}],"data_offsets":[{b},{a}]}}}}"#);
                    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
                    bytes.extend_from_slice(header.as_bytes());
                    bytes.extend_from_slice(&[0; 8]);
                    let path = dir.join("wild.safetensors");
                    std::fs::write(&path, &bytes).map_err(io)?;
                    checkpoint::restore_with(&s, &path, &RestoreOptions::partial()).map(|_| vec![])
                },
            ));
        }
    }
    cases
}

/// Every case, in a fixed order: the grid of classes for each target argument, `extra`
/// random classes per target, configurations, masked padding and corrupt files.
pub fn cases() -> Vec<Case> {
    let seed = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261122u64);
    let extra = std::env::var("COUPLET_ROBUSTNESS_CASES")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .map_or(6, |n| n / 8);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cases = Vec::new();
    for t in targets() {
        let nargs = t.args.len();
        let mut classes: Vec<(usize, Class)> =
            (0..nargs).flat_map(|i| grid().into_iter().map(move |c| (i, c))).collect();
        for _ in 0..extra {
            let rank = rng.gen_range(0..=4);
            let shape: Vec<i64> = (0..rank).map(|_| rng.gen_range(0..5)).collect();
            classes.push((rng.gen_range(0..nargs), Class::Random(shape, rng.gen())));
        }
        for (i, class) in classes {
            let case_seed: u64 = rng.gen();
            let (args, call) = (t.args.clone(), t.call);
            let name = format!("{} arg {i}: {class:?}", t.name);
            let (expect, finite) = (class.expect(), class.finite());
            cases.push(Case::new(name, expect, finite, move || {
                let xs: Vec<Tensor> = args
                    .iter()
                    .enumerate()
                    .map(|(j, a)| {
                        if j == i {
                            draw(a, &class, case_seed)
                        } else {
                            draw(a, &Class::Valid, case_seed + j as u64)
                        }
                    })
                    .collect();
                call(&xs)
            }));
        }
    }
    cases.extend(config_cases());
    cases.extend(padding_cases());
    cases.extend(file_cases(&mut rng, extra));
    cases
}
