//! [`Route::Split`]: stacks unrolled layer by layer and dropout wrappers unrolled as their
//! inner core between whole-sequence dropouts compute what the step loop computes (outputs,
//! final states, gradients of the inputs, the initial state and every variable); fresh
//! masks drop whole sequences with the step's distribution; the automatic choice splits
//! exactly the cores that can split.

mod compare;

use compare::{assert_close, probe, CPU};
use couplet_modules::{Error, Mode, Store};
use couplet_rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, unroll_route, BiRnnOptions, DropoutWrapper, DropoutWrapperConfig,
    Gru, GruConfig, Lstm, LstmConfig, ResidualWrapper, RnnCore, Route, StackedRnn, StackedRnnConfig, State,
    UnrollOptions,
};
use tch::{Kind, Tensor};

const B: i64 = 4;
const T: i64 = 6;
const I: i64 = 3;

fn lstm(store: &Store, hidden: i64) -> Box<dyn RnnCore> {
    Box::new(Lstm::new(&store.root(), LstmConfig::new(hidden)).unwrap())
}

fn dropout(store: &Store, core: Box<dyn RnnCore>, config: DropoutWrapperConfig) -> Box<dyn RnnCore> {
    Box::new(DropoutWrapper::new(&store.root(), core, config).unwrap())
}

fn stack(store: &Store, cores: Vec<Box<dyn RnnCore>>) -> Box<dyn RnnCore> {
    Box::new(StackedRnn::new(&store.root(), cores, StackedRnnConfig::new()).unwrap())
}

/// Every dropout rate above 0, fresh masks: the identity in evaluation only.
fn all_dropouts() -> DropoutWrapperConfig {
    DropoutWrapperConfig::new().with_input_dropout(0.3).with_state_dropout(0.4).with_output_dropout(0.2)
}

/// Variational input and output dropout, no state dropout: splits in training too, with the
/// masks carried in the state.
fn variational(input_size: i64) -> DropoutWrapperConfig {
    DropoutWrapperConfig::new()
        .with_input_dropout(0.3)
        .with_output_dropout(0.4)
        .with_variational(true)
        .with_input_size(input_size)
}

/// Outputs, final state leaves and every gradient of one unroll on `route`.
fn unroll(
    store: &Store,
    core: &dyn RnnCore,
    x: &Tensor,
    initial: &State,
    options: UnrollOptions,
    route: Route,
) -> Vec<Tensor> {
    let x = x.detach().set_requires_grad(true);
    let initial = initial.try_map(&mut |t| Ok(t.detach().set_requires_grad(true))).unwrap();
    let (outputs, state) =
        dynamic_rnn(core, &x, &options.with_initial_state(&initial).with_route(route)).unwrap();
    let mut loss = probe(&outputs);
    for leaf in state.leaves() {
        loss += probe(leaf);
    }
    loss.backward();
    let mut all = vec![outputs, x.grad()];
    all.extend(state.leaves().into_iter().map(Tensor::shallow_clone));
    all.extend(initial.leaves().into_iter().map(|t| t.grad()));
    for v in store.variables() {
        let mut g = v.tensor().grad();
        all.push(if g.defined() { g.copy() } else { Tensor::new() });
        if g.defined() {
            let _ = g.zero_();
        }
    }
    all
}

/// The automatic route is `Route::Split` and gives the step loop's numbers for every option.
fn check_split_matches_loop(name: &str, store: &Store, core: &dyn RnnCore, mode: Mode) {
    for (lengths, time_major) in [(None, false), (Some([2i64, T, 0, 4]), false), (Some([3, 1, 3, T]), true)] {
        let shape = if time_major { [T, B, I] } else { [B, T, I] };
        let x = Tensor::randn(shape, CPU);
        let mut options = UnrollOptions::new(mode).with_time_major(time_major);
        if let Some(l) = &lengths {
            options = options.with_lengths(&l[..]);
        }
        let what = format!("{name}, {mode:?}, lengths {lengths:?}, time_major {time_major}");
        assert_eq!(unroll_route(core, &x, &options).unwrap(), Route::Split, "{what}");
        // One initial state (with its variational masks) for both routes.
        let initial = core.initial_state(B).unwrap().try_map(&mut |t| Ok(t + 0.0)).unwrap();
        let split = unroll(store, core, &x, &initial, options, Route::Split);
        let looped = unroll(store, core, &x, &initial, options, Route::Loop);
        assert_eq!(split.len(), looped.len());
        for (k, (a, e)) in split.iter().zip(&looped).enumerate() {
            assert_close(&format!("{what}: tensor {k}"), a, e);
        }
    }
}

