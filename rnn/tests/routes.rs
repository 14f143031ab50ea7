//! Every route of `dynamic_rnn` / `bidirectional_dynamic_rnn` computes what the step loop
//! computes: outputs, final states and the gradients with respect to the inputs, the
//! initial state and every variable, for plain cores of every kind, with and without
//! lengths; and the automatic choice takes the fused route where it should.

mod compare;

use compare::{assert_close, probe, CPU};
use couplet_modules::{Error, Mode, Module, Store};
use couplet_rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, unroll_route, BiRnnOptions, Gru, GruConfig, Lstm, LstmConfig,
    Nonlinearity, RnnCore, Route, StackedRnn, StackedRnnConfig, State, StateSize, TorchCellWeights,
    UnrollOptions, VanillaRnn, VanillaRnnConfig,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{Kind, Tensor};

const B: i64 = 4;
const T: i64 = 6;
const I: i64 = 3;

/// A core and the store holding its variables.
struct Subject {
    store: Store,
    core: Box<dyn RnnCore>,
}

fn lstm(config: LstmConfig) -> Subject {
    let store = Store::cpu();
    let core = Box::new(Lstm::new(&store.root(), config).unwrap());
    Subject { store, core }
}

fn gru() -> Subject {
    let store = Store::cpu();
    let core = Box::new(Gru::new(&store.root(), GruConfig::new(5)).unwrap());
    Subject { store, core }
}

fn vanilla(activation: Nonlinearity) -> Subject {
    let store = Store::cpu();
    let config = VanillaRnnConfig::new(5).with_activation(activation);
    let core = Box::new(VanillaRnn::new(&store.root(), config).unwrap());
    Subject { store, core }
}

fn stack(make: &dyn Fn(&Store, usize) -> Box<dyn RnnCore>, layers: usize) -> Subject {
    let store = Store::cpu();
    let cores = (0..layers).map(|k| make(&store, k)).collect();
    let core = Box::new(StackedRnn::new(&store.root(), cores, StackedRnnConfig::new()).unwrap());
    Subject { store, core }
}

fn subjects() -> Vec<(&'static str, Subject)> {
    let lstm_layer = |s: &Store, k: usize| -> Box<dyn RnnCore> {
        Box::new(Lstm::new(&s.root(), LstmConfig::new(4 + k as i64)).unwrap())
    };
    let gru_layer =
        |s: &Store, _| -> Box<dyn RnnCore> { Box::new(Gru::new(&s.root(), GruConfig::new(4)).unwrap()) };
    let mixed = |s: &Store, k: usize| -> Box<dyn RnnCore> {
        if k == 0 {
            Box::new(Lstm::new(&s.root(), LstmConfig::new(5).with_proj_size(2)).unwrap())
        } else {
            let config = VanillaRnnConfig::new(3).with_activation(Nonlinearity::Relu);
            Box::new(VanillaRnn::new(&s.root(), config).unwrap())
        }
    };
    vec![
        ("lstm", lstm(LstmConfig::new(5))),
        ("lstm proj", lstm(LstmConfig::new(5).with_proj_size(3))),
        ("lstm no bias, learned initial state", {
            lstm(LstmConfig::new(5).with_bias(false).with_trainable_initial_state(true))
        }),
        ("gru", gru()),
        ("rnn tanh", vanilla(Nonlinearity::Tanh)),
        ("rnn relu", vanilla(Nonlinearity::Relu)),
        ("1-layer lstm stack", stack(&lstm_layer, 1)),
        ("2-layer lstm stack", stack(&lstm_layer, 2)),
        ("2-layer gru stack", stack(&gru_layer, 2)),
        ("lstm proj + relu stack", stack(&mixed, 2)),
    ]
}

/// The unroll's results and every gradient of a fixed random loss of them.
struct Run {
    outputs: Tensor,
    state: Vec<Tensor>,
    grads: Vec<(String, Tensor)>,
}

/// The options of one comparison.
#[derive(Clone)]
struct Case {
    lengths: Option<Vec<i64>>,
    time_major: bool,
    mode: Mode,
    initial: bool,
}

