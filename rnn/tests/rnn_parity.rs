//! Full-sequence parity with whole PyTorch modules: `torch.nn.LSTM`, `GRU` and `RNN` (tanh,
//! relu) with 1 and 2 layers, bidirectional, LSTM `proj_size`, and packed variable lengths
//! (`pack_padded_sequence(enforce_sorted=False)`), from `scripts/fixtures/rnn_parity.py`.
//! Outputs, `h_n`, `c_n` and the gradients of `Σ out ⊙ r_out + Σ h_n ⊙ r_h (+ Σ c_n ⊙ r_c)`
//! wrt the inputs, the initial state and every weight are compared twice:
//!
//! 1. with couplet's building blocks: one cell per layer and direction loaded with
//!    `load_torch(&sd, "_l{k}")` / `"_l{k}_reverse"`; unidirectional cases run a
//!    `StackedRnn` through `dynamic_rnn`; bidirectional cases run one
//!    `bidirectional_dynamic_rnn` per layer and feed the concatenated `[fw, bw]` outputs
//!    to the next layer, which is PyTorch's multi-layer bidirectional model. (A forward
//!    `StackedRnn` and a backward `StackedRnn` given to `bidirectional_dynamic_rnn` are a
//!    DIFFERENT model, where each direction's upper layers see only that direction; see
//!    `separate_direction_stacks_are_a_different_model`.) `h_n`/`c_n` go through
//!    `to_torch_layout` (`[L * D, B, H]`, index `layer * D + direction`);
//! 2. with `TorchRnn`, loaded from PyTorch's state-dict keys, and from a file written by
//!    `safetensors.torch.save_file(lstm.state_dict())`.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{assert_close, fixture_path, load_fixture, Fixture};
use couplet_modules::{checkpoint, Error, Mode, Module, Scope, Store};
use couplet_rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, from_torch_layout, to_torch_layout, BiRnnOptions, Gru, GruConfig,
    Lengths, Lstm, LstmConfig, Nonlinearity, RnnCore, StackedRnn, StackedRnnConfig, State, TorchRnn,
    TorchRnnConfig, TorchRnnKind, UnrollOptions, VanillaRnn, VanillaRnnConfig,
};
use tch::{Kind, Tensor};

const TOL: f64 = 1e-5;
const H: i64 = 5;
const CASES: [&str; 10] = [
    "lstm_l1",
    "lstm_l2_packed",
    "lstm_bi_l2_packed",
    "lstm_proj_l2",
    "lstm_proj_bi_l2_packed",
    "gru_l2_packed",
    "gru_bi_l2",
    "rnn_tanh_l1",
    "rnn_tanh_bi_l2_packed",
    "rnn_relu_l2_packed",
];

/// What a fixture case holds, read from its keys.
struct Case<'f> {
    f: &'f Fixture,
    name: &'static str,
    kind: TorchRnnKind,
    layers: i64,
    bidirectional: bool,
    proj: Option<i64>,
}

impl<'f> Case<'f> {
    fn new(f: &'f Fixture, name: &'static str) -> Self {
        let has = |k: &str| f.keys().contains(&format!("{name}.{k}"));
        let kind = if name.starts_with("lstm") {
            TorchRnnKind::Lstm
        } else if name.starts_with("gru") {
            TorchRnnKind::Gru
        } else if name.starts_with("rnn_relu") {
            TorchRnnKind::RnnRelu
        } else {
            TorchRnnKind::RnnTanh
        };
        let layers = (0..).take_while(|k| has(&format!("weight_ih_l{k}"))).count() as i64;
        let proj = has("weight_hr_l0").then(|| f.get(&format!("{name}.weight_hr_l0")).size()[0]);
        Case { f, name, kind, layers, bidirectional: has("weight_ih_l0_reverse"), proj }
    }

    fn has(&self, key: &str) -> bool {
        self.f.keys().contains(&format!("{}.{key}", self.name))
    }