#[test]
fn any_dropout_wrapper_in_evaluation_splits_and_matches_the_loop() {
    let store = Store::cpu();
    let fresh = dropout(&store, lstm(&store, 5), all_dropouts());
    check_split_matches_loop("lstm, every dropout", &store, &*fresh, Mode::Eval);
    let store = Store::cpu();
    let gru = Box::new(Gru::new(&store.root(), GruConfig::new(4)).unwrap());
    let config = variational(I).with_state_dropout(0.5);
    let masked = dropout(&store, gru, config);
    check_split_matches_loop("gru, variational with state dropout", &store, &*masked, Mode::Eval);
}

#[test]
fn variational_wrappers_without_state_dropout_split_in_training_with_the_loop_numbers() {
    let store = Store::cpu();
    let wrapped = dropout(&store, lstm(&store, 5), variational(I));
    check_split_matches_loop("variational lstm", &store, &*wrapped, Mode::Train);
    // In a stack, over a GRU (which the loop runs) and under a plain LSTM (fused).
    let store = Store::cpu();
    let gru = Box::new(Gru::new(&store.root(), GruConfig::new(4)).unwrap());
    let layers = vec![dropout(&store, gru, variational(I)), lstm(&store, 5)];
    let stacked = stack(&store, layers);
    check_split_matches_loop("stack of a variational gru and an lstm", &store, &*stacked, Mode::Train);
}

#[test]
fn stacks_that_are_not_fused_run_layer_by_layer() {
    let store = Store::cpu();
    let gru = Box::new(Gru::new(&store.root(), GruConfig::new(4)).unwrap());
    let peepholes = Box::new(Lstm::new(&store.root(), LstmConfig::new(3).with_peepholes(true)).unwrap());
    let layers = vec![lstm(&store, 5), gru, peepholes];
    let stacked = stack(&store, layers);
    check_split_matches_loop("lstm, gru, peephole lstm", &store, &*stacked, Mode::Train);
}

#[test]
fn fresh_masks_drop_whole_sequences_with_the_step_distribution() {
    let store = Store::cpu();
    let config = DropoutWrapperConfig::new().with_output_dropout(0.5);
    let wrapper =
        DropoutWrapper::new(&store.root(), Lstm::new(&store.root(), LstmConfig::new(16)).unwrap(), config)
            .unwrap();
    let x = Tensor::randn([8, 20, I], CPU);
    let lengths = [20i64, 3, 0, 17, 20, 9, 11, 1];
    let options = UnrollOptions::train().with_lengths(&lengths[..]);
    assert_eq!(unroll_route(&wrapper, &x, &options).unwrap(), Route::Split);
    let (y, state) = dynamic_rnn(&wrapper, &x, &options).unwrap();
    let (inner, inner_state) = dynamic_rnn(wrapper.core(), &x, &options).unwrap();
    // Each output is dropped (0) or kept and scaled by 1 / 0.5; the state is never dropped.
    let kept = y.ne(0.0);
    let scaled = &inner * 2.0;
    assert_close("kept outputs", &y, &scaled.where_self(&kept, &y.zeros_like()));
    assert_close("h", state.h().unwrap(), inner_state.h().unwrap());
    // About half of the real (non-padded) outputs are kept: 16 · Σ len = 1296 draws (σ 1.4%).
    let real = inner.ne(0.0).to_kind(Kind::Float).sum(Kind::Float).double_value(&[]);
    let fraction = kept.to_kind(Kind::Float).sum(Kind::Float).double_value(&[]) / real;
    assert!((fraction - 0.5).abs() < 0.07, "kept {fraction}");
    // Two unrolls draw other masks.
    assert!(!y.equal(&dynamic_rnn(&wrapper, &x, &options).unwrap().0));
}

