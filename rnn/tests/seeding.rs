//! `tch::manual_seed` makes training-mode unrolls repeat: cell initialisers, variational and
//! per-step dropout masks and zoneout masks. libtorch's generator is process-wide, so every
//! test in this binary holds one lock while it draws (the harness runs tests in parallel).

use couplet_modules::{Mode, Store};
use couplet_rnn::{
    dynamic_rnn, DropoutWrapper, DropoutWrapperConfig, Lstm, LstmConfig, UnrollOptions, ZoneoutConfig,
    ZoneoutWrapper,
};
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

fn rng_guard() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seeds, builds a wrapped LSTM, and unrolls it in training over fixed inputs `[3, 6, 4]`
/// with lengths `[6, 2, 4]`: the outputs of a dropout-wrapped and a zoneout-wrapped core.
fn unroll(seed: i64, variational: bool) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let store = Store::cpu();
    let root = store.root();
    let inputs = Tensor::arange(72, (Kind::Float, Device::Cpu)).view([3, 6, 4]) / 72.0;
    let options = UnrollOptions::new(Mode::Train).with_lengths(&[6i64, 2, 4][..]);
    let lstm = |name: &str| Lstm::new(&root.child(name).unwrap(), LstmConfig::new(5)).unwrap();
    let config = DropoutWrapperConfig::new()
        .with_input_dropout(0.4)
        .with_state_dropout(0.3)
        .with_output_dropout(0.2)
        .with_variational(variational)
        .with_input_size(4);
    let dropped = DropoutWrapper::new(&root, lstm("a"), config).unwrap();
    let zoned = ZoneoutWrapper::new(&root, lstm("b"), ZoneoutConfig::new().with_zoneout_c(0.5)).unwrap();
    (dynamic_rnn(&dropped, &inputs, &options).unwrap().0, dynamic_rnn(&zoned, &inputs, &options).unwrap().0)
}

#[test]
fn training_unrolls_repeat_under_a_seed() {
    let _rng = rng_guard();
    for variational in [false, true] {
        let (d1, z1) = unroll(5, variational);
        let (d2, z2) = unroll(5, variational);
        assert!(d1.equal(&d2), "dropout wrapper, variational = {variational}");
        assert!(z1.equal(&z2), "zoneout wrapper");
        let (d3, z3) = unroll(6, variational);
        assert!(!d1.equal(&d3) && !z1.equal(&z3), "another seed draws other values");
    }
}
