//! `ResidualWrapper`: `output = input + core output` (TF `ResidualWrapper`).

use crate::core::{RnnCore, SequenceContext, SequenceMaps, Split};
use crate::sequence::sequence_mask;
use crate::state::{State, StateSize};
use couplet_modules::{Error, Mode, Module, Result, Scope, TorchContext};
use tch::Tensor;

/// A residual connection around a core: `output = input + core output`, the core's state
/// untouched. The input size must equal the core's output size.
///
/// Has no input projection (the residual needs the raw input): `project_inputs` is `None`.
/// Unrolls split it ([`RnnCore::split`]): the core runs on its own route (a plain LSTM
/// fused) and the input sequence is added to its outputs at once.
/// Variables: the core's (the wrapper has none).
pub struct ResidualWrapper<C = Box<dyn RnnCore>> {
    scope: Scope,
    core: C,
}

impl<C: RnnCore> std::fmt::Debug for ResidualWrapper<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidualWrapper")
            .field("scope", &self.scope.path())
            .field("core", &self.core.name())
            .finish()
    }
}

impl<C: RnnCore> ResidualWrapper<C> {
    /// Wraps `core` in a new child scope `residual_wrapper` (or `residual_wrapper_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] only if the scope cannot be created.
    pub fn new(parent: &Scope, core: C) -> Result<Self> {
        Self::named(parent, "residual_wrapper", core)
    }

    /// Like [`ResidualWrapper::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, core: C) -> Result<Self> {
        Ok(Self::in_scope(parent.child(name)?, core))
    }

    /// Like [`ResidualWrapper::new`] in an existing `scope`.
    pub fn in_scope(scope: Scope, core: C) -> Self {
        ResidualWrapper { scope, core }
    }

    /// The wrapped core.
    pub fn core(&self) -> &C {
        &self.core
    }
}

impl<C: RnnCore> Module for ResidualWrapper<C> {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The wrapped core: the wrapper is built when it is, and lists its variables.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.core]
    }
}

impl<C: RnnCore> RnnCore for ResidualWrapper<C> {
    /// `input [B, O]` → (`input + core output [B, O]`, the core's new state).
    ///
    /// # Errors
    /// [`Error::Shape`] if `input` is not `[B, O]` with `O` the core's output size
    /// (`"residual_wrapper: input must be [B, 4] (the core's output size, as output = input
    /// + core output), got [2, 3]"`); the core's errors.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let o = self.core.output_size();
        let size = input.size();
        if size.len() != 2 || size[1] != o {
            let expected = format!("[B, {o}] (the core's output size, as output = input + core output)");
            return Err(Error::shape(self.name(), "input", expected, size));
        }
        let (output, state) = self.core.step(input, state, mode)?;
        Ok((input.f_add(&output).ctx(self.name())?, state))
    }

    /// The core's output size.
    fn output_size(&self) -> i64 {
        self.core.output_size()
    }

    /// The core's state size.
    fn state_size(&self) -> StateSize {
        self.core.state_size()
    }

    /// The core's initial state.
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        self.core.initial_state(batch_size)
    }

    /// [`Split::Around`] in any mode: unrolls run the core on its own route (e.g. fused) and
    /// add the whole input sequence to its outputs, zero past each row's length.
    fn split(&self, _mode: Mode) -> Option<Split<'_>> {
        Some(Split::Around(self))
    }
}

impl<C: RnnCore> SequenceMaps for ResidualWrapper<C> {
    fn inner(&self) -> &dyn RnnCore {
        &self.core
    }

    fn inner_state(&self, state: &State) -> Result<State> {
        Ok(state.clone())
    }

    /// The inputs unchanged, once their size is checked against the core's output size.
    fn map_inputs(&self, seq: &SequenceContext) -> Result<Tensor> {
        let (o, size) = (self.core.output_size(), seq.inputs.size());
        if size.last() != Some(&o) {
            let expected = format!("[.., {o}] (the core's output size, as output = input + core output)");
            return Err(Error::shape(self.name(), "inputs", expected, size));
        }
        Ok(seq.inputs.shallow_clone())
    }

    /// `inputs + outputs` at real steps, zero past each row's length (as the step loop, which
    /// never reads padded inputs, gives; no gradient reaches them).
    fn map_outputs(&self, outputs: &Tensor, seq: &SequenceContext) -> Result<Tensor> {
        let name = self.name();
        let sum = seq.inputs.f_add(outputs).ctx(name)?;
        let Some(lengths) = seq.lengths else {
            return Ok(sum);
        };
        let time = sum.size()[usize::from(!seq.time_major)];
        let steps = sequence_mask(lengths, Some(time))?.f_to_device(sum.device()).ctx(name)?;
        let steps = if seq.time_major { steps.f_tr().ctx(name)? } else { steps };
        sum.f_where_scalarother(&steps.f_unsqueeze(-1).ctx(name)?, 0.0).ctx(name)
    }

    fn outer_state(&self, inner_final: State, _seq: &SequenceContext) -> Result<State> {
        Ok(inner_final)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_cores::{leaves, t, v, Accum};
    use couplet_modules::Store;

    #[test]
    fn adds_the_input_to_the_core_output_and_keeps_its_state() {
        let store = Store::cpu();
        let r = ResidualWrapper::new(&store.root(), Accum::new(&store.root(), 2, 1.0)).unwrap();
        let x = t(&[1.0, 2.0, -1.0, 0.5], 2);
        let s = r.initial_state(2).unwrap();
        let (o, s) = r.step(&x, &s, Mode::Train).unwrap();
        // s' = x, output = x + x.
        assert_eq!(v(&o), [2.0, 4.0, -2.0, 1.0]);
        assert_eq!(leaves(&s), [vec![1.0, 2.0, -1.0, 0.5]]);
        let (o, s) = r.step(&x, &s, Mode::Train).unwrap();
        // s' = 2x, output = 3x.
        assert_eq!(v(&o), [3.0, 6.0, -3.0, 1.5]);
        assert_eq!(leaves(&s), [vec![2.0, 4.0, -2.0, 1.0]]);
        assert!(r.project_inputs(&x).unwrap().is_none());
        assert_eq!((r.output_size(), r.state_size()), (2, StateSize::Tensor(2)));
    }

    #[test]
    fn input_size_must_equal_output_size() {
        let store = Store::cpu();
        let r = ResidualWrapper::new(&store.root(), Accum::boxed(&store.root(), 2)).unwrap();
        let e = r.step(&t(&[1.0, 2.0, 3.0], 1), &r.initial_state(1).unwrap(), Mode::Eval).unwrap_err();
        assert_eq!(
            e.to_string(),
            "residual_wrapper: input must be [B, 2] (the core's output size, as output = input + core \
             output), got [1, 3]"
        );
    }

    #[test]
    fn variables_are_the_cores_and_wrapper_is_send() {
        let store = Store::cpu();
        let r = ResidualWrapper::new(&store.root(), Accum::boxed(&store.root(), 2)).unwrap();
        let names: Vec<_> = r.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["accum/w"]);
        assert_eq!(r.regularization_loss().unwrap().double_value(&[]), 2.0);
        fn send<T: Send>() {}
        send::<ResidualWrapper>();
    }
}
