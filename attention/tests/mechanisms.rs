//! Dot, Luong and Bahdanau mechanisms against their formulas (TF's `LuongAttention` and
//! `BahdanauAttention`), computed independently here with scalar loops over random weights,
//! B = 2, N = 5; memory lengths; keys computed once per memory; errors.

use couplet_attention::{
    memory_mask, AttentionMechanism, AttentionMemory, BahdanauAttention, BahdanauConfig, DotAttention,
    LuongAttention, LuongConfig,
};
use couplet_modules::{Error, Store};
use tch::{Device, Kind, Tensor};

const B: usize = 2;
const N: usize = 5;
const DM: usize = 6;
const U: usize = 4;
const DQ: usize = 3;

fn randn(shape: &[usize]) -> Tensor {
    let shape: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
    Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu))
}

/// A tensor's values, flattened, as `f64`.
fn vals(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn assert_near(actual: &Tensor, expected: &[f64], tol: f64) {
    let a = vals(actual);
    assert_eq!(a.len(), expected.len(), "{a:?} vs {expected:?}");
    for (x, y) in a.iter().zip(expected) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?}\nvs\n{expected:?}");
    }
}

/// Writes a random value into a variable, returning the value.
fn randomize(store: &Store, name: &str) -> Vec<f64> {
    let var = store.get(name).unwrap_or_else(|| panic!("no variable {name}"));
    let t = var.tensor();
    let value = Tensor::randn(t.size().as_slice(), (Kind::Float, Device::Cpu));
    tch::no_grad(|| t.shallow_clone().copy_(&value));
    vals(&value)
}

