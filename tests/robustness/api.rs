//! Robustness: the public API answers random shapes, ranks, kinds and values (rank 0, empty
//! dimensions, Int64 where floats are expected and vice versa, NaN) with `Ok` or a typed
//! couplet [`Error`], never a panic or a libtorch abort.
//!
//! Each call runs under `catch_unwind` only to report a panic as a test failure together with
//! its inputs (proptest then shrinks them to a small case).

use couplet::attention::{
    beam_search, greedy_decode, masked_softmax, memory_mask, AlignmentHistory, AttentionDecoderConfig,
    AttentionDecoderCore, AttentionMasks, AttentionMechanism, AttentionMemory, AttentiveRead,
    BahdanauAttention, BahdanauConfig, BeamSearchConfig, CoreDecoder, DecoderState, DotAttention,
    GreedyOptions, LuongAttention, LuongConfig, MultiHeadAttention, MultiHeadAttentionConfig,
};
use couplet::checkpoint;
use couplet::rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, last_relevant, lengths_from_padding, masked_mean,
    reverse_sequence, sequence_loss, sequence_mask, BiRnnOptions, DropoutWrapper, DropoutWrapperConfig, Gru,
    GruConfig, Lstm, LstmConfig, MergeMode, ResidualWrapper, RnnCore, SequenceLossOptions, StackedRnn,
    StackedRnnConfig, State, UnrollOptions, VanillaRnn, VanillaRnnConfig, ZoneoutConfig, ZoneoutWrapper,
};
use couplet::{
    BatchNorm, BatchNormConfig, BatchReshape, BatchReshapeConfig, Conv1d, Conv1dConfig, Conv2d, Conv2dConfig,
    Conv2dTranspose, Conv2dTransposeConfig, DataFormat, DataFormat1d, DataFormat2d, Embed, EmbedConfig,
    Error, LayerNorm, LayerNormConfig, Linear, LinearConfig, Mlp, MlpConfig, Mode, Padding, Store,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::{Device, Kind, Tensor};

/// Cases per property: 48, or `COUPLET_ROBUSTNESS_CASES`.
fn cases() -> u32 {
    std::env::var("COUPLET_ROBUSTNESS_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48)
}

/// How one tensor argument is drawn: the valid shape as is, the valid shape with one
/// dimension changed, or any shape of rank 0..=4; the expected kind or any other; values
/// random, NaN, or integers in a range around the valid one.
#[derive(Clone, Debug)]
struct Arg {
    form: u8,
    index: usize,
    value: i64,
    dims: Vec<i64>,
    kind: Option<Kind>,
    nan: bool,
}

fn arg() -> impl Strategy<Value = Arg> {
    let kinds =
        prop::sample::select(vec![Kind::Float, Kind::Double, Kind::Int64, Kind::Int, Kind::Bool, Kind::Half]);
    let dims = prop::collection::vec(0i64..5, 0..=4);
    (0u8..8, 0usize..4, 0i64..5, dims, prop::option::weighted(0.15, kinds), prop::bool::weighted(0.1))
        .prop_map(|(form, index, value, dims, kind, nan)| Arg { form, index, value, dims, kind, nan })
}

impl Arg {
    fn shape(&self, valid: &[i64]) -> Vec<i64> {
        match self.form {
            0..=4 => valid.to_vec(),
            5 if !valid.is_empty() => {
                let mut s = valid.to_vec();
                s[self.index % valid.len()] = self.value;
                s
            }
            _ => self.dims.clone(),
        }
    }

    fn kind(&self, expected: Kind) -> Kind {
        self.kind.unwrap_or(expected)
    }

    /// A tensor near `valid` of a kind near `expected`; integer values lie in `lo..hi` (or
    /// a little outside).
    fn tensor(&self, valid: &[i64], expected: Kind, (lo, hi): (i64, i64)) -> Tensor {
        let (shape, kind) = (self.shape(valid), self.kind(expected));
        let opts = (Kind::Float, Device::Cpu);
        let t = match kind {
            Kind::Float | Kind::Double | Kind::Half => {
                let t = Tensor::randn(&shape, opts);
                if self.nan {
                    t.fill(f64::NAN)
                } else {
                    t
                }
            }
            Kind::Bool => Tensor::randint_low(0, 2, &shape, (Kind::Int64, Device::Cpu)),
            // For integers, `nan` widens the range past the valid values instead.
            _ if self.nan => Tensor::randint_low(lo - 2, hi + 2, &shape, (Kind::Int64, Device::Cpu)),
            _ => Tensor::randint_low(lo, hi.max(lo + 1), &shape, (Kind::Int64, Device::Cpu)),
        };
        t.to_kind(kind)
    }

    fn describe(&self, t: &Tensor) -> String {
        format!("{:?} {:?}{}", t.kind(), t.size(), if self.nan { " NaN" } else { "" })
    }
}

/// Runs `f`; a panic becomes a test failure naming `what` and `inputs`. Errors must name
/// their module.
fn guard<T>(
    what: &str,
    inputs: &dyn Debug,
    f: impl FnOnce() -> couplet::Result<T>,
) -> Result<Option<T>, TestCaseError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(e)) => {
            let module = match &e {
                Error::Shape { module, .. }
                | Error::InvalidArgument { module, .. }
                | Error::NotBuilt { module }
                | Error::Config { module, .. }
                | Error::Torch { module, .. } => module.clone(),
                other => other.to_string(),
            };
            prop_assert!(!module.is_empty(), "{what}: error without a module name: {e}");
            Ok(None)
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(TestCaseError::fail(format!("{what} panicked on {inputs:?}: {msg}")))
        }
    }
}