    fn get(&self, key: &str) -> Tensor {
        self.f.get(&format!("{}.{key}", self.name))
    }

    fn directions(&self) -> i64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// The case's PyTorch state dict (its `weight_*` and `bias_*` tensors).
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let p = format!("{}.", self.name);
        self.f
            .keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&p).map(str::to_string))
            .filter(|k| (k.starts_with("weight_") || k.starts_with("bias_")) && !k.contains('.'))
            .map(|k| (k.clone(), self.get(&k)))
            .collect()
    }

    /// The PyTorch key suffixes `(layer, direction, suffix)` of every cell.
    fn suffixes(&self) -> Vec<(i64, i64, String)> {
        let mut out = Vec::new();
        for l in 0..self.layers {
            out.push((l, 0, format!("_l{l}")));
            if self.bidirectional {
                out.push((l, 1, format!("_l{l}_reverse")));
            }
        }
        out
    }

    fn lengths(&self) -> Option<Vec<i64>> {
        self.has("lengths").then(|| Vec::<i64>::try_from(&self.get("lengths")).unwrap())
    }

    fn config(&self) -> TorchRnnConfig {
        let mut c = TorchRnnConfig::new(self.kind, 4, H)
            .with_num_layers(self.layers)
            .with_bidirectional(self.bidirectional)
            .with_batch_first(true);
        c.proj_size = self.proj;
        c
    }
}

/// Leaves that require gradients: inputs and (when the case has one) the initial state.
struct Leaves {
    x: Tensor,
    h0: Option<Tensor>,
    c0: Option<Tensor>,
}

impl Leaves {
    fn new(case: &Case) -> Self {
        let leaf = |k: &str| case.has(k).then(|| case.get(k).copy().set_requires_grad(true));
        Leaves { x: leaf("x").unwrap(), h0: leaf("h0"), c0: leaf("c0") }
    }
}

/// Builds one cell of the case, loads it from the fixture and boxes it.
fn loaded_cell(scope: &Scope, case: &Case, suffix: &str) -> Box<dyn RnnCore> {
    let sd = case.state_dict();
    let name = format!("cell{suffix}");
    match case.kind {
        TorchRnnKind::Lstm => {
            let mut config = LstmConfig::new(H);
            config.proj_size = case.proj;
            let cell = Lstm::named(scope, &name, config).unwrap();
            cell.load_torch(&sd, suffix).unwrap();
            Box::new(cell)
        }
        TorchRnnKind::Gru => {
            let cell = Gru::named(scope, &name, GruConfig::new(H)).unwrap();
            cell.load_torch(&sd, suffix).unwrap();
            Box::new(cell)
        }
        TorchRnnKind::RnnTanh | TorchRnnKind::RnnRelu => {
            let act =
                if case.kind == TorchRnnKind::RnnRelu { Nonlinearity::Relu } else { Nonlinearity::Tanh };
            let cell =
                VanillaRnn::named(scope, &name, VanillaRnnConfig::new(H).with_activation(act)).unwrap();
            cell.load_torch(&sd, suffix).unwrap();
            Box::new(cell)
        }
    }
}

