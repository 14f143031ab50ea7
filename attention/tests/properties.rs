//! Property tests: for random batch sizes, slot counts, feature sizes and masks (all-false
//! rows included), and for deliberately wrong shapes and kinds, every attention module returns
//! `Ok` with the documented shapes, no NaN and rows of weights summing to 1 (or 0 for a row
//! with nothing to attend), or a typed `Shape`/`InvalidArgument`/`Config` error; never a
//! panic and never a libtorch error.

use couplet_attention::{
    AttentionMasks, AttentionMechanism, AttentiveRead, BahdanauAttention, BahdanauConfig, DotAttention,
    LuongAttention, LuongConfig, MultiHeadAttention, MultiHeadAttentionConfig,
};
use couplet_modules::{Error, Linear, LinearConfig, Mode, Result, Store};
use proptest::prelude::*;
use tch::{Device, Kind, Tensor};

/// One deliberate mistake in a call, or none.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// The main input loses its batch dimension.
    Rank,
    /// The query (or key) has one more row than the memory.
    Batch,
    /// The query (or key) feature size is off by one.
    Features,
    /// The mask has one slot too many.
    MaskShape,
    /// The mask is a float tensor.
    MaskKind,
    /// The input is double precision (the store is float).
    Kind,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => Just(Fault::None),
        1 => Just(Fault::Rank),
        1 => Just(Fault::Batch),
        1 => Just(Fault::Features),
        1 => Just(Fault::MaskShape),
        1 => Just(Fault::MaskKind),
        1 => Just(Fault::Kind),
    ]
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

/// A bool `[b, n]` mask from `bits` (cycled), with row 0 all false when `empty_row`.
fn mask_of(bits: &[bool], b: i64, n: i64, empty_row: bool) -> Tensor {
    let values: Vec<bool> =
        (0..b * n).map(|i| !(empty_row && i < n) && bits[i as usize % bits.len()]).collect();
    Tensor::from_slice(&values).view([b, n])
}

fn has_nan(t: &Tensor) -> bool {
    t.isnan().any().int64_value(&[]) != 0
}

/// Checks a result: `Ok` only when no fault was made (and then `check` holds), otherwise a
/// typed error other than a libtorch one.
fn judge<T>(
    fault: Fault,
    result: Result<T>,
    check: impl FnOnce(T),
) -> std::result::Result<(), TestCaseError> {
    match (fault, result) {
        (_, Ok(value)) => {
            prop_assert!(matches!(fault, Fault::None), "{fault:?} accepted");
            check(value);
        }
        (_, Err(e)) => {
            prop_assert!(
                matches!(e, Error::Shape { .. } | Error::InvalidArgument { .. } | Error::Config { .. }),
                "untyped error: {e:?}"
            );
            prop_assert!(!matches!(fault, Fault::None), "refused a good call: {e}");
        }
    }
    Ok(())
}

/// `weights [.., N]` rows sum to 1 where `mask` (`[.., N]`, broadcastable) allows a slot, else 0.
fn check_weights(weights: &Tensor, mask: Option<&Tensor>) {
    assert!(!has_nan(weights));
    let sums = weights.sum_dim_intlist(-1, false, Kind::Double);
    let want = match mask {
        Some(m) => m.any_dim(-1, false).to_kind(Kind::Double).expand_as(&sums),
        None => sums.ones_like(),
    };
    let n = weights.size().last().copied().unwrap_or(0);
    let want = if n == 0 { want.zeros_like() } else { want };
    if sums.numel() == 0 {
        return;
    }
    let diff = (&sums - &want).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "weight rows sum to {sums}, want {want}");
}

