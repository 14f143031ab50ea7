//! `AttentiveRead`: Sonnet v1's soft read of a memory, with any logit module.

use crate::softmax::{check_mask, masked_softmax, zero_masked_rows};
use couplet_modules::util::check_floating;
use couplet_modules::{Error, Forward, Mode, Module, Result, Scope, TorchContext};
use tch::Tensor;

/// What [`AttentiveRead::forward_t`] returns.
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
    /// return `[B·N, 1]`, or `memory` or `query` is not floating point;
    /// [`Error::InvalidArgument`] for an undefined tensor; errors of the logit module itself
    /// pass through. Masked slots are zeroed with a select first, so NaN or infinite padding
    /// never reaches the read.
    pub fn forward_t(
        &self,
        memory: &Tensor,
        query: &Tensor,
        mask: Option<&Tensor>,
        mode: Mode,
    ) -> Result<AttentionOutput> {
        let module = self.scope.path();
        check_floating(module, "memory", memory)?;
        check_floating(module, "query", query)?;
        let (m, q) = (memory.size(), query.size());
        if m.len() != 3 {
            return Err(Error::shape(module, "memory", "[B, N, Dm]", m));
        }
        if q.len() != 2 || q[0] != m[0] {
            return Err(Error::shape(module, "query", format!("[{}, Dq]", m[0]), q));
        }
        let (b, n, dm) = (m[0], m[1], m[2]);
        // Masked slots are zeroed (selected away) before anything reads them, so padding
        // holding NaN or an infinity reaches neither the logits nor the read.
        let zeroed;
        let memory = match mask {
            Some(mask) => {
                check_mask(module, mask, b, n)?;
                zeroed = zero_masked_rows(module, memory, mask)?;
                &zeroed
            }
            None => memory,
        };
        let tiled = query.f_unsqueeze(1).and_then(|t| t.f_expand([b, n, q[1]], false)).ctx(module)?;
        let input =
            Tensor::f_cat(&[memory, &tiled], 2).and_then(|t| t.f_reshape([b * n, dm + q[1]])).ctx(module)?;
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
        let read = weights
            .f_unsqueeze(1)
            .and_then(|w| w.f_bmm(memory))
            .and_then(|r| r.f_squeeze_dim(1))
            .ctx(module)?;
        Ok(AttentionOutput { read, weights, logits })
    }
}

impl Module for AttentiveRead {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The logit module (which may live in another scope): the read is built when it is, and
    /// lists and regularizes its variables.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.logit_module]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::{Initializer, Linear, LinearConfig, Mlp, MlpConfig, Regularizer, Store};
    use tch::{Device, Kind};

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    /// Logit module `[m0, m1, q] · [1, 2, 0.5]`.
    fn read_module(store: &Store) -> AttentiveRead {
        let logits =
            Linear::new(&store.root(), LinearConfig::new(1).with_input_size(3).with_bias(false)).unwrap();
        tch::no_grad(|| {
            logits.w().unwrap().shallow_clone().copy_(&Tensor::from_slice(&[1.0f32, 2.0, 0.5]).view([3, 1]))
        });
        AttentiveRead::new(&store.root(), logits).unwrap()
    }