/// Runs the case with couplet's building blocks: `(outputs [B, T, D*P], h_n, c_n)`.
fn run_blocks(
    case: &Case,
    scope: &Scope,
    leaves: &Leaves,
    lengths: Option<&[i64]>,
) -> (Tensor, Tensor, Option<Tensor>) {
    let d = case.directions();
    let initial =
        leaves.h0.as_ref().map(|h0| from_torch_layout(h0, leaves.c0.as_ref(), case.layers, d).unwrap());
    let mut cells: Vec<Box<dyn RnnCore>> =
        case.suffixes().iter().map(|(_, _, s)| loaded_cell(scope, case, s)).collect();
    if !case.bidirectional {
        let stack = StackedRnn::new(scope, cells, StackedRnnConfig::new()).unwrap();
        let mut options = UnrollOptions::train();
        if let Some(l) = lengths {
            options = options.with_lengths(l);
        }
        if let Some(states) = &initial {
            options = options.with_initial_state(&states[0]);
        }
        let (out, state) = dynamic_rnn(&stack, &leaves.x, &options).unwrap();
        let (h_n, c_n) = to_torch_layout(&[&state]).unwrap();
        return (out, h_n, c_n);
    }
    let mut x = leaves.x.shallow_clone();
    let (mut fw_states, mut bw_states) = (Vec::new(), Vec::new());
    for layer in 0..case.layers as usize {
        let bw = cells.remove(1);
        let fw = cells.remove(0);
        let mut options = BiRnnOptions::train();
        if let Some(l) = lengths {
            options = options.with_lengths(l);
        }
        if let Some(states) = &initial {
            options = options
                .with_fw_initial_state(&states[0].as_tuple().unwrap()[layer])
                .with_bw_initial_state(&states[1].as_tuple().unwrap()[layer]);
        }
        let out = bidirectional_dynamic_rnn(&fw, &bw, &x, &options).unwrap();
        x = Tensor::cat(&[&out.fw_outputs, &out.bw_outputs], -1);
        fw_states.push(out.fw_state);
        bw_states.push(out.bw_state);
    }
    let (h_n, c_n) = to_torch_layout(&[&State::Tuple(fw_states), &State::Tuple(bw_states)]).unwrap();
    (x, h_n, c_n)
}

/// Backpropagates the fixture's loss and compares values and gradients; `var` maps a
/// PyTorch key suffix and weight name to couplet's variable name.
fn check(
    case: &Case,
    store: &Store,
    leaves: &Leaves,
    result: (Tensor, Tensor, Option<Tensor>),
    var: &dyn Fn(&str, &str) -> String,
) {
    let (out, h_n, c_n) = result;
    let ctx = case.name;
    assert_close(&out, &case.get("out"), TOL);
    assert_close(&h_n, &case.get("h_n"), TOL);
    let mut loss = (&out * case.get("r_out")).sum(Kind::Float) + (&h_n * case.get("r_h")).sum(Kind::Float);
    match (&c_n, case.kind) {
        (Some(c_n), TorchRnnKind::Lstm) => {
            assert_close(c_n, &case.get("c_n"), TOL);
            loss += (c_n * case.get("r_c")).sum(Kind::Float);
        }
        (None, TorchRnnKind::Gru | TorchRnnKind::RnnTanh | TorchRnnKind::RnnRelu) => {}
        _ => panic!("{ctx}: c_n only for LSTM"),
    }
    loss.backward();
    assert_close(&leaves.x.grad(), &case.get("grad.x"), TOL);
    for (leaf, name) in [(&leaves.h0, "h0"), (&leaves.c0, "c0")] {
        if let Some(t) = leaf {
            assert_close(&t.grad(), &case.get(&format!("grad.{name}")), TOL);
        }
    }
    let mut weights = 0;
    for (_, _, suffix) in case.suffixes() {
        for name in ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"] {
            if !case.has(&format!("{name}{suffix}")) {
                continue;
            }
            let v =
                store.get(&var(&suffix, name)).unwrap_or_else(|| panic!("{ctx}: no {}", var(&suffix, name)));
            assert_close(&v.tensor().grad(), &case.get(&format!("grad.{name}{suffix}")), TOL);
            weights += 1;
        }
    }
    assert_eq!(weights, case.state_dict().len(), "{ctx}: every weight's gradient is checked");
}

#[test]
fn building_blocks_reproduce_whole_pytorch_modules() {
    let f = load_fixture("rnn_parity");
    for name in CASES {
        let case = Case::new(&f, name);
        let store = Store::cpu();
        let leaves = Leaves::new(&case);
        let lengths = case.lengths();
        let result = run_blocks(&case, &store.root(), &leaves, lengths.as_deref());
        check(&case, &store, &leaves, result, &|suffix, n| format!("cell{suffix}/{n}"));
    }
}

