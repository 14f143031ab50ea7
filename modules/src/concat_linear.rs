//! `ConcatLinear`: a linear layer over several inputs at once (Sonnet v1's `snt.ConcatLinear`).

use crate::error::{Error, Result, TorchContext};
use crate::linear::{Linear, LinearConfig};
use crate::module::Module;
use crate::store::Scope;
use crate::util::check_defined;
use tch::Tensor;

/// `y = concat(flatten(x1), .., flatten(xn)) w + b`: each input `xi [B, ..]` is flattened to
/// `[B, Ii]` (as Sonnet's `BatchFlatten`), the results are concatenated along the features to
/// `[B, I1 + .. + In]`, and one [`Linear`] maps that to `[B, O]`. Equivalent to one `Linear`
/// per input with the outputs summed (the blocks of `w`), computed as a single GEMM.
/// Variables (Sonnet v1's): `concat_linear/linear/w [I1 + .. + In, O]` and
/// `concat_linear/linear/b [O]`, lazy unless the config gives the total input size.
pub struct ConcatLinear {
    scope: Scope,
    linear: Linear,
}

impl std::fmt::Debug for ConcatLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcatLinear")
            .field("scope", &self.scope.path())
            .field("linear", &self.linear)
            .finish()
    }
}

impl ConcatLinear {
    /// Builds a `ConcatLinear` in a new child scope `concat_linear` (or `concat_linear_1`, …)
    /// of `parent`; `config` configures the inner `Linear` (its `input_size`, if given, is
    /// the total `I1 + .. + In`).
    ///
    /// # Errors
    /// The [`Linear::new`] configuration errors.
    pub fn new(parent: &Scope, config: LinearConfig) -> Result<Self> {
        let scope = parent.child("concat_linear")?;
        let linear = Linear::new(&scope, config)?;
        Ok(ConcatLinear { scope, linear })
    }

    /// The inner linear layer (its `w` has the inputs' blocks in input order).
    pub fn linear(&self) -> &Linear {
        &self.linear
    }

    /// Applies the layer to `inputs` (each `[B, ..]` of rank >= 2, one batch size `B`),
    /// giving `[B, O]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty list or an undefined input; [`Error::Shape`] for
    /// an input of rank < 2, a batch size that differs from the first input's, or (from the
    /// inner `Linear`) a total size or kind other than the variables'.
    pub fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let module = self.scope.path();
        let Some(first) = inputs.first() else {
            return Err(Error::invalid(module, "needs at least one input, got none"));
        };
        check_defined(module, "input 0", first)?;
        let batch = first.size().first().copied();
        let mut flat = Vec::with_capacity(inputs.len());
        for (i, x) in inputs.iter().enumerate() {
            let what = format!("input {i}");
            check_defined(module, &what, x)?;
            let size = x.size();
            let expected = batch.map_or("[B, ..]".to_string(), |b| format!("[{b}, ..] of rank >= 2"));
            if size.len() < 2 || Some(size[0]) != batch {
                return Err(Error::shape(module, &what, expected, size));
            }
            flat.push(x.f_flatten(1, -1).ctx(module)?);
        }
        let x = Tensor::f_cat(&flat, 1).ctx(module)?;
        self.linear.forward(&x)
    }
}

impl Module for ConcatLinear {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.linear]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    #[test]
    fn equals_the_sum_of_one_linear_per_input() {
        let store = Store::cpu();
        let cl = ConcatLinear::new(&store.root(), LinearConfig::new(4)).unwrap();
        let a = Tensor::randn([3, 2], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([3, 2, 3], (Kind::Float, Device::Cpu));
        let y = cl.forward(&[&a, &b]).unwrap();
        assert_eq!(y.size(), [3, 4]);
        let names: Vec<String> = cl.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["concat_linear/linear/w", "concat_linear/linear/b"]);
        let w = cl.linear().w().unwrap();
        assert_eq!(w.size(), [8, 4]);
        let bias = cl.linear().b().unwrap().unwrap();
        let expected = a.matmul(&w.narrow(0, 0, 2)) + b.flatten(1, -1).matmul(&w.narrow(0, 2, 6)) + bias;
        assert!(y.allclose(&expected, 1e-5, 1e-5, false));
    }

    #[test]
    fn errors_name_the_module_and_the_input() {
        let store = Store::cpu();
        let cl = ConcatLinear::new(&store.root(), LinearConfig::new(2)).unwrap();
        let a = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        assert!(matches!(cl.forward(&[]).unwrap_err(), Error::InvalidArgument { .. }));
        let e = cl.forward(&[&a, &Tensor::zeros([4, 2], (Kind::Float, Device::Cpu))]).unwrap_err();
        assert_eq!(e.to_string(), "concat_linear: input 1 must be [3, ..] of rank >= 2, got [4, 2]");
        let e = cl.forward(&[&a, &Tensor::zeros([3], (Kind::Float, Device::Cpu))]).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = cl.forward(&[&a, &Tensor::new()]).unwrap_err();
        assert_eq!(e.to_string(), "concat_linear: input 1 is an undefined tensor");
        let _ = cl.forward(&[&a]).unwrap();
        let e = cl.forward(&[&a, &a]).unwrap_err();
        assert_eq!(e.to_string(), "concat_linear/linear: input must be [.., 2], got [3, 4]");
    }
}
