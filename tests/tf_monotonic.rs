//! Monotonic mechanisms and attention probability functions against TF Addons' formulas run
//! with TF 2.21 ops (`scripts/fixtures/tf_monotonic.py`, `tests/fixtures/tf/monotonic`), in
//! f64 to 1e-9: `LuongMonotonicAttention(scale)` and `BahdanauMonotonicAttention(normalize)` in
//! the parallel, recursive and hard modes over four steps from the one-hot initial
//! alignments, both alone and inside an `AttentionDecoderCore` (whose state carries the
//! previous alignments), and `LuongAttention` with the hardmax and sparsemax probability
//! functions over a padded memory.

use couplet::attention::{
    memory_mask, AttentionDecoderConfig, AttentionDecoderCore, AttentionMechanism, AttentionMemory,
    BahdanauConfig, BahdanauMonotonicAttention, LuongAttention, LuongConfig, LuongMonotonicAttention,
    MonotonicConfig, MonotonicMode, ProbabilityFn,
};
use couplet::checkpoint::tf::{module_variable, TfCheckpoint};
use couplet::rnn::{RnnCore, State, StateSize};
use couplet::{Error, Mode, Module, Result, Scope, Store};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn expected() -> TfCheckpoint {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/monotonic/expected");
    TfCheckpoint::open(path).unwrap()
}

fn close(actual: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes");
    let gap = (actual - expected).abs().max().double_value(&[]);
    assert!(gap <= 1e-9, "{what}: max |couplet - TF| = {gap:e}");
}

fn store() -> Store {
    Store::with_kind(Device::Cpu, Kind::Double).unwrap()
}

fn set(module: &impl Module, leaf: &str, value: &Tensor) {
    let v = module_variable(module, leaf).unwrap();
    tch::no_grad(|| v.shallow_clone().copy_(value));
}

const MODES: [(&str, MonotonicMode); 3] = [
    ("parallel", MonotonicMode::Parallel),
    ("recursive", MonotonicMode::Recursive),
    ("hard", MonotonicMode::Hard),
];

/// A mechanism of `kind` ("luong" or "bahdanau") in `mode` holding the fixture's weights.
fn mechanism(store: &Store, kind: &str, mode: MonotonicMode) -> Box<dyn AttentionMechanism> {
    let want = expected();
    let w = |name: &str| want.tensor(&format!("{kind}_{name}")).unwrap();
    let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Double, Device::Cpu));
    let config = MonotonicConfig::new(mode).with_sigmoid_noise(0.7, 3);
    if kind == "luong" {
        let m = LuongMonotonicAttention::new(&store.root(), LuongConfig::new(4).with_scale(true), config)
            .unwrap();
        let _build = m.prepare(&zeros(&[1, 1, 3]), None).unwrap();
        set(m.inner(), "memory_layer/w", &w("memory_kernel"));
        set(m.inner(), "attention_g", &w("g"));
        set(&m, "attention_score_bias", &w("score_bias"));
        Box::new(m)
    } else {
        let m = BahdanauMonotonicAttention::new(
            &store.root(),
            BahdanauConfig::new(4).with_normalize(true),
            config,
        )
        .unwrap();
        let built = m.prepare(&zeros(&[1, 1, 3]), None).unwrap();
        let _build = m.score(&zeros(&[1, 6]), &built).unwrap();
        set(m.inner(), "memory_layer/w", &w("memory_kernel"));
        set(m.inner(), "query_layer/w", &w("query_kernel"));
        set(m.inner(), "attention_v", &w("v"));
        set(m.inner(), "attention_g", &w("g"));
        set(m.inner(), "attention_b", &w("b"));
        set(&m, "attention_score_bias", &w("score_bias"));
        Box::new(m)
    }
}

fn memory_and_mask() -> (Tensor, Tensor) {
    let want = expected();
    let memory = want.tensor("memory").unwrap();
    let lengths = Vec::<i64>::try_from(&want.tensor("lengths").unwrap()).unwrap();
    let mask = memory_mask(&memory, &lengths[..]).unwrap();
    (memory, mask)
}

