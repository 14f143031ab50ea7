//! [`beam_search`]: batched beam search with GNMT length normalisation and coverage penalty
//! (Wu et al. 2016).

use super::check::{
    check_settings, check_start, host_flags, index, keep_rows, log_softmax, restore_index, split_rows,
    StepCheck,
};
use super::TokenDecoder;
use couplet_modules::{Error, Result, TorchContext};
use couplet_rnn::State;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

const NAME: &str = "beam_search";

/// The configuration of [`beam_search`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BeamSearchConfig {
    /// The number of beams `K` kept per batch row, `>= 1`.
    pub beam_width: i64,
    /// The token that ends a sequence, in `0..V`.
    pub end_token: i64,
    /// The most tokens generated per beam (the end token included), `>= 1`.
    pub max_len: i64,
    /// GNMT's length penalty exponent `α` (finite): scores are `Σ log p / lp` with
    /// `lp = ((5 + len) / 6)^α`. Default `0.0`: no length normalisation.
    pub length_penalty: f64,
    /// GNMT's coverage penalty weight `β` (finite; TF Addons' `coverage_penalty_weight`):
    /// finished beams' scores gain `β · cp` with `cp = Σ_n log(min(c_n, 1))` over the memory
    /// slots with `c_n > 0`, `c` the beam's attention probabilities
    /// ([`TokenDecoder::attention_probs`]) summed over its steps. Default `0.0`: none.
    #[serde(default)]
    pub coverage_penalty: f64,
}

impl BeamSearchConfig {
    /// A config of `beam_width` beams ending at `end_token` or after `max_len` tokens,
    /// without length normalisation or coverage penalty.
    pub fn new(beam_width: i64, end_token: i64, max_len: i64) -> Self {
        BeamSearchConfig { beam_width, end_token, max_len, length_penalty: 0.0, coverage_penalty: 0.0 }
    }
    /// Sets the length penalty exponent `α` (GNMT uses values in `[0.6, 1.0]`).
    pub fn with_length_penalty(mut self, alpha: f64) -> Self {
        self.length_penalty = alpha;
        self
    }
    /// Sets the coverage penalty weight `β` (GNMT uses values in `[0, 1]`; the decoder must
    /// give [`TokenDecoder::attention_probs`]).
    pub fn with_coverage_penalty(mut self, beta: f64) -> Self {
        self.coverage_penalty = beta;
        self
    }
}

/// The result of [`beam_search`] for `B` batch rows of `K` beams, best first.
#[derive(Debug)]
pub struct BeamOutput {
    /// `[B, K, L]` int64: each beam's tokens, the end token included; positions past a
    /// beam's length hold the end token. `L` is the number of steps run (`<= max_len`).
    pub tokens: Tensor,
    /// `[B, K]` int64: each beam's length, counting its end token; beams that never
    /// produced it have length `max_len`.
    pub lengths: Tensor,
    /// `[B, K]` (`Float`, `Double` for double logits): `log_probs / lp(lengths)`, plus
    /// `β · cp(coverage)` for the beams that produced the end token when a coverage penalty is
    /// set, sorted in decreasing order along `K`.
    pub scores: Tensor,
    /// `[B, K]`: each beam's Σ log-softmax of its tokens (the end token included).
    pub log_probs: Tensor,
    /// `B * K` rows, row `b * K + k` for beam `k` of batch row `b`: the beam's state after
    /// the step that produced its last token.
    pub final_state: State,
}

/// One hypothesis of an n-best list ([`BeamOutput::n_best`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// The tokens, up to and including the end token (or `max_len` tokens without it).
    pub tokens: Vec<i64>,
    /// The beam's score, `log_prob / lp(len)`.
    pub score: f64,
    /// The beam's Σ log-softmax of its tokens.
    pub log_prob: f64,
}

impl BeamOutput {
    /// The `n` best hypotheses of each batch row, best first, with their scores: `B` lists of
    /// at most `min(n, K)` entries each (copied to the host). Beams that hold no sequence
    /// (score `-inf`, when fewer than `K` sequences exist) are left out, so a list can be
    /// shorter than `n`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `beam_search` if `n` is 0;
    /// [`Error::Torch`](couplet_modules::Error::Torch) if the outputs cannot be read.
    pub fn n_best(&self, n: usize) -> Result<Vec<Vec<Hypothesis>>> {
        if n == 0 {
            return Err(Error::invalid(NAME, "n_best needs n >= 1, got 0"));
        }
        let size = self.tokens.size();
        let [b, k, l] = size[..] else {
            return Err(Error::shape(NAME, "tokens", "[B, K, L]", size));
        };
        let host = |t: &Tensor| t.f_to_device(Device::Cpu).and_then(|t| t.f_contiguous()).ctx(NAME);
        let tokens = Vec::<i64>::try_from(host(&self.tokens)?.f_flatten(0, -1).ctx(NAME)?).ctx(NAME)?;
        let lengths = Vec::<i64>::try_from(host(&self.lengths)?.f_flatten(0, -1).ctx(NAME)?).ctx(NAME)?;
        let as_f64 = |t: &Tensor| {
            host(t)?
                .f_to_kind(Kind::Double)
                .and_then(|t| t.f_flatten(0, -1))
                .and_then(Vec::<f64>::try_from)
                .ctx(NAME)
        };
        let (scores, log_probs) = (as_f64(&self.scores)?, as_f64(&self.log_probs)?);
        let (k, l) = (k as usize, l as usize);
        Ok((0..b as usize)
            .map(|row| {
                (0..k.min(n))
                    .map(|j| row * k + j)
                    .filter(|&i| scores[i] != f64::NEG_INFINITY)
                    .map(|i| Hypothesis {
                        tokens: tokens[i * l..i * l + lengths[i] as usize].to_vec(),
                        score: scores[i],
                        log_prob: log_probs[i],
                    })
                    .collect()
            })
            .collect())
    }
}

/// GNMT's `lp = ((5 + len) / 6)^α` of int64 `lengths`, as `kind`.
fn penalty(lengths: &Tensor, alpha: f64, kind: Kind) -> Result<Tensor> {
    lengths
        .f_to_kind(kind)
        .and_then(|l| l.f_add_scalar(5.0))
        .and_then(|l| l.f_div_scalar(6.0))
        .and_then(|l| l.f_pow_tensor_scalar(alpha))
        .ctx(NAME)
}

