//! Tiny deterministic cores whose unrolls are worked out by hand in the tests.
#![allow(dead_code)]

use couplet_modules::{Mode, Module, Result, Scope, Store};
use couplet_rnn::{InputProjection, RnnCore, State, StateSize};
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// A fresh scope named `name` in a new CPU store.
pub fn scope(name: &str) -> Scope {
    Store::cpu().root().child(name).unwrap()
}

/// What a core saw at each step: the number of rows and the mode.
#[derive(Default)]
pub struct Log(Mutex<Vec<(i64, Mode)>>);

impl Log {
    fn push(&self, rows: i64, mode: Mode) {
        self.0.lock().unwrap().push((rows, mode));
    }

    /// The row counts seen, in order.
    pub fn rows(&self) -> Vec<i64> {
        self.0.lock().unwrap().iter().map(|r| r.0).collect()
    }

    /// The modes seen, in order.
    pub fn modes(&self) -> Vec<Mode> {
        self.0.lock().unwrap().iter().map(|r| r.1).collect()
    }
}

fn single(state: &State) -> &Tensor {
    match state {
        State::Tensor(t) => t,
        other => panic!("expected a single-tensor state, got {other:?}"),
    }
}

/// `s' = s + x`, `output = 2 s'`; state and output have the input's size.
pub struct Accumulator {
    scope: Scope,
    size: i64,
    pub log: Log,
}

impl Accumulator {
    pub fn new(size: i64) -> Self {
        Accumulator { scope: scope("accumulator"), size, log: Log::default() }
    }
}

impl Module for Accumulator {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for Accumulator {
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        self.log.push(input.size()[0], mode);
        let s = single(state) + input;
        Ok((&s * 2.0, State::Tensor(s)))
    }
    fn output_shape(&self) -> Vec<i64> {
        vec![self.size]
    }
    fn state_size(&self) -> StateSize {
        StateSize::vector(self.size)
    }
}

/// An LSTM-shaped state: `h' = h + 1` (`[B, 1]`, counts steps), `c' = c + x` (`[B, I]`),
/// `output = c' · h'`.
pub struct Counter {
    scope: Scope,
    size: i64,
}

impl Counter {
    pub fn new(size: i64) -> Self {
        Counter { scope: scope("counter"), size }
    }
}

impl Module for Counter {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for Counter {
    fn step(&self, input: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let State::Lstm { h, c } = state else { panic!("expected an LSTM state, got {state:?}") };
        let (h, c) = (h + 1.0, c + input);
        Ok((&c * &h, State::Lstm { h, c }))
    }
    fn output_shape(&self) -> Vec<i64> {
        vec![self.size]
    }
    fn state_size(&self) -> StateSize {
        StateSize::lstm(1, self.size)
    }
}

/// `s' = tanh(s + x W)`, `output = s'` with a fixed `W [I, H]`, exposing `x W` through
/// its `InputProjection`. Counts calls of each method.
pub struct Projected {
    scope: Scope,
    w: Tensor,
    pub projections: Mutex<usize>,
    pub projected_steps: Mutex<usize>,
    pub plain_steps: Mutex<usize>,
}

impl Projected {
    /// `W[i, j] = 0.1 (i + 1) − 0.05 j` of shape `[input, hidden]`.
    pub fn new(input: i64, hidden: i64) -> Self {
        let i = Tensor::arange(input, (Kind::Float, tch::Device::Cpu)).view([input, 1]);
        let j = Tensor::arange(hidden, (Kind::Float, tch::Device::Cpu)).view([1, hidden]);
        let w = (i + 1.0) * 0.1 - j * 0.05;
        Projected {
            scope: scope("projected"),
            w,
            projections: Mutex::new(0),
            projected_steps: Mutex::new(0),
            plain_steps: Mutex::new(0),
        }
    }

    fn finish(&self, p: &Tensor, state: &State) -> (Tensor, State) {
        let s = (single(state) + p).tanh();
        (s.shallow_clone(), State::Tensor(s))
    }
}

impl Module for Projected {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for Projected {
    fn step(&self, input: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        *self.plain_steps.lock().unwrap() += 1;
        Ok(self.finish(&input.matmul(&self.w), state))
    }
    fn output_shape(&self) -> Vec<i64> {
        vec![self.w.size()[1]]
    }
    fn state_size(&self) -> StateSize {
        StateSize::vector(self.w.size()[1])
    }
    fn projection(&self) -> Option<&dyn InputProjection> {
        Some(self)
    }
}

impl InputProjection for Projected {
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        *self.projections.lock().unwrap() += 1;
        Ok(inputs.matmul(&self.w))
    }
    fn step_projected(&self, projected: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        *self.projected_steps.lock().unwrap() += 1;
        Ok(self.finish(projected, state))
    }
}

/// Hides a core's input projection, so unrolls must call `step`.
pub struct Unprojected<C>(pub C);

impl<C: RnnCore> Module for Unprojected<C> {
    fn scope(&self) -> &Scope {
        self.0.scope()
    }
}

impl<C: RnnCore> RnnCore for Unprojected<C> {
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        self.0.step(input, state, mode)
    }
    fn output_shape(&self) -> Vec<i64> {
        self.0.output_shape()
    }
    fn state_size(&self) -> StateSize {
        self.0.state_size()
    }
}