/// `keys[b][n][u] = Σ_d memory[b][n][d] · w[d][u]` with rows `n >= len[b]` zero.
fn keys_of(memory: &[f64], w: &[f64], lens: &[usize], dm: usize) -> Vec<Vec<Vec<f64>>> {
    (0..B)
        .map(|b| {
            (0..N)
                .map(|n| {
                    (0..U)
                        .map(|u| {
                            if n >= lens[b] {
                                return 0.0;
                            }
                            (0..dm).map(|d| memory[(b * N + n) * dm + d] * w[d * U + u]).sum()
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Softmax over the valid slots and the context `Σ α v` of one memory `[B, N, DM]`.
fn attend_by_hand(scores: &[Vec<f64>], memory: &[f64], lens: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (mut alignments, mut context) = (vec![], vec![]);
    for b in 0..B {
        let max = (0..lens[b]).map(|n| scores[b][n]).fold(f64::MIN, f64::max);
        let z: f64 = (0..lens[b]).map(|n| (scores[b][n] - max).exp()).sum();
        let a: Vec<f64> =
            (0..N).map(|n| if n < lens[b] { (scores[b][n] - max).exp() / z } else { 0.0 }).collect();
        for d in 0..DM {
            context.push((0..N).map(|n| a[n] * memory[(b * N + n) * DM + d]).sum());
        }
        alignments.extend(a);
    }
    (context, alignments)
}

fn check_attend(
    mech: &dyn AttentionMechanism,
    prepared: &AttentionMemory,
    q: &Tensor,
    scores: &[Vec<f64>],
    memory: &[f64],
    lens: &[usize],
) {
    let flat: Vec<f64> = scores.iter().flatten().copied().collect();
    let s = mech.score(q, prepared).unwrap();
    // Past each length the keys are zero rows: the score is the score of a zero key.
    for b in 0..B {
        for n in 0..N {
            let got = s.double_value(&[b as i64, n as i64]);
            if n < lens[b] {
                assert!((got - flat[b * N + n]).abs() < 1e-5 * (1.0 + got.abs()), "{s} vs {flat:?}");
            }
        }
    }
    let (context, alignments) = mech.attend(q, prepared).unwrap();
    let (want_c, want_a) = attend_by_hand(scores, memory, lens);
    assert_near(&alignments, &want_a, 1e-5);
    assert_near(&context, &want_c, 1e-5);
}

#[test]
fn dot_score_is_q_dot_memory() {
    tch::manual_seed(10);
    let store = Store::cpu();
    let dot = DotAttention::new(&store.root()).unwrap();
    let (memory, q) = (randn(&[B, N, DM]), randn(&[B, DM]));
    let (m, qv) = (vals(&memory), vals(&q));
    let lens = [N, 2];
    let scores: Vec<Vec<f64>> = (0..B)
        .map(|b| (0..N).map(|n| (0..DM).map(|d| qv[b * DM + d] * m[(b * N + n) * DM + d]).sum()).collect())
        .collect();
    let prepared = dot.prepare_with_lengths(&memory, &[N as i64, 2]).unwrap();
    check_attend(&dot, &prepared, &q, &scores, &m, &lens);
}

#[test]
fn luong_score_is_g_q_w_memory() {
    tch::manual_seed(11);
    for scale in [false, true] {
        let store = Store::cpu();
        let luong = LuongAttention::new(&store.root(), LuongConfig::new(U as i64).with_scale(scale)).unwrap();
        let (memory, q) = (randn(&[B, N, DM]), randn(&[B, U]));
        luong.prepare(&memory, None).unwrap();
        let w = randomize(&store, "luong_attention/memory_layer/w");
        let g = if scale { randomize(&store, "luong_attention/attention_g")[0] } else { 1.0 };
        let (m, qv) = (vals(&memory), vals(&q));
        let lens = [3, N];
        let keys = keys_of(&m, &w, &lens, DM);
        let scores: Vec<Vec<f64>> = (0..B)
            .map(|b| (0..N).map(|n| g * (0..U).map(|u| qv[b * U + u] * keys[b][n][u]).sum::<f64>()).collect())
            .collect();
        let lengths = Tensor::from_slice(&[3i64, N as i64]);
        let prepared = luong.prepare_with_lengths(&memory, &lengths).unwrap();
        assert_near(&prepared.keys, &keys.iter().flatten().flatten().copied().collect::<Vec<_>>(), 1e-5);
        check_attend(&luong, &prepared, &q, &scores, &m, &lens);
    }
}

#[test]
fn bahdanau_score_is_v_tanh_wk_k_plus_wq_q() {
    tch::manual_seed(12);
    for normalize in [false, true] {
        let store = Store::cpu();
        let config = BahdanauConfig::new(U as i64).with_normalize(normalize);
        let att = BahdanauAttention::new(&store.root(), config).unwrap();
        let (memory, q) = (randn(&[B, N, DM]), randn(&[B, DQ]));
        let _ = att.score(&q, &att.prepare(&memory, None).unwrap()).unwrap();
        let p = "bahdanau_attention";
        let wk = randomize(&store, &format!("{p}/memory_layer/w"));
        let wq = randomize(&store, &format!("{p}/query_layer/w"));
        let v = randomize(&store, &format!("{p}/attention_v"));
        let (v, bias) = if normalize {
            let g = randomize(&store, &format!("{p}/attention_g"))[0];
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            (v.iter().map(|x| g * x / norm).collect(), randomize(&store, &format!("{p}/attention_b")))
        } else {
            (v, vec![0.0; U])
        };
        let (m, qv) = (vals(&memory), vals(&q));
        let lens = [N, 4];
        let keys = keys_of(&m, &wk, &lens, DM);
        let pq: Vec<Vec<f64>> = (0..B)
            .map(|b| (0..U).map(|u| (0..DQ).map(|i| qv[b * DQ + i] * wq[i * U + u]).sum()).collect())
            .collect();
        let scores: Vec<Vec<f64>> = (0..B)
            .map(|b| {
                (0..N)
                    .map(|n| (0..U).map(|u| v[u] * (keys[b][n][u] + pq[b][u] + bias[u]).tanh()).sum())
                    .collect()
            })
            .collect();
        let prepared = att.prepare_with_lengths(&memory, &[N as i64, 4]).unwrap();
        check_attend(&att, &prepared, &q, &scores, &m, &lens);
    }
}

#[test]
fn rows_past_the_length_are_zeroed_and_never_attended() {
    tch::manual_seed(13);
    let store = Store::cpu();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(U as i64)).unwrap();
    let bahdanau = BahdanauAttention::new(&store.root(), BahdanauConfig::new(U as i64)).unwrap();
    let dot = DotAttention::new(&store.root()).unwrap();
    let memory = randn(&[B, N, DM]) + 1.0;
    let mechs: [(&dyn AttentionMechanism, i64); 3] =
        [(&luong, U as i64), (&bahdanau, DQ as i64), (&dot, DM as i64)];
    for (mech, dq) in mechs {
        let lengths = [2i64, 0];
        let from_slice = match mech.name() {
            "luong_attention" => luong.prepare_with_lengths(&memory, &lengths).unwrap(),
            "bahdanau_attention" => bahdanau.prepare_with_lengths(&memory, &lengths).unwrap(),
            _ => dot.prepare_with_lengths(&memory, &lengths).unwrap(),
        };
        // Through `dyn`: the free `memory_mask`.
        let prepared = mech.prepare(&memory, Some(&memory_mask(&memory, &lengths).unwrap())).unwrap();
        for p in [&prepared, &from_slice] {
            let mask = p.mask.as_ref().unwrap();
            assert_eq!(vals(&mask.to_kind(Kind::Double)), [1., 1., 0., 0., 0., 0., 0., 0., 0., 0.]);
            assert_eq!(vals(&p.values.narrow(1, 2, 3).abs().sum(Kind::Double)), [0.0]);
            assert_eq!(vals(&p.values.get(1).abs().sum(Kind::Double)), [0.0]);
            assert_eq!(vals(&p.keys.narrow(1, 2, 3).abs().sum(Kind::Double)), [0.0]);
            assert_eq!(vals(&p.keys.get(1).abs().sum(Kind::Double)), [0.0]);
            assert!(vals(&p.values.get(0).narrow(0, 0, 2).abs().min()).iter().all(|&x| x > 0.0));
            let (context, alignments) = mech.attend(&randn(&[B, dq as usize]), p).unwrap();
            let a = vals(&alignments);
            assert_eq!(&a[2..], &[0.0; 8], "{}", mech.name());
            assert!((a[0] + a[1] - 1.0).abs() < 1e-6);
            // Length 0: zero alignments and a zero context, not NaN.
            assert_eq!(vals(&context.get(1)), [0.0; DM]);
        }
    }
}

#[test]
fn lengths_are_checked() {
    let store = Store::cpu();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(U as i64)).unwrap();
    let memory = randn(&[B, N, DM]);
    let e = luong.prepare_with_lengths(&memory, &[1i64, 2, 3]).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(e.to_string(), "luong_attention: lengths must be [2], got [3]");
    let e = luong.prepare_with_lengths(&memory, &[1i64, 6]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert_eq!(e.to_string(), "luong_attention: lengths must be in 0..=T (T = 5), row 1 has 6");
    let e = luong.prepare_with_lengths(&memory, &Tensor::from_slice(&[1.0f32, 2.0])).unwrap_err();
    assert_eq!(e.to_string(), "luong_attention: lengths kind must be Int64, got Float");
    let e = luong.prepare_with_lengths(&memory.get(0), &[1i64, 2]).unwrap_err();
    assert_eq!(e.to_string(), "luong_attention: memory must be [B, N, Dm], got [5, 6]");
    let e = memory_mask(&memory, &[-1i64, 2]).unwrap_err();
    assert_eq!(e.to_string(), "memory_mask: lengths must be in 0..=T (T = 5), row 0 has -1");
}

#[test]
fn score_reuses_the_keys_of_prepare() {
    tch::manual_seed(14);
    let store = Store::cpu();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(U as i64)).unwrap();
    let bahdanau = BahdanauAttention::new(&store.root(), BahdanauConfig::new(U as i64)).unwrap();
    let cases: [(&dyn AttentionMechanism, usize, &str); 2] =
        [(&luong, U, "luong_attention"), (&bahdanau, DQ, "bahdanau_attention")];
    for (mech, dq, name) in cases {
        let mut memory = randn(&[B, N, DM]);
        let q = randn(&[B, dq]);
        let prepared = mech.prepare(&memory, None).unwrap();
        let before = mech.score(&q, &prepared).unwrap();
        // Changing the memory and the key layer after `prepare` changes no score...
        let _ = tch::no_grad(|| memory.fill_(3.0));
        randomize(&store, &format!("{name}/memory_layer/w"));
        assert_eq!(vals(&mech.score(&q, &prepared).unwrap()), vals(&before), "{name}");
        // ... while other keys do: the scores read `prepared.keys`, computed once.
        let keys = AttentionMemory { keys: prepared.keys.zeros_like(), ..prepared.clone() };
        assert_ne!(vals(&mech.score(&q, &keys).unwrap()), vals(&before), "{name}");
        // A fresh `prepare` sees the new memory and weights.
        assert_ne!(vals(&mech.score(&q, &mech.prepare(&memory, None).unwrap()).unwrap()), vals(&before));
    }
}

#[test]
fn malformed_memories_and_queries_are_shape_errors() {
    let store = Store::cpu();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(U as i64)).unwrap();
    let bahdanau = BahdanauAttention::new(&store.root(), BahdanauConfig::new(U as i64)).unwrap();
    let dot = DotAttention::new(&store.root()).unwrap();
    let memory = randn(&[B, N, DM]);
    let good = luong.prepare(&memory, None).unwrap();
    let err = |r: couplet_modules::Result<Tensor>| {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e:?}");
        e.to_string()
    };
    let q = randn(&[B, U]);
    let flat = AttentionMemory { values: randn(&[B, N]), ..good.clone() };
    assert_eq!(err(luong.score(&q, &flat)), "luong_attention: memory values must be [B, N, Dm], got [2, 5]");
    let short = AttentionMemory { keys: randn(&[B, 4, U]), ..good.clone() };
    assert_eq!(
        err(dot.score(&randn(&[B, U]), &short)),
        "dot_attention: memory keys must be [2, 5, U], got [2, 4, 4]"
    );
    let mask = AttentionMemory {
        mask: Some(Tensor::ones([B as i64, N as i64], (Kind::Int64, Device::Cpu))),
        ..good.clone()
    };
    assert_eq!(
        luong.attend(&q, &mask).unwrap_err().to_string(),
        "luong_attention: mask must be a bool tensor [2, 5], got Int64 [2, 5]"
    );
    let wide = AttentionMemory { keys: randn(&[B, N, 7]), ..good.clone() };
    assert_eq!(err(luong.score(&q, &wide)), "luong_attention: memory keys must be [2, 5, 4], got [2, 5, 7]");
    assert_eq!(
        err(bahdanau.score(&q, &wide)),
        "bahdanau_attention: memory keys must be [2, 5, 4], got [2, 5, 7]"
    );
    assert_eq!(
        err(bahdanau.score(&randn(&[3, DQ]), &good)),
        "bahdanau_attention: query must be [2, Dq], got [3, 3]"
    );
    assert_eq!(
        err(dot.score(&randn(&[B, U]), &dot.prepare(&memory, None).unwrap())),
        "dot_attention: query must be [2, 6], got [2, 4]"
    );
    let e =
        luong.prepare(&memory, Some(&Tensor::ones([B as i64, 4], (Kind::Bool, Device::Cpu)))).unwrap_err();
    assert_eq!(e.to_string(), "luong_attention: mask must be a bool tensor [2, 5], got Bool [2, 4]");
    // A memory size other than the first call's is the key layer's error.
    let e = luong.prepare(&randn(&[B, N, 3]), None).unwrap_err();
    assert_eq!(e.to_string(), "luong_attention/memory_layer: input must be [.., 6], got [2, 5, 3]");
    let e = LuongAttention::new(&store.root(), LuongConfig::new(0)).unwrap_err();
    assert!(matches!(e, Error::Config { .. }));
    assert_eq!(e.to_string(), "luong_attention_1: bad configuration: num_units must be > 0, got 0");
    let e = BahdanauAttention::new(&store.root(), BahdanauConfig::new(-2)).unwrap_err();
    assert_eq!(e.to_string(), "bahdanau_attention_1: bad configuration: num_units must be > 0, got -2");
}

#[test]
fn mechanisms_are_send_and_debug() {
    fn is_send<T: Send>() {}
    is_send::<LuongAttention>();
    is_send::<BahdanauAttention>();
    is_send::<DotAttention>();
    is_send::<AttentionMemory>();
    let store = Store::cpu();
    let luong = LuongAttention::new(&store.root(), LuongConfig::new(2)).unwrap();
    let bahdanau = BahdanauAttention::new(&store.root(), BahdanauConfig::new(2)).unwrap();
    assert_eq!(
        format!("{luong:?}"),
        "LuongAttention { scope: \"luong_attention\", config: LuongConfig { num_units: 2, scale: false, probability_fn: Softmax } }"
    );
    assert!(format!("{bahdanau:?}").starts_with("BahdanauAttention { scope: \"bahdanau_attention\""));
}
