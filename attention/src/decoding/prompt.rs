//! [`prime`]: runs a prompt through a model so that greedy, sampling or beam decoding
//! continues from each row's last prompt token.

use couplet_modules::util::check_defined;
use couplet_modules::{Error, Forward, Mode, Result, TorchContext};
use couplet_rnn::{dynamic_rnn, sequence_mask, RnnCore, State, UnrollOptions};
use tch::{Kind, Tensor};

const NAME: &str = "prime";

/// Where decoding continues after a prompt: pass `state` and `start_tokens` to
/// [`greedy_decode`](super::greedy_decode), [`sample_decode`](super::sample_decode) or
/// [`beam_search`](super::beam_search) with the [`CoreDecoder`](super::CoreDecoder) built
/// from the same embedding and core.
#[derive(Debug)]
pub struct Primed {
    /// Each row's state after its prompt tokens but the last (`B` rows).
    pub state: State,
    /// `[B]` int64: each row's last prompt token, `prompt[b, len[b] - 1]`, the first token fed
    /// to the decoder.
    pub start_tokens: Tensor,
}

/// Runs the prompts `prompt [B, T]` (int64; row `b`'s prompt is `prompt[b, ..lengths[b]]`,
/// each length in `1..=T`, the rest padding of any value) through `embed` and `core` from
/// `initial_state`: the tokens before each row's last are embedded and unrolled with
/// [`dynamic_rnn`] under per-row lengths `lengths[b] - 1` (so rows of different lengths stop at
/// their own ends, and a one-token prompt keeps the initial state), and the last token
/// becomes the row's start token. Decoding from the result with a [`CoreDecoder`] over the
/// same `embed` and `core` continues each prompt exactly as if its tokens had been fed one
/// step at a time: the first decoder step consumes the last prompt token and predicts the
/// first new one. Padding positions are embedded as id 0 (never read), so they need not be
/// valid ids.
///
/// [`CoreDecoder`]: super::CoreDecoder
///
/// # Errors
/// [`Error::Shape`] naming `prime` if `prompt` is not int64 `[B, T]` with `T >= 1` or
/// `lengths` does not have `B` entries; [`Error::InvalidArgument`] for a length outside
/// `1..=T` (naming the row); the errors of `embed` (an id outside its vocabulary), of
/// [`dynamic_rnn`] (an initial state of another structure or batch) and of the core. The
/// last prompt tokens are not embedded here: the decoder's first step checks them.
pub fn prime<E, C>(
    embed: &E,
    core: &C,
    initial_state: &State,
    prompt: &Tensor,
    lengths: &[i64],
    mode: Mode,
) -> Result<Primed>
where
    E: Forward + ?Sized,
    C: RnnCore + ?Sized,
{
    check_defined(NAME, "prompt", prompt)?;
    let size = prompt.size();
    if prompt.kind() != Kind::Int64 || size.len() != 2 || size[1] < 1 {
        return Err(Error::shape(NAME, "prompt", "an int64 tensor [B, T] with T >= 1", size));
    }
    let (b, t) = (size[0], size[1]);
    if lengths.len() as i64 != b {
        return Err(Error::shape(NAME, "lengths", format!("[{b}] (one per prompt row)"), [lengths.len()]));
    }
    if let Some((row, &len)) = lengths.iter().enumerate().find(|(_, &l)| !(1..=t).contains(&l)) {
        return Err(Error::invalid(NAME, format!("lengths[{row}] = {len} is outside 1..={t}")));
    }
    let device = prompt.device();
    let last = Tensor::from_slice(lengths)
        .f_to_device(device)
        .and_then(|l| l.f_sub_scalar(1))
        .and_then(|l| l.f_view([b, 1]))
        .ctx(NAME)?;
    let start_tokens = prompt.f_gather(1, &last, false).and_then(|s| s.f_view([b])).ctx(NAME)?;
    let fed: Vec<i64> = lengths.iter().map(|l| l - 1).collect();
    let steps = fed.iter().copied().max().unwrap_or(0);
    if steps == 0 {
        return Ok(Primed { state: initial_state.clone(), start_tokens });
    }
    // Positions at or past each row's last token are never read: embed them as id 0.
    let real = sequence_mask(fed.as_slice(), Some(steps))?.f_to_device(device).ctx(NAME)?;
    let ids = prompt.f_narrow(1, 0, steps).and_then(|p| p.f_where_scalarother(&real, 0)).ctx(NAME)?;
    let inputs = embed.forward_t(&ids, mode)?;
    let options = UnrollOptions::new(mode).with_lengths(&fed).with_initial_state(initial_state);
    let (_, state) = dynamic_rnn(core, &inputs, &options)?;
    Ok(Primed { state, start_tokens })
}

#[cfg(test)]
mod tests {
    use super::super::toy::{floats, ints};
    use super::super::{
        beam_search, greedy_decode, sample_decode, BeamSearchConfig, CoreDecoder, GreedyOptions,
        SampleOptions, TokenDecoder,
    };
    use super::*;
    use couplet_modules::{Embed, EmbedConfig, Linear, LinearConfig, Store};
    use couplet_rnn::{Lstm, LstmConfig};

    fn parts(store: &Store) -> (Embed, Lstm, Linear) {
        let root = store.root();
        tch::manual_seed(3);
        let embed = Embed::new(&root, EmbedConfig::new(7, 4)).unwrap();
        let lstm = Lstm::new(&root, LstmConfig::new(5).with_input_size(4)).unwrap();
        let proj = Linear::new(&root, LinearConfig::new(7).with_input_size(5)).unwrap();
        (embed, lstm, proj)
    }

