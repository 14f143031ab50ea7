//! The model: character embeddings, a bidirectional LSTM encoder, and an LSTM decoder with
//! attention over the encoder's outputs, followed by a projection onto the target characters.

use super::batch::Batch;
use super::data::{END, START};
use super::AttentionKind;
use couplet::attention::{
    beam_search, export, greedy_decode, sample_decode, AttentionDecoderConfig, AttentionDecoderCore,
    AttentionMechanism, BahdanauAttention, BahdanauConfig, BeamSearchConfig, CoreDecoder, GreedyOptions,
    LuongAttention, LuongConfig, SampleOptions,
};
use couplet::rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, BiRnnOptions, Lstm, LstmConfig, MergeMode, RnnCore, State,
    UnrollOptions,
};
use couplet::tch::{Kind, Tensor};
use couplet::{Embed, EmbedConfig, Error, Linear, LinearConfig, Mode, Result, Scope, TorchContext};

const MODULE: &str = "seq2seq";

/// The sizes of the model.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Size of the input character vocabulary.
    pub source_vocab: i64,
    /// Size of the output character vocabulary.
    pub target_vocab: i64,
    /// Size of the character embeddings.
    pub embed_dim: i64,
    /// Hidden size of each encoder direction (the memory is `2 ×` this wide).
    pub encoder_hidden: i64,
    /// Hidden size of the decoder LSTM, the attention's units and the attention layer.
    pub decoder_hidden: i64,
    /// The attention mechanism.
    pub attention: AttentionKind,
}

/// The beams of one input, best first: `(tokens, score)`.
pub type Beams = Vec<(Vec<i64>, f64)>;

/// Greedy decoding results.
#[derive(Debug)]
pub struct Greedy {
    /// Each row's tokens, its end token included (if it produced one).
    pub tokens: Vec<Vec<i64>>,
    /// Each row's alignments `[B, L, N]` (output step × input position).
    pub alignments: Tensor,
}

/// The encoder-decoder. Variables live under `seq2seq/`: `source_embed`, `encoder_fw`,
/// `encoder_bw`, `target_embed`, `decoder_lstm`, the mechanism (`luong_attention` or
/// `bahdanau_attention`), `attention_decoder/attention_layer` and `output`.
pub struct Seq2Seq {
    source_embed: Embed,
    encoder_fw: Lstm,
    encoder_bw: Lstm,
    target_embed: Embed,
    decoder: AttentionDecoderCore,
    output: Linear,
}

impl Seq2Seq {
    /// Builds every variable under `parent/seq2seq`.
    ///
    /// # Errors
    /// A bad size (`Error::Config` naming the module).
    pub fn new(parent: &Scope, config: &ModelConfig) -> Result<Seq2Seq> {
        let scope = parent.child("seq2seq")?;
        let (e, h, d) = (config.embed_dim, config.encoder_hidden, config.decoder_hidden);
        let source_embed = Embed::named(&scope, "source_embed", EmbedConfig::new(config.source_vocab, e))?;
        let encoder = |name| Lstm::named(&scope, name, LstmConfig::new(h).with_input_size(e));
        let (encoder_fw, encoder_bw) = (encoder("encoder_fw")?, encoder("encoder_bw")?);
        let target_embed = Embed::named(&scope, "target_embed", EmbedConfig::new(config.target_vocab, e))?;
        // Input feeding: the decoder LSTM reads [embedding, previous attention (d)].
        let cell = Lstm::named(&scope, "decoder_lstm", LstmConfig::new(d).with_input_size(e + d))?;
        let mechanism: Box<dyn AttentionMechanism> = match config.attention {
            AttentionKind::Luong => {
                Box::new(LuongAttention::new(&scope, LuongConfig::new(d).with_scale(true))?)
            }
            AttentionKind::Bahdanau => {
                Box::new(BahdanauAttention::new(&scope, BahdanauConfig::new(d).with_normalize(true))?)
            }
        };
        let decoder_config =
            AttentionDecoderConfig::new(d).with_memory_size(Some(2 * h)).with_alignment_history(true);
        let decoder = AttentionDecoderCore::new(&scope, Box::new(cell), mechanism, decoder_config)?;
        let output =
            Linear::named(&scope, "output", LinearConfig::new(config.target_vocab).with_input_size(d))?;
        Ok(Seq2Seq { source_embed, encoder_fw, encoder_bw, target_embed, decoder, output })
    }

