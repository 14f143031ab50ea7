//! [`CoreDecoder`]: a [`TokenDecoder`] from an embedding, a recurrent core and an output
//! projection.

use super::TokenDecoder;
use couplet_modules::{Forward, Mode, Result};
use couplet_rnn::{RnnCore, State};
use tch::Tensor;

/// One decoding step as `logits = projection(core(embed(tokens), state))`: `tokens [B]` →
/// embedding `[B, E]` → the core's output `[B, O]` and new state → `logits [B, V]`.
///
/// It borrows its parts (it is not a module and owns no variables): typically a
/// [`couplet_modules::Embed`], any [`RnnCore`] (an LSTM, a stack, an attention decoder core
/// whose state holds the encoder memory) and a [`couplet_modules::Linear`] with `V` outputs,
/// but any [`Forward`] modules fit. The parts run in [`Mode::Eval`] unless
/// [`CoreDecoder::with_mode`] says otherwise; [`CoreDecoder::with_attention_probs`] tells
/// [`beam_search`](super::beam_search)'s coverage penalty where the core's attention is.
pub struct CoreDecoder<'a, E: ?Sized, C: ?Sized, P: ?Sized> {
    embed: &'a E,
    core: &'a C,
    projection: &'a P,
    mode: Mode,
    attention: Option<&'a AttentionProbs<'a>>,
}

/// Reads a core state's attention probabilities `[B, N]` (see
/// [`CoreDecoder::with_attention_probs`]).
pub type AttentionProbs<'a> = dyn Fn(&State) -> Result<Tensor> + 'a;

impl<E: ?Sized, C: ?Sized, P: ?Sized> Clone for CoreDecoder<'_, E, C, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E: ?Sized, C: ?Sized, P: ?Sized> Copy for CoreDecoder<'_, E, C, P> {}

impl<E, C, P> std::fmt::Debug for CoreDecoder<'_, E, C, P>
where
    E: Forward + ?Sized,
    C: RnnCore + ?Sized,
    P: Forward + ?Sized,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreDecoder")
            .field("embed", &self.embed.name())
            .field("core", &self.core.name())
            .field("projection", &self.projection.name())
            .field("mode", &self.mode)
            .field("attention_probs", &self.attention.is_some())
            .finish()
    }
}

impl<'a, E, C, P> CoreDecoder<'a, E, C, P>
where
    E: Forward + ?Sized,
    C: RnnCore + ?Sized,
    P: Forward + ?Sized,
{
    /// Composes `embed` (token ids `[B]` → `[B, E]`), `core` and `projection`
    /// (`[B, O]` → `[B, V]`), in [`Mode::Eval`].
    pub fn new(embed: &'a E, core: &'a C, projection: &'a P) -> Self {
        CoreDecoder { embed, core, projection, mode: Mode::Eval, attention: None }
    }

    /// Sets how [`TokenDecoder::attention_probs`] reads the core's state, e.g.
    /// `&|s: &State| core.alignments(s)` for an
    /// [`AttentionDecoderCore`](crate::AttentionDecoderCore) (default: the decoder does not
    /// attend).
    pub fn with_attention_probs(mut self, attention: &'a AttentionProbs<'a>) -> Self {
        self.attention = Some(attention);
        self
    }

    /// Sets the mode passed to every part (e.g. [`Mode::Train`] to keep dropout on).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The core's [`RnnCore::initial_state`] for `batch_size` rows (zeros unless the core
    /// learns it). Cores whose state needs more (an attention memory) build their own.
    ///
    /// # Errors
    /// Whatever the core reports.
    pub fn initial_state(&self, batch_size: i64) -> Result<State> {
        self.core.initial_state(batch_size)
    }
}

