//! TensorFlow's decoding helpers (`tf.contrib.seq2seq`): what a [`BasicDecoder`](super::BasicDecoder)
//! feeds its core at each step and how it picks sample ids. [`TrainingHelper`] (teacher
//! forcing), [`GreedyEmbeddingHelper`], [`SampleEmbeddingHelper`] and
//! [`ScheduledEmbeddingTrainingHelper`] (scheduled sampling, Bengio et al. 2015).

use super::sample::{row_streams, sample_rows, SampleOptions};
use couplet_modules::util::check_defined;
use couplet_modules::{Error, Forward, Mode, Result, TorchContext};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// What a [`BasicDecoder`](super::BasicDecoder) asks at each step (TF's `Helper`): the first
/// inputs, the sample ids of a step's outputs, and the next inputs. All tensors are
/// batch-major with `B` rows; `finished` is bool `[B]`, sample ids int64 `[B]`.
pub trait Helper {
    /// `(finished [B], first inputs [B, ..])`.
    ///
    /// # Errors
    /// The helper's typed errors (e.g. an embedding's).
    fn initialize(&mut self) -> Result<(Tensor, Tensor)>;
    /// The sample ids `[B]` of step `time`'s outputs `[B, V]`.
    ///
    /// # Errors
    /// The helper's typed errors.
    fn sample(&mut self, time: i64, outputs: &Tensor) -> Result<Tensor>;
    /// `(finished [B], inputs of step time + 1 [B, ..])` after step `time`.
    ///
    /// # Errors
    /// The helper's typed errors.
    fn next_inputs(&mut self, time: i64, outputs: &Tensor, sample_ids: &Tensor) -> Result<(Tensor, Tensor)>;
}

/// Whether every entry of bool `flags` is set (true for none).
pub(super) fn all(name: &str, flags: &Tensor) -> Result<bool> {
    Ok(flags.f_all().ctx(name)?.int64_value(&[]) != 0)
}

fn argmax(name: &str, outputs: &Tensor) -> Result<Tensor> {
    outputs.f_argmax(-1, false).ctx(name)
}

/// Teacher forcing (TF's `TrainingHelper`): step `t` reads `inputs[:, t]`; row `b` finishes
/// after `lengths[b]` steps (a length 0 is finished from the start). Once every row has
/// finished the next inputs are zeros. Sample ids are the argmax of the outputs.
#[derive(Debug)]
pub struct TrainingHelper {
    inputs: Tensor,
    lengths: Tensor,
    max_len: i64,
}

impl TrainingHelper {
    /// Teacher forcing over `inputs [B, T, ..]` (rank >= 3) with per-row `lengths` in
    /// `0..=T`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `training_helper` if `inputs` has rank < 3 or `lengths` does not
    /// have `B` entries; [`Error::InvalidArgument`] for an undefined input or a length outside
    /// `0..=T` (naming the row).
    pub fn new(inputs: &Tensor, lengths: &[i64]) -> Result<Self> {
        const NAME: &str = "training_helper";
        check_defined(NAME, "inputs", inputs)?;
        let size = inputs.size();
        if size.len() < 3 {
            return Err(Error::shape(NAME, "inputs", "[B, T, ..] of rank >= 3", size));
        }
        let (b, t) = (size[0], size[1]);
        if lengths.len() as i64 != b {
            return Err(Error::shape(NAME, "lengths", format!("[{b}]"), [lengths.len()]));
        }
        if let Some((row, l)) = lengths.iter().enumerate().find(|(_, &l)| !(0..=t).contains(&l)) {
            return Err(Error::invalid(NAME, format!("lengths[{row}] = {l} is outside 0..={t}")));
        }
        let lengths = Tensor::from_slice(lengths).f_to_device(inputs.device()).ctx(NAME)?;
        Ok(TrainingHelper { inputs: inputs.shallow_clone(), lengths, max_len: t })
    }