fn mode(train: bool) -> Mode {
    if train {
        Mode::Train
    } else {
        Mode::Eval
    }
}

/// Lengths for 3 rows of 4 steps, mostly valid, some of another count or out of range.
fn lengths() -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![3 => prop::collection::vec(0i64..=4, 3), 1 => prop::collection::vec(-1i64..6, 0..5)]
}

/// Mostly in `valid`, sometimes just below it.
fn mostly(valid: std::ops::Range<i64>) -> impl Strategy<Value = i64> {
    let low = valid.start;
    prop_oneof![4 => valid, 1 => (low - 2)..=low]
}

fn lengths_tensor(values: &[i64], kind: Option<Kind>) -> Option<Tensor> {
    kind.map(|k| Tensor::from_slice(values).to_kind(k))
}

fn kind_opt() -> impl Strategy<Value = Option<Kind>> {
    prop::sample::select(vec![
        None,
        None,
        Some(Kind::Int64),
        Some(Kind::Int64),
        Some(Kind::Int),
        Some(Kind::Float),
        Some(Kind::Bool),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn linear_and_mlp(x in arg(), pre in any::<bool>(), train in any::<bool>()) {
        let store = Store::cpu();
        let lin = Linear::new(&store.root(), LinearConfig::new(2)).unwrap();
        let mlp = Mlp::new(&store.root(), MlpConfig::new(&[3, 2]).with_dropout_rate(0.5)).unwrap();
        if pre {
            let _ = lin.forward(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap();
            let _ = mlp.forward_t(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap();
        }
        let t = x.tensor(&[2, 3], Kind::Float, (-2, 5));
        let d = x.describe(&t);
        guard("linear", &d, || lin.forward(&t))?;
        guard("mlp", &d, || mlp.forward_t(&t, mode(train)))?;
    }

    #[test]
    fn embed(ids in arg(), matrix in arg()) {
        let store = Store::cpu();
        let e = Embed::new(&store.root(), EmbedConfig::new(5, 3)).unwrap();
        let t = ids.tensor(&[2, 3], Kind::Int64, (0, 5));
        guard("embed", &ids.describe(&t), || e.forward(&t))?;
        let m = matrix.tensor(&[5, 3], Kind::Float, (0, 3));
        let pre = guard("embed::from_pretrained", &matrix.describe(&m), || {
            Embed::from_pretrained(&store.root(), &m, EmbedConfig::new(5, 3))
        })?;
        if let Some(pre) = pre {
            guard("embed (pretrained)", &ids.describe(&t), || pre.forward(&t))?;
        }
    }

    #[test]
    fn layer_norm_and_batch_norm(x in arg(), pre in any::<bool>(), train in any::<bool>(), last in any::<bool>()) {
        let store = Store::cpu();
        let ln = LayerNorm::new(&store.root(), LayerNormConfig::new()).unwrap();
        let format = if last { DataFormat::ChannelsLast } else { DataFormat::ChannelsFirst };
        let bn = BatchNorm::new(&store.root(), BatchNormConfig::new().with_data_format(format)).unwrap();
        if pre {
            let _ = ln.forward(&Tensor::ones([2, 3], (Kind::Float, Device::Cpu))).unwrap();
            let _ = bn.forward_t(&Tensor::ones([2, 3, 4], (Kind::Float, Device::Cpu)), Mode::Train).unwrap();
        }
        let t = x.tensor(&[2, 3, 4], Kind::Float, (-2, 5));
        let d = x.describe(&t);
        guard("layer_norm", &d, || ln.forward(&t))?;
        guard("batch_norm", &d, || bn.forward_t(&t, mode(train)))?;
    }

    #[test]
    fn convolutions(
        x in arg(),
        pre in any::<bool>(),
        ncw in any::<bool>(),
        valid in any::<bool>(),
        k in 1i64..4,
        s in 1i64..3,
        out_shape in prop::option::of((1i64..6, 1i64..6)),
    ) {
        let store = Store::cpu();
        let root = store.root();
        let padding = if valid { Padding::Valid } else { Padding::Same };
        let f1 = if ncw { DataFormat1d::Ncw } else { DataFormat1d::Nwc };
        let f2 = if ncw { DataFormat2d::Nchw } else { DataFormat2d::Nhwc };
        let c1 = Conv1d::new(&root, Conv1dConfig::new(2, k).with_stride(s).with_padding(padding).with_data_format(f1)).unwrap();
        let c2 = Conv2d::new(&root, Conv2dConfig::new(2, k).with_stride(s).with_padding(padding).with_data_format(f2)).unwrap();
        let mut tc = Conv2dTransposeConfig::new(2, k).with_stride(s).with_padding(padding).with_data_format(f2);
        if let Some(o) = out_shape {
            tc = tc.with_output_shape([o.0, o.1]);
        }
        let ct = guard("conv2d_transpose::new", &tc, || Conv2dTranspose::new(&root, tc.clone()))?;
        if pre {
            let _ = c1.forward(&Tensor::ones([1, 3, 3], (Kind::Float, Device::Cpu)));
            let _ = c2.forward(&Tensor::ones([1, 3, 3, 3], (Kind::Float, Device::Cpu)));
        }
        let t1 = x.tensor(&[2, 5, 3], Kind::Float, (-2, 5));
        guard("conv1d", &(x.describe(&t1), k, s, padding, f1), || c1.forward(&t1))?;
        let t2 = x.tensor(&[2, 5, 4, 3], Kind::Float, (-2, 5));
        guard("conv2d", &(x.describe(&t2), k, s, padding, f2), || c2.forward(&t2))?;
        if let Some(ct) = ct {
            guard("conv2d_transpose", &(x.describe(&t2), &tc), || ct.forward(&t2))?;
        }
    }

    #[test]
    fn batch_reshape(x in arg(), shape in prop::collection::vec(-2i64..5, 0..4), preserve in 0usize..4) {
        let store = Store::cpu();
        let config = BatchReshapeConfig::new(&shape).with_preserve_dims(preserve);
        let r = guard("batch_reshape::new", &config, || BatchReshape::new(&store.root(), config.clone()))?;
        if let Some(r) = r {
            let t = x.tensor(&[2, 3, 4], Kind::Float, (-2, 5));
            guard("batch_reshape", &(x.describe(&t), &config), || r.forward(&t))?;
        }
    }

    #[test]
    fn rnn_core_steps(x in arg(), h in arg(), c in arg(), pre in any::<bool>(), train in any::<bool>(), which in 0u8..4, batch in -1i64..3) {
        let store = Store::cpu();
        let root = store.root();
        let core: Box<dyn RnnCore> = match which {
            0 => Box::new(Lstm::new(&root, LstmConfig::new(3)).unwrap()),
            1 => Box::new(Lstm::new(&root, LstmConfig::new(3).with_proj_size(2).with_peepholes(true).with_layer_norm(true)).unwrap()),
            2 => Box::new(Gru::new(&root, GruConfig::new(3)).unwrap()),
            _ => Box::new(VanillaRnn::new(&root, VanillaRnnConfig::new(3)).unwrap()),
        };
        let name = core.name().to_string();
        if pre {
            let s = core.initial_state(2).unwrap();
            let _ = core.step(&Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)), &s, Mode::Eval).unwrap();
        }
        guard(&name, &("initial_state", batch), || core.initial_state(batch))?;
        let xt = x.tensor(&[2, 4], Kind::Float, (-2, 5));
        let ht = h.tensor(&[2, 3], Kind::Float, (-2, 5));
        let ct = c.tensor(&[2, 3], Kind::Float, (-2, 5));
        let d = (x.describe(&xt), h.describe(&ht), c.describe(&ct));
        let states = [State::Empty, State::Tensor(ht.shallow_clone()), State::Lstm { h: ht.shallow_clone(), c: ct.shallow_clone() }, State::Tuple(vec![State::Tensor(ht)])];
        for s in &states {
            guard(&name, &(&d, s), || core.step(&xt, s, mode(train)))?;
        }
    }

    #[test]
    fn unrolls(
        x in arg(),
        h in arg(),
        lens in lengths(),
        lens_kind in kind_opt(),
        time_major in any::<bool>(),
        with_state in any::<bool>(),
        train in any::<bool>(),
        which in 0u8..3,
    ) {
        let store = Store::cpu();
        let root = store.root();
        let core: Box<dyn RnnCore> = match which {
            0 => Box::new(Lstm::new(&root, LstmConfig::new(3)).unwrap()),
            1 => Box::new(Gru::new(&root, GruConfig::new(3)).unwrap()),
            _ => Box::new(VanillaRnn::new(&root, VanillaRnnConfig::new(3)).unwrap()),
        };
        let bw = Gru::new(&root, GruConfig::new(2)).unwrap();
        let inputs = x.tensor(&[3, 4, 2], Kind::Float, (-2, 5));
        let ht = h.tensor(&[3, 3], Kind::Float, (-2, 5));
        let state = if which == 0 { State::Lstm { h: ht.shallow_clone(), c: ht } } else { State::Tensor(ht) };
        let lt = lengths_tensor(&lens, lens_kind);
        let d = (x.describe(&inputs), &lens, lens_kind, time_major, with_state);
        let mut o = UnrollOptions::new(mode(train)).with_time_major(time_major);
        let mut bo = BiRnnOptions::new(mode(train)).with_time_major(time_major);
        if !lens.is_empty() || lt.is_some() {
            o = match &lt { Some(t) => o.with_lengths(t), None => o.with_lengths(&lens) };
            bo = match &lt { Some(t) => bo.with_lengths(t), None => bo.with_lengths(&lens) };
        }
        if with_state {
            o = o.with_initial_state(&state);
            bo = bo.with_fw_initial_state(&state);
        }
        guard("dynamic_rnn", &d, || dynamic_rnn(core.as_ref(), &inputs, &o))?;
        let out = guard("bidirectional_dynamic_rnn", &d, || bidirectional_dynamic_rnn(core.as_ref(), &bw, &inputs, &bo))?;
        if let Some(out) = out {
            for m in [MergeMode::Concat, MergeMode::Sum, MergeMode::Mean] {
                guard("merge", &(&d, m), || out.merge(m))?;
            }
        }
    }

    #[test]
    fn sequence_helpers(x in arg(), lens in lengths(), lens_kind in kind_opt(), maxlen in prop::option::of(-1i64..6), time_major in any::<bool>()) {
        let lt = lengths_tensor(&lens, lens_kind);
        let t = x.tensor(&[3, 4, 2], Kind::Float, (-2, 5));
        let d = (x.describe(&t), &lens, lens_kind, maxlen, time_major);
        match &lt {
            Some(l) => {
                guard("sequence_mask", &d, || sequence_mask(l, maxlen))?;
                guard("reverse_sequence", &d, || reverse_sequence(&t, l, time_major))?;
                guard("last_relevant", &d, || last_relevant(&t, l))?;
            }
            None => {
                guard("sequence_mask", &d, || sequence_mask(&lens, maxlen))?;
                guard("reverse_sequence", &d, || reverse_sequence(&t, &lens, time_major))?;
                guard("last_relevant", &d, || last_relevant(&t, &lens))?;
            }
        }
    }

    #[test]
    fn sequence_losses(logits in arg(), targets in arg(), weights in arg(), flags in prop::sample::select(vec![(true, true, false, false), (false, false, true, true), (true, false, false, false), (false, false, true, false), (false, true, true, false), (true, false, true, false)])) {
        let l = logits.tensor(&[2, 3, 4], Kind::Float, (-2, 5));
        let t = targets.tensor(&[2, 3], Kind::Int64, (0, 4));
        let w = weights.tensor(&[2, 3], Kind::Float, (0, 2));
        let o = SequenceLossOptions::default()
            .with_average_across_timesteps(flags.0)
            .with_average_across_batch(flags.1)
            .with_sum_over_timesteps(flags.2)
            .with_sum_over_batch(flags.3);
        let d = (logits.describe(&l), targets.describe(&t), weights.describe(&w), flags);
        guard("sequence_loss", &d, || sequence_loss(&l, &t, &w, &o))?;
    }

    #[test]
    fn attention(memory in arg(), query in arg(), mask in arg(), train in any::<bool>(), pre in any::<bool>()) {
        let store = Store::cpu();
        let root = store.root();
        let logit = Linear::new(&root, LinearConfig::new(1)).unwrap();
        let read = AttentiveRead::new(&root, logit).unwrap();
        if pre {
            let m = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
            read.forward_t(&m, &Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)), None, Mode::Eval).unwrap();
        }
        let m = memory.tensor(&[2, 3, 4], Kind::Float, (-2, 5));
        let q = query.tensor(&[2, 2], Kind::Float, (-2, 5));
        let k = mask.tensor(&[2, 3], Kind::Bool, (0, 2));
        let d = (memory.describe(&m), query.describe(&q), mask.describe(&k));
        guard("attentive_read", &d, || read.forward_t(&m, &q, None, mode(train)))?;
        guard("attentive_read", &d, || read.forward_t(&m, &q, Some(&k), mode(train)))?;
    }

    #[test]
    fn multi_head(
        query in arg(),
        key in arg(),
        value in arg(),
        mask in arg(),
        dims in prop_oneof![3 => Just((4i64, 2i64)), 1 => (0i64..5, 0i64..3)],
        causal in any::<bool>(),
        weights in any::<bool>(),
        with_mask in any::<bool>(),
        train in any::<bool>(),
    ) {
        let store = Store::cpu();
        let config = MultiHeadAttentionConfig::new(dims.0, dims.1).with_kdim(3).with_dropout(0.1);
        let mha = guard("multi_head_attention::new", &config, || MultiHeadAttention::new(&store.root(), config.clone()))?;
        if let Some(mha) = mha {
            let e = dims.0;
            let q = query.tensor(&[2, 3, e], Kind::Float, (-2, 5));
            let k = key.tensor(&[2, 4, 3], Kind::Float, (-2, 5));
            let v = value.tensor(&[2, 4, e], Kind::Float, (-2, 5));
            let m = mask.tensor(&[2, 4], Kind::Bool, (0, 2));
            let masks = AttentionMasks { key_mask: with_mask.then_some(&m), causal, need_weights: weights };
            let d = (query.describe(&q), key.describe(&k), value.describe(&v), mask.describe(&m), &masks, &config);
            guard("multi_head_attention", &d, || mha.forward_t(&q, &k, &v, &masks, mode(train)))?;
        }
    }

    #[test]
    fn decoding(
        start in arg(),
        h in arg(),
        batch in mostly(2..3),
        k in mostly(1..4),
        end in prop_oneof![4 => 0i64..5, 1 => -1i64..7],
        max_len in mostly(1..4),
        alpha in prop::sample::select(vec![0.0, 0.6, 0.6, -1.0, f64::NAN]),
        own_state in any::<bool>(),
    ) {
        let store = Store::cpu();
        let root = store.root();
        let embed = Embed::new(&root, EmbedConfig::new(5, 3)).unwrap();
        let lstm = Lstm::new(&root, LstmConfig::new(4).with_input_size(3)).unwrap();
        let proj = Linear::new(&root, LinearConfig::new(5).with_input_size(4)).unwrap();
        let dec = CoreDecoder::new(&embed, &lstm, &proj);
        let tokens = start.tensor(&[2], Kind::Int64, (0, 5));
        let state = if own_state {
            let ht = h.tensor(&[2, 4], Kind::Float, (-2, 5));
            State::Lstm { h: ht.shallow_clone(), c: ht }
        } else {
            match guard("core_decoder::initial_state", &batch, || dec.initial_state(batch))? {
                Some(s) => s,
                None => return Ok(()),
            }
        };
        let d = (start.describe(&tokens), &state, k, end, max_len, alpha);
        guard("greedy_decode", &d, || greedy_decode(&dec, &state, &tokens, &GreedyOptions::new(end, max_len)))?;
        let config = BeamSearchConfig::new(k, end, max_len).with_length_penalty(alpha);
        guard("beam_search", &d, || beam_search(&dec, &state, &tokens, &config))?;
    }

    #[test]
    fn wrapped_cores(x in arg(), h in arg(), which in 0u8..4, train in any::<bool>(), keep in prop::sample::select(vec![0.5, 1.0, 0.0, 1.5])) {
        let store = Store::cpu();
        let root = store.root();
        let lstm = || Lstm::new(&root, LstmConfig::new(3)).unwrap();
        let core: Option<Box<dyn RnnCore>> = match which {
            0 => {
                let cores: Vec<Box<dyn RnnCore>> = vec![Box::new(lstm()), Box::new(Gru::new(&root, GruConfig::new(3)).unwrap())];
                let config = StackedRnnConfig::new().with_skip_connections(train);
                guard("deep_rnn::new", &(), || StackedRnn::new(&root, cores, config))?.map(|c| Box::new(c) as _)
            }
            1 => {
                let config = DropoutWrapperConfig::new().with_input_dropout(keep).with_state_dropout(keep).with_variational(train).with_input_size(3);
                guard("dropout::new", &keep, || DropoutWrapper::new(&root, lstm(), config))?.map(|c| Box::new(c) as _)
            }
            2 => {
                let config = ZoneoutConfig::new().with_zoneout_h(keep).with_zoneout_c(keep);
                guard("zoneout::new", &keep, || ZoneoutWrapper::new(&root, lstm(), config))?.map(|c| Box::new(c) as _)
            }
            _ => guard("residual::new", &(), || ResidualWrapper::new(&root, lstm()))?.map(|c| Box::new(c) as _),
        };
        if let Some(core) = core {
            let xt = x.tensor(&[2, 3], Kind::Float, (-2, 5));
            let ht = h.tensor(&[2, 3], Kind::Float, (-2, 5));
            let name = core.name().to_string();
            let d = (x.describe(&xt), h.describe(&ht));
            if let Some(s) = guard(&name, &2, || core.initial_state(2))? {
                guard(&name, &d, || core.step(&xt, &s, mode(train)))?;
                let wrong = State::Tuple(vec![State::Tensor(ht.shallow_clone()), State::Lstm { h: ht.shallow_clone(), c: ht.shallow_clone() }]);
                guard(&name, &d, || core.step(&xt, &wrong, mode(train)))?;
            }
            let inputs = x.tensor(&[2, 4, 3], Kind::Float, (-2, 5));
            guard("dynamic_rnn", &x.describe(&inputs), || dynamic_rnn(core.as_ref(), &inputs, &UnrollOptions::new(mode(train)).with_lengths(&[4, 1])))?;
        }
    }

    #[test]
    fn state_rows(h in arg(), index in arg(), start in -1i64..4, len in -1i64..4, mask in arg()) {
        let ht = h.tensor(&[3, 2], Kind::Float, (-2, 5));
        let state = State::Tuple(vec![State::Tensor(ht.shallow_clone()), State::Lstm { h: ht.shallow_clone(), c: ht.shallow_clone() }]);
        let i = index.tensor(&[2], Kind::Int64, (0, 3));
        let m = mask.tensor(&[3], Kind::Bool, (0, 2));
        let d = (h.describe(&ht), index.describe(&i), start, len, mask.describe(&m));
        guard("select_rows", &d, || state.select_rows(&i))?;
        guard("narrow_rows", &d, || state.narrow_rows(start, len))?;
        guard("where_rows", &d, || state.where_rows(&m, &state))?;
        guard("cat_rows", &d, || State::cat_rows(&[state.clone(), State::Tensor(ht.shallow_clone())]))?;
        guard("to_device", &d, || state.to_device(Device::Cuda(0)))?;
    }

    #[test]
    fn masks_and_means(x in arg(), mask in arg(), lens in lengths()) {
        let t = x.tensor(&[3, 4, 2], Kind::Float, (-2, 5));
        let m = mask.tensor(&[3, 4], Kind::Bool, (0, 2));
        let d = (x.describe(&t), mask.describe(&m), &lens);
        guard("masked_mean", &d, || masked_mean(&t, &m))?;
        guard("lengths_from_padding", &d, || lengths_from_padding(&t))?;
        guard("memory_mask", &d, || memory_mask(&t, &lens))?;
        let logits = x.tensor(&[3, 4], Kind::Float, (-2, 5));
        guard("masked_softmax", &d, || masked_softmax("m", &logits, Some(&m)))?;
        guard("masked_softmax", &d, || masked_softmax("m", &logits, None))?;
    }

    #[test]
    fn mechanisms(memory in arg(), query in arg(), mask in arg(), values in arg(), keys in arg(), which in 0u8..3, own in any::<bool>()) {
        let store = Store::cpu();
        let root = store.root();
        let mech: Box<dyn AttentionMechanism> = match which {
            0 => Box::new(DotAttention::new(&root).unwrap()),
            1 => Box::new(LuongAttention::new(&root, LuongConfig::new(2).with_scale(true)).unwrap()),
            _ => Box::new(BahdanauAttention::new(&root, BahdanauConfig::new(2).with_normalize(true)).unwrap()),
        };
        let name = mech.name().to_string();
        let m = memory.tensor(&[2, 3, 2], Kind::Float, (-2, 5));
        let q = query.tensor(&[2, 2], Kind::Float, (-2, 5));
        let k = mask.tensor(&[2, 3], Kind::Bool, (0, 2));
        let d = (memory.describe(&m), query.describe(&q), mask.describe(&k));
        let prepared = guard(&name, &d, || mech.prepare(&m, Some(&k)))?;
        let prepared = if own || prepared.is_none() {
            let v = values.tensor(&[2, 3, 2], Kind::Float, (-2, 5));
            let kt = keys.tensor(&[2, 3, 2], Kind::Float, (-2, 5));
            AttentionMemory { values: v, keys: kt, mask: Some(k.shallow_clone()) }
        } else {
            prepared.unwrap()
        };
        let d = (d, prepared.values.size(), prepared.keys.size());
        guard(&name, &d, || mech.score(&q, &prepared))?;
        guard(&name, &d, || mech.attend(&q, &prepared))?;
    }

    #[test]
    fn attention_decoder(
        memory in arg(),
        mask in arg(),
        x in arg(),
        leaf in arg(),
        slot in 0usize..8,
        max_steps in prop::option::of(-1i64..3),
        history in any::<bool>(),
        feeding in any::<bool>(),
    ) {
        let store = Store::cpu();
        let root = store.root();
        let cell = Box::new(Lstm::new(&root, LstmConfig::new(3)).unwrap());
        let mech = Box::new(LuongAttention::new(&root, LuongConfig::new(3)).unwrap());
        let config = AttentionDecoderConfig::new(4).with_alignment_history(history).with_input_feeding(feeding);
        let dec = AttentionDecoderCore::new(&root, cell, mech, config).unwrap();
        let m = memory.tensor(&[2, 3, 5], Kind::Float, (-2, 5));
        let k = mask.tensor(&[2, 3], Kind::Bool, (0, 2));
        let xt = x.tensor(&[2, 2], Kind::Float, (-2, 5));
        let d = (memory.describe(&m), mask.describe(&k), x.describe(&xt), max_steps);
        let Some(state) = guard("attention_decoder", &d, || dec.initial_state_with_memory(&m, Some(&k), max_steps))? else {
            return Ok(());
        };
        if let Some((_, next)) = guard("attention_decoder", &d, || dec.step(&xt, &state, Mode::Eval))? {
            guard("attention_decoder", &d, || dec.step(&xt, &next, Mode::Train))?;
        }
        // The same state with one leaf replaced by a random tensor.
        let State::Tuple(mut slots) = state.clone() else { panic!("a decoder state is a tuple") };
        let lt = leaf.tensor(&[2, 3], Kind::Float, (-2, 5));
        slots[slot] = State::Tensor(lt.shallow_clone());
        let bad = State::Tuple(slots);
        let d2 = (&d, slot, leaf.describe(&lt));
        guard("attention_decoder", &d2, || dec.step(&xt, &bad, Mode::Eval))?;
        guard("attention_decoder", &d2, || dec.with_cell_state(&state, State::Tensor(lt.shallow_clone())))?;
        // A hand-built typed view with a history of the wrong rank.
        if let Some(view) = guard("attention_decoder", &d2, || dec.decoder_state(&state))? {
            let steps = Tensor::zeros([2, 1], (Kind::Int64, Device::Cpu));
            let view = DecoderState { history: Some(AlignmentHistory { alignments: lt, steps }), ..view };
            guard("decoder_state", &d2, || view.into_state())?;
        }
    }

    #[test]
    fn checkpoint_restore_of_random_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        form in 0u8..4,
    ) {
        let dir = std::env::temp_dir().join(format!("couplet-robustness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.safetensors", bytes.iter().fold(form as u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64))));
        let store = Store::cpu();
        let lin = Linear::new(&store.root(), LinearConfig::new(2).with_input_size(3)).unwrap();
        checkpoint::save(&lin, &path).unwrap();
        let mut data = std::fs::read(&path).unwrap();
        match form {
            0 => data = bytes.clone(),
            1 => data.truncate(cut.index(data.len() + 1)),
            2 => {
                // A valid header length followed by random JSON-ish bytes.
                let mut d = (bytes.len() as u64).to_le_bytes().to_vec();
                d.extend_from_slice(&bytes);
                data = d;
            }
            _ => {}
        }
        for (i, b) in &flips {
            if !data.is_empty() {
                let at = i.index(data.len());
                data[at] = *b;
            }
        }
        std::fs::write(&path, &data).unwrap();
        let d = (form, data.len(), &flips);
        guard("checkpoint::restore", &d, || checkpoint::restore(&lin, &path))?;
        guard("checkpoint::load", &d, || checkpoint::load(&path))?;
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn checkpoint_restore_of_header_with_wild_shapes_and_offsets() {
    let dir = std::env::temp_dir().join(format!("couplet-robustness-hdr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::cpu();
    let lin = Linear::new(&store.root(), LinearConfig::new(2).with_input_size(3)).unwrap();
    let headers = [
        r#"{"linear/w":{"dtype":"F32","shape":[3,2],"data_offsets":[0,1000]}}"#,
        r#"{"linear/w":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,24]}}"#,
        r#"{"linear/w":{"dtype":"F32","shape":[3,2],"data_offsets":[24,0]}}"#,
        r#"{"linear/w":{"dtype":"F8_E4M3","shape":[3,2],"data_offsets":[0,6]}}"#,
        r#"{"linear/w":{"dtype":"BOOL","shape":[3,2],"data_offsets":[0,6]}}"#,
        r#"{"linear/w":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#,
        r#"{"linear/w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"linear/b":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}}"#,
        r#"{"__metadata__":{"a":1}}"#,
    ];
    for (i, h) in headers.iter().enumerate() {
        let path = dir.join(format!("h{i}.safetensors"));
        let mut data = (h.len() as u64).to_le_bytes().to_vec();
        data.extend_from_slice(h.as_bytes());
        data.extend_from_slice(&[0u8; 40]);
        std::fs::write(&path, &data).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| checkpoint::restore(&lin, &path)));
        assert!(r.is_ok(), "checkpoint::restore panicked on header {h}");
        let r = catch_unwind(AssertUnwindSafe(|| checkpoint::load(&path)));
        assert!(r.is_ok(), "checkpoint::load panicked on header {h}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
