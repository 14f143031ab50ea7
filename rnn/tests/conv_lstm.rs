//! `ConvLstm` (1-D and 2-D, SAME padding, peepholes) under `dynamic_rnn` with lengths, in a
//! stack and in a variational dropout wrapper, against the float64 reference of
//! `scripts/fixtures/conv_lstm.py` (a convolutional LSTM written gate by gate with torch ops).

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet_modules::{Error, Mode, Module, Store};
use couplet_rnn::{
    dynamic_rnn, ConvLstm, ConvLstmConfig, DropoutWrapper, DropoutWrapperConfig, Lengths, RnnCore,
    StackedRnn, StackedRnnConfig, State, StateSize, UnrollOptions,
};
use tch::{Device, Kind, Tensor};

fn store() -> Store {
    Store::with_kind(Device::Cpu, Kind::Double).unwrap()
}

/// Copies the fixture's weights `prefix + name` into `core`'s variables.
fn load(core: &ConvLstm, f: &Fixture, prefix: &str) {
    for v in core.variables().unwrap() {
        let name = v.name().rsplit('/').next().unwrap().to_string();
        tch::no_grad(|| v.tensor().shallow_clone().copy_(&f.get(&format!("{prefix}{name}"))));
    }
}

fn lengths(f: &Fixture, prefix: &str) -> Vec<i64> {
    Vec::<i64>::try_from(f.get(&format!("{prefix}lengths"))).unwrap()
}

#[test]
fn conv2d_lstm_with_lengths_matches_the_reference() {
    let f = load_fixture("conv_lstm");
    let store = store();
    let core = ConvLstm::new(&store.root(), ConvLstmConfig::conv2d([5, 4, 2], 3, [3, 3])).unwrap();
    load(&core, &f, "conv2d.");
    assert_eq!(core.output_shape(), [5, 4, 3]);
    assert_eq!(core.state_size(), StateSize::Lstm { h: vec![5, 4, 3], c: vec![5, 4, 3] });
    let lengths = lengths(&f, "conv2d.");
    let options = UnrollOptions::train().with_lengths(&lengths);
    let (out, state) = dynamic_rnn(&core, &f.get("conv2d.x"), &options).unwrap();
    assert_close(&out, &f.get("conv2d.out"), 1e-10);
    let State::Lstm { h, c } = &state else { panic!("{state:?}") };
    assert_close(h, &f.get("conv2d.h"), 1e-10);
    assert_close(c, &f.get("conv2d.c"), 1e-10);
    // Time-major gives the same, transposed.
    let tm = options.with_time_major(true);
    let (out_tm, _) = dynamic_rnn(&core, &f.get("conv2d.x").transpose(0, 1), &tm).unwrap();
    assert_close(&out_tm.transpose(0, 1), &f.get("conv2d.out"), 1e-10);
}

#[test]
fn conv1d_lstm_with_an_even_kernel_and_peepholes_matches_the_reference() {
    let f = load_fixture("conv_lstm");
    let store = store();
    let config = ConvLstmConfig::conv1d([6, 3], 2, 2).with_peepholes(true).with_forget_bias(0.5);
    let core = ConvLstm::new(&store.root(), config).unwrap();
    load(&core, &f, "conv1d.");
    let (out, state) = dynamic_rnn(&core, &f.get("conv1d.x"), &UnrollOptions::eval()).unwrap();
    assert_close(&out, &f.get("conv1d.out"), 1e-10);
    assert_close(state.leaves()[1], &f.get("conv1d.c"), 1e-10);
    let names: Vec<_> = core.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "conv_lstm/weight_ih",
            "conv_lstm/weight_hh",
            "conv_lstm/bias",
            "conv_lstm/w_i_diag",
            "conv_lstm/w_f_diag",
            "conv_lstm/w_o_diag"
        ]
    );
}