    /// `inputs[:, t]`, or zeros when every row has finished (or `t >= T`).
    fn read(&self, name: &str, t: i64, finished: &Tensor) -> Result<Tensor> {
        if t >= self.max_len || all(name, finished)? {
            let mut shape = self.inputs.size();
            shape.remove(1);
            return Tensor::f_zeros(shape, (self.inputs.kind(), self.inputs.device())).ctx(name);
        }
        self.inputs.f_select(1, t).ctx(name)
    }
}

impl Helper for TrainingHelper {
    fn initialize(&mut self) -> Result<(Tensor, Tensor)> {
        let finished = self.lengths.f_eq(0).ctx("training_helper")?;
        let inputs = self.read("training_helper", 0, &finished)?;
        Ok((finished, inputs))
    }
    fn sample(&mut self, _time: i64, outputs: &Tensor) -> Result<Tensor> {
        argmax("training_helper", outputs)
    }
    fn next_inputs(
        &mut self,
        time: i64,
        _outputs: &Tensor,
        _sample_ids: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let next = time + 1;
        let finished = self.lengths.f_le(next).ctx("training_helper")?;
        let inputs = self.read("training_helper", next, &finished)?;
        Ok((finished, inputs))
    }
}

/// Greedy decoding through an embedding (TF's `GreedyEmbeddingHelper`): the first inputs
/// are `embed(start_tokens)`, each step feeds back `embed(argmax(outputs))`, and a row
/// finishes when its argmax is `end_token`. Once every row has finished the next inputs are
/// the start inputs (as TF).
pub struct GreedyEmbeddingHelper<'a, E: ?Sized> {
    embed: &'a E,
    start_tokens: Tensor,
    end_token: i64,
    mode: Mode,
    start_inputs: Option<Tensor>,
}

impl<'a, E: Forward + ?Sized> GreedyEmbeddingHelper<'a, E> {
    /// Greedy decoding from `start_tokens` (int64 `[B]`) until `end_token` (>= 0), embedding
    /// with `embed` in [`Mode::Eval`].
    ///
    /// # Errors
    /// [`Error::Shape`] naming `greedy_embedding_helper` if `start_tokens` is not int64 `[B]`;
    /// [`Error::Config`] for a negative `end_token`.
    pub fn new(embed: &'a E, start_tokens: &Tensor, end_token: i64) -> Result<Self> {
        check_tokens("greedy_embedding_helper", start_tokens, end_token)?;
        Ok(GreedyEmbeddingHelper {
            embed,
            start_tokens: start_tokens.shallow_clone(),
            end_token,
            mode: Mode::Eval,
            start_inputs: None,
        })
    }

    /// Sets the mode the embedding runs in.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    fn start(&mut self) -> Result<Tensor> {
        if let Some(s) = &self.start_inputs {
            return Ok(s.shallow_clone());
        }
        let s = self.embed.forward_t(&self.start_tokens, self.mode)?;
        self.start_inputs = Some(s.shallow_clone());
        Ok(s)
    }

    fn feed(&mut self, name: &str, sample_ids: &Tensor) -> Result<(Tensor, Tensor)> {
        let finished = sample_ids.f_eq(self.end_token).ctx(name)?;
        let inputs = if all(name, &finished)? {
            self.start()?
        } else {
            self.embed.forward_t(sample_ids, self.mode)?
        };
        Ok((finished, inputs))
    }
}

fn check_tokens(name: &str, start_tokens: &Tensor, end_token: i64) -> Result<()> {
    if !start_tokens.defined() || start_tokens.kind() != Kind::Int64 || start_tokens.dim() != 1 {
        let actual = if start_tokens.defined() {
            format!("{:?} {:?}", start_tokens.kind(), start_tokens.size())
        } else {
            "an undefined tensor".to_string()
        };
        return Err(Error::Shape {
            module: name.to_string(),
            what: "start_tokens".into(),
            expected: "an int64 tensor [B]".into(),
            actual,
        });
    }
    if end_token < 0 {
        return Err(Error::config(name, format!("end_token must be >= 0, got {end_token}")));
    }
    Ok(())
}

