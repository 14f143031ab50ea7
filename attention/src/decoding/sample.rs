//! [`sample_decode`]: ancestral sampling with temperature, top-k and top-p (nucleus)
//! filtering, each row stopping at its end token.

use super::greedy::{decode_rows, DecodeOutput, GreedyOptions};
use super::TokenDecoder;
use couplet_modules::util::check_defined;
use couplet_modules::{Error, Result, TorchContext};
use couplet_rnn::State;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

const NAME: &str = "sample_decode";

fn default_temperature() -> f64 {
    1.0
}

/// The options of [`sample_decode`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleOptions {
    /// The token that ends a sequence, in `0..V`.
    pub end_token: i64,
    /// The most tokens generated per row (the end token included), `>= 1`.
    pub max_len: i64,
    /// Logits are divided by it before filtering and sampling (finite, > 0): below 1 sharpens,
    /// above 1 flattens. Default 1.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Sample among the `k` most likely tokens only (`k >= 1`; ties with the `k`-th are kept;
    /// `k >= V` keeps all). Default `None` (no top-k filter).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Sample from the nucleus: the most likely tokens whose probabilities (after temperature
    /// and top-k) first sum to at least `p`, in `(0, 1]` (Holtzman et al. 2020; the most
    /// likely token is always kept). Default `None` (no top-p filter).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed of the draws. Row `b` draws from its own ChaCha8 stream `(seed, b)`, so a run is
    /// reproducible, independent of libtorch's global generator and of the other rows.
    /// Default 0.
    #[serde(default)]
    pub seed: u64,
}

impl SampleOptions {
    /// Plain sampling (temperature 1, no filters, seed 0) ending rows at `end_token` or after
    /// `max_len` tokens.
    pub fn new(end_token: i64, max_len: i64) -> Self {
        SampleOptions { end_token, max_len, temperature: 1.0, top_k: None, top_p: None, seed: 0 }
    }
    /// Sets the temperature.
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }
    /// Sets the top-k filter.
    pub fn with_top_k(mut self, k: i64) -> Self {
        self.top_k = Some(k);
        self
    }
    /// Sets the top-p (nucleus) filter.
    pub fn with_top_p(mut self, p: f64) -> Self {
        self.top_p = Some(p);
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the sampling settings.
    // The negated comparisons reject NaN too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub(super) fn check(&self, name: &str) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::config(
                name,
                format!("temperature must be finite and > 0, got {}", self.temperature),
            ));
        }
        if let Some(k) = self.top_k.filter(|&k| k < 1) {
            return Err(Error::config(name, format!("top_k must be >= 1, got {k}")));
        }
        if let Some(p) = self.top_p.filter(|&p| !(p > 0.0 && p <= 1.0)) {
            return Err(Error::config(name, format!("top_p must be in (0, 1], got {p}")));
        }
        Ok(())
    }
}

/// The distribution [`sample_decode`] draws from for `logits [N, V]` (floating): softmax of
/// `logits / temperature`, restricted to the top-k tokens, then to the top-p nucleus, and
/// renormalised; `[N, V]` in `Double`, zero outside the kept tokens.
///
/// # Errors
/// [`Error::Config`] naming `sampling_probs` for a temperature, `top_k` or `top_p` as refused
/// by [`SampleOptions`]; [`Error::Shape`] if `logits` is not a floating `[N, V]` with `V >= 1`.
pub fn sampling_probs(
    logits: &Tensor,
    temperature: f64,
    top_k: Option<i64>,
    top_p: Option<f64>,
) -> Result<Tensor> {
    const NAME: &str = "sampling_probs";
    let options = SampleOptions { temperature, top_k, top_p, ..SampleOptions::new(0, 1) };
    options.check(NAME)?;
    check_defined(NAME, "logits", logits)?;
    let size = logits.size();
    if !logits.is_floating_point() || size.len() != 2 || size[1] < 1 {
        return Err(Error::shape(NAME, "logits", "a floating tensor [N, V] with V >= 1", size));
    }
    filtered_probs(NAME, logits, &options)
}

