//! Small hand-checkable cores for the wrappers' tests.

use crate::{InputProjection, RnnCore, State, StateSize};
use couplet_modules::{Error, Initializer, Mode, Module, Regularizer, Result, Scope, TorchContext};
use tch::Tensor;

/// `s' = s + w ⊙ x`, output `s'`; one variable `w [n]` (constant `w`, L2 regularizer of
/// scale 1), so its regularization loss is `n · w²`. Projects its inputs (`p = w ⊙ x`).
pub struct Accum {
    scope: Scope,
    n: i64,
    w: Tensor,
}

impl Accum {
    pub fn new(parent: &Scope, n: i64, w: f64) -> Accum {
        let scope = parent.child("accum").unwrap();
        let w = scope
            .var("w", &[n])
            .init(Initializer::Constant { value: w })
            .regularizer(Some(Regularizer::L2 { scale: 1.0 }))
            .create()
            .unwrap();
        Accum { scope, n, w }
    }

    pub fn boxed(parent: &Scope, n: i64) -> Box<dyn RnnCore> {
        Box::new(Accum::new(parent, n, 1.0))
    }

    fn check(&self, what: &str, t: &Tensor) -> Result<()> {
        if t.size().len() == 2 && t.size()[1] == self.n {
            Ok(())
        } else {
            Err(Error::shape(self.name(), what, format!("[B, {}]", self.n), t.size()))
        }
    }
}

impl Module for Accum {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for Accum {
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        self.check("input", input)?;
        self.step_projected(&(input * &self.w), state, mode)
    }
    fn output_shape(&self) -> Vec<i64> {
        vec![self.n]
    }
    fn state_size(&self) -> StateSize {
        StateSize::vector(self.n)
    }
    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for Accum {
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        Ok(inputs * &self.w)
    }
    fn step_projected(&self, p: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let State::Tensor(s) = state else {
            return Err(Error::invalid(self.name(), "state must be State::Tensor"));
        };
        self.check("state", s)?;
        let s = s.f_add(p).ctx(self.name())?;
        Ok((s.shallow_clone(), State::Tensor(s)))
    }
}

/// LSTM-shaped state without variables: `c' = c + x`, `h' = h + 2 c'`, output `h'`.
pub struct LstmLike {
    scope: Scope,
    n: i64,
}

impl LstmLike {
    pub fn new(parent: &Scope, n: i64) -> LstmLike {
        LstmLike { scope: parent.child("lstm_like").unwrap(), n }
    }
}

impl Module for LstmLike {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for LstmLike {
    fn step(&self, input: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let State::Lstm { h, c } = state else {
            return Err(Error::invalid(self.name(), "state must be State::Lstm"));
        };
        let c = c + input;
        let h = h + &c * 2.0;
        Ok((h.shallow_clone(), State::Lstm { h, c }))
    }
    fn output_shape(&self) -> Vec<i64> {
        vec![self.n]
    }
    fn state_size(&self) -> StateSize {
        StateSize::lstm(self.n, self.n)
    }
}

/// A `[rows, cols]` float tensor from `values`.
pub fn t(values: &[f32], rows: i64) -> Tensor {
    Tensor::from_slice(values).view([rows, -1])
}

/// The values of a tensor, flattened.
pub fn v(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

/// The flattened values of every leaf of a state.
pub fn leaves(s: &State) -> Vec<Vec<f32>> {
    s.leaves().into_iter().map(v).collect()
}