#[test]
fn torch_rnn_reproduces_whole_pytorch_modules() {
    let f = load_fixture("rnn_parity");
    for name in CASES {
        let case = Case::new(&f, name);
        let store = Store::cpu();
        let rnn = TorchRnn::new(&store.root(), case.config()).unwrap();
        rnn.load_torch(&case.state_dict()).unwrap();
        let leaves = Leaves::new(&case);
        let lengths = case.has("lengths").then(|| case.get("lengths"));
        let initial = leaves.h0.as_ref().map(|h0| (h0, leaves.c0.as_ref()));
        let result =
            rnn.forward_t(&leaves.x, lengths.as_ref().map(Lengths::from), initial, Mode::Train).unwrap();
        let scope = rnn.name().to_string();
        check(&case, &store, &leaves, result, &|suffix, n| format!("{scope}/{}/{n}", &suffix[1..]));

        // Time-major (PyTorch's default layout) gives the same numbers.
        let tm = TorchRnn::new(&store.root(), case.config().with_batch_first(false)).unwrap();
        tm.load_torch(&rnn.torch_state_dict().unwrap()).unwrap();
        let (out, h_n, _) = tm
            .forward_t(&leaves.x.transpose(0, 1), lengths.as_ref().map(Lengths::from), initial, Mode::Eval)
            .unwrap();
        assert_close(&out.transpose(0, 1), &case.get("out"), TOL);
        assert_close(&h_n, &case.get("h_n"), TOL);
    }
}

/// PyTorch refuses zero lengths; couplet accepts them. Rows are independent, so with row 1's
/// length set to 0 rows 0 and 2 must still match PyTorch, while row 1 gives zero outputs and
/// returns its initial state as `h_n`/`c_n` in every layer and direction.
#[test]
fn a_zero_length_row_gives_zeros_and_its_initial_state() {
    let f = load_fixture("rnn_parity");
    for name in ["lstm_bi_l2_packed", "rnn_relu_l2_packed"] {
        let case = Case::new(&f, name);
        let leaves = Leaves::new(&case);
        let mut lengths = case.lengths().unwrap();
        lengths[1] = 0;
        let store = Store::cpu();
        let (out, h_n, c_n) = run_blocks(&case, &store.root(), &leaves, Some(&lengths));
        let rnn = TorchRnn::new(&store.root(), case.config()).unwrap();
        rnn.load_torch(&case.state_dict()).unwrap();
        let initial = leaves.h0.as_ref().map(|h0| (h0, leaves.c0.as_ref()));
        let torch = rnn.forward_t(&leaves.x, Some((&lengths).into()), initial, Mode::Eval).unwrap();
        for (out, h_n, c_n) in [(out, h_n, c_n), torch] {
            let rows = Tensor::from_slice(&[0i64, 2]);
            assert_close(&out.index_select(0, &rows), &case.get("out").index_select(0, &rows), TOL);
            assert_close(&h_n.index_select(1, &rows), &case.get("h_n").index_select(1, &rows), TOL);
            assert_eq!(out.get(1).abs().max().double_value(&[]), 0.0, "{name}: zero outputs");
            let zeros = || Tensor::zeros_like(&h_n.select(1, 1));
            let h0 = leaves.h0.as_ref().map_or_else(zeros, |h0| h0.select(1, 1));
            assert!(h_n.select(1, 1).equal(&h0), "{name}: h_n is the initial state");
            if let Some(c_n) = c_n {
                assert_close(&c_n.index_select(1, &rows), &case.get("c_n").index_select(1, &rows), TOL);
                assert!(c_n.select(1, 1).equal(&leaves.c0.as_ref().unwrap().select(1, 1)));
            }
        }
    }
}

