//! `BatchApply`: applies a module to an input with several leading batch dimensions by
//! merging them into one (Sonnet v1's `snt.BatchApply`).

use crate::error::{Error, Result, TorchContext};
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use crate::util::check_defined;
use tch::Tensor;

/// Applies `module` to `x [d1, .., dn, ..rest]` (`n = n_dims`, default 2 as in Sonnet) as
/// `module([d1·..·dn, ..rest])`, then splits the output's leading dimension back:
/// `[d1·..·dn, ..out]` → `[d1, .., dn, ..out]`. A module written for `[B, I]` thus runs on
/// `[T, B, I]` in one call. It has the wrapped module as its only child, so its variables
/// are the module's; it adds none.
pub struct BatchApply<M> {
    scope: Scope,
    module: M,
    n_dims: usize,
}

impl<M: Module> std::fmt::Debug for BatchApply<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchApply")
            .field("scope", &self.scope.path())
            .field("module", &self.module.name())
            .field("n_dims", &self.n_dims)
            .finish()
    }
}

impl<M: Forward> BatchApply<M> {
    /// Wraps `module`, merging `n_dims` leading dimensions, in a new child scope
    /// `batch_apply` (or `batch_apply_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `n_dims` is 0.
    pub fn new(parent: &Scope, module: M, n_dims: usize) -> Result<Self> {
        let scope = parent.child("batch_apply")?;
        if n_dims == 0 {
            return Err(Error::config(scope.path(), "n_dims must be >= 1, got 0"));
        }
        Ok(BatchApply { scope, module, n_dims })
    }

    /// The wrapped module.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// Number of merged leading dimensions.
    pub fn n_dims(&self) -> usize {
        self.n_dims
    }
}

impl<M: Forward> Module for BatchApply<M> {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.module]
    }
}

impl<M: Forward> Forward for BatchApply<M> {
    /// Applies the wrapped module to `x [d1, .., dn, ..rest]`, giving `[d1, .., dn, ..out]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has fewer than `n_dims` dimensions, or the module's output
    /// does not keep the merged leading dimension; [`Error::InvalidArgument`] if `x` is
    /// undefined or the merged size overflows `i64`; the wrapped module's errors unchanged.
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let module = self.scope.path();
        check_defined(module, "input", x)?;
        let size = x.size();
        let n = self.n_dims;
        if size.len() < n {
            return Err(Error::shape(module, "input", format!("rank >= {n}"), size));
        }
        let lead = &size[..n];
        let merged = lead
            .iter()
            .try_fold(1i64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::invalid(module, format!("merged size of {lead:?} overflows i64")))?;
        let flat: Vec<i64> = [merged].into_iter().chain(size[n..].iter().copied()).collect();
        let y = self.module.forward_t(&x.f_reshape(flat).ctx(module)?, mode)?;
        let out = y.size();
        if out.first() != Some(&merged) {
            return Err(Error::shape(module, "output of the wrapped module", format!("[{merged}, ..]"), out));
        }
        let split: Vec<i64> = lead.iter().copied().chain(out[1..].iter().copied()).collect();
        y.f_reshape(split).ctx(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Initializer, Linear, LinearConfig, Store};
    use tch::{Device, Kind};

    #[test]
    fn applies_a_linear_over_two_leading_dimensions() {
        let store = Store::cpu();
        let lin = Linear::new(&store.root(), LinearConfig::new(2).with_input_size(3)).unwrap();
        let ba = BatchApply::new(&store.root(), lin, 2).unwrap();
        let x = Tensor::randn([4, 5, 3], (Kind::Float, Device::Cpu));
        let y = ba.forward_t(&x, Mode::Eval).unwrap();
        assert_eq!(y.size(), [4, 5, 2]);
        // Row by row, the same as the Linear on each [B, I] slice.
        let slice = ba.module().forward(&x.get(2)).unwrap();
        assert!(y.get(2).allclose(&slice, 1e-6, 1e-6, false));
        let names: Vec<String> = ba.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["linear/w", "linear/b"]);
    }

    #[test]
    fn errors_name_the_module() {
        let store = Store::cpu();
        let lin = Linear::new(
            &store.root(),
            LinearConfig::new(1).with_input_size(2).with_initializer("w", Initializer::Ones),
        )
        .unwrap();
        assert!(BatchApply::new(&store.root(), Linear::new(&store.root(), LinearConfig::new(1)).unwrap(), 0)
            .is_err());
        let ba = BatchApply::new(&store.root(), lin, 3).unwrap();
        let e = ba.forward_t(&Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "batch_apply_1: input must be rank >= 3, got [2, 2]");
        let e =
            ba.forward_t(&Tensor::zeros([2, 2, 2, 3], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "linear: input must be [.., 2], got [8, 3]");
        assert!(matches!(
            ba.forward_t(&Tensor::new(), Mode::Eval).unwrap_err(),
            Error::InvalidArgument { .. }
        ));
    }
}