impl<E, C, P> TokenDecoder for CoreDecoder<'_, E, C, P>
where
    E: Forward + ?Sized,
    C: RnnCore + ?Sized,
    P: Forward + ?Sized,
{
    /// `tokens [B]` → `(projection(output) [B, V], new state)`.
    ///
    /// # Errors
    /// The typed errors of the parts, each naming its own module (e.g. an id outside the
    /// embedding's vocabulary).
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
        let x = self.embed.forward_t(tokens, self.mode)?;
        let (output, state) = self.core.step(&x, state, self.mode)?;
        Ok((self.projection.forward_t(&output, self.mode)?, state))
    }

    /// The reader given to [`CoreDecoder::with_attention_probs`] applied to `state`, or `None`.
    ///
    /// # Errors
    /// The reader's.
    fn attention_probs(&self, state: &State) -> Result<Option<Tensor>> {
        self.attention.map(|read| read(state)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::super::toy::{floats, ints};
    use super::super::{beam_search, greedy_decode, BeamSearchConfig, GreedyOptions};
    use super::*;
    use couplet_modules::{Embed, EmbedConfig, Linear, LinearConfig, Store};
    use couplet_rnn::{Lstm, LstmConfig};
    use tch::Kind;

    fn parts(store: &Store) -> (Embed, Lstm, Linear) {
        let root = store.root();
        tch::manual_seed(7);
        let embed = Embed::new(&root, EmbedConfig::new(7, 4)).unwrap();
        let lstm = Lstm::new(&root, LstmConfig::new(5).with_input_size(4)).unwrap();
        let proj = Linear::new(&root, LinearConfig::new(7).with_input_size(5)).unwrap();
        (embed, lstm, proj)
    }

    fn close(a: &Tensor, b: &Tensor) -> bool {
        floats(a).iter().zip(floats(b)).all(|(x, y)| (x - y).abs() < 1e-5) && a.size() == b.size()
    }

    #[test]
    fn a_step_is_embed_then_core_then_projection() {
        let store = Store::cpu();
        let (embed, lstm, proj) = parts(&store);
        let dec = CoreDecoder::new(&embed, &lstm, &proj);
        let s0 = dec.initial_state(3).unwrap();
        let tokens = Tensor::from_slice(&[1i64, 4, 6]);
        let (logits, s1) = dec.step(&tokens, &s0).unwrap();
        let (out, want_state) = lstm.step(&embed.forward(&tokens).unwrap(), &s0, Mode::Eval).unwrap();
        assert!(close(&logits, &proj.forward(&out).unwrap()));
        assert!(close(s1.h().unwrap(), want_state.h().unwrap()));
        let e = dec.step(&Tensor::from_slice(&[9i64]), &dec.initial_state(1).unwrap()).unwrap_err();
        assert!(e.to_string().starts_with("embed: id 9 is out of range"), "{e}");
        assert!(format!("{dec:?}").contains("lstm"));
    }

    #[test]
    fn attention_probs_come_from_the_reader_given() {
        let store = Store::cpu();
        let (embed, lstm, proj) = parts(&store);
        let plain = CoreDecoder::new(&embed, &lstm, &proj);
        let s0 = plain.initial_state(2).unwrap();
        assert!(plain.attention_probs(&s0).unwrap().is_none());
        let read = |s: &State| Ok(s.h().unwrap().softmax(-1, Kind::Float));
        let attending = plain.with_attention_probs(&read);
        let probs = attending.attention_probs(&s0).unwrap().unwrap();
        assert!(close(&probs, &Tensor::full([2, 5], 0.2, (Kind::Float, tch::Device::Cpu))));
        // beam_search reads them for its coverage penalty: runs without the Config error.
        let config = BeamSearchConfig::new(2, 0, 3).with_coverage_penalty(0.5);
        let out = beam_search(&attending, &s0, &Tensor::from_slice(&[1i64, 2]), &config).unwrap();
        assert_eq!(out.scores.size(), [2, 2]);
        assert!(beam_search(&plain, &s0, &Tensor::from_slice(&[1i64, 2]), &config).is_err());
        assert!(format!("{attending:?}").contains("attention_probs: true"));
    }

    #[test]
    fn greedy_and_beam_search_run_on_embed_lstm_linear() {
        let store = Store::cpu();
        let (embed, lstm, proj) = parts(&store);
        let dec = CoreDecoder::new(&embed, &lstm, &proj);
        let start = Tensor::from_slice(&[1i64, 2, 3]);
        let g =
            greedy_decode(&dec, &dec.initial_state(3).unwrap(), &start, &GreedyOptions::new(0, 6)).unwrap();
        let l = g.tokens.size()[1];
        assert!((1..=6).contains(&l) && g.tokens.size()[0] == 3);
        assert_eq!((g.lengths.size(), g.scores.size(), g.scores.kind()), (vec![3], vec![3], Kind::Float));
        assert_eq!(g.final_state.h().unwrap().size(), [3, 5]);
        let config = BeamSearchConfig::new(4, 0, 6).with_length_penalty(0.6);
        let out = beam_search(&dec, &dec.initial_state(3).unwrap(), &start, &config).unwrap();
        let l = out.tokens.size()[2];
        assert_eq!(out.tokens.size(), [3, 4, l]);
        assert_eq!(
            (out.lengths.size(), out.scores.size(), out.log_probs.size()),
            (vec![3, 4], vec![3, 4], vec![3, 4])
        );
        assert_eq!(
            out.final_state.leaves().iter().map(|t| t.size()).collect::<Vec<_>>(),
            [vec![12, 5], vec![12, 5]]
        );
        // Teacher-forcing each beam's tokens reproduces its log-probability and final state.
        let (tokens, lengths, log_probs) = (ints(&out.tokens), ints(&out.lengths), floats(&out.log_probs));
        for i in 0..12usize {
            let (b, len) = (i / 4, lengths[i] as usize);
            let mut state = dec.initial_state(1).unwrap();
            let (mut prev, mut sum) = (Tensor::from_slice(&[b as i64 + 1]), 0.0);
            for t in 0..len {
                let (logits, next) = dec.step(&prev, &state).unwrap();
                let tok = tokens[i * l as usize + t];
                sum += logits.log_softmax(-1, Kind::Double).double_value(&[0, tok]);
                (prev, state) = (Tensor::from_slice(&[tok]), next);
            }
            assert!((sum - log_probs[i]).abs() < 1e-4, "beam {i}: {sum} vs {}", log_probs[i]);
            let row = out.final_state.narrow_rows(i as i64, 1).unwrap();
            assert!(close(row.h().unwrap(), state.h().unwrap()), "beam {i}");
        }
        let e = beam_search(&dec, &dec.initial_state(3).unwrap(), &start, &BeamSearchConfig::new(2, 7, 3))
            .unwrap_err();
        assert!(e.to_string().contains("end_token 7 is outside the vocabulary 0..7"), "{e}");
    }
}
