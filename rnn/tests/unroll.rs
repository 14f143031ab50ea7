//! `dynamic_rnn` and `bidirectional_dynamic_rnn` against hand-worked unrolls of tiny cores.

mod cores;

use cores::{Accumulator, Counter, Projected, Unprojected};
use couplet_modules::{Error, Mode, Store};
use couplet_rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, BiRnnOptions, Lstm, LstmConfig, MergeMode, Merged, RnnCore,
    Route, State, UnrollOptions,
};
use proptest::prelude::*;
use tch::{Device, Kind, Tensor};

fn t(values: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values).view(shape)
}

fn floats(x: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(x.flatten(0, -1).to_kind(Kind::Float)).unwrap()
}

fn leaf(state: &State) -> Vec<f32> {
    floats(state.h().unwrap())
}

#[track_caller]
fn assert_close(a: &Tensor, e: &Tensor) {
    assert_eq!(a.size(), e.size());
    assert!(a.allclose(e, 1e-6, 1e-6, false), "{a}\n!=\n{e}");
}

#[test]
fn errors_of_a_built_lazy_core_name_the_users_input_shape() {
    let store = Store::cpu();
    let lstm = Lstm::new(&store.root(), LstmConfig::new(2)).unwrap();
    let built =
        dynamic_rnn(&lstm, &Tensor::zeros([2, 4, 3], (Kind::Float, Device::Cpu)), &UnrollOptions::eval());
    assert_eq!(built.unwrap().0.size(), [2, 4, 2]);
    let x = Tensor::zeros([2, 4, 6], (Kind::Float, Device::Cpu));
    // The projection used to see the time-major [4, 2, 6] (or the packed [6, 6] with lengths).
    for options in [UnrollOptions::eval(), UnrollOptions::eval().with_lengths(&[4i64, 2])] {
        let e = dynamic_rnn(&lstm, &x, &options.with_route(Route::Loop)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert_eq!(e.to_string(), "lstm: inputs must be [.., 3], got [2, 4, 6]");
    }
    // A core without projection reports its step's expectation, with the user's shape.
    let unprojected = Unprojected(lstm);
    let e = dynamic_rnn(&unprojected, &x, &UnrollOptions::eval().with_lengths(&[4i64, 2])).unwrap_err();
    assert_eq!(e.to_string(), "lstm: inputs must be [B, 3] at each step, got [2, 4, 6]");
}

/// Rows `[1, 2, 3, 4]` (length 2), `[1, 1, 1, 1]` (length 4), `[5, 5, 5, 5]` (length 0).
fn three_rows() -> Tensor {
    t(&[1., 2., 3., 4., 1., 1., 1., 1., 5., 5., 5., 5.], &[3, 4, 1])
}

#[test]
fn padded_steps_give_zero_outputs_and_carry_the_state() {
    let core = Accumulator::new(1);
    let init = State::Tensor(t(&[10., 20., 30.], &[3, 1]));
    let lengths = [2i64, 4, 0];
    let options = UnrollOptions::train().with_lengths(&lengths).with_initial_state(&init);
    let (out, state) = dynamic_rnn(&core, &three_rows(), &options).unwrap();
    assert_eq!(out.size(), [3, 4, 1]);
    // Row 0: s = 11, 13 then carried; row 1: s = 21..24; row 2 (length 0): the initial state.
    assert_eq!(floats(&out), [22., 26., 0., 0., 42., 44., 46., 48., 0., 0., 0., 0.]);
    assert_eq!(leaf(&state), [13., 24., 30.]);
    // Rows sorted by length [4, 2, 0]: steps 0-1 run two rows, steps 2-3 only the longest.
    assert_eq!(core.log.rows(), [2, 2, 1, 1]);
    assert_eq!(core.log.modes(), [Mode::Train; 4]);
}

#[test]
fn without_lengths_every_row_runs_every_step() {
    let core = Accumulator::new(1);
    let (out, state) = dynamic_rnn(&core, &three_rows(), &UnrollOptions::eval()).unwrap();
    assert_eq!(floats(&out), [2., 6., 12., 20., 2., 4., 6., 8., 10., 20., 30., 40.]);
    assert_eq!(leaf(&state), [10., 4., 20.]);
    assert_eq!(core.log.rows(), [3; 4]);
    assert_eq!(core.log.modes(), [Mode::Eval; 4]);
}

#[test]
fn tensor_lengths_on_any_form_match_slices() {
    let core = Accumulator::new(1);
    let x = three_rows();
    let lengths = Tensor::from_slice(&[2i64, 4, 0]);
    let (a, sa) = dynamic_rnn(&core, &x, &UnrollOptions::eval().with_lengths(&lengths)).unwrap();
    let (b, sb) = dynamic_rnn(&core, &x, &UnrollOptions::eval().with_lengths(&[2i64, 4, 0])).unwrap();
    assert_eq!(floats(&a), floats(&b));
    assert_eq!(leaf(&sa), leaf(&sb));
    assert_eq!(floats(&a), [2., 6., 0., 0., 2., 4., 6., 8., 0., 0., 0., 0.]);
}

#[test]
fn time_major_is_batch_major_transposed() {
    let core = Accumulator::new(1);
    let x = three_rows();
    let lengths = [3i64, 1, 4];
    let (a, sa) = dynamic_rnn(&core, &x, &UnrollOptions::eval().with_lengths(&lengths)).unwrap();
    let options = UnrollOptions::eval().with_lengths(&lengths).with_time_major(true);
    let (b, sb) = dynamic_rnn(&core, &x.transpose(0, 1), &options).unwrap();
    assert_eq!(b.size(), [4, 3, 1]);
    assert_eq!(floats(&b.transpose(0, 1)), floats(&a));
    assert_eq!(leaf(&sa), leaf(&sb));
    assert_eq!(leaf(&sa), [6., 1., 20.]);
}

#[test]
fn empty_time_and_zero_lengths_give_zero_outputs_and_the_initial_state() {
    let core = Accumulator::new(1);
    let empty = Tensor::zeros([2, 0, 1], (Kind::Float, Device::Cpu));
    let (out, state) = dynamic_rnn(&core, &empty, &UnrollOptions::eval()).unwrap();
    assert_eq!(out.size(), [2, 0, 1]);
    assert_eq!(leaf(&state), [0., 0.]);
    let init = State::Tensor(t(&[7., 8.], &[2, 1]));
    let options = UnrollOptions::eval().with_lengths(&[0i64, 0]).with_initial_state(&init);
    let (out, state) = dynamic_rnn(&core, &empty, &options).unwrap();
    assert_eq!(out.size(), [2, 0, 1]);
    assert_eq!(leaf(&state), [7., 8.]);
    let x = Tensor::ones([2, 3, 1], (Kind::Float, Device::Cpu));
    let (out, state) = dynamic_rnn(&core, &x, &options).unwrap();
    assert_eq!(floats(&out), [0.; 6]);
    assert_eq!(leaf(&state), [7., 8.]);
    assert!(core.log.rows().is_empty(), "length-0 rows must not be stepped");
    let no_rows = Tensor::zeros([0, 3, 1], (Kind::Float, Device::Cpu));
    let (out, state) =
        dynamic_rnn(&core, &no_rows, &UnrollOptions::eval().with_lengths(&[] as &[i64])).unwrap();
    assert_eq!(out.size(), [0, 3, 1]);
    assert_eq!(state.batch_size(), Some(0));
}

#[test]
fn lstm_shaped_states_are_carried_leaf_by_leaf() {
    let core = Counter::new(2);
    // Both rows read x_t = [1, t].
    let x = t(&[1., 0., 1., 1., 1., 2.], &[1, 3, 2]).repeat([2, 1, 1]);
    let init =
        State::Lstm { h: t(&[0., 10.], &[2, 1]), c: Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)) };
    let options = UnrollOptions::train().with_lengths(&[3i64, 1]).with_initial_state(&init);
    let (out, state) = dynamic_rnn(&core, &x, &options).unwrap();
    // Row 0: c = [1, 0], [2, 1], [3, 3]; h = 1, 2, 3. Row 1: c = [1, 0], h = 11, then padding.
    assert_eq!(floats(&out), [1., 0., 4., 2., 9., 9., 11., 0., 0., 0., 0., 0.]);
    let State::Lstm { h, c } = &state else { panic!("{state:?}") };
    assert_eq!(floats(h), [3., 11.]);
    assert_eq!(floats(c), [3., 3., 1., 0.]);
}

