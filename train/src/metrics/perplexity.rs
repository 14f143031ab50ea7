//! [`Perplexity`]: `exp` of the mean negative log-likelihood per real token.

use super::check::{count, finite, floating, ids_in_range, integer};
use super::mask::TokenMask;
use super::Metric;
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

const SCOPE: &str = "metrics/perplexity";

/// The perplexity of a language model: `exp(total NLL / real tokens)` over every update
/// since the last reset, the NLL of each token being `-log_softmax(logits)[target]`
/// (`exp` of `torch.nn.functional.cross_entropy` with `reduction="mean"` over the real tokens).
#[derive(Clone, Debug, Default)]
pub struct Perplexity {
    nll: f64,
    tokens: i64,
}

impl Perplexity {
    /// An empty perplexity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch: `logits` `[.., V]` (floating point, finite), integer `targets` `[..]`
    /// in `[0, V)`, and which tokens count.
    ///
    /// # Errors
    /// [`Error::Shape`] when `logits` is not the targets' shape plus `[V >= 1]` or the mask
    /// does not fit; [`Error::InvalidArgument`] for undefined tensors, wrong kinds,
    /// non-finite logits or targets out of range.
    pub fn update(&mut self, logits: &Tensor, targets: &Tensor, mask: TokenMask) -> Result<()> {
        floating(SCOPE, "logits", logits)?;
        integer(SCOPE, "targets", targets)?;
        let (p, t) = (logits.size(), targets.size());
        if p.len() != t.len() + 1 || p[..t.len()] != t[..] || p[t.len()] == 0 {
            return Err(Error::shape(SCOPE, "logits", format!("{t:?} + [V >= 1] (the targets' shape)"), p));
        }
        finite(SCOPE, "logits", logits)?;
        let vocabulary = p[t.len()];
        ids_in_range(SCOPE, "targets", targets, vocabulary)?;
        let device = logits.device();
        let mask = mask.to_mask(SCOPE, &t, device)?;
        let targets = targets.f_to_device(device).and_then(|x| x.f_to_kind(Kind::Int64)).ctx(SCOPE)?;
        let nll = logits
            .f_to_kind(Kind::Double)
            .and_then(|l| l.f_log_softmax(-1, Kind::Double))
            .and_then(|l| l.f_gather(-1, &targets.f_unsqueeze(-1)?, false))
            .and_then(|l| l.f_squeeze_dim(-1))
            .and_then(|l| l.f_neg())
            .and_then(|l| l.f_masked_select(&mask))
            .and_then(|l| l.f_sum(Kind::Double))
            .ctx(SCOPE)?;
        self.nll += f64::try_from(&nll).ctx(SCOPE)?;
        self.tokens += count(SCOPE, &mask)?;
        Ok(())
    }

    /// Adds a total negative log-likelihood (nats, finite and >= 0) over `tokens` tokens, for
    /// models that compute their own loss sum.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative or non-finite NLL or negative tokens.
    pub fn update_nll(&mut self, nll: f64, tokens: i64) -> Result<()> {
        if !(nll.is_finite() && nll >= 0.0) || tokens < 0 {
            return Err(Error::invalid(
                SCOPE,
                format!("nll must be finite and >= 0 and tokens >= 0, got nll {nll} over {tokens} tokens"),
            ));
        }
        self.nll += nll;
        self.tokens += tokens;
        Ok(())
    }
}

impl Metric for Perplexity {
    fn name(&self) -> &str {
        "perplexity"
    }

    fn result(&self) -> Result<f64> {
        if self.tokens == 0 {
            return Err(Error::invalid(SCOPE, "empty evaluation: no tokens since the last reset"));
        }
        let p = (self.nll / self.tokens as f64).exp();
        if p.is_finite() {
            Ok(p)
        } else {
            Err(Error::invalid(
                SCOPE,
                format!("perplexity overflows: mean NLL {}", self.nll / self.tokens as f64),
            ))
        }
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}