/// GNMT's coverage penalty `cp = Σ_n log(min(c_n, 1))` over the slots with `c_n > 0` (TF
/// Addons' source-length mask) of accumulated attention probabilities `[rows, N]`: `[rows, 1]`.
fn coverage_penalty(coverage: &Tensor) -> Result<Tensor> {
    let one = Tensor::f_ones([], (coverage.kind(), coverage.device())).ctx(NAME)?;
    coverage
        .f_eq(0.0)
        .and_then(|zero| one.f_where_self(&zero, coverage))
        .and_then(|c| c.f_clamp_max(1.0))
        .and_then(|c| c.f_log())
        .and_then(|l| l.f_sum_dim_intlist([1i64].as_slice(), true, coverage.kind()))
        .ctx(NAME)
}

/// Batch rows set aside when all their beams finished.
struct Done {
    rows: Vec<i64>,
    seqs: Tensor,
    log_probs: Tensor,
    lengths: Tensor,
    finished: Tensor,
    coverage: Option<Tensor>,
    state: State,
}

/// The beams of the batch rows still searched.
struct Beams {
    rows: Vec<i64>,
    tokens: Tensor,
    state: State,
    seqs: Tensor,
    log_probs: Tensor,
    finished: Tensor,
    lengths: Tensor,
    /// Each beam's accumulated attention probabilities `[n * K, N]`, with a coverage penalty
    /// (`None` before the first step).
    coverage: Option<Tensor>,
}

impl Beams {
    /// Rows `keep` (positions among the current rows) of every part.
    fn select(&self, keep: &[i64], k: i64, device: Device) -> Result<Beams> {
        let rows_t = index(NAME, keep, device)?;
        let flat: Vec<i64> = keep.iter().flat_map(|&r| (0..k).map(move |j| r * k + j)).collect();
        let flat = index(NAME, &flat, device)?;
        let by_row = |t: &Tensor| t.f_index_select(0, &rows_t).ctx(NAME);
        Ok(Beams {
            rows: keep.iter().map(|&i| self.rows[i as usize]).collect(),
            tokens: self.tokens.f_index_select(0, &flat).ctx(NAME)?,
            state: self.state.select_rows(&flat)?,
            seqs: self.seqs.f_index_select(0, &flat).ctx(NAME)?,
            log_probs: by_row(&self.log_probs)?,
            finished: by_row(&self.finished)?,
            lengths: by_row(&self.lengths)?,
            coverage: self.coverage.as_ref().map(|c| c.f_index_select(0, &flat)).transpose().ctx(NAME)?,
        })
    }

    fn done(self) -> Done {
        Done {
            rows: self.rows,
            seqs: self.seqs,
            log_probs: self.log_probs,
            lengths: self.lengths,
            finished: self.finished,
            coverage: self.coverage,
            state: self.state,
        }
    }
}

/// The constants of one search.
struct Search {
    k: i64,
    end: i64,
    alpha: f64,
    beta: f64,
    device: Device,
}

impl Search {
    /// One step: scores the `K * V` extensions of each batch row's beams from the decoder's
    /// `logits [n * K, V]` (and, with a coverage penalty, its attention probabilities
    /// `[n * K, N]`), keeps the top `K` and reorders the state by the beams' parents
    /// (finished beams keep their state when `any_finished`).
    fn advance(
        &self,
        beams: Beams,
        logits: &Tensor,
        attention: Option<Tensor>,
        next_state: State,
        v: i64,
        any_finished: bool,
    ) -> Result<Beams> {
        let n = beams.rows.len() as i64;
        let nk = n * self.k;
        let logp = log_softmax(NAME, logits)?;
        let kind = logp.kind();
        let not_end =
            Tensor::f_arange(v, (Kind::Int64, self.device)).and_then(|a| a.f_ne(self.end)).ctx(NAME)?;
        let only_end = Tensor::f_zeros([1, v], (kind, self.device))
            .and_then(|z| z.f_masked_fill(&not_end, f64::NEG_INFINITY))
            .ctx(NAME)?;
        let fin_col = beams.finished.f_view([nk, 1]).ctx(NAME)?;
        let logp = only_end.f_where_self(&fin_col, &logp).ctx(NAME)?;
        let log_probs = beams.log_probs.f_to_kind(kind).ctx(NAME)?;
        let total = log_probs.f_view([nk, 1]).and_then(|l| l.f_add(&logp)).ctx(NAME)?;
        let not_finished = beams.finished.f_logical_not().and_then(|f| f.f_to_kind(Kind::Int64)).ctx(NAME)?;
        let select = if self.alpha == 0.0 {
            total.shallow_clone()
        } else {
            let cand_len = beams.lengths.f_add(&not_finished).and_then(|l| l.f_view([nk, 1])).ctx(NAME)?;
            total.f_div(&penalty(&cand_len, self.alpha, kind)?).ctx(NAME)?
        };
        // TF Addons: the beams' attention is accumulated while they grow, and the penalty
        // scores the extensions of beams finished before this step.
        let coverage = match attention {
            Some(probs) => {
                let growing = not_finished.f_view([nk, 1]).and_then(|g| g.f_to_kind(kind)).ctx(NAME)?;
                let step = probs.f_to_kind(kind).and_then(|p| p.f_mul(&growing)).ctx(NAME)?;
                Some(match &beams.coverage {
                    Some(c) => c.f_add(&step).ctx(NAME)?,
                    None => step,
                })
            }
            None => None,
        };
        let select = match &coverage {
            Some(c) => {
                let fin = fin_col.f_to_kind(kind).ctx(NAME)?;
                let cp =
                    coverage_penalty(c)?.f_mul(&fin).and_then(|p| p.f_mul_scalar(self.beta)).ctx(NAME)?;
                select.f_add(&cp).ctx(NAME)?
            }
            None => select,
        };
        let (_, idx) =
            select.f_view([n, self.k * v]).and_then(|s| s.f_topk(self.k, -1, true, true)).ctx(NAME)?;
        let parent = idx.f_floor_divide_scalar(v).ctx(NAME)?;
        let token = idx.f_remainder(v).ctx(NAME)?;
        let parent_fin = beams.finished.f_gather(1, &parent, false).ctx(NAME)?;
        let parent_grow = not_finished.f_gather(1, &parent, false).ctx(NAME)?;
        let flat_parent = Tensor::f_arange(n, (Kind::Int64, self.device))
            .and_then(|r| r.f_mul_scalar(self.k))
            .and_then(|r| r.f_view([n, 1]))
            .and_then(|r| r.f_add(&parent))
            .and_then(|r| r.f_view([nk]))
            .ctx(NAME)?;
        let state = if any_finished {
            keep_rows(NAME, &fin_col.f_view([nk]).ctx(NAME)?, &beams.state, &next_state)?
        } else {
            next_state
        };
        let seqs = beams.seqs.f_index_select(0, &flat_parent).ctx(NAME)?;
        Ok(Beams {
            rows: beams.rows,
            tokens: token.f_view([nk]).ctx(NAME)?,
            state: state.select_rows(&flat_parent)?,
            seqs: Tensor::f_cat(&[seqs, token.f_view([nk, 1]).ctx(NAME)?], 1).ctx(NAME)?,
            log_probs: total.f_view([n, self.k * v]).and_then(|s| s.f_gather(1, &idx, false)).ctx(NAME)?,
            finished: token.f_eq(self.end).and_then(|e| e.f_logical_or(&parent_fin)).ctx(NAME)?,
            lengths: beams
                .lengths
                .f_gather(1, &parent, false)
                .and_then(|l| l.f_add(&parent_grow))
                .ctx(NAME)?,
            coverage: coverage.map(|c| c.f_index_select(0, &flat_parent)).transpose().ctx(NAME)?,
        })
    }
}

