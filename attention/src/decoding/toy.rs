//! Test helpers: a Markov-chain [`TokenDecoder`] whose state records its token history, and
//! an exhaustive enumeration of every sequence it can produce.

use super::TokenDecoder;
use couplet_modules::Result;
use couplet_rnn::State;
use tch::{Kind, Tensor};

/// Logits `tables[row][step * V + previous token][next token]` (see [`logits_row`]). The state is
/// one `Double` leaf `[B, 2 + hist]`: the batch row (selecting its table), the number of
/// steps taken, then the tokens fed so far (`-1` where none yet).
pub(crate) struct Markov {
    pub tables: Vec<Vec<Vec<f64>>>,
    pub hist: usize,
}

impl Markov {
    pub fn new(tables: Vec<Vec<Vec<f64>>>, hist: usize) -> Self {
        Markov { tables, hist }
    }

    /// The state of rows using tables `ids`.
    pub fn initial_state(&self, ids: &[usize]) -> State {
        let w = 2 + self.hist;
        let mut v = vec![-1.0; ids.len() * w];
        for (r, &id) in ids.iter().enumerate() {
            v[r * w] = id as f64;
            v[r * w + 1] = 0.0;
        }
        State::Tensor(Tensor::from_slice(&v).view([ids.len() as i64, w as i64]))
    }
}

impl TokenDecoder for Markov {
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
        let w = 2 + self.hist;
        let toks = ints(tokens);
        let mut st = floats(state.h().unwrap());
        let v = self.tables[0][0].len();
        let mut logits = Vec::with_capacity(toks.len() * v);
        for (r, &tok) in toks.iter().enumerate() {
            let row = &mut st[r * w..(r + 1) * w];
            let count = row[1] as usize;
            logits.extend_from_slice(logits_row(&self.tables[row[0] as usize], count, tok));
            row[2 + count] = tok as f64;
            row[1] += 1.0;
        }
        let n = toks.len() as i64;
        let logits = Tensor::from_slice(&logits).view([n, v as i64]);
        Ok((logits, State::Tensor(Tensor::from_slice(&st).view([n, w as i64]))))
    }
}

/// The logits after `prev` at step `step`: row `(step * V + prev) % rows` of `table`, so a
/// `[V][V]` table is the same at every step and a `[S * V][V]` one changes at each step
/// (which keeps sequences of the same transitions in another order from tying).
pub(crate) fn logits_row(table: &[Vec<f64>], step: usize, prev: i64) -> &[f64] {
    let v = table[0].len();
    &table[(step * v + prev as usize) % table.len()]
}

pub(crate) fn ints(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
}

pub(crate) fn floats(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
}

/// `log_softmax(row)` on the host.
pub(crate) fn log_softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

/// GNMT's length penalty.
pub(crate) fn lp(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
}

/// A complete sequence with its log-probability and score.
#[derive(Clone, Debug)]
pub(crate) struct Seq {
    pub tokens: Vec<i64>,
    pub log_prob: f64,
    pub score: f64,
}

/// Every sequence the chain `table` produces from `start`: ending at the first `end` or
/// after `max_len` tokens; sorted by `log_prob / lp(len)`, best first.
pub(crate) fn enumerate(table: &[Vec<f64>], start: i64, end: i64, max_len: usize, alpha: f64) -> Vec<Seq> {
    fn walk(
        table: &[Vec<f64>],
        prefix: &mut Vec<i64>,
        lp_sum: f64,
        last: i64,
        end: i64,
        max: usize,
        out: &mut Vec<Seq>,
    ) {
        let step = prefix.len();
        for (tok, l) in log_softmax(logits_row(table, step, last)).into_iter().enumerate() {
            prefix.push(tok as i64);
            if tok as i64 == end || prefix.len() == max {
                out.push(Seq { tokens: prefix.clone(), log_prob: lp_sum + l, score: 0.0 });
            } else {
                walk(table, prefix, lp_sum + l, tok as i64, end, max, out);
            }
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(table, &mut Vec::new(), 0.0, start, end, max_len, &mut out);
    for s in &mut out {
        s.score = s.log_prob / lp(s.tokens.len(), alpha);
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// A deterministic table `[8 * v][v]` of logits in `[-2, 2)`: a chain that changes at each
/// of 8 steps.
pub(crate) fn table(v: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
    };
    (0..8 * v).map(|_| (0..v).map(|_| next()).collect()).collect()
}

/// Greedy decoding of the chain on the host: `(tokens, log_prob)`.
pub(crate) fn greedy_reference(table: &[Vec<f64>], start: i64, end: i64, max_len: usize) -> (Vec<i64>, f64) {
    let (mut last, mut out, mut sum) = (start, Vec::new(), 0.0);
    while out.len() < max_len {
        let l = log_softmax(logits_row(table, out.len(), last));
        let best = (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b });
        out.push(best as i64);
        sum += l[best];
        last = best as i64;
        if last == end {
            break;
        }
    }
    (out, sum)
}

/// Records the number of rows of every step of the decoder it wraps.
pub(crate) struct Counting<D>(pub D, pub std::cell::RefCell<Vec<i64>>);

impl<D: TokenDecoder> TokenDecoder for Counting<D> {
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
        self.1.borrow_mut().push(tokens.size()[0]);
        self.0.step(tokens, state)
    }
}
