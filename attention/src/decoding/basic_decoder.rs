//! TensorFlow's `BasicDecoder` and `dynamic_decode` (`tf.contrib.seq2seq`): a core, an
//! optional output layer and a [`Helper`] stepped until every row has finished.

use super::check::keep_rows;
use super::helper::{all, Helper};
use couplet_modules::{Error, Forward, Mode, Result, TorchContext};
use couplet_rnn::{RnnCore, State};
use tch::{Kind, Tensor};

const NAME: &str = "dynamic_decode";

/// One step of a [`Decoder`]: the (projected) outputs `[B, V]` and their sample ids `[B]`.
#[derive(Debug)]
pub struct DecoderStepOutput {
    /// The step's outputs, after the output layer.
    pub rnn_output: Tensor,
    /// The helper's sample ids (int64).
    pub sample_id: Tensor,
}

/// A step-wise decoder for [`dynamic_decode`] (TF's `Decoder` interface).
pub trait Decoder {
    /// `(finished [B] bool, first inputs, initial state)`.
    ///
    /// # Errors
    /// The decoder's typed errors.
    fn initialize(&mut self) -> Result<(Tensor, Tensor, State)>;
    /// Step `time` from `inputs` and `state`: `(outputs, new state, next inputs, finished)`.
    ///
    /// # Errors
    /// The decoder's typed errors.
    fn step(
        &mut self,
        time: i64,
        inputs: &Tensor,
        state: &State,
    ) -> Result<(DecoderStepOutput, State, Tensor, Tensor)>;
}

/// TF's `BasicDecoder`: each step runs `core` on the helper's inputs, applies the output
/// layer (if any) to the core's output, and asks the helper for the sample ids and the next
/// inputs. The parts are borrowed and run in [`Mode::Eval`] unless
/// [`BasicDecoder::with_mode`] says otherwise.
pub struct BasicDecoder<'a, C: ?Sized, H> {
    core: &'a C,
    helper: H,
    initial_state: State,
    output_layer: Option<&'a dyn Forward>,
    mode: Mode,
}

impl<'a, C: RnnCore + ?Sized, H: Helper> BasicDecoder<'a, C, H> {
    /// A decoder of `core` driven by `helper` from `initial_state`, without an output layer.
    pub fn new(core: &'a C, helper: H, initial_state: State) -> Self {
        BasicDecoder { core, helper, initial_state, output_layer: None, mode: Mode::Eval }
    }
    /// Applies `layer` (e.g. a `Linear` to the vocabulary) to the core's outputs.
    pub fn with_output_layer(mut self, layer: &'a dyn Forward) -> Self {
        self.output_layer = Some(layer);
        self
    }
    /// Sets the mode passed to the core and the output layer.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

impl<C: RnnCore + ?Sized, H: Helper> Decoder for BasicDecoder<'_, C, H> {
    fn initialize(&mut self) -> Result<(Tensor, Tensor, State)> {
        let (finished, inputs) = self.helper.initialize()?;
        Ok((finished, inputs, self.initial_state.clone()))
    }

    fn step(
        &mut self,
        time: i64,
        inputs: &Tensor,
        state: &State,
    ) -> Result<(DecoderStepOutput, State, Tensor, Tensor)> {
        let (output, next_state) = self.core.step(inputs, state, self.mode)?;
        let rnn_output = match self.output_layer {
            Some(layer) => layer.forward_t(&output, self.mode)?,
            None => output,
        };
        let sample_id = self.helper.sample(time, &rnn_output)?;
        let (finished, next_inputs) = self.helper.next_inputs(time, &rnn_output, &sample_id)?;
        Ok((DecoderStepOutput { rnn_output, sample_id }, next_state, next_inputs, finished))
    }
}

/// The options of [`dynamic_decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynamicDecodeOptions {
    /// The most steps run (>= 0). Required (TF's `maximum_iterations` may be `None`, which
    /// loops forever on a decoder that never finishes; couplet never loops unbounded).
    pub maximum_iterations: i64,
    /// Past a row's end, write zero outputs (sample id 0) and keep its state (TF's
    /// `impute_finished`). Default `false`: rows keep being stepped and written, as TF.
    pub impute_finished: bool,
}