impl<E: Forward + ?Sized> Helper for GreedyEmbeddingHelper<'_, E> {
    fn initialize(&mut self) -> Result<(Tensor, Tensor)> {
        let b = self.start_tokens.size()[0];
        let finished =
            Tensor::f_zeros([b], (Kind::Bool, self.start_tokens.device())).ctx("greedy_embedding_helper")?;
        Ok((finished, self.start()?))
    }
    fn sample(&mut self, _time: i64, outputs: &Tensor) -> Result<Tensor> {
        argmax("greedy_embedding_helper", outputs)
    }
    fn next_inputs(
        &mut self,
        _time: i64,
        _outputs: &Tensor,
        sample_ids: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.feed("greedy_embedding_helper", sample_ids)
    }
}

/// Sampling through an embedding (TF's `SampleEmbeddingHelper`): as
/// [`GreedyEmbeddingHelper`], but each step's ids are drawn from `softmax(outputs /
/// temperature)`, row `b` from its own ChaCha8 stream `(seed, b)` as in
/// [`sample_decode`](super::sample_decode) (which it reproduces draw for draw).
pub struct SampleEmbeddingHelper<'a, E: ?Sized> {
    greedy: GreedyEmbeddingHelper<'a, E>,
    options: SampleOptions,
    streams: Vec<ChaCha8Rng>,
    rows: Vec<i64>,
}

impl<'a, E: Forward + ?Sized> SampleEmbeddingHelper<'a, E> {
    /// Sampling from `start_tokens` (int64 `[B]`) until `end_token`, at `temperature`
    /// (finite, > 0; TF's `softmax_temperature`, default 1), seeded by `seed`.
    ///
    /// # Errors
    /// As [`GreedyEmbeddingHelper::new`] (naming `sample_embedding_helper`), and
    /// [`Error::Config`] for a temperature that is not finite and positive.
    pub fn new(
        embed: &'a E,
        start_tokens: &Tensor,
        end_token: i64,
        temperature: f64,
        seed: u64,
    ) -> Result<Self> {
        const NAME: &str = "sample_embedding_helper";
        check_tokens(NAME, start_tokens, end_token)?;
        let options = SampleOptions::new(end_token, 1).with_temperature(temperature).with_seed(seed);
        options.check(NAME)?;
        let b = start_tokens.size()[0];
        Ok(SampleEmbeddingHelper {
            greedy: GreedyEmbeddingHelper::new(embed, start_tokens, end_token)?,
            options,
            streams: row_streams(seed, b as usize),
            rows: (0..b).collect(),
        })
    }
}

impl<E: Forward + ?Sized> Helper for SampleEmbeddingHelper<'_, E> {
    fn initialize(&mut self) -> Result<(Tensor, Tensor)> {
        self.greedy.initialize()
    }
    fn sample(&mut self, _time: i64, outputs: &Tensor) -> Result<Tensor> {
        sample_rows("sample_embedding_helper", outputs, &self.options, &mut self.streams, &self.rows)
    }
    fn next_inputs(
        &mut self,
        _time: i64,
        _outputs: &Tensor,
        sample_ids: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.greedy.feed("sample_embedding_helper", sample_ids)
    }
}

/// Scheduled sampling (Bengio et al. 2015; TF's `ScheduledEmbeddingTrainingHelper`):
/// teacher forcing as [`TrainingHelper`], except that after each step every row, with
/// probability `sampling_probability`, is fed `embed(id)` of an id drawn from
/// `softmax(outputs)` instead of its next ground-truth input. Sample ids are the drawn id
/// for those rows and `-1` for the teacher-forced ones. The draws are ids (no gradient flows
/// through the choice); the embedding of a drawn id gets gradients through the rest of the
/// sequence, a teacher-forced input gets them as in `TrainingHelper`. Row `b` draws its
/// choice from ChaCha8 stream `(seed, B + b)` and its id from stream `(seed, b)`.
pub struct ScheduledEmbeddingTrainingHelper<'a, E: ?Sized> {
    training: TrainingHelper,
    embed: &'a E,
    probability: f64,
    mode: Mode,
    options: SampleOptions,
    streams: Vec<ChaCha8Rng>,
    schedule: Vec<ChaCha8Rng>,
    rows: Vec<i64>,
}

