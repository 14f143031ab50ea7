//! TorchScript export end to end: the GAN example's generator and the seq2seq example's
//! encoder and decoder step are traced with `couplet::export` at one batch size, saved as
//! `.pt` files, loaded back by libtorch (`CModule::load`, what C++ gets) and by Python's
//! `torch.jit.load` (torch 2.13 in the project's `.venv`, `scripts/export/check_torchscript.py`),
//! and run at other batch sizes (and, for the encoder, other source lengths); both must equal
//! couplet's eager outputs exactly and list couplet's variables as named parameters. An LSTM
//! traced from a host-sized zero state and called at another batch must raise an exception
//! naming both batch sizes in both runtimes (libtorch's kernel would read out of bounds).

// Both examples load the shared plotting helper (examples/common/plot.rs) as their own module.
#![allow(clippy::duplicate_mod)]

mod common;
#[allow(dead_code)]
#[path = "../examples/gan.rs"]
mod gan;
#[allow(dead_code)]
#[path = "../examples/seq2seq/main.rs"]
mod seq2seq;

use couplet::attention::export::{state_from_leaves, trace_decoder_step, trace_state};
use couplet::attention::{beam_search, BeamSearchConfig, TokenDecoder};
use couplet::export::Exporter;
use couplet::rnn::{dynamic_rnn, Lstm, LstmConfig, State, UnrollOptions};
use couplet::tch::{CModule, Device, IValue, Kind, Tensor};
use couplet::{save_tensors, Error, Mode, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SEQ_STEPS: i64 = 4;

/// One call of a traced method on inputs other than the traced ones, and what it must give:
/// couplet's eager outputs, or an error whose message contains the given text.
struct Case {
    method: String,
    inputs: Vec<Tensor>,
    expected: Result<Vec<Tensor>, String>,
}

fn case(method: &str, inputs: Vec<Tensor>, expected: Vec<Tensor>) -> Case {
    Case { method: method.into(), inputs, expected: Ok(expected) }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("couplet-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The manifest entry of one module: its names, and its cases (`{module}.{i}.in.{j}` and
/// `{module}.{i}.out.{j}` in cases.safetensors).
fn manifest(exporter: &Exporter, cases: &[Case]) -> serde_json::Value {
    let cases: Vec<_> = cases
        .iter()
        .map(|c| serde_json::json!({ "method": c.method, "error": c.expected.as_ref().err() }))
        .collect();
    serde_json::json!({
        "parameters": exporter.parameter_names(),
        "buffers": exporter.buffer_names(),
        "methods": exporter.methods(),
        "cases": cases,
    })
}

fn outputs(value: IValue) -> Vec<Tensor> {
    match value {
        IValue::Tensor(t) => vec![t],
        IValue::Tuple(parts) => parts
            .into_iter()
            .map(|p| match p {
                IValue::Tensor(t) => t,
                other => panic!("a tensor output, got {other:?}"),
            })
            .collect(),
        other => panic!("tensor outputs, got {other:?}"),
    }
}

/// Runs every case on the module libtorch loads from `path`: outputs equal to couplet's
/// (difference 0), or the expected error.
fn check_in_rust(path: &Path, cases: &[Case]) {
    let module = CModule::load(path).unwrap();
    for (i, Case { method, inputs, expected }) in cases.iter().enumerate() {
        let inputs: Vec<IValue> = inputs.iter().map(|t| IValue::Tensor(t.shallow_clone())).collect();
        let got = module.method_is(method, &inputs);
        let expected = match expected {
            Ok(expected) => expected,
            Err(text) => {
                let err = got.err().unwrap_or_else(|| panic!("case {i} ({method}): no error")).to_string();
                assert!(err.contains(text.as_str()), "case {i} ({method}): {err}");
                continue;
            }
        };
        let got = outputs(got.unwrap());
        assert_eq!(got.len(), expected.len(), "{method}");
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g.size(), e.size(), "case {i} ({method})");
            assert!(g.equal(e), "case {i} ({method}): not equal to couplet's eager output");
        }
    }
}

/// The GAN generator `z [B, 8] → x [B, 2]`, traced at B = 4, checked at B = 7 and 1.
fn export_gan(dir: &Path) -> (Exporter, Vec<Case>) {
    let store = Store::cpu();
    let config = gan::GanConfig { noise_size: 8, hidden_size: 16, hidden_layers: 2, pack: 2 };
    let model = gan::Gan::new(&store.root(), &config).unwrap();
    let mut exporter = Exporter::new("generator").unwrap();
    exporter.add_variables(&model.generator_variables().unwrap()).unwrap();
    let traced = model.seeded_noise(4, 1, Device::Cpu);
    exporter.trace("forward", &[traced], |z| Ok(vec![model.generator(&z[0], Mode::Eval)?])).unwrap();
    exporter.save(dir.join("generator.pt")).unwrap();
    let cases = [7, 1]
        .into_iter()
        .map(|b| {
            let z = model.seeded_noise(b, 2, Device::Cpu);
            let x = model.generator(&z, Mode::Eval).unwrap();
            case("forward", vec![z], vec![x])
        })
        .collect();
    (exporter, cases)
}

fn seq2seq_model(store: &Store) -> seq2seq::model::Seq2Seq {
    let config = seq2seq::model::ModelConfig {
        source_vocab: seq2seq::data::Vocab::input().size(),
        target_vocab: seq2seq::data::Vocab::target().size(),
        embed_dim: 8,
        encoder_hidden: 6,
        decoder_hidden: 10,
        attention: seq2seq::AttentionKind::Luong,
    };
    seq2seq::model::Seq2Seq::new(&store.root(), &config).unwrap()
}

fn source(texts: &[&str]) -> (Tensor, Tensor) {
    let (ids, _, mask) = seq2seq::batch::sources(texts, &seq2seq::data::Vocab::input(), Device::Cpu).unwrap();
    (ids, mask)
}

fn leaves(s: &State) -> Vec<Tensor> {
    s.leaves().into_iter().map(Tensor::shallow_clone).collect()
}

/// The seq2seq encoder `(source [B, S], mask [B, S]) → initial decoder state leaves` and one
/// decoder step `(tokens [B], state leaves…) → (logits [B, V], new leaves…)`, both traced at
/// B = 2, S = 8; both are checked at B = 1, 3 and 5 (the step on the second step of a greedy
/// decode, which reads a non-zero state). Another source length S is refused with an error
/// naming it (the state's flattened alignment history fixes it).
fn export_seq2seq(dir: &Path) -> (Exporter, Vec<Case>) {
    let store = Store::cpu();
    let model = seq2seq_model(&store);
    let (ids, mask) = source(&["4 Mar 17", "12.10.92"]);
    // Build the lazy variables (the attention's memory layer) eagerly first: a variable
    // created during the trace would be recorded as its initializer, not as a parameter.
    model.initial_state_unpadded(&ids, &mask, SEQ_STEPS).unwrap();
    let mut exporter = Exporter::new("seq2seq").unwrap();
    exporter.add_variables(&store.variables()).unwrap();
    let encode = |inputs: &[Tensor]| model.initial_state_unpadded(&inputs[0], &inputs[1], SEQ_STEPS);
    let state = couplet::tch::no_grad(|| trace_state(&mut exporter, "encode", &[ids, mask], encode)).unwrap();
    let decoder = model.step_decoder();
    let starts = Tensor::full([2], seq2seq::data::START, (Kind::Int64, Device::Cpu));
    couplet::tch::no_grad(|| trace_decoder_step(&mut exporter, "decode_step", &decoder, &starts, &state))
        .unwrap();
    exporter.save(dir.join("seq2seq.pt")).unwrap();

    // Eager expectations at other batch sizes and source lengths.
    let mut cases = Vec::new();
    let batches: [&[&str]; 3] = [
        &["1 May 99"],
        &["1 May 99", "5.6.2001", "7/8/1990"],
        &["5.6.01", "4 Mar 17", "12.10.92", "7/8/90", "1.1.2000"],
    ];
    for texts in batches {
        let (ids, mask) = source(texts);
        let state = model.initial_state_unpadded(&ids, &mask, SEQ_STEPS).unwrap();
        cases.push(case("encode", vec![ids, mask], leaves(&state)));
        let mut tokens = Tensor::full([texts.len() as i64], seq2seq::data::START, (Kind::Int64, Device::Cpu));
        let mut state = state;
        for step in 0..2 {
            let (logits, next) = couplet::tch::no_grad(|| decoder.step(&tokens, &state)).unwrap();
            if step == 1 {
                let mut inputs = vec![tokens.shallow_clone()];
                inputs.extend(leaves(&state));
                let mut out = vec![logits.shallow_clone()];
                out.extend(leaves(&next));
                cases.push(case("decode_step", inputs, out));
            }
            tokens = logits.argmax(-1, false);
            state = state_from_leaves(&next, &leaves(&next)).unwrap();
        }
    }
    let (ids, mask) = source(&["Saturday, March 4th 2017", "4 Mar 17"]);
    let error = "couplet export: traceable_initial_state: the memory [B, N, Dm] (N) must have size 8 in \
                 dimension 1 (fixed when traced), got 24";
    cases.push(Case { method: "encode".into(), inputs: vec![ids, mask], expected: Err(error.into()) });
    (exporter, cases)
}

/// An LSTM unrolled by `dynamic_rnn` from its default initial state (zeros of the host's batch
/// size), traced at B = 2 on the fused route: it serves B = 2 and raises an exception naming
/// both batch sizes at B = 3 instead of corrupting memory.
fn export_fixed_lstm(dir: &Path) -> (Exporter, Vec<Case>) {
    let store = Store::cpu();
    let lstm = Lstm::new(&store.root(), LstmConfig::new(3).with_input_size(4)).unwrap();
    let mut exporter = Exporter::new("fixed").unwrap();
    exporter.add_variables(&store.variables()).unwrap();
    let x = |b: i64| Tensor::linspace(-1.0, 1.0, b * 5 * 4, (Kind::Float, Device::Cpu)).reshape([b, 5, 4]);
    let run = |x: &Tensor| dynamic_rnn(&lstm, x, &UnrollOptions::new(Mode::Eval)).map(|(y, _)| y);
    couplet::tch::no_grad(|| exporter.trace("forward", &[x(2)], |i| Ok(vec![run(&i[0])?]))).unwrap();
    exporter.save(dir.join("fixed.pt")).unwrap();
    let same = couplet::tch::no_grad(|| run(&x(2))).unwrap();
    let error = "initial state has batch size 2 (fixed when traced: it was built from host sizes, not \
                 from the inputs) but the input has batch size 3";
    let cases = vec![
        case("forward", vec![x(2)], vec![same]),
        Case { method: "forward".into(), inputs: vec![x(3)], expected: Err(error.into()) },
    ];
    (exporter, cases)
}

#[test]
fn exports_load_in_libtorch_and_python_and_match_couplet() {
    let _rng = common::rng_guard();
    couplet::tch::manual_seed(11);
    let dir = temp_dir();
    let modules = [
        ("generator", export_gan(&dir)),
        ("seq2seq", export_seq2seq(&dir)),
        ("fixed", export_fixed_lstm(&dir)),
    ];
    assert_eq!(modules[0].1 .0.parameter_names()[0], "gan.generator.linear_0.w");
    let seq_names = modules[1].1 .0.parameter_names();
    assert!(seq_names.contains(&"seq2seq.encoder_fw.weight_ih".to_string()), "{seq_names:?}");
    for (name, (_, cases)) in &modules {
        check_in_rust(&dir.join(format!("{name}.pt")), cases);
    }

    let manifest: serde_json::Map<_, _> = modules
        .iter()
        .map(|(name, (exporter, cases))| (name.to_string(), manifest(exporter, cases)))
        .collect();
    std::fs::write(dir.join("manifest.json"), serde_json::Value::Object(manifest).to_string()).unwrap();
    let mut tensors = Vec::new();
    for (module, (_, cases)) in &modules {
        for (i, c) in cases.iter().enumerate() {
            let expected = c.expected.as_ref().map(Vec::as_slice).unwrap_or(&[]);
            for (kind, list) in [("in", c.inputs.as_slice()), ("out", expected)] {
                for (j, t) in list.iter().enumerate() {
                    tensors.push((format!("{module}.{i}.{kind}.{j}"), t.contiguous()));
                }
            }
        }
    }
    save_tensors(&tensors, dir.join("cases.safetensors"), &BTreeMap::new()).unwrap();

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run bash scripts/setup-libtorch.sh", python.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export/check_torchscript.py");
    let out = std::process::Command::new(&python).arg(&script).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["torch"].as_str().unwrap().split('+').next(), Some("2.13.0"));
    // Every case ran: 2 generator, 7 seq2seq (3 batch sizes × 2 methods, one error), 2 fixed
    // (one error).
    assert_eq!(report["cases"].as_u64(), Some(11), "{report}");
    assert_eq!(report["errors_raised"].as_u64(), Some(2), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_tracing_cannot_record_is_a_typed_error() {
    let store = Store::cpu();
    let model = seq2seq_model(&store);
    let mut exporter = Exporter::new("seq2seq").unwrap();
    exporter.add_variables(&store.variables()).unwrap();
    let (ids, mask) = source(&["4 Mar 17", "12.10.92"]);
    // Greedy decoding of the example reads the source lengths (host values).
    let err = exporter
        .trace("greedy", &[ids.shallow_clone()], |x| {
            Ok(vec![model.greedy(&x[0], &[8, 8], &mask, SEQ_STEPS)?.alignments])
        })
        .unwrap_err();
    assert!(matches!(err, Error::Untraceable { .. }), "{err}");
    assert!(err.to_string().contains("per-row lengths"), "{err}");
    // Beam search stops at end tokens and reorders beams on the host.
    let err = exporter
        .trace("beam", &[ids, mask], |x| {
            let state = model.initial_state_unpadded(&x[0], &x[1], SEQ_STEPS)?;
            let starts = Tensor::full([2], seq2seq::data::START, (Kind::Int64, Device::Cpu));
            let config = BeamSearchConfig::new(2, seq2seq::data::END, SEQ_STEPS);
            Ok(vec![beam_search(&model.step_decoder(), &state, &starts, &config)?.scores])
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("beam_search: cannot be traced: it stops at end tokens"), "{err}");
    assert!(exporter.methods().is_empty());
}
