//! [`greedy_decode`]: argmax decoding, each row stopping at its end token.

use super::check::{
    check_settings, check_start, host_flags, index, log_softmax, restore_index, split_rows, StepCheck,
};
use super::TokenDecoder;
use couplet_modules::{Result, TorchContext};
use couplet_rnn::State;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

const NAME: &str = "greedy_decode";

/// The options of [`greedy_decode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreedyOptions {
    /// The token that ends a sequence, in `0..V`.
    pub end_token: i64,
    /// The most tokens generated per row (the end token included), `>= 1`.
    pub max_len: i64,
}

impl GreedyOptions {
    /// Options ending rows at `end_token` or after `max_len` tokens.
    pub fn new(end_token: i64, max_len: i64) -> Self {
        GreedyOptions { end_token, max_len }
    }
}

/// The result of [`greedy_decode`] for `B` rows.
#[derive(Debug)]
pub struct DecodeOutput {
    /// `[B, L]` int64: the generated tokens, the end token included; positions past a
    /// row's length hold the end token. `L` is the longest length (`<= max_len`).
    pub tokens: Tensor,
    /// `[B]` int64: each row's length, counting its end token (TF `dynamic_decode`); rows
    /// that never produced it have length `max_len`.
    pub lengths: Tensor,
    /// `[B]` (`Float`, `Double` for double logits): Σ log-softmax of the chosen tokens.
    pub scores: Tensor,
    /// Each row's state after the step that produced its last token (`B` rows).
    pub final_state: State,
}

/// Rows set aside when they finished.
struct Done {
    rows: Vec<i64>,
    scores: Tensor,
    state: State,
}

/// Greedy decoding: from `start_tokens [B]` (int64) and `initial_state` (`B` rows), feeds
/// each row's argmax token back until the row produces `options.end_token` or reaches
/// `options.max_len` tokens. Finished rows are dropped from the batch, so they cost nothing
/// afterwards (the decoder is stepped on the running rows only).
///
/// An empty batch (`B = 0`) gives empty outputs with `L = 0` without stepping the decoder.
/// Ties between logits go to the lowest token id.
///
/// # Errors
/// - [`Error::Config`](couplet_modules::Error::Config) if `end_token < 0`, `max_len < 1`, or
///   `end_token >= V` (checked at the first step);
/// - [`Error::Shape`](couplet_modules::Error::Shape) if `start_tokens` is not int64 `[B]`,
///   `initial_state` does not have `B` rows, or the decoder returns logits that are not a
///   floating `[rows, V]` (with the same `V` at every step) or a state with other rows;
/// - errors of the decoder itself.
///
/// Every error of this function names `greedy_decode`.
pub fn greedy_decode<D: TokenDecoder + ?Sized>(
    decoder: &D,
    initial_state: &State,
    start_tokens: &Tensor,
    options: &GreedyOptions,
) -> Result<DecodeOutput> {
    decode_rows(NAME, decoder, initial_state, start_tokens, options, |_, logp, _| {
        logp.f_argmax(-1, false).ctx(NAME)
    })
}