#[test]
fn state_dropout_in_training_keeps_the_loop_and_refuses_a_forced_split() {
    let x = Tensor::randn([B, T, I], CPU);
    let store = Store::cpu();
    let wrapped = dropout(&store, lstm(&store, 5), all_dropouts());
    assert_eq!(unroll_route(&wrapped, &x, &UnrollOptions::train()).unwrap(), Route::Loop);
    let plain = Lstm::new(&store.root(), LstmConfig::new(4)).unwrap();
    let skip = StackedRnn::new(
        &store.root(),
        vec![lstm(&store, 4), lstm(&store, 4)],
        StackedRnnConfig::new().with_skip_connections(true),
    )
    .unwrap();
    let cores: [(&dyn RnnCore, Mode); 3] =
        [(&*wrapped, Mode::Train), (&plain, Mode::Eval), (&skip, Mode::Eval)];
    for (core, mode) in cores {
        let options = UnrollOptions::new(mode).with_route(Route::Split);
        let e = dynamic_rnn(core, &x, &options).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let expected = format!(
            "dynamic_rnn: bad configuration: Route::Split needs a core that splits in {mode:?} mode \
             (RnnCore::split); {} does not",
            core.name()
        );
        assert_eq!(e.to_string(), expected);
    }
    // A plain stack still takes the fused route as a whole.
    let plain_stack = stack(&store, vec![lstm(&store, 4), lstm(&store, 4)]);
    assert_eq!(unroll_route(&plain_stack, &x, &UnrollOptions::train()).unwrap(), Route::Fused);
}

#[test]
fn bidirectional_unrolls_split_each_direction() {
    let store = Store::cpu();
    let fw = dropout(&store, lstm(&store, 4), variational(I));
    let bw = stack(&store, vec![dropout(&store, lstm(&store, 3), variational(I)), lstm(&store, 2)]);
    let x = Tensor::randn([B, T, I], CPU);
    let lengths = [5i64, T, 0, 2];
    let (fw_init, bw_init) = (fw.initial_state(B).unwrap(), bw.initial_state(B).unwrap());
    let run = |route: Option<Route>| {
        let mut options = BiRnnOptions::train()
            .with_lengths(&lengths[..])
            .with_fw_initial_state(&fw_init)
            .with_bw_initial_state(&bw_init);
        if let Some(route) = route {
            options = options.with_route(route);
        }
        bidirectional_dynamic_rnn(&fw, &bw, &x, &options).unwrap()
    };
    let (split, looped) = (run(None), run(Some(Route::Loop)));
    assert_close("fw outputs", &split.fw_outputs, &looped.fw_outputs);
    assert_close("bw outputs", &split.bw_outputs, &looped.bw_outputs);
    for (a, e) in split.bw_state.leaves().into_iter().zip(looped.bw_state.leaves()) {
        assert_close("bw state", a, e);
    }
}

#[test]
fn inputs_that_do_not_fit_a_variational_mask_are_typed_errors_on_the_split() {
    let store = Store::cpu();
    let wrapped = dropout(&store, lstm(&store, 5), variational(I));
    let x = Tensor::randn([B, T, I + 2], CPU);
    let options = UnrollOptions::train();
    assert_eq!(unroll_route(&*wrapped, &x, &options).unwrap(), Route::Split);
    let e = dynamic_rnn(&*wrapped, &x, &options).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: input must be [{B}, {I}] at every step (the shape of its variational mask), got [{B}, {}]",
            wrapped.name(),
            I + 2
        )
    );
}

fn residual(store: &Store, core: Box<dyn RnnCore>) -> Box<dyn RnnCore> {
    Box::new(ResidualWrapper::new(&store.root(), core).unwrap())
}