    fn inputs() -> (Tensor, Tensor) {
        let memory = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).view([1, 3, 2]).repeat([2, 1, 1]);
        let query = Tensor::from_slice(&[2.0f32, 2.0]).view([2, 1]);
        (memory, query)
    }

    #[test]
    fn reads_by_hand_worked_softmax() {
        let store = Store::cpu();
        let read = read_module(&store);
        let (memory, query) = inputs();
        let out = read.forward_t(&memory, &query, None, Mode::Eval).unwrap();
        // Logits: slot 0: 1 + 0 + 1 = 2, slot 1: 0 + 2 + 1 = 3, slot 2: 1 + 2 + 1 = 4.
        close(&values(&out.logits.get(0)), &[2.0, 3.0, 4.0]);
        close(&values(&out.weights.get(0)), &[0.09003057317038046, 0.24472847105479767, 0.6652409557748219]);
        close(&values(&out.read.get(0)), &[0.7552715289452023, 0.9099694268296196]);
        assert_eq!(out.read.size(), [2, 2]);
    }

    #[test]
    fn masks_slots_and_gives_zeros_for_fully_masked_rows() {
        let store = Store::cpu();
        let read = read_module(&store);
        let (memory, query) = inputs();
        let mask = Tensor::from_slice(&[true, false, true, false, false, false]).view([2, 3]);
        let out = read.forward_t(&memory, &query, Some(&mask), Mode::Eval).unwrap();
        close(&values(&out.weights.get(0)), &[0.11920292202211756, 0.0, 0.8807970779778824]);
        close(&values(&out.read.get(0)), &[1.0, 0.8807970779778824]);
        close(&values(&out.weights.get(1)), &[0.0, 0.0, 0.0]);
        close(&values(&out.read.get(1)), &[0.0, 0.0]);
        assert_eq!(out.logits.double_value(&[0, 1]), f32::MIN as f64);
        assert_eq!(out.read.isnan().any().int64_value(&[]), 0);
    }

    #[test]
    fn shape_errors_name_the_module() {
        let store = Store::cpu();
        let read = read_module(&store);
        let (memory, query) = inputs();
        let e = read.forward_t(&memory.get(0), &query, None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "attention: memory must be [B, N, Dm], got [3, 2]");
        let e = read.forward_t(&memory, &query.narrow(0, 0, 1), None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "attention: query must be [2, Dq], got [1, 1]");
        let bad_mask = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let e = read.forward_t(&memory, &query, Some(&bad_mask), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "attention: mask must be a bool tensor [2, 3], got Float [2, 3]");
        // A logit module that does not return one logit per slot.
        let wide = Linear::new(&store.root(), LinearConfig::new(2).with_initializer("w", Initializer::Ones))
            .unwrap();
        let read2 = AttentiveRead::new(&store.root(), wide).unwrap();
        let e = read2.forward_t(&memory, &query, None, Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "attention_1: logit module output must be [6, 1] (B·N rows), got [6, 2]");
    }

    #[test]
    fn lists_the_logit_module_variables() {
        let store = Store::cpu();
        let read = read_module(&store);
        let names: Vec<_> = read.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["linear/w"]);
        fn send<T: Send>() {}
        send::<AttentiveRead>();
    }

    #[test]
    fn regularization_loss_includes_the_logit_module_built_elsewhere() {
        let store = Store::cpu();
        // An MLP logit module outside the read's scope, with L1 on its first layer's weights
        // and L2 on its biases.
        let config = MlpConfig::new(&[2, 1])
            .with_input_size(3)
            .with_initializer("w", Initializer::Constant { value: -0.5 })
            .with_initializer("b", Initializer::Constant { value: 3.0 })
            .with_regularizer("w", Regularizer::L1 { scale: 0.1 })
            .with_regularizer("b", Regularizer::L2 { scale: 0.01 });
        let mlp = Mlp::new(&store.root(), config).unwrap();
        let read = AttentiveRead::new(&store.root(), mlp).unwrap();
        assert!(read.is_built());
        // L1: 0.1 · (3·2 + 2·1 weights of |-0.5|) = 0.1 · 4 = 0.4;
        // L2: 0.01 · (2 + 1 biases of 3²) = 0.01 · 27 = 0.27.
        let loss = read.regularization_loss().unwrap().double_value(&[]);
        assert!((loss - 0.67).abs() < 1e-6, "{loss}");
        // The read's own scope holds none of them.
        assert_eq!(read.scope().regularization_loss().unwrap().double_value(&[]), 0.0);
        let boxed: Box<dyn Module> = Box::new(read);
        assert!((boxed.regularization_loss().unwrap().double_value(&[]) - 0.67).abs() < 1e-6);
    }
}