/// The decoding loop shared by [`greedy_decode`] and
/// [`sample_decode`](super::sample_decode): at each step `choose(logits, logp, rows)` picks
/// the next token `[n]` of each running row from the raw `logits [n, V]` and their
/// log-softmax `logp`, `rows` being the running rows' original ids; scores add the chosen
/// tokens' `logp`. Finished rows leave the batch. Every error names `name`.
pub(super) fn decode_rows<D: TokenDecoder + ?Sized>(
    name: &'static str,
    decoder: &D,
    initial_state: &State,
    start_tokens: &Tensor,
    options: &GreedyOptions,
    mut choose: impl FnMut(&Tensor, &Tensor, &[i64]) -> Result<Tensor>,
) -> Result<DecodeOutput> {
    let (end, max_len) = (options.end_token, options.max_len);
    check_settings(name, end, max_len)?;
    let b = check_start(name, start_tokens, initial_state)?;
    let device = start_tokens.device();
    if b == 0 {
        let tokens = Tensor::f_zeros([0, 0], (Kind::Int64, device)).ctx(name)?;
        let lengths = Tensor::f_zeros([0], (Kind::Int64, device)).ctx(name)?;
        let scores = Tensor::f_zeros([0], (Kind::Float, device)).ctx(name)?;
        return Ok(DecodeOutput { tokens, lengths, scores, final_state: initial_state.clone() });
    }
    let mut check = StepCheck::new(name, end);
    let mut rows: Vec<i64> = (0..b).collect();
    let mut rows_t = index(name, &rows, device)?;
    let mut lengths = vec![0i64; b as usize];
    let mut tokens = start_tokens.shallow_clone();
    let mut state = initial_state.clone();
    let mut scores: Option<Tensor> = None;
    // Per step: the original rows that ran and the tokens they chose.
    let (mut step_rows, mut step_times, mut step_tokens) = (Vec::new(), Vec::new(), Vec::new());
    let mut done: Vec<Done> = Vec::new();
    for t in 0..max_len {
        let n = rows.len() as i64;
        let (logits, next_state) = decoder.step(&tokens, &state)?;
        check.check(&logits, &next_state, n)?;
        let logp = log_softmax(name, &logits)?;
        let choice = choose(&logits, &logp, &rows)?;
        let chosen =
            logp.f_gather(1, &choice.f_view([n, 1]).ctx(name)?, false).ctx(name)?.f_view([n]).ctx(name)?;
        let total = match &scores {
            Some(s) => s.f_add(&chosen).ctx(name)?,
            None => chosen,
        };
        step_rows.push(rows_t.shallow_clone());
        step_times.push(Tensor::f_full([n], t, (Kind::Int64, device)).ctx(name)?);
        step_tokens.push(choice.shallow_clone());
        let last = t + 1 == max_len;
        let ended =
            if last { vec![true; n as usize] } else { host_flags(name, &choice.f_eq(end).ctx(name)?)? };
        let (finished, keep) = split_rows(&ended);
        for &i in &finished {
            lengths[rows[i as usize] as usize] = t + 1;
        }
        if keep.is_empty() {
            done.push(Done { rows, scores: total, state: next_state });
            break;
        }
        if finished.is_empty() {
            (scores, state, tokens) = (Some(total), next_state, choice);
            continue;
        }
        let (fin_t, keep_t) = (index(name, &finished, device)?, index(name, &keep, device)?);
        done.push(Done {
            rows: finished.iter().map(|&i| rows[i as usize]).collect(),
            scores: total.f_index_select(0, &fin_t).ctx(name)?,
            state: next_state.select_rows(&fin_t)?,
        });
        rows = keep.iter().map(|&i| rows[i as usize]).collect();
        rows_t = rows_t.f_index_select(0, &keep_t).ctx(name)?;
        scores = Some(total.f_index_select(0, &keep_t).ctx(name)?);
        state = next_state.select_rows(&keep_t)?;
        tokens = choice.f_index_select(0, &keep_t).ctx(name)?;
    }
    assemble(name, b, end, &lengths, done, (&step_rows, &step_times, &step_tokens))
}

/// Puts the set-aside rows back in their original order and scatters the tokens.
fn assemble(
    name: &str,
    b: i64,
    end: i64,
    lengths: &[i64],
    done: Vec<Done>,
    (rows, times, tokens): (&[Tensor], &[Tensor], &[Tensor]),
) -> Result<DecodeOutput> {
    let device = rows[0].device();
    let order: Vec<i64> = done.iter().flat_map(|d| d.rows.iter().copied()).collect();
    let restore = restore_index(name, &order, 1, device)?;
    let scores = Tensor::f_cat(&done.iter().map(|d| d.scores.shallow_clone()).collect::<Vec<_>>(), 0)
        .ctx(name)?
        .f_index_select(0, &restore)
        .ctx(name)?;
    let states: Vec<State> = done.into_iter().map(|d| d.state).collect();
    let final_state = State::cat_rows(&states)?.select_rows(&restore)?;
    let l = lengths.iter().copied().max().unwrap_or(0);
    let rows = Tensor::f_cat(rows, 0).ctx(name)?;
    let times = Tensor::f_cat(times, 0).ctx(name)?;
    let flat = rows.f_mul_scalar(l).and_then(|r| r.f_add(&times)).ctx(name)?;
    let values = Tensor::f_cat(tokens, 0).ctx(name)?;
    let mut out = Tensor::f_full([b * l], end, (Kind::Int64, device)).ctx(name)?;
    out = out.f_index_put_(&[Some(flat)], &values, false).ctx(name)?.f_view([b, l]).ctx(name)?;
    let lengths = index(name, lengths, device)?;
    Ok(DecodeOutput { tokens: out, lengths, scores, final_state })
}

