//! `BatchNormLstm` (Sonnet v1 `BatchNormLSTM`): per-time-step statistics, training updates of
//! the moving statistics and evaluation with them, against the float64 reference of
//! `scripts/fixtures/batch_norm_lstm.py`.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{assert_close, load_fixture};
use couplet_modules::{Error, Module, Store};
use couplet_rnn::{
    dynamic_rnn, BatchNormLstm, BatchNormLstmConfig, RnnCore, State, StateSize, UnrollOptions,
};
use tch::{Device, Kind};

#[test]
fn training_then_evaluation_match_the_reference() {
    let f = load_fixture("batch_norm_lstm");
    let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
    let mut config =
        BatchNormLstmConfig::new(3, 2).with_batch_norm(true, true, true).with_max_unique_stats(2);
    config.decay_rate = 0.9;
    let core = BatchNormLstm::new(&store.root(), config).unwrap();
    assert_eq!(core.state_size(), StateSize::Tuple(vec![StateSize::lstm(2, 2), StateSize::vector(1)]));
    for v in core.trainable_variables().unwrap() {
        tch::no_grad(|| v.tensor().shallow_clone().copy_(&f.get(v.name().rsplit('/').next().unwrap())));
    }
    let moving: Vec<_> = core.non_trainable_variables().unwrap();
    assert_eq!(moving.len(), 12, "mean and variance of h, x, c for 2 steps");
    let x = f.get("x");
    for (mode, options) in [("train", UnrollOptions::train()), ("eval", UnrollOptions::eval())] {
        let (out, state) = dynamic_rnn(&core, &x, &options).unwrap();
        assert_close(&out, &f.get(&format!("{mode}.out")), 1e-10);
        let State::Tuple(parts) = &state else { panic!("{state:?}") };
        let State::Lstm { h, c } = &parts[0] else { panic!("{state:?}") };
        assert_close(h, &f.get(&format!("{mode}.h")), 1e-10);
        assert_close(c, &f.get(&format!("{mode}.c")), 1e-10);
        assert_eq!(parts[1].h().unwrap().double_value(&[0, 0]), 3.0, "the step counter");
        if mode == "train" {
            for v in &moving {
                assert_close(v.tensor(), &f.get(v.name().strip_prefix("batch_norm_lstm/").unwrap()), 1e-10);
            }
        }
    }
}

#[test]
fn bad_configurations_and_states_are_typed_errors() {
    let store = Store::cpu();
    let root = store.root();
    let cases = [
        (BatchNormLstmConfig::new(3, 2).with_max_unique_stats(0), "max_unique_stats must be >= 1, got 0"),
        (
            BatchNormLstmConfig { decay_rate: 1.5, ..BatchNormLstmConfig::new(3, 2) },
            "decay_rate must be in [0, 1], got 1.5",
        ),
        (
            BatchNormLstmConfig { epsilon: 0.0, ..BatchNormLstmConfig::new(3, 2) },
            "epsilon must be finite and > 0, got 0",
        ),
        (BatchNormLstmConfig::new(0, 2), "input_size must be > 0, got 0"),
    ];
    for (config, message) in cases {
        let e = BatchNormLstm::new(&root, config).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(e.to_string().ends_with(message), "{e}");
    }
    let core = BatchNormLstm::new(&root, BatchNormLstmConfig::new(3, 2)).unwrap();
    let x = tch::Tensor::zeros([4, 5, 3], (Kind::Float, Device::Cpu));
    let wrong = State::Tensor(tch::Tensor::zeros([4, 2], (Kind::Float, Device::Cpu)));
    let e = dynamic_rnn(&core, &x, &UnrollOptions::train().with_initial_state(&wrong)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    // Default configuration: one set of statistics, batch norm of h only.
    let (out, state) =
        dynamic_rnn(&core, &x, &UnrollOptions::train().with_lengths(&[5i64, 1, 3, 0])).unwrap();
    assert_eq!((out.size(), state.size()), (vec![4, 5, 2], StateSize::lstm(2, 2)));
    assert!(out.isfinite().all().int64_value(&[]) == 1);
}