impl DynamicDecodeOptions {
    /// At most `maximum_iterations` steps, without `impute_finished`.
    pub fn new(maximum_iterations: i64) -> Self {
        DynamicDecodeOptions { maximum_iterations, impute_finished: false }
    }
    /// Sets `impute_finished`.
    pub fn with_impute_finished(mut self, impute_finished: bool) -> Self {
        self.impute_finished = impute_finished;
        self
    }
}

/// The result of [`dynamic_decode`] for `B` rows and `T'` steps.
#[derive(Debug)]
pub struct DynamicDecodeOutput {
    /// `[B, T', ..]`: every step's outputs (batch-major; `[B, 0, 0]` when no step ran).
    pub rnn_output: Tensor,
    /// `[B, T']` int64: every step's sample ids.
    pub sample_id: Tensor,
    /// The state after the last step (with `impute_finished`, each row's state at its end).
    pub final_state: State,
    /// `[B]` int64: each row's length, the step at which it finished plus one (TF's
    /// `final_sequence_lengths`; `maximum_iterations` for rows that never finished).
    pub lengths: Tensor,
}

/// TF's `dynamic_decode`: steps `decoder` from its initial finished flags, inputs and state
/// until every row has finished or `maximum_iterations` steps have run (`T'` is the number of
/// steps run). A row's length is `t + 1` for the step `t` at which it finished; its later
/// steps are still run (and written, unless `impute_finished`), as in TF.
///
/// # Errors
/// [`Error::Config`] naming `dynamic_decode` for a negative `maximum_iterations`;
/// [`Error::Shape`] if the decoder's finished flags are not bool `[B]` or a step's outputs
/// or sample ids do not have `B` rows; the decoder's own errors.
pub fn dynamic_decode<D: Decoder + ?Sized>(
    decoder: &mut D,
    options: &DynamicDecodeOptions,
) -> Result<DynamicDecodeOutput> {
    let max_iter = options.maximum_iterations;
    if max_iter < 0 {
        return Err(Error::config(NAME, format!("maximum_iterations must be >= 0, got {max_iter}")));
    }
    let (mut finished, mut inputs, mut state) = decoder.initialize()?;
    let check_finished = |f: &Tensor, b: Option<i64>| -> Result<i64> {
        let ok =
            f.defined() && f.kind() == Kind::Bool && f.dim() == 1 && b.map_or(true, |b| f.size()[0] == b);
        if !ok {
            let expected = b.map_or("a bool tensor [B]".to_string(), |b| format!("a bool tensor [{b}]"));
            let actual =
                if f.defined() { format!("{:?} {:?}", f.kind(), f.size()) } else { "undefined".into() };
            return Err(Error::Shape { module: NAME.into(), what: "finished".into(), expected, actual });
        }
        Ok(f.size()[0])
    };
    let b = check_finished(&finished, None)?;
    let device = finished.device();
    if max_iter == 0 {
        finished = finished.f_ones_like().ctx(NAME)?;
    }
    let mut lengths = Tensor::f_zeros([b], (Kind::Int64, device)).ctx(NAME)?;
    let (mut outputs, mut ids) = (Vec::new(), Vec::new());
    let mut t = 0;
    while !all(NAME, &finished)? {
        let (out, next_state, next_inputs, step_finished) = decoder.step(t, &inputs, &state)?;
        check_finished(&step_finished, Some(b))?;
        for (what, x) in [("outputs", &out.rnn_output), ("sample ids", &out.sample_id)] {
            if x.size().first() != Some(&b) {
                return Err(Error::shape(NAME, what, format!("[{b}, ..]"), x.size()));
            }
        }
        let mut next_finished = step_finished.f_logical_or(&finished).ctx(NAME)?;
        if t + 1 >= max_iter {
            next_finished = next_finished.f_ones_like().ctx(NAME)?;
        }
        let running = finished.f_logical_not().ctx(NAME)?;
        lengths = Tensor::f_full([b], t + 1, (Kind::Int64, device))
            .and_then(|n| n.f_where_self(&running, &lengths))
            .ctx(NAME)?;
        let (emit, emit_id, next_state) = if options.impute_finished {
            let mut shape = vec![1i64; out.rnn_output.dim()];
            shape[0] = -1;
            let mask = finished.f_view(shape.as_slice()).ctx(NAME)?;
            let zero = Tensor::f_zeros([], (out.rnn_output.kind(), device)).ctx(NAME)?;
            let emit = zero.f_where_self(&mask, &out.rnn_output).ctx(NAME)?;
            let id = out.sample_id.f_masked_fill(&finished, 0).ctx(NAME)?;
            (emit, id, keep_rows(NAME, &finished, &state, &next_state)?)
        } else {
            (out.rnn_output, out.sample_id, next_state)
        };
        outputs.push(emit);
        ids.push(emit_id);
        (finished, inputs, state) = (next_finished, next_inputs, next_state);
        t += 1;
    }
    let (rnn_output, sample_id) = if outputs.is_empty() {
        (
            Tensor::f_zeros([b, 0, 0], (Kind::Float, device)).ctx(NAME)?,
            Tensor::f_zeros([b, 0], (Kind::Int64, device)).ctx(NAME)?,
        )
    } else {
        (Tensor::f_stack(&outputs, 1).ctx(NAME)?, Tensor::f_stack(&ids, 1).ctx(NAME)?)
    };
    Ok(DynamicDecodeOutput { rnn_output, sample_id, final_state: state, lengths })
}

