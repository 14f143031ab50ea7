//! `ResidualWrapper`: `output = input + core output` (TF `ResidualWrapper`).

use crate::core::{RnnCore, SequenceContext, SequenceMaps, Wrapper, WrapperInput};
use crate::sequence::zero_padded_steps;
use crate::state::State;
use couplet_modules::{Error, Mode, Module, Result, Scope, TorchContext};
use tch::Tensor;

/// A residual connection around a core: `output = input + core output`, the core's state
/// untouched. The input size must equal the core's output size.
///
/// Has no input projection (the residual needs the raw input). Unrolls split it
/// ([`RnnCore::split`]): the core runs on its own route (a plain LSTM fused) and the input
/// sequence is added to its outputs at once. Outputs and inputs may have any shape
/// `[B, ..]` (equal to the core's output shape).
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

impl<C: RnnCore> ResidualWrapper<C> {
    /// Checks that `input` is `[lead.., ..output_shape]` (`lead` leading dimensions).
    fn check_input(&self, what: &str, input: &Tensor, lead: usize) -> Result<()> {
        let o = self.core.output_shape();
        let size = input.size();
        if size.len() != lead + o.len() || size[lead..] != o[..] {
            let dims = if lead == 1 { "B, " } else { ".., " };
            let inner = format!("{o:?}");
            let expected = format!(
                "[{dims}{}] (the core's output shape, as output = input + core output)",
                &inner[1..inner.len() - 1]
            );
            return Err(Error::shape(self.name(), what, expected, size));
        }
        Ok(())
    }
}

impl<C: RnnCore> Wrapper for ResidualWrapper<C> {
    type Inner = C;

    fn inner(&self) -> &C {
        &self.core
    }

    /// [`WrapperInput::Read`]: the residual needs the raw input (no input projection).
    fn input_use(&self) -> WrapperInput {
        WrapperInput::Read
    }

    /// `input [B, ..O]` → (`input + core output`, the core's new state).
    ///
    /// # Errors
    /// [`Error::Shape`] if `input` is not `[B, ..O]` with `O` the core's output shape
    /// (`"residual_wrapper: input must be [B, 4] (the core's output shape, as output = input
    /// + core output), got [2, 3]"`); the core's errors.
    fn read_step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        self.check_input("input", input, 1)?;
        let (output, state) = self.core.step(input, state, mode)?;
        Ok((input.f_add(&output).ctx(self.name())?, state))
    }

    /// In any mode: unrolls run the core on its own route (e.g. fused) and add the whole
    /// input sequence to its outputs, zero past each row's length.
    fn sequence_maps(&self, _mode: Mode) -> Option<&dyn SequenceMaps> {
        Some(self)
    }
}

impl<C: RnnCore> SequenceMaps for ResidualWrapper<C> {
    fn inner_core(&self) -> &dyn RnnCore {
        &self.core
    }

    /// The inputs unchanged, once their shape is checked against the core's output shape.
    fn map_inputs(&self, seq: &SequenceContext) -> Result<Tensor> {
        self.check_input("inputs", seq.inputs, 2)?;
        Ok(seq.inputs.shallow_clone())
    }

    /// `inputs + outputs` at real steps, zero past each row's length (as the step loop, which
    /// never reads padded inputs, gives; no gradient reaches them).
    fn map_outputs(&self, outputs: &Tensor, seq: &SequenceContext) -> Result<Tensor> {
        let sum = seq.inputs.f_add(outputs).ctx(self.name())?;
        zero_padded_steps(self.name(), &sum, seq.lengths, seq.time_major)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateSize;
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
        assert!(r.projection().is_none());
        assert_eq!((r.output_shape(), r.state_size()), (vec![2], StateSize::vector(2)));
    }

    #[test]
    fn input_size_must_equal_output_size() {
        let store = Store::cpu();
        let r = ResidualWrapper::new(&store.root(), Accum::boxed(&store.root(), 2)).unwrap();
        let e = r.step(&t(&[1.0, 2.0, 3.0], 1), &r.initial_state(1).unwrap(), Mode::Eval).unwrap_err();
        assert_eq!(
            e.to_string(),
            "residual_wrapper: input must be [B, 2] (the core's output shape, as output = input + core \
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