/// The reference of `Projected`, one row at a time: `s = tanh(s + x W)` for `t < len`.
fn projected_reference(x: &Tensor, w_core: &Projected, lengths: &[i64]) -> (Tensor, Tensor) {
    let (b, time) = (x.size()[0], x.size()[1]);
    let h = w_core.output_shape()[0];
    let out = Tensor::zeros([b, time, h], (Kind::Float, Device::Cpu));
    let mut finals = Vec::new();
    for (row, &len) in lengths.iter().enumerate() {
        let mut s = Tensor::zeros([1, h], (Kind::Float, Device::Cpu));
        for step in 0..len {
            let xt = x.get(row as i64).get(step).view([1, -1]);
            let (o, next) = w_core.step(&xt, &State::Tensor(s), Mode::Eval).unwrap();
            out.get(row as i64).get(step).copy_(&o.view([-1]));
            s = next.h().unwrap().shallow_clone();
        }
        finals.push(s);
    }
    (out, Tensor::cat(&finals, 0))
}

#[test]
fn projected_and_unprojected_cores_agree_and_the_projection_runs_once() {
    tch::manual_seed(0);
    let x = Tensor::randn([4, 5, 3], (Kind::Float, Device::Cpu));
    let lengths = [3i64, 0, 5, 2];
    let options = UnrollOptions::eval().with_lengths(&lengths);
    let core = Projected::new(3, 4);
    let (a, sa) = dynamic_rnn(&core, &x, &options).unwrap();
    assert_eq!((*core.projections.lock().unwrap(), *core.projected_steps.lock().unwrap()), (1, 5));
    assert_eq!(*core.plain_steps.lock().unwrap(), 0);
    let plain = Unprojected(Projected::new(3, 4));
    let (b, sb) = dynamic_rnn(&plain, &x, &options).unwrap();
    assert_eq!(*plain.0.plain_steps.lock().unwrap(), 5);
    assert_close(&a, &b);
    assert_close(sa.h().unwrap(), sb.h().unwrap());
    let reference = Projected::new(3, 4);
    let (out, finals) = projected_reference(&x, &reference, &lengths);
    assert_close(&a, &out);
    assert_close(sa.h().unwrap(), &finals);
}