#[test]
fn monotonic_mechanisms_match_tf_addons_step_by_step() {
    let want = expected();
    let (memory, mask) = memory_and_mask();
    for kind in ["luong", "bahdanau"] {
        let queries = want.tensor(&format!("{kind}_queries")).unwrap();
        for (name, mode) in MODES {
            let store = store();
            let m = mechanism(&store, kind, mode);
            let prepared = m.prepare(&memory, Some(&mask)).unwrap();
            let mut previous = m.initial_alignments(&prepared).unwrap();
            let alignments = want.tensor(&format!("{kind}_{name}_alignments")).unwrap();
            let contexts = want.tensor(&format!("{kind}_{name}_context")).unwrap();
            for t in 0..4 {
                // Eval: no noise, as TF with sigmoid_noise = 0.
                let (context, a) = m.attend_step(&queries.get(t), &prepared, &previous, Mode::Eval).unwrap();
                close(&a, &alignments.get(t), &format!("{kind} {name} alignments, step {t}"));
                close(&context, &contexts.get(t), &format!("{kind} {name} context, step {t}"));
                previous = a;
            }
            // attend alone is the first step.
            let (_, first) = m.attend(&queries.get(0), &prepared).unwrap();
            close(&first, &alignments.get(0), &format!("{kind} {name} attend"));
        }
    }
}

/// The identity core: its output is its input (so the decoder's queries are its inputs).
struct Echo {
    scope: Scope,
    size: i64,
}

impl Module for Echo {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for Echo {
    fn step(&self, input: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        Ok((input.shallow_clone(), state.clone()))
    }
    fn output_shape(&self) -> Vec<i64> {
        vec![self.size]
    }
    fn state_size(&self) -> StateSize {
        StateSize::Empty
    }
}

#[test]
fn the_decoder_core_carries_the_previous_alignments_from_the_one_hot_start() {
    let want = expected();
    let (memory, mask) = memory_and_mask();
    for (kind, dq) in [("luong", 4), ("bahdanau", 6)] {
        let queries = want.tensor(&format!("{kind}_queries")).unwrap();
        for (name, mode) in MODES {
            let store = store();
            let echo = Echo { scope: store.root().child("echo").unwrap(), size: dq };
            let config = AttentionDecoderConfig::default()
                .with_input_feeding(false)
                .with_memory_size(Some(3))
                .with_alignment_history(true);
            let core = AttentionDecoderCore::new(
                &store.root(),
                Box::new(echo),
                mechanism(&store, kind, mode),
                config,
            )
            .unwrap();
            let mut state = core.initial_state_with_memory(&memory, Some(&mask), Some(4)).unwrap();
            let start = core.alignments(&state).unwrap();
            assert_eq!(
                Vec::<f64>::try_from(start.flatten(0, -1)).unwrap(),
                [1., 0., 0., 0., 0., 1., 0., 0., 0., 0.]
            );
            let contexts = want.tensor(&format!("{kind}_{name}_context")).unwrap();
            for t in 0..4 {
                let (out, next) = core.step(&queries.get(t), &state, Mode::Eval).unwrap();
                close(&out, &contexts.get(t), &format!("core {kind} {name} output, step {t}"));
                state = next;
            }
            let history = core.alignment_history(&state).unwrap();
            close(
                &history,
                &want.tensor(&format!("{kind}_{name}_alignments")).unwrap(),
                &format!("core {kind} {name} history"),
            );
        }
    }
}

#[test]
fn hardmax_and_sparsemax_probability_functions_match_tf_addons() {
    let want = expected();
    let (memory, mask) = memory_and_mask();
    for (name, probability) in [("hardmax", ProbabilityFn::Hardmax), ("sparsemax", ProbabilityFn::Sparsemax)]
    {
        let store = store();
        let config = LuongConfig::new(4).with_scale(true).with_probability_fn(probability);
        let luong = LuongAttention::new(&store.root(), config).unwrap();
        let _build = luong.prepare(&Tensor::zeros([1, 1, 3], (Kind::Double, Device::Cpu)), None).unwrap();
        set(&luong, "memory_layer/w", &want.tensor("luong_memory_kernel").unwrap());
        set(&luong, "attention_g", &want.tensor("luong_g").unwrap());
        let prepared: AttentionMemory = luong.prepare(&memory, Some(&mask)).unwrap();
        let query = want.tensor("luong_queries").unwrap().get(0);
        let (context, alignments) = luong.attend(&query, &prepared).unwrap();
        close(
            &alignments,
            &want.tensor(&format!("luong_{name}_alignments")).unwrap(),
            &format!("{name} alignments"),
        );
        close(&context, &want.tensor(&format!("luong_{name}_context")).unwrap(), &format!("{name} context"));
    }
}

#[test]
fn a_monotonic_step_refuses_previous_alignments_of_another_shape() {
    let store = store();
    let (memory, mask) = memory_and_mask();
    let m = mechanism(&store, "luong", MonotonicMode::Parallel);
    let prepared = m.prepare(&memory, Some(&mask)).unwrap();
    let q = Tensor::zeros([2, 4], (Kind::Double, Device::Cpu));
    let e = m
        .attend_step(&q, &prepared, &Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)), Mode::Eval)
        .unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("previous alignments must be Double [2, 5], got Float [2, 4]"), "{e}");
}