#[test]
fn a_stack_of_conv_lstms_with_lengths_matches_the_reference() {
    let f = load_fixture("conv_lstm");
    let store = store();
    let root = store.root();
    let l0 = ConvLstm::new(&root, ConvLstmConfig::conv2d([4, 3, 2], 3, [3, 3])).unwrap();
    let l1 = ConvLstm::new(&root, ConvLstmConfig::conv2d([4, 3, 3], 2, [2, 2])).unwrap();
    load(&l0, &f, "stack.l0.");
    load(&l1, &f, "stack.l1.");
    let stack = StackedRnn::new(&root, vec![Box::new(l0), Box::new(l1)], StackedRnnConfig::new()).unwrap();
    let lengths = lengths(&f, "stack.");
    let (out, state) =
        dynamic_rnn(&stack, &f.get("stack.x"), &UnrollOptions::eval().with_lengths(&lengths)).unwrap();
    assert_close(&out, &f.get("stack.out"), 1e-10);
    let leaves = state.leaves();
    for (leaf, key) in leaves.iter().zip(["stack.h0", "stack.c0", "stack.h1", "stack.c1"]) {
        assert_close(leaf, &f.get(key), 1e-10);
    }
}

#[test]
fn variational_dropout_masks_take_the_conv_state_shape() {
    let _rng = common::rng_guard();
    tch::manual_seed(3);
    let f = load_fixture("conv_lstm");
    let store = store();
    let core = ConvLstm::new(&store.root(), ConvLstmConfig::conv2d([5, 4, 2], 3, [3, 3])).unwrap();
    load(&core, &f, "conv2d.");
    let config = DropoutWrapperConfig::new()
        .with_input_dropout(0.3)
        .with_state_dropout(0.5)
        .with_output_dropout(0.2)
        .with_variational(true)
        .with_input_shape(vec![5, 4, 2]);
    let w = DropoutWrapper::new(&store.root(), core, config).unwrap();
    let s0 = w.initial_state(3).unwrap();
    let masks: Vec<_> = s0.leaves()[2..].iter().map(|m| m.size()).collect();
    assert_eq!(masks, [vec![3, 5, 4, 2], vec![3, 5, 4, 3], vec![3, 5, 4, 3]]);
    let x = f.get("conv2d.x");
    let lengths = lengths(&f, "conv2d.");
    let train = UnrollOptions::train().with_lengths(Lengths::from(&lengths)).with_initial_state(&s0);
    let (out, state) = dynamic_rnn(&w, &x, &train).unwrap();
    assert_eq!(out.size(), [3, 4, 5, 4, 3]);
    assert_eq!(state.leaves()[2].size(), [3, 5, 4, 2]);
    // Each output element is 0 or the output mask's 1/keep scale of a live value; padded steps are 0.
    assert_eq!(out.get(1).narrow(0, 1, 3).abs().sum(Kind::Double).double_value(&[]), 0.0);
    // In evaluation the wrapper is the identity: the reference itself.
    let (eval, _) = dynamic_rnn(&w, &x, &UnrollOptions::eval().with_lengths(&lengths)).unwrap();
    assert_close(&eval, &f.get("conv2d.out"), 1e-10);
}

#[test]
fn bad_configurations_and_inputs_are_typed_errors() {
    let store = store();
    let root = store.root();
    let bad = [
        (
            ConvLstmConfig::conv2d([5, 0, 2], 3, [3, 3]),
            "input_shape must be [W, C] or [H, W, C] of sizes > 0, got [5, 0, 2]",
        ),
        (ConvLstmConfig::conv2d([5, 4, 2], 3, [3, 0]), "kernel_shape must be 2 sizes > 0, got [3, 0]"),
        (ConvLstmConfig::conv1d([5, 2], 0, 3), "output_channels must be > 0, got 0"),
        (
            ConvLstmConfig::conv1d([5, 2], 2, 3).with_forget_bias(f64::NAN),
            "forget_bias must be finite, got NaN",
        ),
    ];
    for (config, message) in bad {
        let e = ConvLstm::new(&root, config).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(e.to_string().ends_with(message), "{e}");
    }
    let core = ConvLstm::new(&root, ConvLstmConfig::conv2d([5, 4, 2], 3, [3, 3])).unwrap();
    let x = Tensor::zeros([2, 3, 5, 4, 1], (Kind::Double, Device::Cpu));
    let e = dynamic_rnn(&core, &x, &UnrollOptions::eval()).unwrap_err();
    assert_eq!(e.to_string(), "conv_lstm_4: inputs must be [.., 5, 4, 2], got [2, 3, 5, 4, 1]");
    let e = core.step(&x.get(0), &core.initial_state(3).unwrap(), Mode::Eval).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}
