//! couplet's LSTM, GRU and vanilla RNN cells against PyTorch's `torch.nn.LSTM` / `GRU` /
//! `RNN` and against TensorFlow 1.x cell semantics (GRUCell, LSTMCell with peepholes and
//! cell clip, LayerNormBasicLSTMCell) computed independently in
//! `scripts/fixtures/rnn_cells.py`.
//!
//! Each case unrolls the cell with a plain loop of `step`, and again with its
//! `InputProjection` (`project_inputs` + `step_projected`), and compares outputs, final states and the gradients of
//!   `Σ out ⊙ r_out + Σ h_n ⊙ r_h (+ Σ c_n ⊙ r_c)` with the fixture's.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet_modules::{Mode, Module, Store};
use couplet_rnn::VanillaRnnConfig;
use couplet_rnn::{Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, RnnCore, State, VanillaRnn};
use tch::{Kind, Tensor};

const TOL: f64 = 1e-5;
const T: i64 = 5;

/// The fixture's tensors under `prefix.` with the prefix removed (a PyTorch state dict).
fn state_dict(f: &Fixture, prefix: &str) -> Vec<(String, Tensor)> {
    let p = format!("{prefix}.");
    f.keys()
        .into_iter()
        .filter(|k| k.starts_with(&p) && !k[p.len()..].contains('.'))
        .map(|k| (k[p.len()..].to_string(), f.get(&k)))
        .collect()
}

/// Unrolls `core` over `x [B, T, I]` from `state`; `projected` picks the split path.
fn unroll(core: &dyn RnnCore, x: &Tensor, mut state: State, projected: bool) -> (Tensor, State) {
    let p = projected.then(|| {
        let proj = core.projection().expect("cells have a projection");
        (proj, proj.project_inputs(x).unwrap())
    });
    let mut outs = Vec::new();
    for t in 0..T {
        let (y, s) = match &p {
            Some((proj, p)) => proj.step_projected(&p.select(1, t), &state, Mode::Train).unwrap(),
            None => core.step(&x.select(1, t), &state, Mode::Train).unwrap(),
        };
        outs.push(y);
        state = s;
    }
    (Tensor::stack(&outs, 1), state)
}

/// Leaves that require gradients: the input and the initial state of case `prefix`.
struct Leaves {
    x: Tensor,
    h0: Tensor,
    c0: Option<Tensor>,
}

fn leaves(f: &Fixture, prefix: &str, lstm: bool) -> Leaves {
    let leaf = |k: &str| f.get(&format!("{prefix}.{k}")).copy().set_requires_grad(true);
    Leaves { x: leaf("x"), h0: leaf("h0"), c0: lstm.then(|| leaf("c0")) }
}

impl Leaves {
    fn state(&self) -> State {
        match &self.c0 {
            Some(c0) => State::Lstm { h: self.h0.shallow_clone(), c: c0.shallow_clone() },
            None => State::Tensor(self.h0.shallow_clone()),
        }
    }
}

/// Runs case `prefix` both ways and checks outputs, final states, and the gradients wrt the
/// inputs, the initial state and (`weights`: (variable name, fixture name)) the variables.
fn check_case(
    f: &Fixture,
    prefix: &str,
    make: &dyn Fn(&Store) -> Box<dyn RnnCore>,
    weights: &[(&str, &str)],
) {
    let key = |k: &str| format!("{prefix}.{k}");
    for projected in [false, true] {
        let store = Store::cpu();
        let core = make(&store);
        let is_lstm = matches!(core.state_size(), couplet_rnn::StateSize::Lstm { .. });
        let l = leaves(f, prefix, is_lstm);
        let (out, state) = unroll(core.as_ref(), &l.x, l.state(), projected);
        let what = format!("{prefix} (projected: {projected})");
        println!("checking {what}");
        assert_close(&out, &f.get(&key("out")), TOL);
        let h_n = state.h().unwrap();
        assert_close(h_n, &f.get(&key("h_n")), TOL);
        let mut loss =
            (&out * f.get(&key("r_out"))).sum(Kind::Float) + (h_n * f.get(&key("r_h"))).sum(Kind::Float);
        if let State::Lstm { c, .. } = &state {
            assert_close(c, &f.get(&key("c_n")), TOL);
            loss += (c * f.get(&key("r_c"))).sum(Kind::Float);
        }
        loss.backward();
        assert_close(&l.x.grad(), &f.get(&key("grad.x")), TOL);
        assert_close(&l.h0.grad(), &f.get(&key("grad.h0")), TOL);
        if let Some(c0) = &l.c0 {
            assert_close(&c0.grad(), &f.get(&key("grad.c0")), TOL);
        }
        for (var, name) in weights {
            let v = store.get(var).unwrap_or_else(|| panic!("no variable {var}"));
            assert_close(&v.tensor().grad(), &f.get(&key(&format!("grad.{name}"))), TOL);
        }
    }
}