/// Beam search (GNMT, Wu et al. 2016) over `B` independent problems: from `start_tokens [B]`
/// (int64) and `initial_state` (`B` rows, tiled to `B * K` rows, row `b * K + k`), keeps the
/// `K = config.beam_width` best sequences of each batch row.
///
/// Each step scores every extension of every beam (`K * V` candidates per batch row) by
/// `Σ log p / lp(len)` with `lp = ((5 + len) / 6)^α` (`α = 0`: plain `Σ log p`), keeps the
/// top `K`, and reorders the state rows by the beams' parents. Only beam 0 is alive at the
/// start (the others start at log-probability `-inf`), so the first step does not pick
/// duplicates. A finished beam only extends with the end token at log-probability 0: its
/// length, log-probability and state stay as they were. The search stops when every beam
/// of every batch row has finished or after `max_len` steps; batch rows whose beams have
/// all finished are dropped from the batch, so they cost nothing afterwards.
///
/// With a coverage penalty `β` (TF Addons' `coverage_penalty_weight`), each beam sums the
/// decoder's [`attention_probs`](TokenDecoder::attention_probs) `[rows, N]` over the steps it
/// grows (`c [N]`, reordered with the beams), and the extensions of a beam that had finished
/// before the step score `+ β · Σ_n log(min(c_n, 1))` (slots with `c_n = 0`, e.g. padding,
/// left out), as in TF Addons; the returned scores add it to every beam that produced the
/// end token (GNMT's `s(Y, X) = log P / lp + cp`; TF leaves it out of the score of a beam
/// that ends at the very last step).
///
/// The returned beams are sorted by score, best first (ties keep the search's order). When
/// fewer than `K` sequences exist (a small vocabulary and `max_len`), the surplus beams have
/// `scores = log_probs = -inf`, length 0 and only end tokens.
///
/// An empty batch (`B = 0`) gives empty outputs with `L = 0` without stepping the decoder.
///
/// # Errors
/// - [`Error::Config`] if `beam_width < 1`, `end_token < 0`, `max_len < 1`, the length
///   or coverage penalty is not finite, `end_token >= V` (checked at the first step), or a
///   coverage penalty is set and the decoder gives no attention probabilities;
/// - [`Error::Shape`] if `start_tokens` is not int64 `[B]`, `initial_state` does not have
///   `B` rows, or the decoder returns logits that are not a floating `[rows, V]` (with the
///   same `V` at every step) or a state with other rows, or attention probabilities that
///   are not a floating `[rows, N]` (with the same `N` at every step);
/// - errors of the decoder itself.
///
/// Every error of this function names `beam_search`.
pub fn beam_search<D: TokenDecoder + ?Sized>(
    decoder: &D,
    initial_state: &State,
    start_tokens: &Tensor,
    config: &BeamSearchConfig,
) -> Result<BeamOutput> {
    let (k, end, max_len, alpha, beta) =
        (config.beam_width, config.end_token, config.max_len, config.length_penalty, config.coverage_penalty);
    if k < 1 {
        return Err(Error::config(NAME, format!("beam_width must be >= 1, got {k}")));
    }
    check_settings(NAME, end, max_len)?;
    if !alpha.is_finite() {
        return Err(Error::config(NAME, format!("length_penalty must be finite, got {alpha}")));
    }
    if !beta.is_finite() {
        return Err(Error::config(NAME, format!("coverage_penalty must be finite, got {beta}")));
    }
    let b = check_start(NAME, start_tokens, initial_state)?;
    couplet_modules::util::checked_elements(NAME, "B × beam_width", &[b, k])?;
    let device = start_tokens.device();
    let tile = Tensor::f_arange(b, (Kind::Int64, device))
        .and_then(|t| t.f_repeat_interleave_self_int(k, 0, None))
        .ctx(NAME)?;
    let first: Vec<f32> = (0..b * k).map(|i| if i % k == 0 { 0.0 } else { f32::NEG_INFINITY }).collect();
    let mut beams = Beams {
        rows: (0..b).collect(),
        tokens: start_tokens.f_index_select(0, &tile).ctx(NAME)?,
        state: initial_state.select_rows(&tile)?,
        seqs: Tensor::f_zeros([b * k, 0], (Kind::Int64, device)).ctx(NAME)?,
        log_probs: Tensor::from_slice(&first).f_view([b, k]).and_then(|t| t.f_to_device(device)).ctx(NAME)?,
        finished: Tensor::f_zeros([b, k], (Kind::Bool, device)).ctx(NAME)?,
        lengths: Tensor::f_zeros([b, k], (Kind::Int64, device)).ctx(NAME)?,
        coverage: None,
    };
    let search = Search { k, end, alpha, beta, device };
    if b == 0 {
        return assemble(vec![beams.done()], 0, &search);
    }
    let mut slots = None;
    let mut check = StepCheck::new(NAME, end);
    let mut any_finished = false;
    let mut done = Vec::new();
    let mut t = 0;
    loop {
        let n = beams.rows.len() as i64;
        let nk = n * k;
        let (logits, next_state) = decoder.step(&beams.tokens, &beams.state)?;
        let v = check.check(&logits, &next_state, nk)?;
        let attention =
            if beta == 0.0 { None } else { Some(attention_probs(decoder, &next_state, nk, &mut slots)?) };
        beams = search.advance(beams, &logits, attention, next_state, v, any_finished)?;
        if t + 1 == max_len {
            done.push(beams.done());
            return assemble(done, t + 1, &search);
        }
        let dead = beams.log_probs.f_isneginf().ctx(NAME)?;
        let flags =
            Tensor::f_stack(&[&beams.finished, &dead], 0).and_then(|f| f.f_view([2 * nk])).ctx(NAME)?;
        let flags = host_flags(NAME, &flags)?;
        let (fin_h, dead_h) = flags.split_at(nk as usize);
        any_finished = fin_h.iter().any(|&f| f);
        let over: Vec<bool> = (0..n as usize)
            .map(|r| (0..k as usize).all(|j| fin_h[r * k as usize + j] || dead_h[r * k as usize + j]))
            .collect();
        let (finished_rows, keep) = split_rows(&over);
        if keep.is_empty() {
            done.push(beams.done());
            return assemble(done, t + 1, &search);
        }
        if !finished_rows.is_empty() {
            done.push(beams.select(&finished_rows, k, device)?.done());
            beams = beams.select(&keep, k, device)?;
        }
        t += 1;
    }
}