/// Memory `[b, n, dm]`, query `[b, dq]` and mask with `fault` applied.
fn memory_inputs(
    fault: Fault,
    (b, n, dm, dq): (i64, i64, i64, i64),
    mask: Option<Tensor>,
) -> (Tensor, Tensor, Option<Tensor>) {
    let mut memory = randn(&[b, n, dm]);
    let mut query = randn(&[b, dq]);
    let mut mask = mask;
    match fault {
        Fault::None => {}
        Fault::Rank => memory = randn(&[n, dm]),
        Fault::Batch => query = randn(&[b + 1, dq]),
        Fault::Features => query = randn(&[b, dq + 1]),
        Fault::MaskShape => mask = Some(Tensor::ones([b, n + 1], (Kind::Bool, Device::Cpu))),
        Fault::MaskKind => mask = Some(Tensor::ones([b, n], (Kind::Float, Device::Cpu))),
        Fault::Kind => memory = memory.to_kind(Kind::Double),
    }
    (memory, query, mask)
}

fn sizes() -> impl Strategy<Value = (i64, i64, i64, i64)> {
    (0i64..4, 0i64..6, 1i64..5, 1i64..5)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(64) })]

    #[test]
    fn attentive_read_never_panics(
        (b, n, dm, dq) in sizes(),
        bits in prop::collection::vec(any::<bool>(), 1..8),
        masked in any::<bool>(),
        empty_row in any::<bool>(),
        fault in fault(),
    ) {
        let store = Store::cpu();
        let logits = Linear::new(&store.root(), LinearConfig::new(1)).unwrap();
        let read = AttentiveRead::new(&store.root(), logits).unwrap();
        let mask = masked.then(|| mask_of(&bits, b, n, empty_row && b > 0));
        let (memory, query, mask) = memory_inputs(fault, (b, n, dm, dq), mask);
        let result = read.forward_t(&memory, &query, mask.as_ref(), Mode::Train);
        // A query of the wrong size is the logit module's shape error once it is built.
        let fault = match fault { Fault::Features => Fault::None, f => f };
        judge(fault, result, |out| {
            assert_eq!(out.read.size(), [b, dm]);
            assert_eq!(out.weights.size(), [b, n]);
            assert_eq!(out.logits.size(), [b, n]);
            assert!(!has_nan(&out.read));
            check_weights(&out.weights, mask.as_ref());
        })?;
        if b > 0 && n > 0 && matches!(fault, Fault::None) {
            let again = read.forward_t(&memory, &randn(&[b, query.size()[1] + 1]), None, Mode::Eval);
            judge(Fault::Features, again, |_| ())?;
        }
    }

    #[test]
    fn mechanisms_never_panic(
        (b, n, dm, dq) in sizes(),
        bits in prop::collection::vec(any::<bool>(), 1..8),
        masked in any::<bool>(),
        empty_row in any::<bool>(),
        normalize in any::<bool>(),
        which in 0usize..3,
        fault in fault(),
    ) {
        let store = Store::cpu();
        let (mech, qsize): (Box<dyn AttentionMechanism>, i64) = match which {
            0 => (Box::new(LuongAttention::new(&store.root(), LuongConfig::new(dq).with_scale(normalize)).unwrap()), dq),
            1 => (Box::new(BahdanauAttention::new(&store.root(), BahdanauConfig::new(3).with_normalize(normalize)).unwrap()), dq),
            _ => (Box::new(DotAttention::new(&store.root()).unwrap()), dm),
        };
        let mask = masked.then(|| mask_of(&bits, b, n, empty_row && b > 0));
        let (memory, query, mask) = memory_inputs(fault, (b, n, dm, qsize), mask);
        let result = mech.prepare(&memory, mask.as_ref()).and_then(|p| mech.attend(&query, &p));
        // Bahdanau's query layer learns its input size from the first query.
        let fault = match (which, fault) { (1, Fault::Features) => Fault::None, (_, f) => f };
        judge(fault, result, |(context, alignments)| {
            assert_eq!(context.size(), [b, dm]);
            assert_eq!(alignments.size(), [b, n]);
            assert!(!has_nan(&context));
            check_weights(&alignments, mask.as_ref());
        })?;
    }

    #[test]
    fn memory_lengths_never_panic(
        (b, n, dm, _dq) in sizes(),
        lengths in prop::collection::vec(-1i64..7, 0..5),
    ) {
        let store = Store::cpu();
        let dot = DotAttention::new(&store.root()).unwrap();
        let memory = randn(&[b, n, dm]);
        let ok = lengths.len() as i64 == b && lengths.iter().all(|&l| (0..=n).contains(&l));
        let fault = if ok { Fault::None } else { Fault::Batch };
        let result = dot.prepare_with_lengths(&memory, &lengths).and_then(|p| dot.attend(&randn(&[b, dm]), &p));
        judge(fault, result, |(context, alignments)| {
            assert!(!has_nan(&context));
            let mask = couplet_rnn::sequence_mask(&lengths, Some(n)).unwrap();
            check_weights(&alignments, Some(&mask));
        })?;
    }

    #[test]
    fn multi_head_attention_never_panics(
        (b, lq, lk) in (0i64..3, 0i64..4, 0i64..5),
        (heads, head_dim) in (1i64..4, 1i64..3),
        (kdim, vdim) in (prop::option::of(1i64..5), prop::option::of(1i64..5)),
        bits in prop::collection::vec(any::<bool>(), 1..8),
        (masked, empty_row, causal, need_weights, train) in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        fault in fault(),
    ) {
        let e = heads * head_dim;
        let store = Store::cpu();
        let mut config = MultiHeadAttentionConfig::new(e, heads).with_dropout(0.25);
        config.kdim = kdim;
        config.vdim = vdim;
        let mha = MultiHeadAttention::new(&store.root(), config).unwrap();
        let (ek, ev) = (kdim.unwrap_or(e), vdim.unwrap_or(e));
        let (mut q, mut k, mut v) = (randn(&[b, lq, e]), randn(&[b, lk, ek]), randn(&[b, lk, ev]));
        let mut mask = masked.then(|| mask_of(&bits, b, lk, empty_row && b > 0));
        match fault {
            Fault::None => {}
            Fault::Rank => q = randn(&[lq, e]),
            Fault::Batch => k = randn(&[b + 1, lk, ek]),
            Fault::Features => v = randn(&[b, lk, ev + 1]),
            Fault::MaskShape => mask = Some(Tensor::ones([b, lk + 1], (Kind::Bool, Device::Cpu))),
            Fault::MaskKind => mask = Some(Tensor::ones([b, lk], (Kind::Int64, Device::Cpu))),
            Fault::Kind => k = k.to_kind(Kind::Double),
        }
        let masks = AttentionMasks { key_mask: mask.as_ref(), causal, need_weights };
        let mode = if train { Mode::Train } else { Mode::Eval };
        let result = mha.forward_t(&q, &k, &v, &masks, mode);
        judge(fault, result, |(out, weights)| {
            assert_eq!(out.size(), [b, lq, e]);
            assert!(!has_nan(&out));
            assert_eq!(weights.is_some(), need_weights);
            if let Some(w) = weights {
                assert_eq!(w.size(), [b, lq, lk]);
                // The combined mask [B, Lq, Lk]: key mask and causal.
                let mut full = Tensor::ones([b, lq, lk], (Kind::Bool, Device::Cpu));
                if let Some(m) = &mask {
                    full = full.logical_and(&m.unsqueeze(1));
                }
                if causal {
                    full = full.logical_and(&Tensor::ones([lq, lk], (Kind::Bool, Device::Cpu)).tril(0));
                }
                check_weights(&w, Some(&full));
                // Rows with nothing to attend are zero outputs.
                let dead = full.any_dim(-1, true).logical_not();
                assert_eq!(out.masked_select(&dead).abs().sum(Kind::Double).double_value(&[]), 0.0);
            }
        })?;
    }

    #[test]
    fn multi_head_configs_are_checked(
        e in -1i64..10,
        heads in -1i64..5,
        dropout in prop_oneof![Just(0.0), Just(0.5), Just(1.0), -1.0f64..2.0],
    ) {
        let store = Store::cpu();
        let valid = e > 0 && heads > 0 && e % heads == 0 && (0.0..1.0).contains(&dropout);
        let result = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(e, heads).with_dropout(dropout));
        judge(if valid { Fault::None } else { Fault::Features }, result, |mha| {
            assert_eq!(mha.config().embed_dim, e);
        })?;
    }
}
