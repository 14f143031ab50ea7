//! TorchScript export end to end: the GAN example's generator and the seq2seq example's
//! encoder and decoder step are traced with `couplet::export`, saved as `.pt` files, loaded
//! back by libtorch (`CModule::load`, what C++ gets) and by Python's `torch.jit.load`
//! (torch 2.13 in the project's `.venv`, `scripts/export/check_torchscript.py`), and run on
//! inputs other than the traced ones (another batch size); both must match couplet's eager
//! outputs at 1e-6 and list couplet's variables as named parameters.

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
use couplet::rnn::State;
use couplet::tch::{CModule, Device, IValue, Kind, Tensor};
use couplet::{save_tensors, Error, Mode, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SEQ_STEPS: i64 = 4;

/// What one module's methods must give: `(method, inputs, couplet's outputs)`.
type Cases = Vec<(String, Vec<Tensor>, Vec<Tensor>)>;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("couplet-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(exporter: &Exporter) -> serde_json::Value {
    serde_json::json!({
        "parameters": exporter.parameter_names(),
        "buffers": exporter.buffer_names(),
        "methods": exporter.methods(),
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

/// Runs every case on the module libtorch loads from `path` and compares at 1e-6.
fn check_in_rust(path: &Path, cases: &Cases) {
    let module = CModule::load(path).unwrap();
    for (method, inputs, expected) in cases {
        let inputs: Vec<IValue> = inputs.iter().map(|t| IValue::Tensor(t.shallow_clone())).collect();
        let got = outputs(module.method_is(method, &inputs).unwrap());
        assert_eq!(got.len(), expected.len(), "{method}");
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g.size(), e.size(), "{method}");
            if e.is_floating_point() {
                common::assert_close(g, e, 1e-6);
            } else {
                assert!(g.equal(e), "{method}");
            }
        }
    }
}

/// The GAN generator `z [B, 8] → x [B, 2]`, traced at B = 4, checked at B = 7.
fn export_gan(dir: &Path) -> (Exporter, Cases) {
    let store = Store::cpu();
    let config = gan::GanConfig { noise_size: 8, hidden_size: 16, hidden_layers: 2, pack: 2 };
    let model = gan::Gan::new(&store.root(), &config).unwrap();
    let mut exporter = Exporter::new("generator").unwrap();
    exporter.add_variables(&model.generator_variables().unwrap()).unwrap();
    let traced = model.seeded_noise(4, 1, Device::Cpu);
    exporter.trace("forward", &[traced], |z| Ok(vec![model.generator(&z[0], Mode::Eval)?])).unwrap();
    exporter.save(dir.join("generator.pt")).unwrap();
    let z = model.seeded_noise(7, 2, Device::Cpu);
    let x = model.generator(&z, Mode::Eval).unwrap();
    (exporter, vec![("forward".into(), vec![z], vec![x])])
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

/// The seq2seq encoder `(source [B, S], mask [B, S]) → initial decoder state leaves` and one
/// decoder step `(tokens [B], state leaves…) → (logits [B, V], new leaves…)`, traced at B = 2;
/// the encoder is checked on other texts, the step on another batch size (B = 3).
fn export_seq2seq(dir: &Path) -> (Exporter, Cases) {
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

    // Eager expectations on other inputs: the encoder on other texts (its zero initial
    // states are made at the traced batch size), then two greedy steps of another batch
    // size (the decoder state's reshapes keep it dynamic).
    let leaves = |s: &State| s.leaves().into_iter().map(Tensor::shallow_clone).collect::<Vec<_>>();
    let (ids, mask) = source(&["1 May 99", "5.6.2001"]);
    let state = model.initial_state_unpadded(&ids, &mask, SEQ_STEPS).unwrap();
    let mut cases: Cases = vec![("encode".into(), vec![ids, mask], leaves(&state))];
    let (ids, mask) = source(&["1 May 99", "5.6.2001", "7/8/1990"]);
    let state = model.initial_state_unpadded(&ids, &mask, SEQ_STEPS).unwrap();
    let mut tokens = Tensor::full([3], seq2seq::data::START, (Kind::Int64, Device::Cpu));
    let mut state = state;
    for step in 0..2 {
        let (logits, next) = couplet::tch::no_grad(|| decoder.step(&tokens, &state)).unwrap();
        let mut inputs = vec![tokens.shallow_clone()];
        inputs.extend(leaves(&state));
        let mut out = vec![logits.shallow_clone()];
        out.extend(leaves(&next));
        // Python reads one case per method: keep the second step's (it reads a non-zero state).
        if step == 1 {
            cases.push(("decode_step".into(), inputs, out));
        }
        tokens = logits.argmax(-1, false);
        state = state_from_leaves(&next, &leaves(&next)).unwrap();
    }
    (exporter, cases)
}

#[test]
fn exports_load_in_libtorch_and_python_and_match_couplet() {
    let _rng = common::rng_guard();
    couplet::tch::manual_seed(11);
    let dir = temp_dir();
    let (gan_exporter, gan_cases) = export_gan(&dir);
    let (seq_exporter, seq_cases) = export_seq2seq(&dir);
    assert_eq!(gan_exporter.parameter_names()[0], "gan.generator.linear_0.w");
    assert!(
        seq_exporter.parameter_names().contains(&"seq2seq.encoder_fw.weight_ih".to_string()),
        "{:?}",
        seq_exporter.parameter_names()
    );
    check_in_rust(&dir.join("generator.pt"), &gan_cases);
    check_in_rust(&dir.join("seq2seq.pt"), &seq_cases);

    let manifest = serde_json::json!({ "generator": names(&gan_exporter), "seq2seq": names(&seq_exporter) });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let mut tensors = Vec::new();
    for (module, cases) in [("generator", &gan_cases), ("seq2seq", &seq_cases)] {
        for (method, inputs, expected) in cases {
            for (kind, list) in [("in", inputs), ("out", expected)] {
                for (i, t) in list.iter().enumerate() {
                    tensors.push((format!("{module}.{method}.{kind}.{i}"), t.contiguous()));
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
    assert!(report["seq2seq.decode_step"].as_f64().is_some(), "{report}");
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