#[test]
fn residual_wrappers_split_and_match_the_loop() {
    let store = Store::cpu();
    let wrapped = residual(&store, lstm(&store, I));
    check_split_matches_loop("residual lstm", &store, &*wrapped, Mode::Train);
    // GNMT's shape: a plain bottom layer, then residual layers (one with variational dropout).
    let store = Store::cpu();
    let layers = vec![
        lstm(&store, 5),
        residual(&store, lstm(&store, 5)),
        residual(&store, dropout(&store, lstm(&store, 5), variational(5))),
    ];
    let stacked = stack(&store, layers);
    check_split_matches_loop("residual stack", &store, &*stacked, Mode::Train);
}

#[test]
fn residual_outputs_are_zero_past_each_length_whatever_the_padding_holds() {
    let store = Store::cpu();
    let wrapped = residual(&store, lstm(&store, I));
    let lengths = [2i64, T, 0, 4];
    let steps = couplet_rnn::sequence_mask(&lengths[..], Some(T)).unwrap();
    // NaN in every padded position: the step loop never reads them, nor may the split.
    let x = Tensor::randn([B, T, I], CPU).where_self(&steps.unsqueeze(-1), &Tensor::from(f32::NAN));
    let x = x.set_requires_grad(true);
    let options = UnrollOptions::train().with_lengths(&lengths[..]);
    assert_eq!(unroll_route(&*wrapped, &x, &options).unwrap(), Route::Split);
    let (y, _) = dynamic_rnn(&*wrapped, &x, &options).unwrap();
    let padded = steps.logical_not().unsqueeze(-1).expand_as(&y);
    assert_eq!(y.masked_select(&padded).abs().sum(Kind::Float).double_value(&[]), 0.0);
    y.sum(Kind::Float).backward();
    let grad = x.grad();
    assert_eq!(grad.masked_select(&padded).abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert!(bool::try_from(grad.isfinite().all()).unwrap());
    // The wrong input size is a typed error naming the wrapper and both sizes.
    let e = dynamic_rnn(&*wrapped, &Tensor::randn([B, T, I + 1], CPU), &options).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: inputs must be [.., {I}] (the core's output shape, as output = input + core output), got [{B}, {T}, {}]",
            wrapped.name(),
            I + 1
        )
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any lengths (zero, equal, unsorted, all `T`), either layout: a residual stack with a
    /// variational dropout layer gives the loop's outputs, final states and input gradients.
    #[test]
    fn split_stacks_match_the_loop_for_any_lengths(
        lengths in proptest::collection::vec(0i64..=5, 1..7),
        time_major in proptest::bool::ANY,
    ) {
        let store = Store::cpu();
        let layers = vec![
            residual(&store, lstm(&store, I)),
            dropout(&store, residual(&store, lstm(&store, I)), variational(I)),
            lstm(&store, 4),
        ];
        let core = stack(&store, layers);
        let batch = lengths.len() as i64;
        let shape = if time_major { [5, batch, I] } else { [batch, 5, I] };
        let x = Tensor::randn(shape, CPU);
        let initial = core.initial_state(batch).unwrap();
        let run = |route| {
            let x = x.detach().set_requires_grad(true);
            let options = UnrollOptions::train()
                .with_lengths(lengths.as_slice())
                .with_time_major(time_major)
                .with_initial_state(&initial)
                .with_route(route);
            let (y, state) = dynamic_rnn(&*core, &x, &options).unwrap();
            // `x · 0` keeps a graph when every length is 0 (the outputs are constant zeros).
            (probe(&y) + (&x * 0.0).sum(Kind::Float)).backward();
            let mut all = vec![y, x.grad()];
            all.extend(state.leaves().into_iter().map(Tensor::shallow_clone));
            all
        };
        let (split, looped) = (run(Route::Split), run(Route::Loop));
        for (k, (a, e)) in split.iter().zip(&looped).enumerate() {
            assert_close(&format!("lengths {lengths:?}, time_major {time_major}, tensor {k}"), a, e);
        }
    }
}