#[cfg(test)]
mod tests {
    use super::super::toy::{floats, greedy_reference, ints, log_softmax, table, Counting, Markov};
    use super::*;
    use couplet_modules::Error;

    fn start(tokens: &[i64]) -> Tensor {
        Tensor::from_slice(tokens)
    }

    #[test]
    fn follows_the_argmax_stops_at_the_end_token_and_pads_with_it() {
        // V = 3, end = 0. After 1 the argmax is 2; after 2 it is 0 (the end token).
        let t = vec![vec![0.0, 0.0, 0.0], vec![0.0, 0.0, 1.0], vec![2.0, 0.0, 1.0]];
        let m = Markov::new(vec![t.clone(), t], 4);
        let out =
            greedy_decode(&m, &m.initial_state(&[0, 1]), &start(&[1, 2]), &GreedyOptions::new(0, 5)).unwrap();
        assert_eq!(out.tokens.size(), [2, 2]);
        assert_eq!(ints(&out.tokens), [2, 0, 0, 0]);
        assert_eq!(ints(&out.lengths), [2, 1]);
        let e = std::f64::consts::E;
        let row0 = (1.0 - (2.0 + e).ln()) + (2.0 - (e * e + 1.0 + e).ln());
        let row1 = 2.0 - (e * e + 1.0 + e).ln();
        let s = floats(&out.scores);
        assert!((s[0] - row0).abs() < 1e-12 && (s[1] - row1).abs() < 1e-12, "{s:?}");
        assert_eq!(out.scores.kind(), Kind::Double);
        // Final states: row id, steps taken, tokens fed (the end token is never fed).
        let st = floats(out.final_state.h().unwrap());
        assert_eq!(st, [0.0, 2.0, 1.0, 2.0, -1.0, -1.0, 1.0, 1.0, 2.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn finished_rows_leave_the_batch() {
        // Row 0 ends at its first token, row 1 at its second, row 2 never (table b).
        let a = vec![vec![0.0, 0.0, 0.0], vec![0.0, 0.0, 1.0], vec![2.0, 0.0, 1.0]];
        let b = vec![vec![0.0, 1.0, 0.0]; 3];
        let m = Counting(Markov::new(vec![a.clone(), a, b], 4), Default::default());
        let out =
            greedy_decode(&m, &m.0.initial_state(&[0, 1, 2]), &start(&[2, 1, 1]), &GreedyOptions::new(0, 4))
                .unwrap();
        assert_eq!(*m.1.borrow(), [3, 2, 1, 1]);
        assert_eq!(ints(&out.lengths), [1, 2, 4]);
        assert_eq!(ints(&out.tokens), [0, 0, 0, 0, 2, 0, 0, 0, 1, 1, 1, 1]);
        let st = floats(out.final_state.h().unwrap());
        assert_eq!(&st[..2], [0.0, 1.0]);
        assert_eq!(&st[6..8], [1.0, 2.0]);
        assert_eq!(&st[12..14], [2.0, 4.0]);
    }

    #[test]
    fn rows_without_the_end_token_stop_at_max_len() {
        let t = vec![vec![-5.0, 1.0], vec![-5.0, 1.0]];
        let m = Markov::new(vec![t], 3);
        let out = greedy_decode(&m, &m.initial_state(&[0]), &start(&[1]), &GreedyOptions::new(0, 3)).unwrap();
        assert_eq!(ints(&out.tokens), [1, 1, 1]);
        assert_eq!(ints(&out.lengths), [3]);
        let want = 3.0 * log_softmax(&[-5.0, 1.0])[1];
        assert!((floats(&out.scores)[0] - want).abs() < 1e-12);
    }

    #[test]
    fn batch_rows_are_independent_and_match_the_host_reference() {
        let tables: Vec<_> = (0..3).map(|s| table(4, s + 10)).collect();
        let m = Markov::new(tables.clone(), 8);
        let starts = [1i64, 2, 3];
        let out = greedy_decode(&m, &m.initial_state(&[0, 1, 2]), &start(&starts), &GreedyOptions::new(0, 8))
            .unwrap();
        let l = out.tokens.size()[1] as usize;
        let (tokens, lengths, scores) = (ints(&out.tokens), ints(&out.lengths), floats(&out.scores));
        for (b, &s) in starts.iter().enumerate() {
            let (want, lp) = greedy_reference(&tables[b], s, 0, 8);
            assert_eq!(lengths[b] as usize, want.len());
            let mut padded = want.clone();
            padded.resize(l, 0);
            assert_eq!(&tokens[b * l..(b + 1) * l], padded.as_slice());
            assert!((scores[b] - lp).abs() < 1e-12);
            let single = Markov::new(vec![tables[b].clone()], 8);
            let one =
                greedy_decode(&single, &single.initial_state(&[0]), &start(&[s]), &GreedyOptions::new(0, 8))
                    .unwrap();
            assert_eq!(ints(&one.tokens), want);
            assert_eq!(floats(&one.scores), [scores[b]]);
        }
    }

    #[test]
    fn an_empty_batch_gives_empty_outputs() {
        let m = Markov::new(vec![table(3, 1)], 2);
        let out = greedy_decode(&m, &m.initial_state(&[]), &start(&[]), &GreedyOptions::new(0, 4)).unwrap();
        assert_eq!(out.tokens.size(), [0, 0]);
        assert_eq!(out.lengths.size(), [0]);
        assert_eq!(out.scores.size(), [0]);
    }

    /// A decoder returning logits of a fixed shape.
    struct Bad(Vec<i64>, Kind);

    impl TokenDecoder for Bad {
        fn step(&self, _: &Tensor, state: &State) -> Result<(Tensor, State)> {
            Ok((Tensor::zeros(self.0.as_slice(), (self.1, tch::Device::Cpu)), state.clone()))
        }
    }

    #[test]
    fn bad_arguments_are_typed_errors_naming_greedy_decode() {
        let m = Markov::new(vec![table(3, 1)], 4);
        let s0 = m.initial_state(&[0]);
        let err = |r: Result<DecodeOutput>| r.unwrap_err();
        let e = err(greedy_decode(&m, &s0, &start(&[1]), &GreedyOptions::new(0, 0)));
        assert!(matches!(e, Error::Config { .. }) && e.to_string().starts_with("greedy_decode: "), "{e}");
        let e = err(greedy_decode(&m, &s0, &start(&[1]), &GreedyOptions::new(-1, 3)));
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let e = err(greedy_decode(&m, &s0, &start(&[1]), &GreedyOptions::new(3, 3)));
        assert_eq!(
            e.to_string(),
            "greedy_decode: bad configuration: end_token 3 is outside the vocabulary 0..3"
        );
        let e = err(greedy_decode(&m, &s0, &Tensor::from_slice(&[1.0f32]), &GreedyOptions::new(0, 3)));
        assert!(
            matches!(e, Error::Shape { .. }) && e.to_string().starts_with("greedy_decode: start_tokens"),
            "{e}"
        );
        let e = err(greedy_decode(&m, &s0, &start(&[1]).view([1, 1]), &GreedyOptions::new(0, 3)));
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = err(greedy_decode(&m, &s0, &start(&[1, 1]), &GreedyOptions::new(0, 3)));
        assert!(e.to_string().starts_with("greedy_decode: initial_state"), "{e}");
        let bad = Bad(vec![2, 3], Kind::Float);
        let e = err(greedy_decode(&bad, &s0, &start(&[1]), &GreedyOptions::new(0, 3)));
        assert_eq!(
            e.to_string(),
            "greedy_decode: decoder logits must be a floating tensor [1, V] with V >= 1, got Float [2, 3]"
        );
        let bad = Bad(vec![1, 3], Kind::Int64);
        let e = err(greedy_decode(&bad, &s0, &start(&[1]), &GreedyOptions::new(0, 3)));
        assert!(e.to_string().starts_with("greedy_decode: decoder logits"), "{e}");
    }
}