    /// Feeds row `b`'s prompt but its last token one step at a time (batch of one).
    fn fed_by_hand(dec: &impl TokenDecoder, s0: &State, prompt: &[i64]) -> State {
        let mut state = s0.clone();
        for &tok in &prompt[..prompt.len() - 1] {
            state = dec.step(&Tensor::from_slice(&[tok]), &state).unwrap().1;
        }
        state
    }

    fn close(a: &Tensor, b: &Tensor) -> bool {
        a.size() == b.size() && floats(a).iter().zip(floats(b)).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn continues_each_row_as_if_fed_step_by_step() {
        let store = Store::cpu();
        let (embed, lstm, proj) = parts(&store);
        let dec = CoreDecoder::new(&embed, &lstm, &proj);
        // Padding is -1 (not a valid id) past each row's length.
        let rows: [&[i64]; 3] = [&[1, 2, 3, 4], &[5], &[6, 2]];
        let mut flat = vec![-1i64; 12];
        for (b, r) in rows.iter().enumerate() {
            flat[b * 4..b * 4 + r.len()].copy_from_slice(r);
        }
        let prompt = Tensor::from_slice(&flat).view([3, 4]);
        let lengths = [4, 1, 2];
        let s0 = dec.initial_state(3).unwrap();
        let primed = prime(&embed, &lstm, &s0, &prompt, &lengths, Mode::Eval).unwrap();
        assert_eq!(ints(&primed.start_tokens), [4, 5, 2]);
        let mut by_hand = Vec::new();
        for (b, r) in rows.iter().enumerate() {
            let state = fed_by_hand(&dec, &dec.initial_state(1).unwrap(), r);
            let row = primed.state.narrow_rows(b as i64, 1).unwrap();
            for (x, y) in row.leaves().iter().zip(state.leaves()) {
                assert!(close(x, y), "row {b}");
            }
            by_hand.push(state);
        }
        let by_hand = State::cat_rows(&by_hand).unwrap();
        // Greedy, sampling and beam search continue from the primed rows as from the hand-fed ones.
        let greedy = GreedyOptions::new(0, 6);
        let g = greedy_decode(&dec, &primed.state, &primed.start_tokens, &greedy).unwrap();
        let want = greedy_decode(&dec, &by_hand, &primed.start_tokens, &greedy).unwrap();
        assert!(g.tokens.equal(&want.tokens) && close(&g.scores, &want.scores));
        let sample = SampleOptions::new(0, 6).with_seed(11).with_top_k(3);
        let s = sample_decode(&dec, &primed.state, &primed.start_tokens, &sample).unwrap();
        let want = sample_decode(&dec, &by_hand, &primed.start_tokens, &sample).unwrap();
        assert!(s.tokens.equal(&want.tokens));
        let beam = BeamSearchConfig::new(3, 0, 6);
        let bo = beam_search(&dec, &primed.state, &primed.start_tokens, &beam).unwrap();
        let want = beam_search(&dec, &by_hand, &primed.start_tokens, &beam).unwrap();
        assert!(bo.tokens.equal(&want.tokens) && close(&bo.scores, &want.scores));
    }

    #[test]
    fn one_token_prompts_keep_the_initial_state() {
        let store = Store::cpu();
        let (embed, lstm, _) = parts(&store);
        let s0 = lstm.initial_state(2).unwrap();
        let primed = prime(
            &embed,
            &lstm,
            &s0,
            &Tensor::from_slice(&[3i64, 9, 4, 9]).view([2, 2]),
            &[1, 1],
            Mode::Eval,
        )
        .unwrap();
        assert_eq!(ints(&primed.start_tokens), [3, 4]);
        assert!(primed.state.h().unwrap().equal(s0.h().unwrap()));
    }

    #[test]
    fn bad_prompts_are_typed_errors() {
        let store = Store::cpu();
        let (embed, lstm, _) = parts(&store);
        let s0 = lstm.initial_state(2).unwrap();
        let p = Tensor::from_slice(&[1i64, 2, 3, 4]).view([2, 2]);
        let e = |r: Result<Primed>| r.unwrap_err().to_string();
        assert_eq!(
            e(prime(&embed, &lstm, &s0, &p, &[1, 3], Mode::Eval)),
            "prime: lengths[1] = 3 is outside 1..=2"
        );
        assert!(e(prime(&embed, &lstm, &s0, &p, &[0, 1], Mode::Eval)).contains("lengths[0] = 0"));
        assert_eq!(
            e(prime(&embed, &lstm, &s0, &p, &[1], Mode::Eval)),
            "prime: lengths must be [2] (one per prompt row), got [1]"
        );
        let e2 = e(prime(&embed, &lstm, &s0, &p.to_kind(Kind::Float), &[1, 1], Mode::Eval));
        assert!(e2.starts_with("prime: prompt must be an int64 tensor [B, T]"), "{e2}");
        assert!(e(prime(&embed, &lstm, &s0, &Tensor::new(), &[1, 1], Mode::Eval)).contains("undefined"));
        let bad = Tensor::from_slice(&[8i64, 1, 3, 4]).view([2, 2]);
        assert!(e(prime(&embed, &lstm, &s0, &bad, &[2, 2], Mode::Eval)).starts_with("embed: id 8"));
        let s3 = lstm.initial_state(3).unwrap();
        assert!(e(prime(&embed, &lstm, &s3, &p, &[2, 2], Mode::Eval)).starts_with("dynamic_rnn"));
    }
}