fn leaves_with_grad(size: &StateSize) -> State {
    let state = State::zeros(size, B, CPU).unwrap();
    state.try_map(&mut |t| Ok(t.randn_like().set_requires_grad(true))).unwrap()
}

fn unroll(s: &Subject, x: &Tensor, init: Option<&State>, case: &Case, route: Option<Route>) -> Run {
    let x = x.detach().set_requires_grad(true);
    let mut options = UnrollOptions::new(case.mode).with_time_major(case.time_major);
    if let Some(l) = &case.lengths {
        options = options.with_lengths(l.as_slice());
    }
    if let Some(init) = init {
        options = options.with_initial_state(init);
    }
    if let Some(route) = route {
        options = options.with_route(route);
    }
    let (outputs, state) = dynamic_rnn(&*s.core, &x, &options).unwrap();
    let leaves: Vec<Tensor> = state.leaves().into_iter().map(Tensor::shallow_clone).collect();
    let mut loss = probe(&outputs);
    for leaf in &leaves {
        loss += probe(leaf);
    }
    loss.backward();
    let mut grads = vec![("inputs".to_string(), x.grad())];
    if let Some(init) = init {
        for (k, leaf) in init.leaves().into_iter().enumerate() {
            grads.push((format!("initial leaf {k}"), leaf.grad().copy()));
            let _ = leaf.grad().zero_();
        }
    }
    for v in s.store.variables() {
        let mut g = v.tensor().grad();
        grads.push((v.name().to_string(), if g.defined() { g.copy() } else { Tensor::new() }));
        if g.defined() {
            let _ = g.zero_();
        }
    }
    Run { outputs, state: leaves, grads }
}