fn filtered_probs(name: &str, logits: &Tensor, o: &SampleOptions) -> Result<Tensor> {
    let v = logits.size()[1];
    let neg_inf = f64::NEG_INFINITY;
    let mut z = logits.f_to_kind(Kind::Double).and_then(|z| z.f_div_scalar(o.temperature)).ctx(name)?;
    if let Some(k) = o.top_k.filter(|&k| k < v) {
        let (top, _) = z.f_topk(k, -1, true, true).ctx(name)?;
        let kth = top.f_narrow(1, k - 1, 1).ctx(name)?;
        let drop = z.f_lt_tensor(&kth).ctx(name)?;
        z = z.f_masked_fill(&drop, neg_inf).ctx(name)?;
    }
    let mut probs = z.f_softmax(-1, Kind::Double).ctx(name)?;
    if let Some(p) = o.top_p.filter(|&p| p < 1.0) {
        let (sorted, order) = probs.f_sort(-1, true).ctx(name)?;
        // Drop a token when the tokens more likely than it already reach p.
        let before = sorted.f_cumsum(-1, Kind::Double).and_then(|c| c.f_sub(&sorted)).ctx(name)?;
        let drop_sorted = before.f_ge(p).ctx(name)?;
        let drop =
            drop_sorted.f_zeros_like().and_then(|d| d.f_scatter(-1, &order, &drop_sorted)).ctx(name)?;
        probs = probs.f_masked_fill(&drop, 0.0).ctx(name)?;
        let total = probs.f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Double).ctx(name)?;
        probs = probs.f_div(&total).ctx(name)?;
    }
    Ok(probs)
}

/// Draws one token per row of `probs [n, V]` by inverting its CDF at `u [n]` in `[0, 1)`:
/// the first token whose cumulative probability exceeds `u · total`, which is never a
/// zero-probability token.
fn draw(name: &str, probs: &Tensor, u: &[f64]) -> Result<Tensor> {
    let (n, v) = (probs.size()[0], probs.size()[1]);
    let cdf = probs.f_cumsum(-1, Kind::Double).ctx(name)?;
    let total = cdf.f_narrow(1, v - 1, 1).ctx(name)?;
    let u = Tensor::from_slice(u).f_to_device(probs.device()).and_then(|u| u.f_view([n, 1])).ctx(name)?;
    let target = u.f_mul(&total).ctx(name)?;
    cdf.f_le_tensor(&target)
        .and_then(|below| below.f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Int64))
        .and_then(|i| i.f_clamp_max(v - 1))
        .ctx(name)
}

/// Sampling decode: from `start_tokens [B]` (int64) and `initial_state` (`B` rows), feeds
/// each row a token drawn from [`sampling_probs`] of its logits (temperature, then top-k,
/// then top-p) until the row draws `options.end_token` or reaches `options.max_len` tokens.
/// Finished rows leave the batch as in [`greedy_decode`](super::greedy_decode), and the
/// output follows the same conventions; its `scores` are the model's log-likelihood of the
/// drawn tokens, Σ log-softmax of the **unfiltered, untempered** logits. `top_k = 1` (or a
/// temperature near 0) gives greedy decoding, except that logit ties go to the lowest id in
/// both.
///
/// The draws come from per-row ChaCha8 streams seeded by `options.seed` (one uniform per row
/// per step, on the host), so decoding is reproducible and leaves libtorch's generator alone.
///
/// # Errors
/// The errors of [`greedy_decode`](super::greedy_decode), naming `sample_decode`, and
/// [`Error::Config`] for a temperature, `top_k` or `top_p` out of range.
pub fn sample_decode<D: TokenDecoder + ?Sized>(
    decoder: &D,
    initial_state: &State,
    start_tokens: &Tensor,
    options: &SampleOptions,
) -> Result<DecodeOutput> {
    options.check(NAME)?;
    let b = usize::try_from(start_tokens.size().first().copied().unwrap_or(0)).unwrap_or(0);
    let mut streams = row_streams(options.seed, b);
    let greedy = GreedyOptions::new(options.end_token, options.max_len);
    decode_rows(NAME, decoder, initial_state, start_tokens, &greedy, |logits, _, rows| {
        sample_rows(NAME, logits, options, &mut streams, rows)
    })
}

/// One ChaCha8 stream per row `0..b`: stream `b` of the generator seeded with `seed`.
pub(super) fn row_streams(seed: u64, b: usize) -> Vec<ChaCha8Rng> {
    (0..b)
        .map(|row| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(row as u64);
            rng
        })
        .collect()
}

/// Draws one token for each row of `logits [n, V]` from [`sampling_probs`] under `options`,
/// row `i` with one uniform of `streams[rows[i]]`.
pub(super) fn sample_rows(
    name: &str,
    logits: &Tensor,
    options: &SampleOptions,
    streams: &mut [ChaCha8Rng],
    rows: &[i64],
) -> Result<Tensor> {
    let probs = filtered_probs(name, logits, options)?;
    if probs.f_isnan().and_then(|m| m.f_any()).ctx(name)?.int64_value(&[]) != 0 {
        return Err(Error::invalid(name, "decoder logits gave NaN probabilities (NaN or all -inf logits)"));
    }
    let u: Vec<f64> = rows.iter().map(|&r| streams[r as usize].gen::<f64>()).collect();
    draw(name, &probs, &u)
}