    /// The encoder's outputs, both directions concatenated: `source [B, S]` → `[B, S, 2H]`,
    /// zero past each length of `options` (none: every row is `S` long).
    fn encode(&self, source: &Tensor, options: &BiRnnOptions) -> Result<Tensor> {
        let x = self.source_embed.forward(source)?;
        let outputs = bidirectional_dynamic_rnn(&self.encoder_fw, &self.encoder_bw, &x, options)?;
        outputs
            .merge(MergeMode::Concat)?
            .one()
            .ok_or_else(|| Error::invalid(MODULE, "a concatenating merge gives one tensor"))
    }

    /// The decoder's first state: the memory (masked past the source lengths) and, with
    /// `history_steps`, room for that many steps of alignments.
    fn initial_state(
        &self,
        batch_source: (&Tensor, &[i64], &Tensor),
        mode: Mode,
        steps: i64,
    ) -> Result<State> {
        let (source, lengths, mask) = batch_source;
        let memory = self.encode(source, &BiRnnOptions::new(mode).with_lengths(lengths))?;
        self.decoder.initial_state_with_memory(&memory, Some(mask), Some(steps))
    }

    /// The decoder's first state (evaluation) for `source [B, S]` whose rows are all `S`
    /// characters long, computed without lengths: the form TorchScript tracing records
    /// (`couplet::export`; lengths are host values a trace would fix). `mask [B, S]` (bool)
    /// masks the attention; room for `steps` alignments. Every initial state (the encoder's,
    /// the decoder's) is built from `source` by tensor operations, not from host sizes, so a
    /// traced encoder serves any batch size and source length.
    ///
    /// # Errors
    /// Shape errors of the modules, libtorch errors.
    pub fn initial_state_unpadded(&self, source: &Tensor, mask: &Tensor, steps: i64) -> Result<State> {
        let fw = export::rebatch(&self.encoder_fw.initial_state(1)?, source)?;
        let bw = export::rebatch(&self.encoder_bw.initial_state(1)?, source)?;
        let options = BiRnnOptions::new(Mode::Eval).with_fw_initial_state(&fw).with_bw_initial_state(&bw);
        let memory = self.encode(source, &options)?;
        export::traceable_initial_state(&self.decoder, &memory, Some(mask), Some(steps))
    }