/// `bidirectional_dynamic_rnn` over a forward `StackedRnn` and a backward `StackedRnn` is
/// TF's `stack_bidirectional_dynamic_rnn`-without-re-feeding: layer 1 of each stack reads
/// only its own direction's layer 0 (`[B, 5]`), while PyTorch's layer 1 reads both
/// (`weight_ih_l1 [20, 10]`). PyTorch's weights do not even fit that model.
#[test]
fn separate_direction_stacks_are_a_different_model() {
    let f = load_fixture("rnn_parity");
    let case = Case::new(&f, "lstm_bi_l2_packed");
    let store = Store::cpu();
    let root = store.root();
    let stack = |direction: &str| {
        let cells = vec![
            loaded_cell(&root, &case, &format!("_l0{direction}")),
            loaded_cell(&root, &case, &format!("_l1{direction}")),
        ];
        StackedRnn::new(&root, cells, StackedRnnConfig::new()).unwrap()
    };
    let (fw, bw) = (stack(""), stack("_reverse"));
    let e = bidirectional_dynamic_rnn(&fw, &bw, &case.get("x"), &BiRnnOptions::eval()).unwrap_err();
    // The stacks run layer by layer (`Route::Split`): layer 1 projects all its inputs at once,
    // layer 0's outputs `[B, T, 5]` (no longer their internal time-major `[T, B, 5]`).
    assert_eq!(e.to_string(), "cell_l1: inputs must be [.., 10], got [3, 6, 5]");
}

#[test]
fn torch_rnn_loads_a_python_safetensors_state_dict_and_writes_one_back() {
    let f = load_fixture("rnn_parity");
    let case = Case::new(&f, "lstm_proj_bi_l2_packed");
    let store = Store::cpu();
    let lstm = TorchRnn::new(&store.root(), case.config()).unwrap();
    let path = fixture_path("rnn_parity_lstm_state_dict");
    let file = checkpoint::load(&path).unwrap();
    assert_eq!(file.len(), 20, "PyTorch's own keys, nothing else");
    lstm.load_torch_file(&path).unwrap();
    let lengths = case.get("lengths");
    let (out, h_n, c_n) = lstm
        .forward_t(
            &case.get("x"),
            Some((&lengths).into()),
            Some((&case.get("h0"), Some(&case.get("c0")))),
            Mode::Eval,
        )
        .unwrap();
    assert_close(&out, &case.get("out"), TOL);
    assert_close(&h_n, &case.get("h_n"), TOL);
    assert_close(&c_n.unwrap(), &case.get("c_n"), TOL);

    // Export, then import into a fresh module: the same file content as Python's.
    let dir = std::env::temp_dir().join(format!("couplet-rnn-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join("lstm.safetensors");
    lstm.save_torch_file(&out_path).unwrap();
    let written = checkpoint::load(&out_path).unwrap();
    assert_eq!(written.keys().collect::<Vec<_>>(), file.keys().collect::<Vec<_>>());
    for (k, v) in &file {
        assert!(written[k].equal(v), "{k}");
    }
    let fresh = TorchRnn::new(&store.root(), case.config()).unwrap();
    fresh.load_torch_file(&out_path).unwrap();

    // A file for another module is refused with every difference listed.
    let gru = TorchRnn::new(&store.root(), TorchRnnConfig::gru(4, H)).unwrap();
    let e = gru.load_torch_file(&out_path).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
    let msg = e.to_string();
    assert!(msg.starts_with("gru_layers: load_torch: unexpected keys [\"bias_hh_l0_reverse\""), "{msg}");
    assert!(msg.contains("shape mismatches [weight_ih_l0 must be [15, 4], got [20, 4]"), "{msg}");
    let e = gru.load_torch_file(dir.join("missing.safetensors")).unwrap_err();
    assert!(matches!(e, Error::Checkpoint { .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