#[cfg(test)]
mod tests {
    use super::super::toy::{floats, ints, log_softmax, table, Counting, Markov};
    use super::super::{greedy_decode, DecodeOutput};
    use super::*;

    fn probs_of(p: &[f64], t: f64, k: Option<i64>, top_p: Option<f64>) -> Vec<f64> {
        let logits = Tensor::from_slice(&p.iter().map(|x| x.ln()).collect::<Vec<_>>()).view([1, -1]);
        floats(&sampling_probs(&logits, t, k, top_p).unwrap())
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn filters_by_hand() {
        let p = [0.5f64, 0.3, 0.15, 0.05];
        assert!(close(&probs_of(&p, 1.0, None, None), &p));
        // Nucleus 0.75: 0.5 alone is below 0.75, 0.5 + 0.3 reaches it: keep {0, 1}.
        assert!(close(&probs_of(&p, 1.0, None, Some(0.75)), &[0.625, 0.375, 0.0, 0.0]));
        // Nucleus 0.5: the first token alone reaches it.
        assert!(close(&probs_of(&p, 1.0, None, Some(0.5)), &[1.0, 0.0, 0.0, 0.0]));
        assert!(close(&probs_of(&p, 1.0, Some(3), None), &[0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]));
        assert!(close(&probs_of(&p, 1.0, Some(9), None), &p));
        // Temperature 0.5 squares the probabilities before renormalising.
        let sq: Vec<f64> = p.iter().map(|x| x * x / 0.365).collect();
        assert!(close(&probs_of(&p, 0.5, None, None), &sq));
        // Top-k then top-p on the renormalised top-k: [0.526, 0.316, 0.158], nucleus 0.75 keeps {0, 1}.
        assert!(close(&probs_of(&p, 1.0, Some(3), Some(0.75)), &[0.625, 0.375, 0.0, 0.0]));
        // Filters act on the ranking, not on the positions.
        let shuffled = [0.05f64, 0.3, 0.15, 0.5];
        assert!(close(&probs_of(&shuffled, 1.0, None, Some(0.75)), &[0.0, 0.375, 0.0, 0.625]));
        assert!(close(&probs_of(&shuffled, 1.0, Some(2), None), &[0.0, 0.375, 0.0, 0.625]));
    }

    /// A decoder whose logits are the same `row` for every row and step.
    struct Fixed(Vec<f64>);

    impl TokenDecoder for Fixed {
        fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
            let n = tokens.size()[0];
            Ok((Tensor::from_slice(&self.0).view([1, -1]).repeat([n, 1]), state.clone()))
        }
    }

    fn frequencies(out: &DecodeOutput, v: usize) -> Vec<f64> {
        let toks = ints(&out.tokens.select(1, 0));
        let mut f = vec![0.0; v];
        for t in &toks {
            f[*t as usize] += 1.0 / toks.len() as f64;
        }
        f
    }