#[cfg(test)]
mod tests {
    use super::super::helper::{
        GreedyEmbeddingHelper, SampleEmbeddingHelper, ScheduledEmbeddingTrainingHelper, TrainingHelper,
    };
    use super::super::toy::{floats, ints};
    use super::super::{greedy_decode, sample_decode, CoreDecoder, GreedyOptions, SampleOptions};
    use super::*;
    use couplet_modules::{Embed, EmbedConfig, Linear, LinearConfig, Store};
    use couplet_rnn::{dynamic_rnn, Lstm, LstmConfig, UnrollOptions};

    fn parts(store: &Store) -> (Embed, Lstm, Linear) {
        let root = store.root();
        tch::manual_seed(5);
        let embed = Embed::new(&root, EmbedConfig::new(6, 4)).unwrap();
        let lstm = Lstm::new(&root, LstmConfig::new(5).with_input_size(4)).unwrap();
        let proj = Linear::new(&root, LinearConfig::new(6).with_input_size(5)).unwrap();
        (embed, lstm, proj)
    }

    fn close(a: &Tensor, b: &Tensor) -> bool {
        a.size() == b.size() && floats(a).iter().zip(floats(b)).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    /// The first `len` entries of row `b` of `[B, L]`.
    fn row(t: &Tensor, b: usize, len: i64) -> Vec<i64> {
        ints(&t.get(b as i64).narrow(0, 0, len))
    }

    #[test]
    fn training_helper_is_dynamic_rnn_with_the_output_layer() {
        let store = Store::cpu();
        let (_, lstm, proj) = parts(&store);
        let x = Tensor::randn([3, 5, 4], (Kind::Float, tch::Device::Cpu));
        let lengths = [5i64, 2, 0];
        let s0 = lstm.initial_state(3).unwrap();
        let helper = TrainingHelper::new(&x, &lengths).unwrap();
        let mut dec = BasicDecoder::new(&lstm, helper, s0.clone()).with_output_layer(&proj);
        let out =
            dynamic_decode(&mut dec, &DynamicDecodeOptions::new(10).with_impute_finished(true)).unwrap();
        assert_eq!(ints(&out.lengths), lengths);
        assert_eq!(out.rnn_output.size(), [3, 5, 6]);
        let (h, want_state) = dynamic_rnn(&lstm, &x, &UnrollOptions::eval().with_lengths(&lengths)).unwrap();
        let want = proj.forward(&h).unwrap();
        for (b, &len) in lengths.iter().enumerate() {
            let b = b as i64;
            assert!(
                close(&out.rnn_output.get(b).narrow(0, 0, len), &want.get(b).narrow(0, 0, len)),
                "row {b}"
            );
            // Imputed: zeros past the row's length.
            let rest = out.rnn_output.get(b).narrow(0, len, 5 - len);
            assert_eq!(rest.abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
        for (a, w) in out.final_state.leaves().iter().zip(want_state.leaves()) {
            assert!(close(a, w));
        }
        // Without impute_finished the finished rows keep being stepped: row 1's state moves on.
        let helper = TrainingHelper::new(&x, &lengths).unwrap();
        let mut dec = BasicDecoder::new(&lstm, helper, s0).with_output_layer(&proj);
        let raw = dynamic_decode(&mut dec, &DynamicDecodeOptions::new(10)).unwrap();
        assert!(close(&raw.rnn_output.get(0), &want.get(0)));
        assert!(!close(&raw.final_state.h().unwrap().get(1), &want_state.h().unwrap().get(1)));
    }

    #[test]
    fn greedy_and_sample_helpers_reproduce_greedy_and_sample_decode() {
        let store = Store::cpu();
        let (embed, lstm, proj) = parts(&store);
        let start = Tensor::from_slice(&[1i64, 2, 3, 4]);
        let s0 = lstm.initial_state(4).unwrap();
        let core_dec = CoreDecoder::new(&embed, &lstm, &proj);
        let opts = DynamicDecodeOptions::new(7).with_impute_finished(true);
        let want = greedy_decode(&core_dec, &s0, &start, &GreedyOptions::new(0, 7)).unwrap();
        let helper = GreedyEmbeddingHelper::new(&embed, &start, 0).unwrap();
        let mut dec = BasicDecoder::new(&lstm, helper, s0.clone()).with_output_layer(&proj);
        let got = dynamic_decode(&mut dec, &opts).unwrap();
        assert!(got.lengths.equal(&want.lengths));
        for (b, &len) in ints(&want.lengths).iter().enumerate() {
            assert_eq!(row(&got.sample_id, b, len), row(&want.tokens, b, len));
        }
        for (a, w) in got.final_state.leaves().iter().zip(want.final_state.leaves()) {
            assert!(close(a, w));
        }
        let want = sample_decode(
            &core_dec,
            &s0,
            &start,
            &SampleOptions::new(0, 7).with_temperature(1.5).with_seed(4),
        )
        .unwrap();
        let helper = SampleEmbeddingHelper::new(&embed, &start, 0, 1.5, 4).unwrap();
        let mut dec = BasicDecoder::new(&lstm, helper, s0).with_output_layer(&proj);
        let got = dynamic_decode(&mut dec, &opts).unwrap();
        assert!(got.lengths.equal(&want.lengths));
        for (b, &len) in ints(&want.lengths).iter().enumerate() {
            assert_eq!(row(&got.sample_id, b, len), row(&want.tokens, b, len));
        }
    }

    #[test]
    fn maximum_iterations_bounds_the_loop() {
        let store = Store::cpu();
        let (embed, lstm, proj) = parts(&store);
        let start = Tensor::from_slice(&[1i64, 2]);
        // end_token 5 is never the argmax of this model within 3 steps or is: either way at most 3.
        let helper = GreedyEmbeddingHelper::new(&embed, &start, 5).unwrap();
        let mut dec =
            BasicDecoder::new(&lstm, helper, lstm.initial_state(2).unwrap()).with_output_layer(&proj);
        let out = dynamic_decode(&mut dec, &DynamicDecodeOptions::new(3)).unwrap();
        assert!(out.sample_id.size()[1] <= 3 && ints(&out.lengths).iter().all(|&l| (1..=3).contains(&l)));
        let helper = GreedyEmbeddingHelper::new(&embed, &start, 5).unwrap();
        let mut dec =
            BasicDecoder::new(&lstm, helper, lstm.initial_state(2).unwrap()).with_output_layer(&proj);
        let out = dynamic_decode(&mut dec, &DynamicDecodeOptions::new(0)).unwrap();
        assert_eq!((out.rnn_output.size(), out.sample_id.size()), (vec![2, 0, 0], vec![2, 0]));
        assert_eq!(ints(&out.lengths), [0, 0]);
        let e = dynamic_decode(&mut dec, &DynamicDecodeOptions::new(-1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dynamic_decode: bad configuration: maximum_iterations must be >= 0, got -1"
        );
    }

    #[test]
    fn scheduled_sampling_mixes_teacher_forcing_and_sampled_embeddings() {
        let store = Store::cpu();
        let (embed, lstm, proj) = parts(&store);
        let x = Tensor::randn([8, 6, 4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let lengths = [6i64; 8];
        let s0 = lstm.initial_state(8).unwrap();
        let run = |p: f64| {
            let helper = ScheduledEmbeddingTrainingHelper::new(&x, &lengths, &embed, p, 9).unwrap();
            let mut dec = BasicDecoder::new(&lstm, helper, s0.clone()).with_output_layer(&proj);
            dynamic_decode(&mut dec, &DynamicDecodeOptions::new(6)).unwrap()
        };
        // p = 0: teacher forcing exactly, and every id is -1.
        let forced = run(0.0);
        let helper = TrainingHelper::new(&x, &lengths).unwrap();
        let mut dec = BasicDecoder::new(&lstm, helper, s0.clone()).with_output_layer(&proj);
        let want = dynamic_decode(&mut dec, &DynamicDecodeOptions::new(6)).unwrap();
        assert!(forced.rnn_output.equal(&want.rnn_output));
        assert!(ints(&forced.sample_id).iter().all(|&i| i == -1));
        // p = 1: step t + 1 is fed embed(id of step t): replay it by hand with the ids drawn.
        let sampled = run(1.0);
        let ids = ints(&sampled.sample_id);
        assert!(ids.iter().all(|&i| (0..6).contains(&i)));
        let mut state = s0.clone();
        let mut input = x.select(1, 0);
        for t in 0..6 {
            let (h, next) = lstm.step(&input, &state, Mode::Eval).unwrap();
            assert!(close(&proj.forward(&h).unwrap(), &sampled.rnn_output.select(1, t)), "step {t}");
            input = embed.forward(&sampled.sample_id.select(1, t)).unwrap();
            state = next;
        }
        // p = 0.5: gradients reach exactly the teacher-forced inputs (step 0 always).
        let mixed = run(0.5);
        mixed.rnn_output.sum(Kind::Float).backward();
        let g = x.grad().abs().sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
        let ids = ints(&mixed.sample_id);
        let (mut fed, mut drawn) = (0, 0);
        for b in 0..8i64 {
            assert!(g.double_value(&[b, 0]) > 0.0);
            for t in 0..5i64 {
                let id = ids[(b * 6 + t) as usize];
                let grad = g.double_value(&[b, t + 1]);
                if id >= 0 {
                    drawn += 1;
                    assert_eq!(grad, 0.0, "row {b} step {t}: sampled, so x[b, t+1] is unused");
                } else {
                    fed += 1;
                    assert!(grad > 0.0, "row {b} step {t}: teacher-forced");
                }
            }
        }
        assert!(fed > 5 && drawn > 5, "{fed} teacher-forced, {drawn} sampled");
        let e = ScheduledEmbeddingTrainingHelper::new(&x, &lengths, &embed, 1.5, 0).err().unwrap();
        assert!(e.to_string().contains("sampling_probability must be in [0, 1]"), "{e}");
    }

    #[test]
    fn helper_arguments_are_checked() {
        let store = Store::cpu();
        let (embed, _, _) = parts(&store);
        let x = Tensor::zeros([2, 3, 4], (Kind::Float, tch::Device::Cpu));
        let e = TrainingHelper::new(&x, &[1, 4]).unwrap_err();
        assert_eq!(e.to_string(), "training_helper: lengths[1] = 4 is outside 0..=3");
        assert!(matches!(TrainingHelper::new(&x, &[1]).unwrap_err(), Error::Shape { .. }));
        assert!(matches!(TrainingHelper::new(&x.get(0), &[1]).unwrap_err(), Error::Shape { .. }));
        let e = GreedyEmbeddingHelper::new(&embed, &Tensor::from_slice(&[1.0f32]), 0).err().unwrap();
        assert!(
            e.to_string().starts_with("greedy_embedding_helper: start_tokens must be an int64 tensor [B]"),
            "{e}"
        );
        let e = SampleEmbeddingHelper::new(&embed, &Tensor::from_slice(&[1i64]), 0, 0.0, 0).err().unwrap();
        assert!(e.to_string().contains("temperature"), "{e}");
    }
}
