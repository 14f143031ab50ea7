//! `tch::manual_seed` makes every random draw of the module core repeat: dropout masks and
//! variable initialisers. libtorch's generator is process-wide, so every test in this binary
//! holds one lock while it draws (the harness runs tests on parallel threads).

use couplet_modules::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, Mode, Store};
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

fn rng_guard() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn masks(seed: i64) -> (Tensor, Tensor) {
    let store = Store::cpu();
    let d = Dropout::new(&store.root(), DropoutConfig::default()).unwrap();
    let x = Tensor::ones([256], (Kind::Float, Device::Cpu));
    tch::manual_seed(seed);
    (d.forward_t(&x, Mode::Train).unwrap(), d.forward_t(&x, Mode::Train).unwrap())
}

#[test]
fn dropout_masks_repeat_under_a_seed() {
    let _rng = rng_guard();
    let (a1, a2) = masks(3);
    let (b1, b2) = masks(3);
    assert!(a1.equal(&b1) && a2.equal(&b2), "the same seed gives the same masks");
    assert!(!a1.equal(&a2), "consecutive calls draw fresh masks");
    let (c1, _) = masks(4);
    assert!(!a1.equal(&c1), "another seed gives other masks");
}

#[test]
fn initialisers_repeat_under_a_seed() {
    let _rng = rng_guard();
    let weights = |seed: i64| {
        tch::manual_seed(seed);
        let store = Store::cpu();
        let config =
            LinearConfig::new(8).with_initializer("b", Initializer::Uniform { low: -1.0, high: 1.0 });
        let linear = Linear::new(&store.root(), config).unwrap();
        let _ = linear.forward(&Tensor::zeros([1, 5], (Kind::Float, Device::Cpu))).unwrap();
        (linear.w().unwrap().detach(), linear.b().unwrap().unwrap().detach())
    };
    let (w1, b1) = weights(9);
    let (w2, b2) = weights(9);
    assert!(w1.equal(&w2) && b1.equal(&b2));
    assert!(!w1.equal(&weights(10).0));
}
