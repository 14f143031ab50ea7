//! What the route tests share: a loss that weighs every entry differently, and the 1e-5
//! (relative past 1) comparison of two routes' tensors.

use tch::{Device, Kind, Tensor};

pub const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// `Σ t ⊙ w` with fixed weights `w` that differ at every position (not drawn from the
/// global RNG, which tests running in parallel share), so every entry of `t` matters.
pub fn probe(t: &Tensor) -> Tensor {
    let w = (Tensor::arange(t.numel() as i64, CPU) * 0.37).sin().view(t.size().as_slice());
    (t * w).sum(Kind::Float)
}

/// Asserts `a` and `e` are both undefined, or have one size and differ by less than
/// `1e-5 · max(1, max |e|)`: float32 routes sum in different orders, so large values (the
/// ×15-weights test's gradients reach ~20) differ relative to their size.
#[track_caller]
pub fn assert_close(what: &str, a: &Tensor, e: &Tensor) {
    assert_eq!(a.defined(), e.defined(), "{what}: defined");
    if !a.defined() {
        return;
    }
    assert_eq!(a.size(), e.size(), "{what}: size");
    let diff = (a - e).abs().max().double_value(&[]);
    let scale = e.abs().max().double_value(&[]).max(1.0);
    assert!(diff < 1e-5 * scale, "{what}: max difference {diff} (scale {scale})\n{a}\n!=\n{e}");
}