#[test]
fn no_gradient_flows_through_padded_steps() {
    let core = Accumulator::new(1);
    let x = three_rows().set_requires_grad(true);
    let init_values = t(&[10., 20., 30.], &[3, 1]).set_requires_grad(true);
    let init = State::Tensor(init_values.shallow_clone());
    let options = UnrollOptions::train().with_lengths(&[2i64, 4, 0]).with_initial_state(&init);
    let (out, state) = dynamic_rnn(&core, &x, &options).unwrap();
    (out.sum(Kind::Float) + state.h().unwrap().sum(Kind::Float)).backward();
    // d/dx[b, t] = 2 (len − t) + 1 for t < len (each later output, plus the final state); 0 after.
    assert_eq!(floats(&x.grad()), [5., 3., 0., 0., 9., 7., 5., 3., 0., 0., 0., 0.]);
    // The length-0 row's initial state only reaches the loss through the final state.
    assert_eq!(floats(&init_values.grad()), [5., 9., 1.]);

    let core = Projected::new(3, 4);
    tch::manual_seed(1);
    let x = Tensor::randn([3, 4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let (out, state) = dynamic_rnn(&core, &x, &UnrollOptions::train().with_lengths(&[1i64, 4, 0])).unwrap();
    (out.sum(Kind::Float) + state.h().unwrap().sum(Kind::Float)).backward();
    let g = x.grad().abs().sum_dim_intlist(2, false, Kind::Float);
    let padded = [false, true, true, true, false, false, false, false, true, true, true, true];
    for (i, (&v, pad)) in floats(&g).iter().zip(padded).enumerate() {
        assert_eq!(v == 0.0, pad, "gradient at (row {}, step {}) is {v}", i / 4, i % 4);
    }
}

#[test]
fn bad_inputs_are_typed_errors_naming_dynamic_rnn() {
    let core = Accumulator::new(1);
    let x = three_rows();
    let eval = UnrollOptions::eval();
    let err = |x: &Tensor, o: UnrollOptions| dynamic_rnn(&core, x, &o).unwrap_err();
    let e = err(&x.view([3, 4]), eval);
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(e.to_string(), "dynamic_rnn: inputs must be [B, T, I..], got [3, 4]");
    let e = err(&x.view([3, 4]), eval.with_time_major(true));
    assert_eq!(e.to_string(), "dynamic_rnn: inputs must be [T, B, I..], got [3, 4]");
    let e = err(&x, eval.with_lengths(&[1i64, -1, 0]));
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert_eq!(e.to_string(), "dynamic_rnn: lengths must be in 0..=T (T = 4), row 1 has -1");
    let e = err(&x, eval.with_lengths(&[5i64, 1, 0]));
    assert_eq!(e.to_string(), "dynamic_rnn: lengths must be in 0..=T (T = 4), row 0 has 5");
    let e = err(&x, eval.with_lengths(&[1i64, 1]));
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(e.to_string(), "dynamic_rnn: lengths must be [3], got [2]");
    // Time-major: B is the second dimension.
    let e = err(&x, eval.with_lengths(&[1i64, 1, 1]).with_time_major(true));
    assert_eq!(e.to_string(), "dynamic_rnn: lengths must be [4], got [3]");
    let l2 = Tensor::from_slice(&[1i64, 1, 1]).view([3, 1]);
    let e = err(&x, eval.with_lengths(&l2));
    assert_eq!(e.to_string(), "dynamic_rnn: lengths must be [B], got [3, 1]");
    let wrong_batch = State::Tensor(Tensor::zeros([2, 1], (Kind::Float, Device::Cpu)));
    let e = err(&x, eval.with_initial_state(&wrong_batch));
    assert!(matches!(e, Error::Shape { .. }));
    assert_eq!(e.to_string(), "dynamic_rnn: initial_state leaf must be [3, 1], got [2, 1]");
    let z = Tensor::zeros([3, 1], (Kind::Float, Device::Cpu));
    let lstm = State::Lstm { h: z.shallow_clone(), c: z };
    let e = err(&x, eval.with_initial_state(&lstm));
    assert!(matches!(e, Error::InvalidArgument { .. }));
    assert_eq!(
        e.to_string(),
        "dynamic_rnn: initial_state must have the core's structure Tensor([1]), got Lstm { h: [1], c: [1] }"
    );
}

/// Rows `[1, 2, 3, 4]` (length 2), `[1, 10, 100, 1000]` (length 3), `[5, 5, 5, 5]` (length 0).
fn bi_rows() -> Tensor {
    t(&[1., 2., 3., 4., 1., 10., 100., 1000., 5., 5., 5., 5.], &[3, 4, 1])
}

#[test]
fn bidirectional_reads_backward_within_each_length() {
    let (fw, bw) = (Accumulator::new(1), Accumulator::new(1));
    let options = BiRnnOptions::eval().with_lengths(&[2i64, 3, 0]);
    let out = bidirectional_dynamic_rnn(&fw, &bw, &bi_rows(), &options).unwrap();
    assert_eq!(floats(&out.fw_outputs), [2., 6., 0., 0., 2., 22., 222., 0., 0., 0., 0., 0.]);
    // bw_outputs[b, t] = 2 Σ x[b, t..len): it summarises the rest of the real sequence.
    assert_eq!(floats(&out.bw_outputs), [6., 4., 0., 0., 222., 220., 200., 0., 0., 0., 0., 0.]);
    assert_eq!(leaf(&out.fw_state), [3., 111., 0.]);
    // The backward final state is the one after reading t = 0: the sum of the real steps.
    assert_eq!(leaf(&out.bw_state), [3., 111., 0.]);
    // The backward core ran only the real steps, longest rows first: [3 rows: 2, 2, 1].
    assert_eq!(bw.log.rows(), [2, 2, 1]);

    let Merged::One(cat) = out.merge(MergeMode::default()).unwrap() else { panic!("concat is one tensor") };
    assert_eq!(cat.size(), [3, 4, 2]);
    assert_eq!(floats(&cat.select(2, 1)), floats(&out.bw_outputs));
    let sum = out.merge(MergeMode::Sum).unwrap().one().unwrap();
    assert_eq!(floats(&sum), [8., 10., 0., 0., 224., 242., 422., 0., 0., 0., 0., 0.]);
    let mean = out.merge(MergeMode::Mean).unwrap().one().unwrap();
    assert_eq!(floats(&mean), [4., 5., 0., 0., 112., 121., 211., 0., 0., 0., 0., 0.]);
    let pair = out.merge(MergeMode::None).unwrap();
    assert!(pair.one().is_none());
    let both = out.merge(MergeMode::None).unwrap().into_vec();
    assert_eq!(floats(&both[1]), floats(&out.bw_outputs));
}

#[test]
fn bidirectional_without_lengths_flips_the_whole_sequence() {
    let (fw, bw) = (Accumulator::new(1), Accumulator::new(1));
    let x = bi_rows().narrow(0, 0, 1);
    let out = bidirectional_dynamic_rnn(&fw, &bw, &x, &BiRnnOptions::train()).unwrap();
    assert_eq!(floats(&out.fw_outputs), [2., 6., 12., 20.]);
    assert_eq!(floats(&out.bw_outputs), [20., 18., 14., 8.]);
    assert_eq!(leaf(&out.bw_state), [10.]);
    assert_eq!(bw.log.modes(), [Mode::Train; 4]);
}

#[test]
fn bidirectional_time_major_and_initial_states() {
    let (fw, bw) = (Accumulator::new(1), Accumulator::new(1));
    let fw0 = State::Tensor(t(&[1., 0., 2.], &[3, 1]));
    let bw0 = State::Tensor(t(&[100., 0., 7.], &[3, 1]));
    let options = BiRnnOptions::eval()
        .with_lengths(&[2i64, 3, 0])
        .with_fw_initial_state(&fw0)
        .with_bw_initial_state(&bw0);
    let a = bidirectional_dynamic_rnn(&fw, &bw, &bi_rows(), &options).unwrap();
    assert_eq!(leaf(&a.fw_state), [4., 111., 2.]);
    assert_eq!(leaf(&a.bw_state), [103., 111., 7.]);
    assert_eq!(floats(&a.bw_outputs), [206., 204., 0., 0., 222., 220., 200., 0., 0., 0., 0., 0.]);
    let b = bidirectional_dynamic_rnn(&fw, &bw, &bi_rows().transpose(0, 1), &options.with_time_major(true))
        .unwrap();
    assert_eq!(floats(&b.fw_outputs.transpose(0, 1)), floats(&a.fw_outputs));
    assert_eq!(floats(&b.bw_outputs.transpose(0, 1)), floats(&a.bw_outputs));
    assert_eq!(leaf(&b.bw_state), leaf(&a.bw_state));
}

#[test]
fn bidirectional_errors_name_the_function() {
    let (fw, bw) = (Accumulator::new(1), Projected::new(1, 3));
    let x = bi_rows();
    let e = bidirectional_dynamic_rnn(&fw, &bw, &x, &BiRnnOptions::eval().with_lengths(&[2i64, 3, 9]))
        .unwrap_err();
    assert_eq!(e.to_string(), "bidirectional_dynamic_rnn: lengths must be in 0..=T (T = 4), row 2 has 9");
    let wrong = State::Tensor(Tensor::zeros([3, 1], (Kind::Float, Device::Cpu)));
    let e = bidirectional_dynamic_rnn(&fw, &bw, &x, &BiRnnOptions::eval().with_bw_initial_state(&wrong))
        .unwrap_err();
    assert_eq!(e.to_string(), "bidirectional_dynamic_rnn: initial_state leaf must be [3, 3], got [3, 1]");
    let e = bidirectional_dynamic_rnn(&fw, &bw, &x.view([3, 4]), &BiRnnOptions::eval()).unwrap_err();
    assert_eq!(e.to_string(), "bidirectional_dynamic_rnn: inputs must be [B, T, I], got [3, 4]");
    let out = bidirectional_dynamic_rnn(&fw, &bw, &x, &BiRnnOptions::eval()).unwrap();
    assert_eq!(out.merge(MergeMode::Concat).unwrap().one().unwrap().size(), [3, 4, 4]);
    let e = out.merge(MergeMode::Sum).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn unroll_types_are_send() {
    fn is_send<T: Send>() {}
    is_send::<couplet_rnn::BiRnnOutput>();
    is_send::<Merged>();
    is_send::<MergeMode>();
}

/// The accumulator's unroll worked out independently: `out = 2 cumsum(x·mask)·mask`,
/// `final = init + Σ x·mask`.
fn accumulator_reference(x: &Tensor, init: &Tensor, lengths: &[i64]) -> (Tensor, Tensor) {
    let time = x.size()[1];
    let mask = couplet_rnn::sequence_mask(lengths, Some(time)).unwrap().unsqueeze(2).to_kind(Kind::Float);
    let masked = x * &mask;
    let out = (masked.cumsum(1, Kind::Float) + init.unsqueeze(1)) * 2.0 * &mask;
    (out, init + masked.sum_dim_intlist(1, false, Kind::Float))
}

/// `(B, T, lengths)`: valid lengths about half the time, else one value negative or above `T`,
/// or one length too many.
fn batch_time_lengths() -> impl Strategy<Value = (i64, i64, Vec<i64>)> {
    (0i64..4, 0i64..5)
        .prop_flat_map(|(b, time)| {
            let lengths = proptest::collection::vec(0..=time, b as usize);
            (Just(b), Just(time), lengths, 0u8..6, any::<proptest::sample::Index>())
        })
        .prop_map(|(b, time, mut lengths, corrupt, at)| {
            let k = at.index(lengths.len().max(1));
            match corrupt {
                0 if !lengths.is_empty() => lengths[k] = -1,
                1 if !lengths.is_empty() => lengths[k] = time + 1,
                2 => lengths.push(0),
                _ => {}
            }
            (b, time, lengths)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_shapes_and_lengths_never_panic(
        (b, time, raw) in batch_time_lengths(),
        i in 1i64..3,
        time_major: bool,
        projected: bool,
    ) {
        let x = Tensor::randn([b, time, i], (Kind::Float, Device::Cpu));
        let init_t = Tensor::randn([b, i], (Kind::Float, Device::Cpu));
        let init = State::Tensor(init_t.shallow_clone());
        let valid = raw.len() as i64 == b && raw.iter().all(|&l| (0..=time).contains(&l));
        let xin = if time_major { x.transpose(0, 1) } else { x.shallow_clone() };
        let options = UnrollOptions::eval().with_lengths(&raw).with_time_major(time_major);
        let core: Box<dyn RnnCore> = if projected { Box::new(Projected::new(i, i)) } else { Box::new(Accumulator::new(i)) };
        let result = dynamic_rnn(&core, &xin, &options.with_initial_state(&init));
        match result {
            Ok((out, state)) => {
                prop_assert!(valid);
                let expected = if time_major { [time, b, i] } else { [b, time, i] };
                prop_assert_eq!(out.size(), expected.to_vec());
                prop_assert_eq!(state.batch_size(), Some(b));
                if !projected {
                    let (ref_out, ref_state) = accumulator_reference(&x, &init_t, &raw);
                    let out = if time_major { out.transpose(0, 1) } else { out };
                    prop_assert!(out.allclose(&ref_out, 1e-5, 1e-5, false));
                    prop_assert!(state.h().unwrap().allclose(&ref_state, 1e-5, 1e-5, false));
                }
            }
            Err(e) => {
                prop_assert!(!valid, "valid input refused: {}", e);
                prop_assert!(matches!(e, Error::Shape { .. } | Error::InvalidArgument { .. }), "{}", e);
            }
        }
        let bi = bidirectional_dynamic_rnn(&core, &core, &xin, &BiRnnOptions::eval().with_lengths(&raw).with_time_major(time_major));
        match bi {
            Ok(out) => {
                prop_assert!(valid);
                prop_assert_eq!(out.fw_outputs.size(), out.bw_outputs.size());
                prop_assert_eq!(out.bw_state.batch_size(), Some(b));
            }
            Err(e) => prop_assert!(!valid && matches!(e, Error::Shape { .. } | Error::InvalidArgument { .. }), "{}", e),
        }
        for r in [
            couplet_rnn::reverse_sequence(&xin, &raw, time_major).map(|_| ()),
            couplet_rnn::last_relevant(&x, &raw).map(|_| ()),
            couplet_rnn::sequence_mask(&raw, Some(time)).map(|_| ()),
        ] {
            match r {
                Ok(()) => prop_assert!(raw.iter().all(|&l| (0..=time).contains(&l))),
                Err(e) => prop_assert!(matches!(e, Error::Shape { .. } | Error::InvalidArgument { .. }), "{}", e),
            }
        }
    }
}