    /// One decoding step: target embedding, attention decoder core, output projection.
    pub fn step_decoder(&self) -> CoreDecoder<'_, Embed, AttentionDecoderCore, Linear> {
        CoreDecoder::new(&self.target_embed, &self.decoder, &self.output)
    }

    /// Teacher forcing: the logits `[B, T, V]` of every target position given the true
    /// previous characters, unrolled by `dynamic_rnn` over the target lengths.
    ///
    /// # Errors
    /// Shape errors of the modules (a bug), libtorch errors.
    pub fn logits(&self, batch: &Batch, mode: Mode) -> Result<Tensor> {
        let state =
            self.initial_state((&batch.source, &batch.source_lengths, &batch.source_mask), mode, 0)?;
        let inputs = self.target_embed.forward(&batch.decoder_inputs)?;
        let options = UnrollOptions::new(mode).with_lengths(&batch.target_lengths).with_initial_state(&state);
        let (outputs, _) = dynamic_rnn(&self.decoder, &inputs, &options)?;
        self.output.forward(&outputs)
    }

    /// Start tokens `[B]` on the model's device.
    fn starts(&self, source: &Tensor) -> Result<Tensor> {
        Tensor::f_full([source.size()[0]], START, (Kind::Int64, source.device())).ctx(MODULE)
    }

    /// Greedy decoding of `source [B, S]`, with the alignments of every step.
    ///
    /// # Errors
    /// Shape errors of the modules (a bug), libtorch errors.
    pub fn greedy(&self, source: &Tensor, lengths: &[i64], mask: &Tensor, max_len: i64) -> Result<Greedy> {
        let state = self.initial_state((source, lengths, mask), Mode::Eval, max_len)?;
        let decoder = self.step_decoder();
        let out = greedy_decode(&decoder, &state, &self.starts(source)?, &GreedyOptions::new(END, max_len))?;
        let alignments = self.decoder.alignment_history(&out.final_state)?.f_transpose(0, 1).ctx(MODULE)?;
        Ok(Greedy { tokens: rows(&out.tokens)?, alignments })
    }

    /// Beam search over `source [B, S]`: for each row, `width` beams `(tokens, score)`, best
    /// first, scored by their log-probability (no length normalisation: every ISO date has
    /// the same length).
    ///
    /// # Errors
    /// Shape errors of the modules (a bug), libtorch errors.
    pub fn beam(
        &self,
        source: &Tensor,
        lengths: &[i64],
        mask: &Tensor,
        width: i64,
        max_len: i64,
    ) -> Result<Vec<Beams>> {
        let state = self.initial_state((source, lengths, mask), Mode::Eval, max_len)?;
        let decoder = self.step_decoder();
        let config = BeamSearchConfig::new(width, END, max_len);
        let out = beam_search(&decoder, &state, &self.starts(source)?, &config)?;
        let (b, k) = (out.tokens.size()[0], out.tokens.size()[1]);
        let tokens = rows(&out.tokens.f_reshape([b * k, -1]).ctx(MODULE)?)?;
        let scores = Vec::<f64>::try_from(
            out.scores.f_to_kind(Kind::Double).ctx(MODULE)?.f_reshape([-1]).ctx(MODULE)?,
        )
        .map_err(|e| Error::Torch { module: MODULE.into(), source: e })?;
        let beams: Beams = tokens.into_iter().zip(scores).collect();
        Ok(beams.chunks(k as usize).map(<[_]>::to_vec).collect())
    }
}

impl Seq2Seq {
    /// Greedy decoding (`sample = None`) or sampling (`Some(options)`, its `end_token` and
    /// `max_len` replaced by the model's) of `source [B, S]`: one `(tokens, score)` per row,
    /// the score the log-probability of the tokens.
    ///
    /// # Errors
    /// Shape errors of the modules (a bug), a bad temperature, libtorch errors.
    pub fn decode_one(
        &self,
        source: &Tensor,
        lengths: &[i64],
        mask: &Tensor,
        sample: Option<&SampleOptions>,
        max_len: i64,
    ) -> Result<Vec<Beams>> {
        let state = self.initial_state((source, lengths, mask), Mode::Eval, max_len)?;
        let decoder = self.step_decoder();
        let starts = self.starts(source)?;
        let out = match sample {
            None => greedy_decode(&decoder, &state, &starts, &GreedyOptions::new(END, max_len))?,
            Some(o) => {
                let options = SampleOptions { end_token: END, max_len, ..o.clone() };
                sample_decode(&decoder, &state, &starts, &options)?
            }
        };
        let tokens = rows(&out.tokens)?;
        let lengths = Vec::<i64>::try_from(&out.lengths.f_to_device(couplet::tch::Device::Cpu).ctx(MODULE)?)
            .map_err(|e| Error::Torch { module: MODULE.into(), source: e })?;
        let scores = Vec::<f64>::try_from(
            out.scores
                .f_to_kind(Kind::Double)
                .ctx(MODULE)?
                .f_to_device(couplet::tch::Device::Cpu)
                .ctx(MODULE)?,
        )
        .map_err(|e| Error::Torch { module: MODULE.into(), source: e })?;
        Ok(tokens
            .into_iter()
            .zip(lengths)
            .zip(scores)
            .map(|((t, l), s)| vec![(t[..l as usize].to_vec(), s)])
            .collect())
    }
}

/// The rows of an int64 `[B, L]` tensor on the host.
fn rows(t: &Tensor) -> Result<Vec<Vec<i64>>> {
    let t = t.f_to_device(couplet::tch::Device::Cpu).ctx(MODULE)?;
    Vec::<Vec<i64>>::try_from(&t).map_err(|e| Error::Torch { module: MODULE.into(), source: e })
}
