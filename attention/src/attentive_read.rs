//! `AttentiveRead`: Sonnet v1's soft read of a memory, with any logit module.

use crate::softmax::{check_mask, masked_softmax};
use couplet_modules::{Error, Forward, Mode, Module, Result, Scope, TorchContext, Variable};
use tch::Tensor;

/// What [`AttentiveRead::forward`] returns.
#[derive(Debug)]
pub struct AttentionOutput {
    /// The weighted sum of memory slots, `[B, Dm]`.
    pub read: Tensor,
    /// Attention weights, `[B, N]`; rows sum to 1, or are all zero when every slot is masked.
    pub weights: Tensor,
    /// Attention logits after masking, `[B, N]` (masked slots hold the lowest finite value).
    pub logits: Tensor,
}

/// Sonnet's `AttentiveRead`: scores every memory slot with a logit module applied to
/// `concat(memory[b, n], query[b])`, softmaxes the scores over the slots, and returns the
/// weighted sum of the memory.
///
/// Shapes: `memory [B, N, Dm]`, `query [B, Dq]`, optional bool `mask [B, N]` (true = attend).
/// The logit module maps `[B·N, Dm + Dq]` to `[B·N, 1]`.
///
/// Unlike Sonnet (which asserts) and PyTorch (which returns NaN), a row whose every slot is
/// masked gives zero weights and a zero read.
pub struct AttentiveRead {
    scope: Scope,
    logit_module: Box<dyn Forward>,
}

impl std::fmt::Debug for AttentiveRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentiveRead")
            .field("scope", &self.scope.path())
            .field("logit_module", &self.logit_module.name())
            .finish()
    }
}

impl AttentiveRead {
    /// An `AttentiveRead` in a new child scope `attention` of `parent` (Sonnet's name), reading
    /// with `logit_module` (e.g. an [`Mlp`](couplet_modules::Mlp) ending in one unit, built
    /// anywhere; its variables are listed with this module's).
    pub fn new(parent: &Scope, logit_module: impl Forward + 'static) -> Result<Self> {
        Self::named(parent, "attention", logit_module)
    }

    /// Like [`AttentiveRead::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, logit_module: impl Forward + 'static) -> Result<Self> {
        Ok(AttentiveRead { scope: parent.child(name)?, logit_module: Box::new(logit_module) })
    }

    /// The logit module.
    pub fn logit_module(&self) -> &dyn Forward {
        self.logit_module.as_ref()
    }

    /// Reads `memory [B, N, Dm]` with `query [B, Dq]` where `mask [B, N]` allows.
    ///
    /// # Errors
    /// [`Error::Shape`] naming this module when `memory` is not rank 3, `query` not rank 2,
    /// their batch sizes differ, the mask is not a bool `[B, N]`, or the logit module does not
    /// return `[B·N, 1]`; errors of the logit module itself pass through.
    pub fn forward(
        &self,
        memory: &Tensor,
        query: &Tensor,
        mask: Option<&Tensor>,
        mode: Mode,
    ) -> Result<AttentionOutput> {
        let module = self.scope.path();
        let (m, q) = (memory.size(), query.size());
        if m.len() != 3 {
            return Err(Error::shape(module, "memory", "[B, N, Dm]", m));
        }
        if q.len() != 2 || q[0] != m[0] {
            return Err(Error::shape(module, "query", format!("[{}, Dq]", m[0]), q));
        }
        let (b, n, dm) = (m[0], m[1], m[2]);
        if let Some(mask) = mask {
            check_mask(module, mask, b, n)?;
        }
        let tiled = query.f_unsqueeze(1).and_then(|t| t.f_expand([b, n, q[1]], false)).ctx(module)?;
        let input = Tensor::f_cat(&[memory, &tiled], 2).and_then(|t| t.f_reshape([b * n, dm + q[1]])).ctx(module)?;
        let logits = self.logit_module.forward_t(&input, mode)?;
        if logits.size() != [b * n, 1] {
            return Err(Error::shape(
                module,
                "logit module output",
                format!("[{}, 1] (B·N rows)", b * n),
                logits.size(),
            ));
        }
        let logits = logits.f_view([b, n]).ctx(module)?;
        let (weights, logits) = masked_softmax(module, &logits, mask)?;
        let read = weights.f_unsqueeze(1).and_then(|w| w.f_bmm(memory)).and_then(|r| r.f_squeeze_dim(1)).ctx(module)?;
        Ok(AttentionOutput { read, weights, logits })
    }
}

impl Module for AttentiveRead {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.logit_module.is_built()
    }
    /// This module's variables followed by the logit module's (which may live in another
    /// scope), without duplicates.
    fn variables(&self) -> Result<Vec<Variable>> {
        if !self.is_built() {
            return Err(Error::NotBuilt { module: self.name().to_string() });
        }
        let mut vars = self.scope.variables();
        for v in self.logit_module.variables()? {
            if !vars.iter().any(|w| w.name() == v.name()) {
                vars.push(v);
            }
        }
        Ok(vars)
    }
}
