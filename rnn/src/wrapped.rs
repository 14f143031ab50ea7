//! What the wrappers share: a wrapper's variables are its wrapped cores' variables plus
//! any in its own scope, each listed once, and its regularization loss sums theirs.

use couplet_modules::{Module, Result, Scope, TorchContext, Variable};
use std::collections::HashSet;
use tch::Tensor;

/// The variables of `cores` in order, then those of `own` not listed yet (a wrapper whose
/// cores were built inside its own scope lists each variable once).
pub(crate) fn merged_variables(own: &Scope, cores: &[&dyn Module]) -> Result<Vec<Variable>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for core in cores {
        for v in core.variables()? {
            if seen.insert(v.name().to_string()) {
                out.push(v);
            }
        }
    }
    out.extend(own.variables().into_iter().filter(|v| seen.insert(v.name().to_string())));
    Ok(out)
}

/// The sum of the regularizers of `module`'s variables (a zero scalar if none).
pub(crate) fn regularization_loss(module: &dyn Module) -> Result<Tensor> {
    let scope = module.scope();
    let mut total = Tensor::f_zeros([], (scope.kind(), scope.device())).ctx(module.name())?;
    for v in module.variables()? {
        if let Some(r) = v.regularizer() {
            total = total.f_add(&r.loss(v.tensor()).ctx(v.name())?).ctx(v.name())?;
        }
    }
    Ok(total)
}