    #[test]
    fn draws_follow_the_filtered_distribution() {
        let p = [0.5f64, 0.3, 0.15, 0.05];
        let d = Fixed(p.iter().map(|x| x.ln()).collect());
        let n = 20_000i64;
        let state = State::Tensor(Tensor::zeros([n, 1], (Kind::Float, tch::Device::Cpu)));
        let start = Tensor::zeros([n], (Kind::Int64, tch::Device::Cpu));
        for (opts, want) in [
            (SampleOptions::new(0, 1), p.to_vec()),
            (SampleOptions::new(0, 1).with_top_p(0.75), vec![0.625, 0.375, 0.0, 0.0]),
            (SampleOptions::new(0, 1).with_top_k(2).with_seed(5), vec![0.625, 0.375, 0.0, 0.0]),
            (
                SampleOptions::new(0, 1).with_temperature(0.5).with_seed(9),
                p.iter().map(|x| x * x / 0.365).collect(),
            ),
        ] {
            let f = frequencies(&sample_decode(&d, &state, &start, &opts).unwrap(), 4);
            for (fi, wi) in f.iter().zip(&want) {
                // 5 standard deviations of a frequency over n draws.
                let sd = (wi * (1.0 - wi) / n as f64).sqrt();
                assert!((fi - wi).abs() <= 5.0 * sd + 1e-12, "{opts:?}: {f:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn seeded_reproducible_and_rows_draw_apart() {
        let d = Fixed(vec![0.0; 6]);
        let state = State::Tensor(Tensor::zeros([4, 1], (Kind::Float, tch::Device::Cpu)));
        let start = Tensor::zeros([4], (Kind::Int64, tch::Device::Cpu));
        let run = |seed| {
            ints(
                &sample_decode(&d, &state, &start, &SampleOptions::new(5, 12).with_seed(seed))
                    .unwrap()
                    .tokens,
            )
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let rows = run(3);
        let l = rows.len() / 4;
        assert!((1..4).any(|r| rows[r * l..(r + 1) * l] != rows[..l]), "identical rows draw differently");
    }

    #[test]
    fn top_k_one_is_greedy_and_finished_rows_leave_the_batch() {
        let tables: Vec<_> = (0..3).map(|s| table(4, s + 10)).collect();
        let m = Markov::new(tables, 8);
        let state = m.initial_state(&[0, 1, 2]);
        let start = Tensor::from_slice(&[1i64, 2, 3]);
        let g = greedy_decode(&m, &state, &start, &GreedyOptions::new(0, 8)).unwrap();
        let counting = Counting(Markov::new(m.tables.clone(), 8), Default::default());
        let s =
            sample_decode(&counting, &state, &start, &SampleOptions::new(0, 8).with_top_k(1).with_seed(1))
                .unwrap();
        assert!(s.tokens.equal(&g.tokens) && s.lengths.equal(&g.lengths));
        assert_eq!(floats(&s.scores), floats(&g.scores));
        // Rows leave as they end: steps ran on 3 rows, then fewer.
        let counts = counting.1.borrow().clone();
        let lengths = ints(&g.lengths);
        for (t, &c) in counts.iter().enumerate() {
            assert_eq!(c, lengths.iter().filter(|&&l| l > t as i64).count() as i64, "step {t}: {counts:?}");
        }
    }

    #[test]
    fn scores_are_the_models_log_likelihood() {
        let p = [0.5f64, 0.3, 0.2];
        let d = Fixed(p.iter().map(|x| x.ln()).collect());
        let state = State::Tensor(Tensor::zeros([2, 1], (Kind::Float, tch::Device::Cpu)));
        let start = Tensor::zeros([2], (Kind::Int64, tch::Device::Cpu));
        let out = sample_decode(&d, &state, &start, &SampleOptions::new(2, 5).with_temperature(2.0)).unwrap();
        let (toks, lens, scores) = (ints(&out.tokens), ints(&out.lengths), floats(&out.scores));
        let l = toks.len() / 2;
        let lp = log_softmax(&p.iter().map(|x| x.ln()).collect::<Vec<_>>());
        for r in 0..2 {
            let want: f64 = toks[r * l..r * l + lens[r] as usize].iter().map(|&t| lp[t as usize]).sum();
            assert!((scores[r] - want).abs() < 1e-9, "{scores:?} vs {want}");
        }
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let d = Fixed(vec![0.0; 3]);
        let state = State::Tensor(Tensor::zeros([1, 1], (Kind::Float, tch::Device::Cpu)));
        let start = Tensor::zeros([1], (Kind::Int64, tch::Device::Cpu));
        let e = |o: SampleOptions| sample_decode(&d, &state, &start, &o).unwrap_err().to_string();
        assert_eq!(
            e(SampleOptions::new(0, 3).with_temperature(0.0)),
            "sample_decode: bad configuration: temperature must be finite and > 0, got 0"
        );
        assert!(e(SampleOptions::new(0, 3).with_temperature(f64::NAN)).contains("temperature"));
        assert_eq!(
            e(SampleOptions::new(0, 3).with_top_k(0)),
            "sample_decode: bad configuration: top_k must be >= 1, got 0"
        );
        assert!(e(SampleOptions::new(0, 3).with_top_p(0.0)).contains("top_p must be in (0, 1]"));
        assert!(e(SampleOptions::new(0, 3).with_top_p(1.5)).contains("top_p"));
        assert!(e(SampleOptions::new(0, 0)).starts_with("sample_decode: bad configuration: max_len"));
        assert!(e(SampleOptions::new(7, 3)).contains("outside the vocabulary"));
        let nan = Fixed(vec![f64::NAN; 3]);
        let err = sample_decode(&nan, &state, &start, &SampleOptions::new(0, 3)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        let err = sampling_probs(&Tensor::zeros([3], (Kind::Float, tch::Device::Cpu)), 1.0, None, None)
            .unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
    }
}