impl<'a, E: Forward + ?Sized> ScheduledEmbeddingTrainingHelper<'a, E> {
    /// Scheduled sampling over `inputs [B, T, ..]` with `lengths`, feeding `embed`'s
    /// embeddings of sampled ids with probability `sampling_probability` in `[0, 1]`. The
    /// embedding runs in [`Mode::Train`] (the helper is for training) unless
    /// [`ScheduledEmbeddingTrainingHelper::with_mode`] says otherwise.
    ///
    /// # Errors
    /// As [`TrainingHelper::new`]; [`Error::Config`] naming
    /// `scheduled_embedding_training_helper` for a probability outside `[0, 1]`.
    pub fn new(
        inputs: &Tensor,
        lengths: &[i64],
        embed: &'a E,
        sampling_probability: f64,
        seed: u64,
    ) -> Result<Self> {
        const NAME: &str = "scheduled_embedding_training_helper";
        if !(0.0..=1.0).contains(&sampling_probability) {
            return Err(Error::config(
                NAME,
                format!("sampling_probability must be in [0, 1], got {sampling_probability}"),
            ));
        }
        let training = TrainingHelper::new(inputs, lengths)?;
        let b = lengths.len();
        let mut all_streams = row_streams(seed, 2 * b);
        let schedule = all_streams.split_off(b);
        Ok(ScheduledEmbeddingTrainingHelper {
            training,
            embed,
            probability: sampling_probability,
            mode: Mode::Train,
            options: SampleOptions::new(0, 1).with_seed(seed),
            streams: all_streams,
            schedule,
            rows: (0..b as i64).collect(),
        })
    }

    /// Sets the mode the embedding runs in.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

impl<E: Forward + ?Sized> Helper for ScheduledEmbeddingTrainingHelper<'_, E> {
    fn initialize(&mut self) -> Result<(Tensor, Tensor)> {
        self.training.initialize()
    }
    fn sample(&mut self, _time: i64, outputs: &Tensor) -> Result<Tensor> {
        const NAME: &str = "scheduled_embedding_training_helper";
        let p = self.probability;
        let chosen: Vec<bool> = self.schedule.iter_mut().map(|r| r.gen::<f64>() < p).collect();
        let drawn =
            sample_rows(NAME, &outputs.f_detach().ctx(NAME)?, &self.options, &mut self.streams, &self.rows)?;
        let chosen = Tensor::from_slice(&chosen).f_to_device(outputs.device()).ctx(NAME)?;
        drawn.f_where_scalarother(&chosen, -1).ctx(NAME)
    }
    fn next_inputs(&mut self, time: i64, outputs: &Tensor, sample_ids: &Tensor) -> Result<(Tensor, Tensor)> {
        const NAME: &str = "scheduled_embedding_training_helper";
        let (finished, base) = self.training.next_inputs(time, outputs, sample_ids)?;
        if all(NAME, &finished)? {
            return Ok((finished, base));
        }
        let sampled = sample_ids.f_ge(0).ctx(NAME)?;
        if sampled.f_any().ctx(NAME)?.int64_value(&[]) == 0 {
            return Ok((finished, base));
        }
        let embedded = self.embed.forward_t(&sample_ids.f_clamp_min(0).ctx(NAME)?, self.mode)?;
        if embedded.size() != base.size() {
            return Err(Error::shape(
                NAME,
                "embedding of the sampled ids",
                format!("{:?} (the inputs' step)", base.size()),
                embedded.size(),
            ));
        }
        let mut shape = vec![1i64; base.dim()];
        shape[0] = -1;
        let mask = sampled.f_view(shape.as_slice()).ctx(NAME)?;
        Ok((finished, embedded.f_where_self(&mask, &base).ctx(NAME)?))
    }
}