fn compare(name: &str, s: &Subject, case: &Case) {
    let shape = if case.time_major { [T, B, I] } else { [B, T, I] };
    let x = Tensor::randn(shape, CPU);
    let init = case.initial.then(|| leaves_with_grad(&s.core.state_size()));
    let looped = unroll(s, &x, init.as_ref(), case, Some(Route::Loop));
    for route in [Route::Fused, Route::Padded] {
        let fused = unroll(s, &x, init.as_ref(), case, Some(route));
        let what = format!(
            "{name}, {route:?}, lengths {:?}, time_major {}, {:?}",
            case.lengths, case.time_major, case.mode
        );
        assert_close(&format!("{what}: outputs"), &fused.outputs, &looped.outputs);
        assert_eq!(fused.state.len(), looped.state.len());
        for (k, (a, e)) in fused.state.iter().zip(&looped.state).enumerate() {
            assert_close(&format!("{what}: state leaf {k}"), a, e);
        }
        assert_eq!(fused.grads.len(), looped.grads.len());
        for ((n, a), (_, e)) in fused.grads.iter().zip(&looped.grads) {
            assert_close(&format!("{what}: gradient of {n}"), a, e);
        }
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for lengths in [None, Some(vec![T; B as usize]), Some(vec![2, T, 0, 4]), Some(vec![3, 3, 1, 3])] {
        for (time_major, mode, initial) in
            [(false, Mode::Train, false), (true, Mode::Eval, true), (false, Mode::Eval, true)]
        {
            cases.push(Case { lengths: lengths.clone(), time_major, mode, initial });
        }
    }
    cases
}

#[test]
fn fused_routes_match_the_step_loop_for_every_plain_core() {
    for (name, s) in subjects() {
        for case in cases() {
            compare(name, &s, &case);
        }
    }
}

/// The padded route carries an LSTM's cell state through the padding by saturating its
/// gates; weights far larger than an initialisation's (pre-activations in the hundreds)
/// must saturate them too.
#[test]
fn padded_route_is_exact_with_large_weights() {
    // Input sizes given, so that the variables exist before the unroll and can be scaled.
    let s = stack(
        &|s, k| {
            let input = if k == 0 { I } else { 4 };
            let config = LstmConfig::new(4 + k as i64).with_input_size(input);
            Box::new(Lstm::new(&s.root(), config).unwrap()) as Box<dyn RnnCore>
        },
        2,
    );
    assert!(!s.store.variables().is_empty());
    tch::no_grad(|| {
        for v in s.store.variables() {
            let _ = v.tensor().shallow_clone().g_mul_scalar_(15.0);
        }
    });
    let case = Case { lengths: Some(vec![2, T, 0, 4]), time_major: false, mode: Mode::Train, initial: true };
    compare("2-layer lstm stack, weights × 15", &s, &case);
}

#[test]
fn bidirectional_fused_matches_the_step_loop() {
    let fw = stack(
        &|s, k| Box::new(Lstm::new(&s.root(), LstmConfig::new(3 + k as i64)).unwrap()) as Box<dyn RnnCore>,
        2,
    );
    let bw_store = &fw.store;
    let bw = Lstm::new(&bw_store.root(), LstmConfig::new(2)).unwrap();
    let x = Tensor::randn([B, T, I], CPU);
    for lengths in [None, Some(vec![5i64, 0, T, 2])] {
        let run = |route| {
            let x = x.detach().set_requires_grad(true);
            let mut options = BiRnnOptions::train().with_route(route);
            if let Some(l) = &lengths {
                options = options.with_lengths(l.as_slice());
            }
            let out = bidirectional_dynamic_rnn(&*fw.core, &bw, &x, &options).unwrap();
            let mut loss = probe(&out.fw_outputs) + probe(&out.bw_outputs);
            for leaf in out.fw_state.leaves().into_iter().chain(out.bw_state.leaves()) {
                loss += probe(leaf);
            }
            loss.backward();
            let mut all = vec![out.fw_outputs, out.bw_outputs, x.grad()];
            all.extend(out.fw_state.leaves().into_iter().chain(out.bw_state.leaves()).map(|t| t.copy()));
            for v in fw.store.variables() {
                let mut g = v.tensor().grad();
                all.push(g.copy());
                let _ = g.zero_();
            }
            all
        };
        let looped = run(Route::Loop);
        for route in [Route::Fused, Route::Padded] {
            let fused = run(route);
            assert_eq!(fused.len(), looped.len());
            for (k, (a, e)) in fused.iter().zip(&looped).enumerate() {
                assert_close(&format!("{route:?}, lengths {lengths:?}, tensor {k}"), a, e);
            }
        }
    }
}

/// Delegates to an LSTM and counts the steps the unroll asks for.
struct Counted {
    inner: Lstm,
    steps: AtomicUsize,
}

impl Module for Counted {
    fn scope(&self) -> &couplet_modules::Scope {
        self.inner.scope()
    }
}

impl RnnCore for Counted {
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> couplet_modules::Result<(Tensor, State)> {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.inner.step(input, state, mode)
    }
    fn output_shape(&self) -> Vec<i64> {
        self.inner.output_shape()
    }
    fn state_size(&self) -> StateSize {
        self.inner.state_size()
    }
    fn torch_layers(&self, input_size: i64) -> couplet_modules::Result<Option<Vec<TorchCellWeights>>> {
        self.inner.torch_layers(input_size)
    }
}

#[test]
fn plain_lstms_take_the_fused_route_and_never_step() {
    let store = Store::cpu();
    let core = Counted { inner: Lstm::new(&store.root(), LstmConfig::new(4)).unwrap(), steps: 0.into() };
    let x = Tensor::randn([B, T, I], CPU);
    let lengths = [2i64, T, 0, 4];
    // With these lengths the padded batch (24 row-steps) costs less than three segments.
    for (options, want) in [
        (UnrollOptions::train(), Route::Fused),
        (UnrollOptions::eval().with_lengths(&lengths[..]), Route::Padded),
    ] {
        assert_eq!(unroll_route(&core, &x, &options).unwrap(), want);
        let (outputs, _) = dynamic_rnn(&core, &x, &options).unwrap();
        // Batch-major outputs are the kernel's transposed view (no copy), as PyTorch's;
        // `reshape` reads them in order.
        assert!(!outputs.is_contiguous());
        assert_eq!(outputs.reshape([-1, 4]).size(), [B * T, 4]);
        assert_eq!(core.steps.load(Ordering::Relaxed), 0, "the fused route never steps the core");
    }
    let options = UnrollOptions::train().with_route(Route::Loop);
    assert_eq!(unroll_route(&core, &x, &options).unwrap(), Route::Loop);
    let _ = dynamic_rnn(&core, &x, &options).unwrap();
    assert_eq!(core.steps.load(Ordering::Relaxed), T as usize);
}

#[test]
fn cores_that_are_not_plain_take_the_loop_and_refuse_a_forced_fused_route() {
    let x = Tensor::randn([B, T, I], CPU);
    let store = Store::cpu();
    let root = store.root();
    let peepholes = Lstm::new(&root, LstmConfig::new(4).with_peepholes(true)).unwrap();
    let ln = Lstm::new(&root, LstmConfig::new(4).with_layer_norm(true)).unwrap();
    let clipped = Lstm::new(&root, LstmConfig::new(4).with_cell_clip(1.0)).unwrap();
    let tf_gru = Gru::new(&root, GruConfig::new(4).with_reset_after(false)).unwrap();
    let skip = StackedRnn::new(
        &root,
        vec![
            Box::new(Lstm::new(&root, LstmConfig::new(4)).unwrap()),
            Box::new(Lstm::new(&root, LstmConfig::new(4)).unwrap()),
        ],
        StackedRnnConfig::new().with_skip_connections(true),
    )
    .unwrap();
    let cores: [&dyn RnnCore; 5] = [&peepholes, &ln, &clipped, &tf_gru, &skip];
    for core in cores {
        assert_eq!(unroll_route(core, &x, &UnrollOptions::train()).unwrap(), Route::Loop, "{}", core.name());
        for route in [Route::Fused, Route::Padded] {
            let e = dynamic_rnn(core, &x, &UnrollOptions::train().with_route(route)).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            let start = format!("dynamic_rnn: bad configuration: Route::{route:?} needs a plain core");
            assert!(e.to_string().starts_with(&start), "{e}");
        }
    }
    // Inputs of another kind than the weights: the loop reports the error.
    let plain = Lstm::new(&root, LstmConfig::new(4).with_input_size(I)).unwrap();
    let doubles = x.to_kind(Kind::Double);
    assert_eq!(unroll_route(&plain, &doubles, &UnrollOptions::train()).unwrap(), Route::Loop);
    let e = dynamic_rnn(&plain, &doubles, &UnrollOptions::train()).unwrap_err();
    assert!(e.to_string().contains("kind must be Float"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any lengths (zero, equal, unsorted, all `T`): the segments of the fused route give the
    /// loop's outputs, final states and input gradients.
    #[test]
    fn fused_segments_match_the_loop_for_any_lengths(
        lengths in proptest::collection::vec(0i64..=5, 1..7),
        time_major in proptest::bool::ANY,
    ) {
        let s = stack(
            &|s, k| Box::new(Lstm::new(&s.root(), LstmConfig::new(3 + k as i64)).unwrap()) as Box<dyn RnnCore>,
            2,
        );
        let batch = lengths.len() as i64;
        let shape = if time_major { [5, batch, I] } else { [batch, 5, I] };
        let x = Tensor::randn(shape, CPU);
        let run = |route| {
            let x = x.detach().set_requires_grad(true);
            let options = UnrollOptions::train()
                .with_lengths(lengths.as_slice())
                .with_time_major(time_major)
                .with_route(route);
            let (y, state) = dynamic_rnn(&*s.core, &x, &options).unwrap();
            // `x · 0` keeps a graph when every length is 0 (the outputs are constant zeros).
            let loss = (&y * Tensor::ones_like(&y).cumsum(0, Kind::Float)).sum(Kind::Float);
            (loss + (&x * 0.0).sum(Kind::Float)).backward();
            let mut all = vec![y, x.grad()];
            all.extend(state.leaves().into_iter().map(Tensor::shallow_clone));
            all
        };
        let looped = run(Route::Loop);
        for route in [Route::Fused, Route::Padded] {
            for (k, (a, e)) in run(route).iter().zip(&looped).enumerate() {
                assert_close(&format!("{route:?}, lengths {lengths:?}, tensor {k}"), a, e);
            }
        }
    }
}

#[test]
fn automatic_choice_follows_the_measurements() {
    let x = Tensor::randn([B, T, I], CPU);
    let lengths = [3i64, 0, T, 1];
    let lstm_layer =
        |s: &Store, _| -> Box<dyn RnnCore> { Box::new(Lstm::new(&s.root(), LstmConfig::new(4)).unwrap()) };
    let expectations = [
        ("lstm stack", stack(&lstm_layer, 2), Route::Fused),
        ("lstm", lstm(LstmConfig::new(4).with_trainable_initial_state(true)), Route::Fused),
        ("lstm proj", lstm(LstmConfig::new(4).with_proj_size(2)), Route::Loop),
        ("gru", gru(), Route::Loop),
        ("rnn", vanilla(Nonlinearity::Tanh), Route::Loop),
    ];
    for (name, s, want) in &expectations {
        // With lengths, the padded batch (24 row-steps) costs less than 3 segments.
        let with_lengths = if *want == Route::Fused { Route::Padded } else { *want };
        for (options, want) in [
            (UnrollOptions::eval(), *want),
            (UnrollOptions::train().with_lengths(&lengths[..]), with_lengths),
        ] {
            // `Box<dyn RnnCore>` forwards `torch_layers`. The variables require gradients.
            assert_eq!(unroll_route(&s.core, &x, &options).unwrap(), want, "{name}");
        }
    }
    // One long row and 63 short ones: 2 segments over 415 row-steps beat 6 400 padded ones;
    // 64 rows of lengths 37..=100 (64 segments over 4 384 row-steps) do not.
    let s = &expectations[1].1;
    let wide = Tensor::randn([64, 100, I], CPU);
    let one_long: Vec<i64> = (0..64).map(|b| if b == 0 { 100 } else { 5 }).collect();
    let spread: Vec<i64> = (37..=100).collect();
    for (lengths, want) in [(&one_long, Route::Fused), (&spread, Route::Padded)] {
        let options = UnrollOptions::train().with_lengths(lengths.as_slice());
        assert_eq!(unroll_route(&s.core, &wide, &options).unwrap(), want, "{lengths:?}");
    }
    // Inference (under `no_grad`, or with no tensor requiring a gradient) at fixed lengths:
    // libtorch's GRU and projected-LSTM loops; with lengths, or vanilla cores, couplet's.
    let fixed = [Route::Fused, Route::Fused, Route::Fused, Route::Fused, Route::Loop];
    let varying = [Route::Padded, Route::Padded, Route::Loop, Route::Loop, Route::Loop];
    for (((name, s, _), fixed), varying) in expectations.iter().zip(fixed).zip(varying) {
        let route = |options: &UnrollOptions| tch::no_grad(|| unroll_route(&s.core, &x, options).unwrap());
        assert_eq!(route(&UnrollOptions::eval()), fixed, "{name}");
        assert_eq!(route(&UnrollOptions::eval().with_lengths(&lengths[..])), varying, "{name}");
    }
    // Outside `no_grad`: inference when nothing requires a gradient.
    let frozen = gru();
    assert_eq!(unroll_route(&frozen.core, &x, &UnrollOptions::eval()).unwrap(), Route::Loop);
    for v in frozen.store.variables() {
        let _ = v.tensor().shallow_clone().set_requires_grad(false);
    }
    assert_eq!(unroll_route(&frozen.core, &x, &UnrollOptions::eval()).unwrap(), Route::Fused);
    let x_grad = x.detach().set_requires_grad(true);
    assert_eq!(unroll_route(&frozen.core, &x_grad, &UnrollOptions::eval()).unwrap(), Route::Loop);
}