/// `(store name, fixture name)` of the PyTorch weights of a cell in scope `scope`.
fn torch_weights(scope: &str, with_proj: bool) -> Vec<(String, String)> {
    let mut names = vec!["weight_ih", "weight_hh", "bias_ih", "bias_hh"];
    if with_proj {
        names.push("weight_hr");
    }
    names.iter().map(|n| (format!("{scope}/{n}"), format!("{n}_l0"))).collect()
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

#[test]
fn lstm_matches_torch() {
    let f = load_fixture("rnn_cells");
    let dict = state_dict(&f, "lstm");
    let make = |s: &Store| -> Box<dyn RnnCore> {
        // Lazy: the input size comes from weight_ih_l0.
        let lstm = Lstm::new(&s.root(), LstmConfig::new(6)).unwrap();
        lstm.load_torch(&dict, "_l0").unwrap();
        Box::new(lstm)
    };
    check_case(&f, "lstm", &make, &pairs(&torch_weights("lstm", false)));
}

#[test]
fn lstm_with_projection_matches_torch() {
    let f = load_fixture("rnn_cells");
    let dict = state_dict(&f, "lstm_proj");
    let make = |s: &Store| -> Box<dyn RnnCore> {
        let lstm = Lstm::new(&s.root(), LstmConfig::new(6).with_input_size(4).with_proj_size(3)).unwrap();
        lstm.load_torch(&dict, "_l0").unwrap();
        Box::new(lstm)
    };
    check_case(&f, "lstm_proj", &make, &pairs(&torch_weights("lstm", true)));
}

#[test]
fn gru_matches_torch() {
    let f = load_fixture("rnn_cells");
    let dict = state_dict(&f, "gru");
    let make = |s: &Store| -> Box<dyn RnnCore> {
        let gru = Gru::new(&s.root(), GruConfig::new(6)).unwrap();
        gru.load_torch(&dict, "_l0").unwrap();
        Box::new(gru)
    };
    check_case(&f, "gru", &make, &pairs(&torch_weights("gru", false)));
}

#[test]
fn vanilla_rnn_matches_torch_tanh_and_relu() {
    let f = load_fixture("rnn_cells");
    for (prefix, act) in [("rnn_tanh", Nonlinearity::Tanh), ("rnn_relu", Nonlinearity::Relu)] {
        let dict = state_dict(&f, prefix);
        let make = |s: &Store| -> Box<dyn RnnCore> {
            let rnn = VanillaRnn::new(&s.root(), VanillaRnnConfig::new(6).with_activation(act)).unwrap();
            rnn.load_torch(&dict, "_l0").unwrap();
            Box::new(rnn)
        };
        check_case(&f, prefix, &make, &pairs(&torch_weights("vanilla_rnn", false)));
    }
}

/// TF's gate blocks `i, j, f, o` (columns of a `[rows, 4H]` kernel) as PyTorch rows
/// `i, f, g = j, o` (`[4H, rows]`).
fn tf_to_torch_rows(kernel: &Tensor) -> Tensor {
    let b = kernel.tr().chunk(4, 0);
    Tensor::cat(&[&b[0], &b[2], &b[1], &b[3]], 0)
}

/// Copies `value` into the store's variable `name`.
fn set(store: &Store, name: &str, value: &Tensor) {
    let mut v = store.get(name).unwrap_or_else(|| panic!("no variable {name}")).tensor().shallow_clone();
    tch::no_grad(|| v.copy_(value));
}

#[test]
fn gru_reset_before_matches_tf_gru_cell() {
    let f = load_fixture("rnn_cells");
    let g = |k: &str| f.get(&format!("gru_tf.{k}"));
    // TF: gate kernel [I + H, 2H] (r, u), candidate kernel [I + H, H].
    let (gk, ck) = (g("gate_kernel"), g("candidate_kernel"));
    let dict = vec![
        ("weight_ih".to_string(), Tensor::cat(&[gk.narrow(0, 0, 4), ck.narrow(0, 0, 4)], 1).tr()),
        ("weight_hh".to_string(), Tensor::cat(&[gk.narrow(0, 4, 6), ck.narrow(0, 4, 6)], 1).tr()),
        ("bias_ih".to_string(), Tensor::cat(&[g("gate_bias"), g("candidate_bias")], 0)),
        ("bias_hh".to_string(), Tensor::zeros([18], (Kind::Float, tch::Device::Cpu))),
    ];
    let make = |s: &Store| -> Box<dyn RnnCore> {
        let gru = Gru::new(&s.root(), GruConfig::new(6).with_reset_after(false)).unwrap();
        gru.load_torch(&dict, "").unwrap();
        Box::new(gru)
    };
    check_case(&f, "gru_tf", &make, &[]);
    // The same weights with PyTorch's reset placement compute something else.
    let store = Store::cpu();
    let gru = Gru::new(&store.root(), GruConfig::new(6)).unwrap();
    gru.load_torch(&dict, "").unwrap();
    let (out, _) = unroll(&gru, &g("x"), State::Tensor(g("h0")), false);
    assert!((out - g("out")).abs().max().double_value(&[]) > 1e-3);
}

#[test]
fn lstm_matches_tf_lstm_cell_through_kernel_conversion() {
    let f = load_fixture("rnn_cells");
    let g = |k: &str| f.get(&format!("lstm_tf.{k}"));
    let make = |s: &Store| -> Box<dyn RnnCore> {
        let lstm = Lstm::new(&s.root(), LstmConfig::new(6)).unwrap();
        lstm.load_tf_kernel(&g("kernel"), &g("bias"), g("forget_bias").double_value(&[0])).unwrap();
        assert_eq!(lstm.input_size(), Some(4));
        Box::new(lstm)
    };
    check_case(&f, "lstm_tf", &make, &[]);
}

#[test]
fn lstm_peepholes_and_cell_clip_match_tf() {
    let f = load_fixture("rnn_cells");
    let g = |k: &str| f.get(&format!("lstm_tf_peep.{k}"));
    let make = |s: &Store| -> Box<dyn RnnCore> {
        let config = LstmConfig::new(6).with_input_size(4).with_peepholes(true).with_cell_clip(0.3);
        let lstm = Lstm::new(&s.root(), config).unwrap();
        lstm.load_tf_kernel(&g("kernel"), &g("bias"), g("forget_bias").double_value(&[0])).unwrap();
        for name in ["w_i_diag", "w_f_diag", "w_o_diag"] {
            set(s, &format!("lstm/{name}"), &g(name));
        }
        Box::new(lstm)
    };
    check_case(&f, "lstm_tf_peep", &make, &[]);
}

#[test]
fn layer_norm_lstm_matches_tf_layer_norm_basic_lstm_cell() {
    let f = load_fixture("rnn_cells");
    let g = |k: &str| f.get(&format!("lstm_ln.{k}"));
    let kernel = g("kernel");
    let forget_bias = g("forget_bias").double_value(&[0]);
    let make = |s: &Store| -> Box<dyn RnnCore> {
        let config = LstmConfig::new(6).with_input_size(4).with_bias(false).with_layer_norm(true);
        let lstm = Lstm::new(&s.root(), config).unwrap();
        // Fresh cell: the forget bias sits in the forget gate's shift.
        let beta_f = s.get("lstm/ln_f_beta").unwrap().tensor().shallow_clone();
        assert_close(&beta_f, &Tensor::full([6], forget_bias, (Kind::Float, tch::Device::Cpu)), 0.0);
        set(s, "lstm/weight_ih", &tf_to_torch_rows(&kernel.narrow(0, 0, 4)));
        set(s, "lstm/weight_hh", &tf_to_torch_rows(&kernel.narrow(0, 4, 6)));
        for (ours, tf) in
            [("i", "input"), ("g", "transform"), ("f", "forget"), ("o", "output"), ("c", "state")]
        {
            set(s, &format!("lstm/ln_{ours}_gamma"), &g(&format!("{tf}.gamma")));
            let beta = g(&format!("{tf}.beta"));
            let beta = if ours == "f" { beta + forget_bias } else { beta };
            set(s, &format!("lstm/ln_{ours}_beta"), &beta);
        }
        Box::new(lstm)
    };
    check_case(&f, "lstm_ln", &make, &[]);
}

#[test]
fn loading_a_torch_dict_replaces_the_forget_bias() {
    let f = load_fixture("rnn_cells");
    let dict = state_dict(&f, "lstm");
    let store = Store::cpu();
    let lstm = Lstm::new(&store.root(), LstmConfig::new(6).with_forget_bias(5.0)).unwrap();
    lstm.load_torch(&dict, "_l0").unwrap();
    let bias = store.get("lstm/bias_ih").unwrap().tensor().shallow_clone();
    assert!(bias.equal(&f.get("lstm.bias_ih_l0")));
    let exported = lstm.torch_state_dict("_l0").unwrap();
    for (k, v) in &exported {
        assert!(v.equal(&f.get(&format!("lstm.{k}"))), "{k}");
    }
    assert_eq!(lstm.variables().unwrap().len(), 4);
}

#[test]
fn configs_deserialise_with_documented_defaults() {
    let c: LstmConfig = serde_json::from_str(r#"{"hidden_size": 8, "peepholes": true}"#).unwrap();
    assert_eq!(c, LstmConfig::new(8).with_peepholes(true));
    assert_eq!((c.forget_bias, c.with_bias, c.layer_norm_epsilon), (1.0, true, 1e-12));
    assert!(serde_json::from_str::<LstmConfig>("{}").is_err(), "hidden_size is required");
    let c: GruConfig = serde_json::from_str(r#"{"hidden_size": 3}"#).unwrap();
    assert_eq!(c, GruConfig::new(3));
    assert!(c.reset_after);
    let c: VanillaRnnConfig = serde_json::from_str(r#"{"hidden_size": 3, "activation": "relu"}"#).unwrap();
    assert_eq!(c, VanillaRnnConfig::new(3).with_activation(Nonlinearity::Relu));
    let json = serde_json::to_string(&GruConfig::new(2).with_reset_after(false)).unwrap();
    assert_eq!(serde_json::from_str::<GruConfig>(&json).unwrap(), GruConfig::new(2).with_reset_after(false));
}
