//! `AttentionDecoderCore` (TF `AttentionWrapper`): hand-worked steps, unrolls with and without
//! lengths against step-by-step loops, masking, gradients and errors.

use couplet_attention::{
    AttentionDecoderConfig, AttentionDecoderCore, AttentionMechanism, BahdanauAttention, BahdanauConfig,
    DotAttention, LuongAttention, LuongConfig,
};
use couplet_modules::{Error, Mode, Module, Store};
use couplet_rnn::{
    dynamic_rnn, Gru, GruConfig, InputProjection, Lstm, LstmConfig, Nonlinearity, RnnCore, State,
    UnrollOptions, VanillaRnn, VanillaRnnConfig,
};
use tch::{Device, Kind, Tensor};

fn t(v: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(v).view(shape)
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn close(a: &Tensor, b: &[f64], tol: f64) {
    let a = values(a);
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((*x as f64 - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

fn assert_allclose(a: &Tensor, b: &Tensor) {
    assert_eq!(a.size(), b.size());
    if a.numel() == 0 {
        return;
    }
    let diff = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max diff {diff}: {a} vs {b}");
}

/// Relu vanilla cell `h' = relu(W_ih [x, a])` with `W_ih = [[1, 2, 0], [0, 0, 3]]` (input
/// feeding) or `[[1], [0]]` (none), no recurrence or bias.
fn hand_cell(store: &Store, input_feeding: bool) -> VanillaRnn {
    let i = if input_feeding { 3 } else { 1 };
    let cell = VanillaRnn::new(
        &store.root(),
        VanillaRnnConfig::new(2).with_input_size(i).with_activation(Nonlinearity::Relu),
    )
    .unwrap();
    let w_ih =
        if input_feeding { t(&[1.0, 2.0, 0.0, 0.0, 0.0, 3.0], &[2, 3]) } else { t(&[1.0, 0.0], &[2, 1]) };
    let dict = vec![
        ("weight_ih".to_string(), w_ih),
        ("weight_hh".to_string(), Tensor::zeros([2, 2], (Kind::Float, Device::Cpu))),
        ("bias_ih".to_string(), Tensor::zeros([2], (Kind::Float, Device::Cpu))),
        ("bias_hh".to_string(), Tensor::zeros([2], (Kind::Float, Device::Cpu))),
    ];
    cell.load_torch(&dict, "").unwrap();
    cell
}

/// The hand-worked decoder: memory depth 2, dot attention, `W_a = [[1,0],[0,1],[1,0],[0,2]]`
/// (attention = `[h0 + c0, h1 + 2 c1]`).
fn hand_decoder(store: &Store, config: AttentionDecoderConfig) -> AttentionDecoderCore {
    let input_feeding = config.input_feeding;
    let cell = hand_cell(store, input_feeding);
    let dot = DotAttention::new(&store.root()).unwrap();
    let dec = AttentionDecoderCore::new(
        &store.root(),
        Box::new(cell),
        Box::new(dot),
        config.with_memory_size(Some(2)),
    )
    .unwrap();
    if let Some(layer) = dec.attention_layer() {
        let w = t(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 2.0], &[4, 2]);
        tch::no_grad(|| layer.w().unwrap().shallow_clone().copy_(&w));
    }
    dec
}

fn hand_memory() -> Tensor {
    t(&[1.0, 0.0, 0.0, 1.0], &[1, 2, 2])
}

// Worked by hand (numbers from exp):
// step 1, x = 1, a = 0: h = relu([1 + 0, 0]) = [1, 0]; scores = [1, 0];
//   α = [e/(e+1), 1/(e+1)] = [0.7310586, 0.2689414] = context (memory is the identity);
//   attention = [1 + 0.7310586, 0 + 2 · 0.2689414] = [1.7310586, 0.5378828].
// step 2, x = 0.5, a = [1.7310586, 0.5378828]: h = [0.5 + 2 · 1.7310586, 3 · 0.5378828]
//   = [3.9621172, 1.6136485]; α = softmax(h) = [0.9128124, 0.0871876] = context;
//   attention = [3.9621172 + 0.9128124, 1.6136485 + 2 · 0.0871876] = [4.8749296, 1.7880237].
const H1: [f64; 2] = [1.0, 0.0];
const AL1: [f64; 2] = [0.7310585786300049, 0.2689414213699951];
const ATT1: [f64; 2] = [1.7310585786300048, 0.5378828427399902];
const H2: [f64; 2] = [3.9621171572600096, 1.6136485282199706];
const AL2: [f64; 2] = [0.9128124290471017, 0.08718757095289835];
const ATT2: [f64; 2] = [4.874929586307111, 1.7880236701257672];

#[test]
fn hand_worked_steps_feed_the_previous_attention_to_the_cell() {
    let store = Store::cpu();
    let dec = hand_decoder(&store, AttentionDecoderConfig::new(2).with_alignment_history(true));
    let s0 = dec.initial_state_with_memory(&hand_memory(), None, Some(4)).unwrap();
    close(&dec.attention(&s0).unwrap(), &[0.0, 0.0], 1e-7);
    let (o1, s1) = dec.step(&t(&[1.0], &[1, 1]), &s0, Mode::Eval).unwrap();
    close(&o1, &ATT1, 1e-6);
    close(dec.cell_state(&s1).unwrap().h().unwrap(), &H1, 1e-6);
    close(&dec.alignments(&s1).unwrap(), &AL1, 1e-6);
    close(&dec.attention(&s1).unwrap(), &ATT1, 1e-6);
    let (o2, s2) = dec.step(&t(&[0.5], &[1, 1]), &s1, Mode::Eval).unwrap();
    close(&o2, &ATT2, 1e-5);
    close(dec.cell_state(&s2).unwrap().h().unwrap(), &H2, 1e-5);
    close(&dec.alignments(&s2).unwrap(), &AL2, 1e-6);
    // The history is time-major [T, B, N] with T the steps taken.
    let history = dec.alignment_history(&s2).unwrap();
    assert_eq!(history.size(), [2, 1, 2]);
    close(&history, &[AL1, AL2].concat(), 1e-6);
    assert_eq!(dec.alignment_history(&s0).unwrap().size(), [0, 1, 2]);
    assert_eq!(dec.output_shape()[0], 2);
}

#[test]
fn outputs_the_cell_output_or_the_context_as_configured() {
    let store = Store::cpu();
    let x = [t(&[1.0], &[1, 1]), t(&[0.5], &[1, 1])];
    // output_attention = false: the same steps, the outputs are h.
    let dec = hand_decoder(&store, AttentionDecoderConfig::new(2).with_output_attention(false));
    let s0 = dec.initial_state_with_memory(&hand_memory(), None, None).unwrap();
    let (o1, s1) = dec.step(&x[0], &s0, Mode::Eval).unwrap();
    let (o2, s2) = dec.step(&x[1], &s1, Mode::Eval).unwrap();
    close(&o1, &H1, 1e-6);
    close(&o2, &H2, 1e-5);
    close(&dec.attention(&s2).unwrap(), &ATT2, 1e-5);
    // No attention layer: the attention is the context (here the alignments, memory = I).
    let dec = hand_decoder(&store, AttentionDecoderConfig::default());
    let s0 = dec.initial_state_with_memory(&hand_memory(), None, None).unwrap();
    let (o1, s1) = dec.step(&x[0], &s0, Mode::Eval).unwrap();
    close(&o1, &AL1, 1e-6);
    // Step 2 feeds a = α1: h = [0.5 + 2 · 0.7310586, 3 · 0.2689414].
    let (_, s2) = dec.step(&x[1], &s1, Mode::Eval).unwrap();
    close(dec.cell_state(&s2).unwrap().h().unwrap(), &[1.9621171572600098, 0.8068242641099853], 1e-6);
    assert!(dec.attention_layer().is_none());
    // No input feeding: the cell sees x alone, h = [x, 0].
    let dec = hand_decoder(&store, AttentionDecoderConfig::new(2).with_input_feeding(false));
    let s0 = dec.initial_state_with_memory(&hand_memory(), None, None).unwrap();
    let (o1, s1) = dec.step(&x[0], &s0, Mode::Eval).unwrap();
    close(&o1, &ATT1, 1e-6);
    let (_, s2) = dec.step(&x[1], &s1, Mode::Eval).unwrap();
    close(dec.cell_state(&s2).unwrap().h().unwrap(), &[0.5, 0.0], 1e-7);
}

fn lstm_luong(store: &Store, config: AttentionDecoderConfig) -> AttentionDecoderCore {
    let root = store.root();
    let cell = Lstm::new(&root, LstmConfig::new(4)).unwrap();
    let luong = LuongAttention::new(&root, LuongConfig::new(4).with_scale(true)).unwrap();
    AttentionDecoderCore::new(&root, Box::new(cell), Box::new(luong), config).unwrap()
}

fn gru_bahdanau(store: &Store, config: AttentionDecoderConfig) -> AttentionDecoderCore {
    let root = store.root();
    let cell = Gru::new(&root, GruConfig::new(4)).unwrap();
    let bahdanau = BahdanauAttention::new(&root, BahdanauConfig::new(5).with_normalize(true)).unwrap();
    AttentionDecoderCore::new(&root, Box::new(cell), Box::new(bahdanau), config).unwrap()
}

fn rand(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

/// Steps `dec` over `inputs [B, T, I]` one step at a time: `(outputs [B, T, O], final state)`.
fn step_loop(dec: &AttentionDecoderCore, inputs: &Tensor, state: State) -> (Tensor, State) {
    let mut state = state;
    let mut outputs = Vec::new();
    for x in inputs.unbind(1) {
        let (o, s) = dec.step(&x, &state, Mode::Eval).unwrap();
        outputs.push(o);
        state = s;
    }
    if outputs.is_empty() {
        let shape = [inputs.size()[0], 0, dec.output_shape()[0]];
        return (Tensor::zeros(shape, (Kind::Float, Device::Cpu)), state);
    }
    (Tensor::stack(&outputs, 1), state)
}

#[test]
fn dynamic_rnn_without_lengths_equals_the_step_loop_for_luong_and_bahdanau() {
    tch::manual_seed(0);
    let memory = rand(&[3, 5, 6]);
    let mask = t(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0], &[3, 5])
        .to_kind(Kind::Bool);
    let inputs = rand(&[3, 4, 2]);
    for (name, feeding) in [("luong", true), ("luong", false), ("bahdanau", true), ("bahdanau", false)] {
        let store = Store::cpu();
        let config = AttentionDecoderConfig::new(3).with_alignment_history(true).with_input_feeding(feeding);
        let dec = if name == "luong" { lstm_luong(&store, config) } else { gru_bahdanau(&store, config) };
        let s0 = dec.initial_state_with_memory(&memory, Some(&mask), Some(6)).unwrap();
        let (out, s) = dynamic_rnn(&dec, &inputs, &UnrollOptions::eval().with_initial_state(&s0)).unwrap();
        let (want, want_s) = step_loop(&dec, &inputs, s0.clone());
        assert_eq!(out.size(), [3, 4, 3], "{name}");
        assert_allclose(&out, &want);
        for (a, b) in s.leaves().iter().zip(want_s.leaves()) {
            assert_allclose(a, b);
        }
        let history = dec.alignment_history(&s).unwrap();
        assert_eq!(history.size(), [4, 3, 5]);
        // Masked memory slots never get any alignment.
        let masked = history.masked_select(&mask.logical_not().unsqueeze(0));
        assert_eq!(masked.abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}");
        close(&history.sum_dim_intlist(-1, false, Kind::Float), &[1.0; 12], 1e-5);
    }
}

#[test]
fn dynamic_rnn_with_lengths_stops_each_row_and_keeps_its_history() {
    tch::manual_seed(1);
    let store = Store::cpu();
    let dec = lstm_luong(&store, AttentionDecoderConfig::new(3).with_alignment_history(true));
    let memory = rand(&[3, 4, 5]);
    let memory_lengths = [4i64, 2, 3];
    let inputs = rand(&[3, 5, 2]);
    let lengths = [2i64, 5, 0];
    let s0 = dec.initial_state_with_memory_lengths(&memory, &memory_lengths, Some(5)).unwrap();
    let (out, s) =
        dynamic_rnn(&dec, &inputs, &UnrollOptions::eval().with_lengths(&lengths).with_initial_state(&s0))
            .unwrap();
    let history = dec.alignment_history(&s).unwrap();
    assert_eq!(history.size(), [5, 3, 4]);
    for b in 0..3 {
        let len = lengths[b as usize];
        let row_s0 = s0.narrow_rows(b, 1).unwrap();
        let (want, want_s) = step_loop(&dec, &inputs.narrow(0, b, 1).narrow(1, 0, len), row_s0);
        assert_allclose(&out.narrow(0, b, 1).narrow(1, 0, len), &want);
        // Outputs are zero past the row's length.
        assert_eq!(out.narrow(0, b, 1).narrow(1, len, 5 - len).abs().sum(Kind::Float).double_value(&[]), 0.0);
        let row_s = s.narrow_rows(b, 1).unwrap();
        for (x, y) in row_s.leaves().iter().zip(want_s.leaves()) {
            assert_allclose(x, y);
        }
        // The history holds the row's own steps, then zeros.
        let row_h = history.narrow(1, b, 1);
        if len > 0 {
            assert_allclose(&row_h.narrow(0, 0, len), &dec.alignment_history(&want_s).unwrap());
        }
        assert_eq!(row_h.narrow(0, len, 5 - len).abs().sum(Kind::Float).double_value(&[]), 0.0);
        // Slots past the memory length are never attended.
        let past = row_h.narrow(2, memory_lengths[b as usize], 4 - memory_lengths[b as usize]);
        assert_eq!(past.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
    // Row 2 ran no step: its final state is its initial state.
    assert_eq!(dec.attention(&s).unwrap().get(2).abs().sum(Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn states_survive_beam_reordering() {
    tch::manual_seed(2);
    let store = Store::cpu();
    let dec = gru_bahdanau(&store, AttentionDecoderConfig::new(3).with_alignment_history(true));
    let memory = rand(&[2, 3, 4]);
    let s0 = dec.initial_state_with_memory(&memory, None, Some(3)).unwrap();
    let (_, s1) = dec.step(&rand(&[2, 2]), &s0, Mode::Eval).unwrap();
    let order = Tensor::from_slice(&[1i64, 1, 0]);
    let beams = s1.select_rows(&order).unwrap();
    let x = rand(&[3, 2]);
    let (o, s2) = dec.step(&x, &beams, Mode::Eval).unwrap();
    // Row 0 and 1 are copies of row 1: same inputs give the same outputs as stepping row 1.
    let (o1, _) = dec.step(&x.narrow(0, 0, 1), &s1.narrow_rows(1, 1).unwrap(), Mode::Eval).unwrap();
    assert_allclose(&o.narrow(0, 0, 1), &o1);
    assert_eq!(dec.alignment_history(&s2).unwrap().size(), [2, 3, 3]);
    assert_allclose(&dec.memory(&s2).unwrap().values.get(2), &memory.get(0));
}

#[test]
fn an_all_masked_memory_row_gives_a_zero_context_and_no_nan() {
    let store = Store::cpu();
    let root = store.root();
    let cell = VanillaRnn::new(&root, VanillaRnnConfig::new(3)).unwrap();
    let dot = DotAttention::new(&root).unwrap();
    let config = AttentionDecoderConfig::default().with_memory_size(Some(3));
    let dec = AttentionDecoderCore::new(&root, Box::new(cell), Box::new(dot), config).unwrap();
    let memory = Tensor::ones([2, 2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let s0 = dec.initial_state_with_memory_lengths(&memory, &[2, 0], None).unwrap();
    let (out, s) =
        dynamic_rnn(&dec, &rand(&[2, 3, 1]), &UnrollOptions::train().with_initial_state(&s0)).unwrap();
    close(&out.get(1), &[0.0; 9], 0.0);
    close(&dec.alignments(&s).unwrap().get(1), &[0.0, 0.0], 0.0);
    close(&dec.alignments(&s).unwrap().get(0).sum(Kind::Float), &[1.0], 1e-6);
    out.sum(Kind::Float).backward();
    assert_eq!(memory.grad().isnan().any().int64_value(&[]), 0);
    assert_eq!(out.isnan().any().int64_value(&[]), 0);
}

#[test]
fn gradients_reach_the_cell_the_mechanism_and_the_attention_layer() {
    tch::manual_seed(3);
    let store = Store::cpu();
    let root = store.root();
    let cell = Lstm::new(&root, LstmConfig::new(4)).unwrap();
    let bahdanau = BahdanauAttention::new(&root, BahdanauConfig::new(5)).unwrap();
    let dec =
        AttentionDecoderCore::new(&root, Box::new(cell), Box::new(bahdanau), AttentionDecoderConfig::new(3))
            .unwrap();
    assert!(matches!(dec.variables(), Err(Error::NotBuilt { .. })));
    let s0 = dec.initial_state_with_memory(&rand(&[2, 3, 6]), None, None).unwrap();
    let (out, _) =
        dynamic_rnn(&dec, &rand(&[2, 3, 2]), &UnrollOptions::train().with_initial_state(&s0)).unwrap();
    out.pow_tensor_scalar(2).sum(Kind::Float).backward();
    let vars = dec.variables().unwrap();
    let names: Vec<_> = vars.iter().map(|v| v.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "lstm/weight_ih",
            "lstm/weight_hh",
            "lstm/bias_ih",
            "lstm/bias_hh",
            // The mechanism's children (its layers) first, then its own variables.
            "bahdanau_attention/memory_layer/w",
            "bahdanau_attention/query_layer/w",
            "bahdanau_attention/attention_v",
            "attention_decoder/attention_layer/w",
        ]
    );
    assert_eq!(dec.attention_layer().unwrap().w().unwrap().size(), [4 + 6, 3]);
    for v in &vars {
        let g = v.tensor().grad();
        assert!(
            g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "no gradient for {}",
            v.name()
        );
    }
    assert_eq!(dec.trainable_variables().unwrap().len(), 8);
}

#[test]
fn variables_are_listed_once_when_parts_live_in_the_decoder_scope() {
    let store = Store::cpu();
    let scope = store.root().child("decoder").unwrap();
    let cell = VanillaRnn::new(&scope, VanillaRnnConfig::new(2).with_input_size(4)).unwrap();
    let luong = LuongAttention::new(&scope, LuongConfig::new(2)).unwrap();
    let config = AttentionDecoderConfig::new(2).with_memory_size(Some(3));
    let dec = AttentionDecoderCore::new(&scope, Box::new(cell), Box::new(luong), config).unwrap();
    let s0 = dec.initial_state_with_memory(&rand(&[1, 2, 3]), None, None).unwrap();
    let _ = dec.step(&rand(&[1, 2]), &s0, Mode::Eval).unwrap();
    let names: Vec<_> = dec.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "decoder/vanilla_rnn/weight_ih",
            "decoder/vanilla_rnn/weight_hh",
            "decoder/vanilla_rnn/bias_ih",
            "decoder/vanilla_rnn/bias_hh",
            "decoder/luong_attention/memory_layer/w",
            "decoder/attention_decoder/attention_layer/w",
        ]
    );
}

#[test]
fn with_cell_state_replaces_only_the_cell_state() {
    let store = Store::cpu();
    let dec = lstm_luong(&store, AttentionDecoderConfig::new(3));
    let s0 = dec.initial_state_with_memory(&rand(&[2, 3, 5]), None, None).unwrap();
    let encoder = State::Lstm { h: rand(&[2, 4]), c: rand(&[2, 4]) };
    let s = dec.with_cell_state(&s0, encoder.clone()).unwrap();
    assert_allclose(dec.cell_state(&s).unwrap().h().unwrap(), encoder.h().unwrap());
    assert_allclose(&dec.memory(&s).unwrap().keys, &dec.memory(&s0).unwrap().keys);
    let e = dec.with_cell_state(&s0, State::Tensor(rand(&[3, 4]))).unwrap_err();
    assert_eq!(e.to_string(), "attention_decoder: cell state leaf must be [2, ..], got [3, 4]");
}

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn errors_are_typed_and_name_the_module() {
    let store = Store::cpu();
    let dec = lstm_luong(&store, AttentionDecoderConfig::new(3).with_alignment_history(true));
    let memory = rand(&[2, 3, 5]);
    // Memory rank and size.
    let e = dec.initial_state_with_memory(&memory.get(0), None, Some(2)).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(message(e), "attention_decoder: memory must be [B, N, Dm] with N > 0, got [3, 5]");
    let e = dec.initial_state_with_memory(&rand(&[2, 0, 5]), None, Some(2)).unwrap_err();
    assert_eq!(message(e), "attention_decoder: memory must be [B, N, Dm] with N > 0, got [2, 0, 5]");
    // Mask shape and kind.
    let bad = Tensor::ones([2, 4], (Kind::Bool, Device::Cpu));
    let e = dec.initial_state_with_memory(&memory, Some(&bad), Some(2)).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(message(e), "attention_decoder: mask must be a bool tensor [2, 3], got Bool [2, 4]");
    let bad = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let e = dec.initial_state_with_memory(&memory, Some(&bad), Some(2)).unwrap_err();
    assert_eq!(message(e), "attention_decoder: mask must be a bool tensor [2, 3], got Float [2, 3]");
    // Memory lengths.
    let e = dec.initial_state_with_memory_lengths(&memory, &[1, 4], Some(2)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert_eq!(message(e), "attention_decoder: lengths must be in 0..=T (T = 3), row 1 has 4");
    let e = dec.initial_state_with_memory_lengths(&memory, &[1], Some(2)).unwrap_err();
    assert_eq!(message(e), "attention_decoder: lengths must be [2], got [1]");
    // max_steps with an alignment history.
    let e = dec.initial_state_with_memory(&memory, None, None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert_eq!(
        message(e),
        "attention_decoder: alignment_history is enabled: pass max_steps (the most decoder steps) to \
         initial_state_with_memory"
    );
    let e = dec.initial_state_with_memory(&memory, None, Some(-1)).unwrap_err();
    assert_eq!(message(e), "attention_decoder: max_steps must be >= 0, got -1");
    // The default initial state is refused, also through dynamic_rnn.
    let e = dec.initial_state(2).unwrap_err();
    assert!(matches!(e, Error::Config { .. }));
    assert_eq!(
        message(e),
        "attention_decoder: bad configuration: the state holds the attention memory: build it with \
         initial_state_with_memory(memory, mask, max_steps) and pass it as the initial state"
    );
    assert!(matches!(
        dynamic_rnn(&dec, &rand(&[2, 3, 2]), &UnrollOptions::eval()),
        Err(Error::Config { .. })
    ));
    // State structure.
    let s0 = dec.initial_state_with_memory(&memory, None, Some(1)).unwrap();
    let cell_state = dec.cell_state(&s0).unwrap();
    let e = dec.step(&rand(&[2, 2]), &cell_state, Mode::Eval).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(
        message(e),
        "attention_decoder: state must be State::Tuple of 8 states (built by initial_state_with_memory), \
         got State::Lstm"
    );
    // A state of a decoder without history.
    let plain = lstm_luong(&store, AttentionDecoderConfig::new(3));
    let e = plain.step(&rand(&[2, 2]), &s0, Mode::Eval).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert_eq!(
        message(e),
        "attention_decoder_1: state must have no alignment history (alignment_history is disabled): build \
         it with this decoder's initial_state_with_memory"
    );
    // Input rank and batch.
    let e = dec.step(&rand(&[3, 2]), &s0, Mode::Eval).unwrap_err();
    assert_eq!(message(e), "attention_decoder: input must be [2, I], got [3, 2]");
    let e = dec.step(&rand(&[2]), &s0, Mode::Eval).unwrap_err();
    assert_eq!(message(e), "attention_decoder: input must be [2, I], got [2]");
    // Input size (the lazy LSTM was built for 2 + 3 features).
    let (_, s1) = dec.step(&rand(&[2, 2]), &s0, Mode::Eval).unwrap();
    let e = dec.step(&rand(&[2, 4]), &s1, Mode::Eval).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(
        message(e),
        "attention_decoder: cell input [x, attention] (4 + 3 features) must be [B, 5], got [2, 7]"
    );
    // History overflow is reported when read.
    let (_, s2) = dec.step(&rand(&[2, 2]), &s1, Mode::Eval).unwrap();
    let e = dec.alignment_history(&s2).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert_eq!(
        message(e),
        "attention_decoder: the alignment history holds max_steps = 1 steps but a row took 2: pass a larger \
         max_steps to initial_state_with_memory"
    );
    let e = plain.alignment_history(&s0).unwrap_err();
    assert_eq!(
        message(e),
        "attention_decoder_1: bad configuration: alignment_history is disabled in the config"
    );
    // With input feeding there is no projection, and a projected step is refused.
    assert!(dec.projection().is_none());
    let e = InputProjection::step_projected(&dec, &rand(&[2, 16]), &s0, Mode::Eval).unwrap_err();
    assert!(matches!(e, Error::Config { .. }));
}

#[test]
fn config_errors_and_sizes() {
    let store = Store::cpu();
    let root = store.root();
    let make = |config: AttentionDecoderConfig| {
        let cell = Gru::new(&root, GruConfig::new(4)).unwrap();
        let dot = DotAttention::new(&root).unwrap();
        AttentionDecoderCore::new(&root, Box::new(cell), Box::new(dot) as Box<dyn AttentionMechanism>, config)
    };
    let e = make(AttentionDecoderConfig::new(0)).unwrap_err();
    assert!(matches!(e, Error::Config { .. }));
    assert_eq!(message(e), "attention_decoder: bad configuration: attention_layer_size must be > 0, got 0");
    let e = make(AttentionDecoderConfig::default()).unwrap_err();
    assert_eq!(
        message(e),
        "attention_decoder_1: bad configuration: without an attention layer the output is the context [B, Dm]: set memory_size \
         (Dm) or attention_layer_size, or output the cell output (output_attention = false)"
    );
    let e = make(AttentionDecoderConfig::new(2).with_memory_size(Some(-3))).unwrap_err();
    assert_eq!(message(e), "attention_decoder_2: bad configuration: memory_size must be > 0, got -3");
    let dec = make(AttentionDecoderConfig::default().with_output_attention(false)).unwrap();
    assert_eq!(dec.output_shape()[0], 4);
    assert!(dec.projection().is_none());
    let dec = make(AttentionDecoderConfig::new(2).with_memory_size(Some(4))).unwrap();
    assert_eq!(dec.output_shape()[0], 2);
    assert!(dec.attention_layer().unwrap().is_built());
    let e = dec.initial_state_with_memory(&rand(&[1, 2, 3]), None, None).unwrap_err();
    assert_eq!(message(e), "attention_decoder_4: memory must be [B, N, 4] with N > 0, got [1, 2, 3]");
    // Without input feeding the cell's projection is used.
    let dec = make(AttentionDecoderConfig::new(2).with_input_feeding(false)).unwrap();
    assert_eq!(dec.projection().unwrap().project_inputs(&rand(&[3, 2])).unwrap().size(), [3, 12]);
}

#[test]
fn decoder_is_send() {
    fn send<T: Send>() {}
    send::<AttentionDecoderCore>();
    send::<couplet_attention::DecoderState>();
}