/// The decoder's attention probabilities for `state`, checked to be a floating `[rows, N]`
/// with the `N` of the first step (`slots`).
fn attention_probs<D: TokenDecoder + ?Sized>(
    decoder: &D,
    state: &State,
    rows: i64,
    slots: &mut Option<i64>,
) -> Result<Tensor> {
    let probs = decoder.attention_probs(state)?.ok_or_else(|| {
        Error::config(
            NAME,
            "coverage_penalty needs the decoder's attention probabilities (TokenDecoder::attention_probs returned None; for a CoreDecoder, set with_attention_probs)",
        )
    })?;
    let size = probs.size();
    let n = slots.unwrap_or_else(|| size.get(1).copied().unwrap_or(0));
    if !probs.is_floating_point() || size != [rows, n] {
        return Err(Error::shape(
            NAME,
            "decoder attention probabilities",
            format!("a floating tensor [{rows}, {}]", slots.map_or("N".to_string(), |n| n.to_string())),
            format_args!("{:?} {size:?}", probs.kind()),
        ));
    }
    *slots = Some(n);
    Ok(probs)
}

/// Pads the set-aside rows to `l` steps, puts them back in their original order, clears
/// the beams that hold no sequence, adds the coverage penalty of the finished beams and
/// sorts the beams by score.
fn assemble(done: Vec<Done>, l: i64, search: &Search) -> Result<BeamOutput> {
    let (k, end, alpha, device) = (search.k, search.end, search.alpha, search.device);
    let order: Vec<i64> = done.iter().flat_map(|d| d.rows.iter().copied()).collect();
    let b = order.len() as i64;
    let by_row = restore_index(NAME, &order, 1, device)?;
    let by_beam = restore_index(NAME, &order, k, device)?;
    let mut seqs = Vec::with_capacity(done.len());
    for d in &done {
        let (rows, width) = (d.seqs.size()[0], d.seqs.size()[1]);
        let pad = Tensor::f_full([rows, l - width], end, (Kind::Int64, device)).ctx(NAME)?;
        seqs.push(Tensor::f_cat(&[d.seqs.shallow_clone(), pad], 1).ctx(NAME)?);
    }
    let cat_rows = |f: &dyn Fn(&Done) -> &Tensor, index: &Tensor| {
        Tensor::f_cat(&done.iter().map(|d| f(d).shallow_clone()).collect::<Vec<_>>(), 0)
            .and_then(|t| t.f_index_select(0, index))
            .ctx(NAME)
    };
    let log_probs = cat_rows(&|d| &d.log_probs, &by_row)?;
    let dead = log_probs.f_isneginf().ctx(NAME)?;
    let lengths = cat_rows(&|d| &d.lengths, &by_row)?.f_masked_fill(&dead, 0).ctx(NAME)?;
    let tokens = Tensor::f_cat(&seqs, 0)
        .and_then(|s| s.f_index_select(0, &by_beam))
        .and_then(|s| s.f_view([b, k, l]))
        .and_then(|s| s.f_masked_fill(&dead.f_unsqueeze(-1)?, end))
        .ctx(NAME)?;
    let states: Vec<State> = done.iter().map(|d| d.state.clone()).collect();
    let state = State::cat_rows(&states)?.select_rows(&by_beam)?;
    let scores = if alpha == 0.0 {
        log_probs.shallow_clone()
    } else {
        log_probs.f_div(&penalty(&lengths, alpha, log_probs.kind())?).ctx(NAME)?
    };
    let coverage: Option<Vec<Tensor>> =
        done.iter().map(|d| d.coverage.as_ref().map(Tensor::shallow_clone)).collect();
    let scores = match coverage {
        Some(parts) if search.beta != 0.0 && !parts.is_empty() => {
            let finished = cat_rows(&|d| &d.finished, &by_row)?.f_to_kind(scores.kind()).ctx(NAME)?;
            let c = Tensor::f_cat(&parts, 0).and_then(|c| c.f_index_select(0, &by_beam)).ctx(NAME)?;
            let cp = coverage_penalty(&c)?
                .f_view([b, k])
                .and_then(|p| p.f_mul(&finished))
                .and_then(|p| p.f_mul_scalar(search.beta))
                .ctx(NAME)?;
            scores.f_add(&cp).ctx(NAME)?
        }
        _ => scores,
    };
    let (scores, perm) = scores.f_sort_stable(true, -1, true).ctx(NAME)?;
    let flat = Tensor::f_arange(b, (Kind::Int64, device))
        .and_then(|r| r.f_mul_scalar(k))
        .and_then(|r| r.f_view([b, 1]))
        .and_then(|r| r.f_add(&perm))
        .and_then(|r| r.f_view([b * k]))
        .ctx(NAME)?;
    let perm_l = perm.f_unsqueeze(-1).and_then(|p| p.f_expand([b, k, l], false)).ctx(NAME)?;
    Ok(BeamOutput {
        tokens: tokens.f_gather(1, &perm_l, false).ctx(NAME)?,
        lengths: lengths.f_gather(1, &perm, false).ctx(NAME)?,
        scores,
        log_probs: log_probs.f_gather(1, &perm, false).ctx(NAME)?,
        final_state: state.select_rows(&flat)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::greedy::{greedy_decode, GreedyOptions};
    use super::super::toy::{enumerate, floats, ints, log_softmax, logits_row, table, Counting, Markov};
    use super::*;
    use proptest::prelude::*;

    /// The beams of batch row `b` on the host: `(tokens, length, score, log_prob)`.
    fn beams_of(out: &BeamOutput, b: usize) -> Vec<(Vec<i64>, usize, f64, f64)> {
        let [_, k, l] = out.tokens.size()[..] else { panic!() };
        let (k, l) = (k as usize, l as usize);
        let (tokens, lengths) = (ints(&out.tokens), ints(&out.lengths));
        let (scores, log_probs) = (floats(&out.scores), floats(&out.log_probs));
        (0..k)
            .map(|j| {
                let i = b * k + j;
                (tokens[i * l..(i + 1) * l].to_vec(), lengths[i] as usize, scores[i], log_probs[i])
            })
            .collect()
    }

    /// Σ log p of `tokens[..len]` under the chain `table` from `start`.
    fn log_prob_of(table: &[Vec<f64>], start: i64, tokens: &[i64]) -> f64 {
        let mut last = start;
        tokens.iter().enumerate().fold(0.0, |acc, (step, &t)| {
            let l = log_softmax(logits_row(table, step, last))[t as usize];
            last = t;
            acc + l
        })
    }

    /// Each beam's final state is its own history: table row `b`, `len` steps taken, and
    /// the start token followed by all but its last token fed.
    fn check_history(out: &BeamOutput, b: usize, start: i64, hist: usize) {
        let k = out.tokens.size()[1] as usize;
        let st = floats(out.final_state.h().unwrap());
        let w = 2 + hist;
        for (j, (tokens, len, score, _)) in beams_of(out, b).into_iter().enumerate() {
            if score == f64::NEG_INFINITY {
                continue;
            }
            let row = &st[(b * k + j) * w..(b * k + j + 1) * w];
            assert_eq!(row[0], b as f64);
            assert_eq!(row[1], len as f64, "beam {j}: {tokens:?}");
            let mut fed = vec![start as f64];
            fed.extend(tokens[..len - 1].iter().map(|&t| t as f64));
            assert_eq!(&row[2..2 + len], fed.as_slice(), "beam {j}: {tokens:?}");
        }
    }

    fn run(m: &Markov, starts: &[i64], config: &BeamSearchConfig) -> BeamOutput {
        let ids: Vec<usize> = (0..starts.len()).collect();
        beam_search(m, &m.initial_state(&ids), &Tensor::from_slice(starts), config).unwrap()
    }

    #[test]
    fn n_best_lists_the_exhaustive_best_sequences_with_their_scores() {
        let tables = vec![table(3, 1), table(3, 2)];
        let m = Markov::new(tables.clone(), 4);
        let starts = [1i64, 2];
        let out = run(&m, &starts, &BeamSearchConfig::new(32, 0, 4).with_length_penalty(0.7));
        let lists = out.n_best(3).unwrap();
        assert_eq!(lists.len(), 2);
        for b in 0..2 {
            let want = enumerate(&tables[b], starts[b], 0, 4, 0.7);
            assert_eq!(lists[b].len(), 3);
            for (h, w) in lists[b].iter().zip(&want) {
                assert_eq!(h.tokens, w.tokens);
                assert!((h.score - w.score).abs() < 1e-9 && (h.log_prob - w.log_prob).abs() < 1e-9);
            }
        }
        // Only 31 sequences exist: the 32nd beam is left out of a full list.
        assert!(out.n_best(100).unwrap().iter().all(|l| l.len() == 31));
        assert_eq!(out.n_best(0).unwrap_err().to_string(), "beam_search: n_best needs n >= 1, got 0");
    }

    #[test]
    fn a_wide_beam_returns_the_exhaustive_top_k_in_order() {
        let tables = vec![table(3, 1), table(3, 2)];
        let m = Markov::new(tables.clone(), 4);
        let starts = [1i64, 2];
        for alpha in [0.0, 0.7] {
            for k in [31, 32] {
                let out = run(&m, &starts, &BeamSearchConfig::new(k, 0, 4).with_length_penalty(alpha));
                assert_eq!(out.tokens.size(), [2, k, 4]);
                for b in 0..2 {
                    let want = enumerate(&tables[b], starts[b], 0, 4, alpha);
                    assert_eq!(want.len(), 31);
                    assert!(want.windows(2).all(|w| w[0].score - w[1].score > 1e-9), "ties");
                    let got = beams_of(&out, b);
                    for (g, w) in got.iter().zip(&want) {
                        let mut padded = w.tokens.clone();
                        padded.resize(4, 0);
                        assert_eq!(g.0, padded);
                        assert_eq!(g.1, w.tokens.len());
                        assert!((g.2 - w.score).abs() < 1e-9 && (g.3 - w.log_prob).abs() < 1e-9);
                    }
                    if k == 32 {
                        assert_eq!(got[31], (vec![0; 4], 0, f64::NEG_INFINITY, f64::NEG_INFINITY));
                    }
                    check_history(&out, b, starts[b], 4);
                }
            }
        }
    }

    #[test]
    fn beam_width_one_is_greedy() {
        let tables: Vec<_> = (0..3).map(|s| table(5, 20 + s)).collect();
        let m = Markov::new(tables, 6);
        let starts = [1i64, 2, 3];
        let ids = [0, 1, 2];
        let starts_t = Tensor::from_slice(&starts);
        let greedy = greedy_decode(&m, &m.initial_state(&ids), &starts_t, &GreedyOptions::new(0, 6)).unwrap();
        for alpha in [0.0, 1.0] {
            let out = run(&m, &starts, &BeamSearchConfig::new(1, 0, 6).with_length_penalty(alpha));
            let l = greedy.tokens.size()[1];
            assert_eq!(out.tokens.size(), [3, 1, l]);
            assert_eq!(ints(&out.tokens), ints(&greedy.tokens));
            assert_eq!(ints(&out.lengths), ints(&greedy.lengths));
            assert_eq!(floats(&out.log_probs), floats(&greedy.scores));
            if alpha == 0.0 {
                assert_eq!(floats(&out.scores), floats(&greedy.scores));
            }
            assert_eq!(floats(out.final_state.h().unwrap()), floats(greedy.final_state.h().unwrap()));
        }
    }

    #[test]
    fn the_length_penalty_reranks_as_the_formula_says() {
        // Token 0 ends; after token 1, p(0) = 0.4 and p(1) = 0.6. With max_len 2 the
        // sequences are [0] (ln .4 = -0.916291), [1, 1] (ln .36 = -1.021651) and
        // [1, 0] (ln .24 = -1.427116). With α = 1, lp(1) = 1 and lp(2) = 7/6, so the scores
        // are -0.916291, -0.875701 and -1.223243: [1, 1] overtakes [0].
        let t = vec![vec![0.0, 0.0], vec![0.4f64.ln(), 0.6f64.ln()]];
        let m = Markov::new(vec![t], 2);
        let case = |k, alpha| {
            let out = run(&m, &[1], &BeamSearchConfig::new(k, 0, 2).with_length_penalty(alpha));
            beams_of(&out, 0)
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let plain = case(3, 0.0);
        let order: Vec<_> = plain.iter().map(|x| (x.0.clone(), x.1)).collect();
        assert_eq!(order, [(vec![0, 0], 1), (vec![1, 1], 2), (vec![1, 0], 2)]);
        assert!(close(plain[0].2, -0.916291) && close(plain[1].2, -1.021651) && close(plain[2].2, -1.427116));
        let normed = case(3, 1.0);
        let order: Vec<_> = normed.iter().map(|x| x.0.clone()).collect();
        assert_eq!(order, [vec![1, 1], vec![0, 0], vec![1, 0]]);
        assert!(
            close(normed[0].2, -0.875701) && close(normed[1].2, -0.916291) && close(normed[2].2, -1.223243)
        );
        assert!(close(normed[0].3, -1.021651));
        let two = case(2, 1.0);
        assert_eq!(two.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), [vec![1, 1], vec![0, 0]]);
        let two = case(2, 0.0);
        assert_eq!(two.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), [vec![0, 0], vec![1, 1]]);
    }

    #[test]
    fn candidates_are_compared_by_their_normalised_scores() {
        // Step 0: p(0) = 0.3, p(1) = 0.7; step 1 after 1: p(0) = 0.4, p(1) = 0.6. With K = 2
        // and α = 1, step 1 compares the finished [0] (ln .3 = -1.203973, lp(1) = 1) with
        // [1, 1] (ln .42 * 6/7 = -0.743572) and [1, 0] (ln .28 * 6/7 = -1.091114), so [0]
        // is dropped; unnormalised, [1, 0] (ln .28 = -1.272966) would have lost to [0].
        let t = vec![
            vec![0.0, 0.0],
            vec![0.3f64.ln(), 0.7f64.ln()],
            vec![0.0, 0.0],
            vec![0.4f64.ln(), 0.6f64.ln()],
        ];
        let m = Markov::new(vec![t], 2);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let out = beams_of(&run(&m, &[1], &BeamSearchConfig::new(2, 0, 2).with_length_penalty(1.0)), 0);
        assert_eq!((&out[0].0, &out[1].0), (&vec![1, 1], &vec![1, 0]));
        assert!(close(out[0].2, -0.743572) && close(out[1].2, -1.091114), "{out:?}");
        let out = beams_of(&run(&m, &[1], &BeamSearchConfig::new(2, 0, 2)), 0);
        assert_eq!((&out[0].0, &out[1].0), (&vec![1, 1], &vec![0, 0]));
        assert!(close(out[0].2, -0.867501) && close(out[1].2, -1.203973), "{out:?}");
    }

    #[test]
    fn finished_beams_stay_finished() {
        // After the end token 0 the chain strongly prefers other tokens: a finished beam
        // must still only extend with the end token, at no cost.
        let t = vec![vec![-10.0, 5.0, 5.0], vec![1.5, 0.0, 0.2], vec![0.5, 0.3, 0.0]];
        let m = Markov::new(vec![t.clone()], 5);
        let out = run(&m, &[1], &BeamSearchConfig::new(4, 0, 5).with_length_penalty(0.5));
        let beams = beams_of(&out, 0);
        assert!(beams.iter().any(|b| b.1 < 5), "some beam finishes early");
        for (tokens, len, score, log_prob) in &beams {
            let first_end = tokens.iter().position(|&x| x == 0).map_or(5, |p| p + 1);
            assert_eq!(*len, first_end, "{tokens:?}");
            assert!(tokens[*len..].iter().all(|&x| x == 0), "{tokens:?}");
            let want = log_prob_of(&t, 1, &tokens[..*len]);
            assert!(
                (log_prob - want).abs() < 1e-9
                    && (score - want / ((5.0 + *len as f64) / 6.0).sqrt()).abs() < 1e-9
            );
        }
        check_history(&out, 0, 1, 5);
    }

    #[test]
    fn batch_rows_whose_beams_all_finished_leave_the_batch() {
        // Row 0's chain almost surely ends at once: both its beams end by step 1. Row 1's
        // almost never ends and runs to max_len.
        let quick = vec![vec![5.0, 0.0, 0.0]; 3];
        let slow = vec![vec![-5.0, 0.0, 0.3]; 3];
        let m = Counting(Markov::new(vec![quick, slow], 4), Default::default());
        let config = BeamSearchConfig::new(2, 0, 4);
        let out =
            beam_search(&m, &m.0.initial_state(&[0, 1]), &Tensor::from_slice(&[1i64, 1]), &config).unwrap();
        assert_eq!(*m.1.borrow(), [4, 4, 2, 2]);
        assert_eq!(ints(&out.lengths), [1, 2, 4, 4]);
        check_history(&out, 0, 1, 4);
        check_history(&out, 1, 1, 4);
    }

    #[test]
    fn batch_rows_are_independent() {
        let tables: Vec<_> = (0..3).map(|s| table(4, 40 + s)).collect();
        let starts = [3i64, 1, 2];
        let config = BeamSearchConfig::new(3, 0, 6).with_length_penalty(0.6);
        let m = Markov::new(tables.clone(), 6);
        let out = run(&m, &starts, &config);
        let l = out.tokens.size()[2] as usize;
        let lengths = ints(&out.lengths);
        assert!(lengths.iter().min() != lengths.iter().max(), "rows end at different steps: {lengths:?}");
        for b in 0..3 {
            let single = Markov::new(vec![tables[b].clone()], 6);
            let one = run(&single, &starts[b..b + 1], &config);
            let (got, want) = (beams_of(&out, b), beams_of(&one, 0));
            for (g, w) in got.iter().zip(&want) {
                let mut padded = w.0.clone();
                padded.resize(l, 0);
                assert_eq!((&g.0, g.1, g.2, g.3), (&padded, w.1, w.2, w.3));
            }
            check_history(&out, b, starts[b], 6);
        }
    }

    #[test]
    fn an_empty_batch_gives_empty_outputs() {
        let m = Markov::new(vec![table(3, 1)], 2);
        let out = beam_search(
            &m,
            &m.initial_state(&[]),
            &Tensor::from_slice::<i64>(&[]),
            &BeamSearchConfig::new(2, 0, 3),
        )
        .unwrap();
        assert_eq!(out.tokens.size(), [0, 2, 0]);
        assert_eq!(out.scores.size(), [0, 2]);
        assert_eq!(out.final_state.batch_size(), Some(0));
    }

    /// Logits of a fixed shape, or a vocabulary that grows at each step.
    struct Bad(Option<[i64; 2]>);

    impl TokenDecoder for Bad {
        fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
            let shape = self.0.unwrap_or([tokens.size()[0], 2 + ints(state.h().unwrap())[0]]);
            let next = State::Tensor(state.h().unwrap() + 1);
            Ok((Tensor::zeros(shape, (Kind::Float, Device::Cpu)), next))
        }
    }

    #[test]
    fn bad_arguments_are_typed_errors_naming_beam_search() {
        let m = Markov::new(vec![table(3, 1)], 4);
        let s0 = m.initial_state(&[0]);
        let one = Tensor::from_slice(&[1i64]);
        let msg = |d: &dyn TokenDecoder, s: &State, t: &Tensor, c: BeamSearchConfig| {
            let e = beam_search(d, s, t, &c).unwrap_err();
            assert!(e.to_string().starts_with("beam_search: "), "{e}");
            (matches!(e, Error::Config { .. }), matches!(e, Error::Shape { .. }), e.to_string())
        };
        assert!(msg(&m, &s0, &one, BeamSearchConfig::new(0, 0, 3))
            .2
            .contains("beam_width must be >= 1, got 0"));
        assert!(msg(&m, &s0, &one, BeamSearchConfig::new(2, 0, 0)).0);
        assert!(msg(&m, &s0, &one, BeamSearchConfig::new(2, -2, 3)).0);
        assert!(msg(&m, &s0, &one, BeamSearchConfig::new(2, 0, 3).with_length_penalty(f64::NAN)).0);
        let e = msg(&m, &s0, &one, BeamSearchConfig::new(2, 3, 3));
        assert_eq!(e.2, "beam_search: bad configuration: end_token 3 is outside the vocabulary 0..3");
        assert!(msg(&m, &s0, &Tensor::from_slice(&[1i32]), BeamSearchConfig::new(2, 0, 3)).1);
        assert!(msg(&m, &s0, &one.view([1, 1]), BeamSearchConfig::new(2, 0, 3)).1);
        assert!(msg(&m, &m.initial_state(&[0, 0]), &one, BeamSearchConfig::new(2, 0, 3)).1);
        let counter = State::Tensor(Tensor::zeros([1, 1], (Kind::Int64, Device::Cpu)));
        let e = msg(&Bad(Some([1, 3])), &counter, &one, BeamSearchConfig::new(2, 0, 3));
        assert_eq!(
            e.2,
            "beam_search: decoder logits must be a floating tensor [2, V] with V >= 1, got Float [1, 3]"
        );
        let e = msg(&Bad(None), &counter, &one, BeamSearchConfig::new(2, 0, 3));
        assert_eq!(e.2, "beam_search: decoder logits must be a floating tensor [2, 2], got Float [2, 3]");
    }

    /// The chain attending three memory slots by the token it was fed: 1 → [0.5, 0.5, 0],
    /// 2 → [0.3, 0.7, 0], other tokens → zeros (slot 2 is never attended, like padding).
    struct Attending(Markov, Option<[i64; 2]>);

    impl TokenDecoder for Attending {
        fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
            self.0.step(tokens, state)
        }
        fn attention_probs(&self, state: &State) -> Result<Option<Tensor>> {
            if let Some(shape) = self.1 {
                return Ok(Some(Tensor::zeros(shape, (Kind::Float, Device::Cpu))));
            }
            let w = 2 + self.0.hist;
            let st = floats(state.h().unwrap());
            let rows = st.len() / w;
            let mut probs = Vec::with_capacity(rows * 3);
            for row in st.chunks(w) {
                let fed = row[2 + row[1] as usize - 1] as i64;
                probs.extend(match fed {
                    1 => [0.5, 0.5, 0.0],
                    2 => [0.3, 0.7, 0.0],
                    _ => [0.0, 0.0, 0.0],
                });
            }
            Ok(Some(Tensor::from_slice(&probs).view([rows as i64, 3])))
        }
    }

    #[test]
    fn the_coverage_penalty_reranks_as_tf_addons_formula_says() {
        // Token 0 ends. p(. | 1) = [0.6, 0.1, 0.3], p(. | 2) = [0.9, 0.05, 0.05]. From 1 with
        // K = 2: step 0 keeps A = [0] (ln .6 = -0.510826, finished) and [2] (ln .3), both
        // having attended [0.5, 0.5, 0] (fed 1). Step 1: A, finished before the step, scores
        // ln .6 + β cp(A) with cp(A) = 2 ln .5 = -1.386294 (slot 2, never attended, left out);
        // B = [2, 0] scores ln .3 + ln .9 = -1.309333 (not finished before the step: no
        // penalty) and its coverage becomes [0.8, 1.2, 0], cp(B) = ln .8 + ln 1 = -0.223144.
        // Final scores (every finished beam): A -0.510826 + β (-1.386294),
        // B -1.309333 + β (-0.223144): β = 1 ranks B first (-1.532477 vs -1.897120), β = 0.5
        // A (-1.203973 vs -1.420905), β = 0 A (-0.510826 vs -1.309333).
        let ln = |p: f64| p.ln();
        let t = vec![vec![0.0, 0.0, 0.0], vec![ln(0.6), ln(0.1), ln(0.3)], vec![ln(0.9), ln(0.05), ln(0.05)]];
        let m = Attending(Markov::new(vec![t], 3), None);
        let run = |beta: f64| {
            let config = BeamSearchConfig::new(2, 0, 3).with_coverage_penalty(beta);
            let out =
                beam_search(&m, &m.0.initial_state(&[0]), &Tensor::from_slice(&[1i64]), &config).unwrap();
            beams_of(&out, 0)
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        for (beta, first, scores) in [
            (1.0, vec![2, 0], [-1.532477, -1.897120]),
            (0.5, vec![0, 0], [-1.203973, -1.420905]),
            (0.0, vec![0, 0], [-0.510826, -1.309333]),
        ] {
            let beams = run(beta);
            assert_eq!(beams[0].0, first, "β = {beta}: {beams:?}");
            assert!(close(beams[0].2, scores[0]) && close(beams[1].2, scores[1]), "β = {beta}: {beams:?}");
            let (a, b) = if first == [0, 0] { (&beams[0], &beams[1]) } else { (&beams[1], &beams[0]) };
            assert!(close(a.3, -0.510826) && close(b.3, -1.309333), "log-probabilities are unchanged");
        }
        // A decoder without attention probabilities, or with ill-shaped ones.
        let plain = Markov::new(vec![vec![vec![0.0, 0.0]; 2]], 3);
        let config = BeamSearchConfig::new(2, 0, 3).with_coverage_penalty(0.2);
        let e = beam_search(&plain, &plain.initial_state(&[0]), &Tensor::from_slice(&[1i64]), &config)
            .unwrap_err();
        assert!(
            matches!(e, Error::Config { .. }) && e.to_string().contains("attention probabilities"),
            "{e}"
        );
        let bad = Attending(Markov::new(vec![vec![vec![0.0, 0.0]; 2]], 3), Some([3, 4]));
        let e =
            beam_search(&bad, &bad.0.initial_state(&[0]), &Tensor::from_slice(&[1i64]), &config).unwrap_err();
        assert_eq!(
            e.to_string(),
            "beam_search: decoder attention probabilities must be a floating tensor [2, N], got Float [3, 4]"
        );
        let e = beam_search(
            &m,
            &m.0.initial_state(&[0]),
            &Tensor::from_slice(&[1i64]),
            &config.with_coverage_penalty(f64::INFINITY),
        )
        .unwrap_err();
        assert!(e.to_string().contains("coverage_penalty must be finite"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_problems_never_panic_and_keep_the_invariants(
            v in 1usize..6, k in 1i64..6, max_len in 1i64..6, b in 0usize..4,
            end_frac in 0.0f64..1.0, alpha in 0.0f64..1.5, seed in 0u64..1000,
        ) {
            let end = ((end_frac * v as f64) as i64).min(v as i64 - 1);
            let tables: Vec<_> = (0..b).map(|i| table(v, seed + i as u64)).collect();
            let m = Markov::new(if b == 0 { vec![table(v, seed)] } else { tables.clone() }, max_len as usize);
            let starts: Vec<i64> = (0..b).map(|i| ((seed as usize + i) % v) as i64).collect();
            let config = BeamSearchConfig::new(k, end, max_len).with_length_penalty(alpha);
            let out = run(&m, &starts, &config);
            let l = out.tokens.size()[2];
            prop_assert_eq!(out.tokens.size(), vec![b as i64, k, l]);
            prop_assert!(l <= max_len && (b == 0 || l >= 1));
            for row in 0..b {
                let beams = beams_of(&out, row);
                prop_assert!(beams.windows(2).all(|w| w[0].2 >= w[1].2));
                prop_assert!(beams[0].2 > f64::NEG_INFINITY);
                for (tokens, len, score, log_prob) in &beams {
                    if *score == f64::NEG_INFINITY {
                        continue;
                    }
                    prop_assert!(*len >= 1 && *len as i64 <= max_len);
                    let want = log_prob_of(&tables[row], starts[row], &tokens[..*len]);
                    prop_assert!((log_prob - want).abs() < 1e-9);
                    prop_assert!(tokens[*len..].iter().all(|&x| x == end));
                    prop_assert!(tokens[..*len - 1].iter().all(|&x| x != end));
                }
                check_history(&out, row, starts[row], max_len as usize);
            }
            let ids: Vec<usize> = (0..b).collect();
            let g = greedy_decode(&m, &m.initial_state(&ids), &Tensor::from_slice(&starts), &GreedyOptions::new(end, max_len)).unwrap();
            prop_assert_eq!(g.lengths.size(), vec![b as i64]);
        }
    }
}
