//! `DropoutWrapper`: dropout on a core's input, new state and output (TF `DropoutWrapper`),
//! with per-row variational masks (Gal & Ghahramani 2016, Keras).

use crate::core::{InnerStep, RnnCore, SequenceContext, SequenceMaps, Wrapper, WrapperInput};
use crate::state::{State, StateSize};
use couplet_modules::{Error, Mode, Module, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`DropoutWrapper`]. Dropout **rates** (the probability of dropping
/// an element, as PyTorch's `nn.Dropout(p)` and Keras's `rate`) are in `[0, 1)`; `0`
/// disables that dropout. TF's `DropoutWrapper` takes keep probabilities instead: import
/// such a configuration with [`DropoutWrapperConfig::from_keep_probs`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DropoutWrapperConfig {
    /// Rate of dropping each input element. Default 0.
    pub input_dropout: f64,
    /// Rate of dropping each element of the new state passed to the next step (not of the
    /// output, even when the output equals the state, e.g. an LSTM's `h`). LSTM `c` is only
    /// dropped with `drop_cell_state`. Default 0.
    pub state_dropout: f64,
    /// Rate of dropping each output element. Default 0.
    pub output_dropout: f64,
    /// One mask per batch row per unrolled sequence, reused at every step (drawn by
    /// `initial_state` and carried in the state), instead of fresh masks at every step.
    /// Default `false`.
    pub variational: bool,
    /// The shape of one row of the input (`[I]`, or `[H, W, C]` for a 2-D convolutional
    /// core), required by variational input dropout (its mask `[B, ..input_shape]` is drawn
    /// before the first input is seen, as TF requires). Default `None`.
    pub input_shape: Option<Vec<i64>>,
    /// Whether state dropout also applies to the `c` of LSTM states (TF's default filter and
    /// Gal & Ghahramani never drop it). Default `false`.
    pub drop_cell_state: bool,
}

impl DropoutWrapperConfig {
    /// The default configuration (every rate 0: no dropout).
    pub fn new() -> Self {
        Self::default()
    }
    /// TF's `DropoutWrapper(input_keep_prob, state_keep_prob, output_keep_prob)`: the rates
    /// `1 − keep` (keep probabilities in `(0, 1]`; the constructor refuses others).
    pub fn from_keep_probs(input_keep_prob: f64, state_keep_prob: f64, output_keep_prob: f64) -> Self {
        DropoutWrapperConfig {
            input_dropout: 1.0 - input_keep_prob,
            state_dropout: 1.0 - state_keep_prob,
            output_dropout: 1.0 - output_keep_prob,
            ..Self::default()
        }
    }
    /// Sets the input dropout rate.
    pub fn with_input_dropout(mut self, rate: f64) -> Self {
        self.input_dropout = rate;
        self
    }
    /// Sets the state dropout rate.
    pub fn with_state_dropout(mut self, rate: f64) -> Self {
        self.state_dropout = rate;
        self
    }
    /// Sets the output dropout rate.
    pub fn with_output_dropout(mut self, rate: f64) -> Self {
        self.output_dropout = rate;
        self
    }
    /// Sets whether masks are variational (one per row per sequence).
    pub fn with_variational(mut self, variational: bool) -> Self {
        self.variational = variational;
        self
    }
    /// Sets the input size `I` (input rows `[I]`; needed by variational input dropout).
    pub fn with_input_size(self, input_size: i64) -> Self {
        self.with_input_shape(vec![input_size])
    }
    /// Sets the shape of one input row (needed by variational input dropout).
    pub fn with_input_shape(mut self, input_shape: Vec<i64>) -> Self {
        self.input_shape = Some(input_shape);
        self
    }
    /// Sets whether state dropout also drops LSTM `c`.
    pub fn with_drop_cell_state(mut self, drop_cell_state: bool) -> Self {
        self.drop_cell_state = drop_cell_state;
        self
    }
}

/// Dropout around a core: input → core → new state → output, each with its own rate.
/// Inverted dropout (`x / keep ⊙ mask`, `keep = 1 − rate`, mask ~ Bernoulli(keep)), active
/// only in [`Mode::Train`]; [`Mode::Eval`] is the exact identity (the core's own result).
/// State leaves and outputs may have any shape `[B, ..]` (a convolutional LSTM's
/// `[B, H, W, C]`): masks have the leaf's shape.
///
/// State layout:
/// - not variational: the core's state, unchanged in structure (fresh masks every step);
/// - variational: `State::Tuple([core state, masks])` with
///   `masks = State::Tuple([input mask [B, ..], state masks, output mask [B, ..]])`, each
///   `State::Empty` where that rate is 0. The state masks mirror the core's state, except
///   that an LSTM's masks are a single `State::Tensor` for `h`, or with `drop_cell_state`
///   `State::Tuple([h mask, c mask])`.
///   Masks are 0/1 values of the store's kind, drawn by [`RnnCore::initial_state`] (or
///   [`DropoutWrapper::wrap_state`]), carried unchanged by every step, and ignored in
///   [`Mode::Eval`]. Their sizes are [`StateSize::Drawn`], so [`State::zeros`] refuses to
///   build them (all-zero masks would silently drop everything).
///
/// Variables: the core's (the wrapper has none).
pub struct DropoutWrapper<C = Box<dyn RnnCore>> {
    scope: Scope,
    config: DropoutWrapperConfig,
    core: C,
}

impl<C: RnnCore> std::fmt::Debug for DropoutWrapper<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropoutWrapper")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .field("core", &self.core.name())
            .finish()
    }
}

fn check_rate(module: &str, what: &str, rate: f64) -> Result<()> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(Error::config(module, format!("{what} must be in [0, 1), got {rate}")))
    }
}

impl<C: RnnCore> DropoutWrapper<C> {
    /// Wraps `core` in a new child scope `dropout_wrapper` (or `dropout_wrapper_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if a rate is outside `[0, 1)` (naming it and its value), an
    /// `input_shape` size is not positive, or variational input dropout has no `input_shape`.
    pub fn new(parent: &Scope, core: C, config: DropoutWrapperConfig) -> Result<Self> {
        Self::named(parent, "dropout_wrapper", core, config)
    }

    /// Like [`DropoutWrapper::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, core: C, config: DropoutWrapperConfig) -> Result<Self> {
        Self::in_scope(parent.child(name)?, core, config)
    }

    /// Like [`DropoutWrapper::new`] in an existing `scope`.
    pub fn in_scope(scope: Scope, core: C, config: DropoutWrapperConfig) -> Result<Self> {
        let module = scope.path();
        check_rate(module, "input_dropout", config.input_dropout)?;
        check_rate(module, "state_dropout", config.state_dropout)?;
        check_rate(module, "output_dropout", config.output_dropout)?;
        if let Some(shape) = config.input_shape.as_ref().filter(|s| s.is_empty() || s.iter().any(|&n| n <= 0))
        {
            return Err(Error::config(module, format!("input_shape sizes must be > 0, got {shape:?}")));
        }
        if config.variational && config.input_dropout > 0.0 && config.input_shape.is_none() {
            return Err(Error::config(
                module,
                "variational input dropout needs input_shape (its mask [B, ..] is drawn by initial_state)",
            ));
        }
        Ok(DropoutWrapper { scope, config, core })
    }

    /// The configuration.
    pub fn config(&self) -> &DropoutWrapperConfig {
        &self.config
    }

    /// The wrapped core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The core's state inside a state of this wrapper (the state itself when not
    /// variational).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a variational wrapper's state is not
    /// `State::Tuple([core state, masks])`.
    pub fn inner_state<'a>(&self, state: &'a State) -> Result<&'a State> {
        Ok(self.state_parts(state)?.0)
    }

    /// A state of this wrapper around a core state `inner` of `batch_size` rows (e.g. an
    /// encoder's final state): with fresh variational masks, or `inner` itself when not
    /// variational.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `inner`'s batch differs from `batch_size`.
    pub fn wrap_state(&self, inner: State, batch_size: i64) -> Result<State> {
        if let Some(b) = inner.batch_size().filter(|&b| b != batch_size) {
            return Err(Error::invalid(
                self.name(),
                format!("wrap_state: the state has {b} rows, batch_size is {batch_size}"),
            ));
        }
        if !self.config.variational {
            return Ok(inner);
        }
        Ok(State::Tuple(vec![inner, self.draw_masks(batch_size)?]))
    }

    /// The state masks' shapes, mirroring `size` (an LSTM's `h` only unless
    /// `drop_cell_state`).
    fn state_mask_size(&self, size: &StateSize) -> StateSize {
        match size {
            StateSize::Lstm { h, .. } if !self.config.drop_cell_state => StateSize::Drawn(h.clone()),
            StateSize::Lstm { h, c } => {
                StateSize::Tuple(vec![StateSize::Drawn(h.clone()), StateSize::Drawn(c.clone())])
            }
            StateSize::Tensor(n) => StateSize::Drawn(n.clone()),
            StateSize::Tuple(v) => StateSize::Tuple(v.iter().map(|s| self.state_mask_size(s)).collect()),
            other => other.clone(),
        }
    }

    /// Sizes of the input, state and output mask slots.
    fn mask_sizes(&self) -> [StateSize; 3] {
        let c = &self.config;
        let input = match &c.input_shape {
            Some(shape) if c.input_dropout > 0.0 => StateSize::Drawn(shape.clone()),
            _ => StateSize::Empty,
        };
        let state = if c.state_dropout > 0.0 {
            self.state_mask_size(&self.core.state_size())
        } else {
            StateSize::Empty
        };
        let output = if c.output_dropout > 0.0 {
            StateSize::Drawn(self.core.output_shape())
        } else {
            StateSize::Empty
        };
        [input, state, output]
    }

    fn draw_masks(&self, batch_size: i64) -> Result<State> {
        let c = &self.config;
        let name = self.name();
        let rates = [c.input_dropout, c.state_dropout, c.output_dropout];
        let options = (self.scope.kind(), self.scope.device());
        let masks = self
            .mask_sizes()
            .iter()
            .zip(rates)
            .map(|(size, rate)| {
                State::zeros(&undrawn(size), batch_size, options)?
                    .try_map(&mut |z| z.f_bernoulli_p(1.0 - rate).ctx(name))
            })
            .collect::<Result<_>>()?;
        Ok(State::Tuple(masks))
    }

    /// The core's state and, when variational, the three mask slots.
    fn state_parts<'a>(&self, state: &'a State) -> Result<(&'a State, Option<&'a [State]>)> {
        if !self.config.variational {
            return Ok((state, None));
        }
        match state.as_tuple() {
            Some([inner, State::Tuple(masks)]) if masks.len() == 3 => Ok((inner, Some(masks))),
            _ => Err(Error::invalid(
                self.name(),
                "a variational state must be State::Tuple([core state, masks]) from initial_state or wrap_state",
            )),
        }
    }

    fn mask_leaf<'a>(&self, masks: Option<&'a [State]>, slot: usize) -> Result<Option<&'a Tensor>> {
        match masks.map(|m| &m[slot]) {
            None => Ok(None),
            Some(State::Tensor(t)) => Ok(Some(t)),
            Some(_) => Err(Error::invalid(self.name(), "the state's dropout masks do not match the wrapper")),
        }
    }

    /// `x / keep ⊙ mask`, with `mask` the given variational mask or a fresh one.
    fn drop(&self, what: &str, x: &Tensor, rate: f64, mask: Option<&Tensor>) -> Result<Tensor> {
        if let Some(m) = mask.filter(|m| m.size() != x.size()) {
            let expected = format!("{:?} (the shape of its variational mask)", m.size());
            return Err(Error::shape(self.name(), what, expected, x.size()));
        }
        self.inverted(x, rate, mask.map(Tensor::shallow_clone))
    }

    /// `x / keep ⊙ mask` with `mask` (broadcast to `x`) or, for `None`, a fresh
    /// Bernoulli(`keep`) mask per element.
    fn inverted(&self, x: &Tensor, rate: f64, mask: Option<Tensor>) -> Result<Tensor> {
        let name = self.name();
        let keep = 1.0 - rate;
        let mask = match mask {
            Some(m) => m,
            None => x.f_empty_like().ctx(name)?.f_bernoulli_float_(keep).ctx(name)?,
        };
        x.f_div_scalar(keep).ctx(name)?.f_mul(&mask).ctx(name)
    }

    fn drop_state(&self, state: &State, masks: Option<&State>) -> Result<State> {
        let rate = self.config.state_dropout;
        let drop_c = self.config.drop_cell_state;
        let d = |t: &Tensor, m: Option<&Tensor>| self.drop("state", t, rate, m);
        Ok(match (state, masks) {
            (State::Empty, None | Some(State::Empty)) => State::Empty,
            (State::Tensor(t), None) => State::Tensor(d(t, None)?),
            (State::Tensor(t), Some(State::Tensor(m))) => State::Tensor(d(t, Some(m))?),
            (State::Lstm { h, c }, None) => {
                State::Lstm { h: d(h, None)?, c: if drop_c { d(c, None)? } else { c.shallow_clone() } }
            }
            (State::Lstm { h, c }, Some(State::Tensor(m))) if !drop_c => {
                State::Lstm { h: d(h, Some(m))?, c: c.shallow_clone() }
            }
            (State::Lstm { h, c }, Some(State::Tuple(m))) if drop_c => match m.as_slice() {
                [State::Tensor(mh), State::Tensor(mc)] => {
                    State::Lstm { h: d(h, Some(mh))?, c: d(c, Some(mc))? }
                }
                _ => {
                    return Err(Error::invalid(
                        self.name(),
                        "the LSTM state's masks must be Tuple([h mask, c mask])",
                    ))
                }
            },
            (State::Tuple(v), None) => {
                State::Tuple(v.iter().map(|s| self.drop_state(s, None)).collect::<Result<_>>()?)
            }
            (State::Tuple(v), Some(State::Tuple(m))) if v.len() == m.len() => State::Tuple(
                v.iter().zip(m).map(|(s, m)| self.drop_state(s, Some(m))).collect::<Result<_>>()?,
            ),
            _ => {
                return Err(Error::invalid(
                    self.name(),
                    "the core's new state does not match the state dropout masks",
                ))
            }
        })
    }

    /// State and output dropout after the core's step, and the masks carried along.
    fn finish(
        &self,
        result: (Tensor, State),
        masks: Option<&[State]>,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let (mut output, mut state) = result;
        let c = &self.config;
        if mode.is_training() && c.state_dropout > 0.0 {
            state = self.drop_state(&state, masks.map(|m| &m[1]))?;
        }
        if mode.is_training() && c.output_dropout > 0.0 {
            output = self.drop("output", &output, c.output_dropout, self.mask_leaf(masks, 2)?)?;
        }
        if let Some(masks) = masks {
            state = State::Tuple(vec![state, State::Tuple(masks.to_vec())]);
        }
        Ok((output, state))
    }

    /// Dropout of a whole sequence `x [B, T, ..]` (`[T, B, ..]` if time-major) in training
    /// with `rate > 0`: the variational mask of `slot` in the initial state's masks
    /// (`[B, ..]`, the same at every step), or a fresh mask per element.
    fn drop_sequence(
        &self,
        what: &str,
        x: &Tensor,
        rate: f64,
        slot: usize,
        seq: &SequenceContext,
    ) -> Result<Tensor> {
        if !seq.mode.is_training() || rate == 0.0 {
            return Ok(x.shallow_clone());
        }
        let time_major = seq.time_major;
        let name = self.name();
        let size = x.size();
        let mask = match self.mask_leaf(self.state_parts(seq.initial)?.1, slot)? {
            Some(m) => {
                let mut row: Vec<i64> = size.clone();
                row.remove(usize::from(!time_major));
                if m.size() != row {
                    let expected =
                        format!("{:?} at every step (the shape of its variational mask)", m.size());
                    return Err(Error::shape(name, what, expected, row));
                }
                Some(m.f_unsqueeze(i64::from(!time_major)).ctx(name)?)
            }
            None => None,
        };
        self.inverted(x, rate, mask)
    }
}

/// `size` with its [`StateSize::Drawn`] leaves as plain tensors (to be filled by a draw).
fn undrawn(size: &StateSize) -> StateSize {
    match size {
        StateSize::Drawn(shape) => StateSize::Tensor(shape.clone()),
        StateSize::Tuple(v) => StateSize::Tuple(v.iter().map(undrawn).collect()),
        other => other.clone(),
    }
}

impl<C: RnnCore> Module for DropoutWrapper<C> {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The wrapped core: the wrapper is built when it is, and lists its variables.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.core]
    }
}

impl<C: RnnCore> Wrapper for DropoutWrapper<C> {
    type Inner = C;

    fn inner(&self) -> &C {
        &self.core
    }

    /// [`WrapperInput::Read`] with input dropout (the input is dropped before the core's
    /// projection), else [`WrapperInput::Passed`]: unrolls keep the core's projection.
    fn input_use(&self) -> WrapperInput {
        if self.config.input_dropout > 0.0 {
            WrapperInput::Read
        } else {
            WrapperInput::Passed
        }
    }

    /// The core's step, then state and output dropout (in [`Mode::Train`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a variational state is not the wrapper's
    /// `Tuple([core state, masks])`; [`Error::Shape`] if the core's new state or its output
    /// does not have its variational mask's shape; the core's errors.
    fn after_step(&self, inner: InnerStep<'_, C>, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let (core_state, masks) = self.state_parts(state)?;
        let result = inner.run(core_state, mode)?;
        self.finish(result, masks, mode)
    }

    /// Input dropout, the core's step, then state and output dropout (in [`Mode::Train`]).
    ///
    /// # Errors
    /// As [`Wrapper::after_step`], and [`Error::Shape`] if the input does not have its
    /// variational mask's shape
    /// (`"dropout_wrapper: input must be [4, 3] (the shape of its variational mask), got [4, 5]"`).
    fn read_step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let (inner, masks) = self.state_parts(state)?;
        let rate = self.config.input_dropout;
        let x = if mode.is_training() && rate > 0.0 {
            self.drop("input", input, rate, self.mask_leaf(masks, 0)?)?
        } else {
            input.shallow_clone()
        };
        let result = self.core.step(&x, inner, mode)?;
        self.finish(result, masks, mode)
    }

    /// The core's state size, or when variational `Tuple([core state size, mask sizes])`
    /// (the masks [`StateSize::Drawn`]).
    fn wrapper_state_size(&self) -> StateSize {
        if self.config.variational {
            StateSize::Tuple(vec![self.core.state_size(), StateSize::Tuple(self.mask_sizes().to_vec())])
        } else {
            self.core.state_size()
        }
    }

    /// The core's initial state, with freshly drawn masks when variational.
    fn wrapper_initial_state(&self, batch_size: i64) -> Result<State> {
        self.wrap_state(self.core.initial_state(batch_size)?, batch_size)
    }

    /// In [`Mode::Eval`] (the identity), or in [`Mode::Train`] without state dropout: the core
    /// between input and output dropout of the whole sequences, so unrolls run the core on
    /// its own route (e.g. fused). Fresh masks are then drawn once per sequence (`[B, T, ..]`,
    /// the same distribution as one per step); variational masks come from the state as in
    /// [`RnnCore::step`], with the same numbers. `None` with state dropout in training (the
    /// masks enter the recurrence).
    fn sequence_maps(&self, mode: Mode) -> Option<&dyn SequenceMaps> {
        (!mode.is_training() || self.config.state_dropout == 0.0).then_some(self as &dyn SequenceMaps)
    }
}

impl<C: RnnCore> SequenceMaps for DropoutWrapper<C> {
    fn inner_core(&self) -> &dyn RnnCore {
        &self.core
    }

    fn inner_state(&self, state: &State) -> Result<State> {
        Ok(self.state_parts(state)?.0.clone())
    }

    /// Input dropout of every step at once (see [`RnnCore::split`]).
    fn map_inputs(&self, seq: &SequenceContext) -> Result<Tensor> {
        self.drop_sequence("input", seq.inputs, self.config.input_dropout, 0, seq)
    }

    /// Output dropout of every step at once (see [`RnnCore::split`]).
    fn map_outputs(&self, outputs: &Tensor, seq: &SequenceContext) -> Result<Tensor> {
        self.drop_sequence("output", outputs, self.config.output_dropout, 2, seq)
    }

    fn outer_state(&self, inner_final: State, seq: &SequenceContext) -> Result<State> {
        Ok(match self.state_parts(seq.initial)?.1 {
            Some(masks) => State::Tuple(vec![inner_final, State::Tuple(masks.to_vec())]),
            None => inner_final,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::InputProjection;
    use crate::test_cores::{leaves, v, Accum, LstmLike};
    use couplet_modules::Store;
    use tch::{Device, Kind};

    fn ones(rows: i64, cols: i64) -> Tensor {
        Tensor::ones([rows, cols], (Kind::Float, Device::Cpu))
    }

    fn wrap<C: RnnCore>(store: &Store, core: C, config: DropoutWrapperConfig) -> DropoutWrapper<C> {
        DropoutWrapper::new(&store.root(), core, config).unwrap()
    }

    /// Asserts every element of `dropped` is 0 or `full / keep`; returns the kept fraction.
    fn kept_fraction(dropped: &Tensor, full: &Tensor, keep: f64) -> f64 {
        let (d, f) = (v(dropped), v(&(full / keep)));
        assert_eq!(d.len(), f.len());
        assert!(d.iter().zip(&f).all(|(d, f)| *d == 0.0 || d == f), "{d:?} vs {f:?}");
        d.iter().filter(|x| **x != 0.0).count() as f64 / d.len() as f64
    }

    #[test]
    fn eval_is_the_exact_identity() {
        tch::manual_seed(1);
        let store = Store::cpu();
        let all = DropoutWrapperConfig::new()
            .with_input_dropout(0.5)
            .with_state_dropout(0.5)
            .with_output_dropout(0.5)
            .with_drop_cell_state(true);
        for variational in [false, true] {
            let config = all.clone().with_variational(variational).with_input_size(3);
            let w = wrap(&store, LstmLike::new(&store.root(), 3), config);
            let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
            let s = w.initial_state(4).unwrap();
            let (o, s2) = w.step(&x, &s, Mode::Eval).unwrap();
            let (o_core, s_core) = w.core().step(&x, w.inner_state(&s).unwrap(), Mode::Eval).unwrap();
            assert_eq!(v(&o), v(&o_core));
            assert_eq!(leaves(w.inner_state(&s2).unwrap()), leaves(&s_core));
            // Variational masks are carried unchanged.
            let n = leaves(&s_core).len();
            assert_eq!(leaves(&s2)[n..], leaves(&s)[n..]);
        }
    }

    #[test]
    fn rates_outside_zero_one_are_config_errors_and_tf_keep_probs_convert() {
        let store = Store::cpu();
        type WithRate = fn(f64) -> DropoutWrapperConfig;
        let cases: [(&str, WithRate); 3] = [
            ("input_dropout", |r| DropoutWrapperConfig::new().with_input_dropout(r)),
            ("state_dropout", |r| DropoutWrapperConfig::new().with_state_dropout(r)),
            ("output_dropout", |r| DropoutWrapperConfig::new().with_output_dropout(r)),
        ];
        for (name, config) in cases {
            for bad in [1.0, -0.5, 1.5, f64::NAN] {
                let e = DropoutWrapper::new(&store.root(), Accum::new(&store.root(), 2, 1.0), config(bad))
                    .unwrap_err();
                assert!(matches!(e, Error::Config { .. }), "{e}");
                assert!(e.to_string().contains(&format!("{name} must be in [0, 1), got {bad}")), "{e}");
            }
            assert!(
                DropoutWrapper::new(&store.root(), Accum::new(&store.root(), 2, 1.0), config(0.0)).is_ok()
            );
        }
        // TF's keep probabilities are rates 1 − keep; a keep probability of 0 is refused.
        let tf = DropoutWrapperConfig::from_keep_probs(1.0, 0.75, 0.5);
        assert_eq!((tf.input_dropout, tf.state_dropout, tf.output_dropout), (0.0, 0.25, 0.5));
        let e = DropoutWrapper::new(
            &store.root(),
            Accum::new(&store.root(), 2, 1.0),
            DropoutWrapperConfig::from_keep_probs(0.0, 1.0, 1.0),
        )
        .unwrap_err();
        assert!(e.to_string().contains("input_dropout must be in [0, 1), got 1"), "{e}");
        let needs_size = DropoutWrapperConfig::new().with_input_dropout(0.5).with_variational(true);
        let e =
            DropoutWrapper::new(&store.root(), Accum::new(&store.root(), 2, 1.0), needs_size).unwrap_err();
        assert!(e.to_string().contains("needs input_shape"), "{e}");
        let no_input_dropout = DropoutWrapperConfig::new().with_output_dropout(0.5).with_variational(true);
        assert!(
            DropoutWrapper::new(&store.root(), Accum::new(&store.root(), 2, 1.0), no_input_dropout).is_ok()
        );
    }

    #[test]
    fn inverted_dropout_keeps_zero_or_scaled_values_with_fresh_masks() {
        tch::manual_seed(2);
        let store = Store::cpu();
        let config = DropoutWrapperConfig::new().with_output_dropout(0.75);
        let w = wrap(&store, Accum::new(&store.root(), 16, 1.0), config);
        let x = Tensor::rand([32, 16], (Kind::Float, Device::Cpu)) + 0.5;
        let s = w.initial_state(32).unwrap();
        let (o1, s1) = w.step(&x, &s, Mode::Train).unwrap();
        let (o2, _) = w.step(&x, &s, Mode::Train).unwrap();
        // The state (s' = x) is not dropped; the output is 0 or 4x, about a quarter kept.
        assert_eq!(leaves(&s1), [v(&x)]);
        let kept = kept_fraction(&o1, &x, 0.25);
        assert!((0.15..0.35).contains(&kept), "{kept}");
        kept_fraction(&o2, &x, 0.25);
        assert_ne!(v(&o1), v(&o2), "fresh masks at every step");
        // Input dropout: s' = x / 0.5 ⊙ mask.
        let w = wrap(
            &store,
            Accum::new(&store.root(), 16, 1.0),
            DropoutWrapperConfig::new().with_input_dropout(0.5),
        );
        let (o, s1) = w.step(&x, &s, Mode::Train).unwrap();
        let kept = kept_fraction(&o, &x, 0.5);
        assert!((0.4..0.6).contains(&kept), "{kept}");
        assert_eq!(leaves(&s1), [v(&o)]);
    }

    #[test]
    fn variational_masks_are_constant_in_time_and_differ_across_rows() {
        tch::manual_seed(3);
        let store = Store::cpu();
        let config =
            DropoutWrapperConfig::new().with_input_dropout(0.5).with_variational(true).with_input_size(8);
        let w = wrap(&store, Accum::new(&store.root(), 8, 1.0), config);
        let s0 = w.initial_state(64).unwrap();
        assert_eq!(
            w.state_size(),
            StateSize::Tuple(vec![
                StateSize::vector(8),
                StateSize::Tuple(vec![StateSize::Drawn(vec![8]), StateSize::Empty, StateSize::Empty])
            ])
        );
        let mut s = s0.clone();
        let mut increments = Vec::new();
        for _ in 0..3 {
            let before = w.inner_state(&s).unwrap().h().unwrap().shallow_clone();
            let (_, next) = w.step(&ones(64, 8), &s, Mode::Train).unwrap();
            increments.push(w.inner_state(&next).unwrap().h().unwrap() - before);
            s = next;
        }
        // Each increment is the same 0-or-2 pattern at every step.
        kept_fraction(&increments[0], &ones(64, 8), 0.5);
        assert_eq!(v(&increments[0]), v(&increments[1]));
        assert_eq!(v(&increments[0]), v(&increments[2]));
        // One mask per row: with 64 rows of 8 fair coins, rows differ (TF shared one mask).
        let rows: std::collections::BTreeSet<Vec<u32>> =
            (0..64).map(|r| v(&increments[0].get(r)).iter().map(|x| x.to_bits()).collect()).collect();
        assert!(rows.len() > 10, "{} distinct rows", rows.len());
        // The masks are carried unchanged.
        assert_eq!(leaves(&s)[1..], leaves(&s0)[1..]);
        // A fresh sequence draws new masks.
        assert_ne!(leaves(&w.initial_state(64).unwrap())[1], leaves(&s0)[1]);
    }

    #[test]
    fn state_dropout_drops_h_not_c_and_output_separately() {
        tch::manual_seed(4);
        let store = Store::cpu();
        let config = DropoutWrapperConfig::new().with_state_dropout(0.5).with_variational(true);
        let w = wrap(&store, LstmLike::new(&store.root(), 8), config);
        assert_eq!(
            w.state_size(),
            StateSize::Tuple(vec![
                StateSize::lstm(8, 8),
                StateSize::Tuple(vec![StateSize::Empty, StateSize::Drawn(vec![8]), StateSize::Empty])
            ])
        );
        let x = Tensor::rand([16, 8], (Kind::Float, Device::Cpu)) + 0.5;
        let s = w.initial_state(16).unwrap();
        let (o, s1) = w.step(&x, &s, Mode::Train).unwrap();
        let State::Lstm { h, c } = w.inner_state(&s1).unwrap() else { panic!("not an LSTM state") };
        // From zeros: c' = x (untouched), h' = 2x, dropped in the state only.
        assert_eq!(v(c), v(&x));
        assert_eq!(v(&o), v(&(&x * 2.0)));
        let kept = kept_fraction(h, &(&x * 2.0), 0.5);
        assert!((0.3..0.7).contains(&kept), "{kept}");
        // The next step reuses the same h mask: zeros in the same places.
        let (_, s2) = w.step(&x, &s1, Mode::Train).unwrap();
        let zeros = |t: &Tensor| v(t).iter().map(|x| *x == 0.0).collect::<Vec<_>>();
        assert_eq!(zeros(w.inner_state(&s2).unwrap().h().unwrap()), zeros(h));

        // With drop_cell_state, c is dropped too (fresh masks here).
        let config = DropoutWrapperConfig::new().with_state_dropout(0.5).with_drop_cell_state(true);
        let w = wrap(&store, LstmLike::new(&store.root(), 8), config);
        let (_, s1) = w.step(&x, &w.initial_state(16).unwrap(), Mode::Train).unwrap();
        let State::Lstm { c, .. } = &s1 else { panic!("not an LSTM state") };
        let kept = kept_fraction(c, &x, 0.5);
        assert!((0.3..0.7).contains(&kept), "{kept}");
    }

    #[test]
    fn variational_output_mask_is_reused() {
        tch::manual_seed(5);
        let store = Store::cpu();
        let config = DropoutWrapperConfig::new().with_output_dropout(0.5).with_variational(true);
        let w = wrap(&store, Accum::new(&store.root(), 8, 1.0), config);
        let x = ones(16, 8);
        let s = w.initial_state(16).unwrap();
        let (o1, s1) = w.step(&x, &s, Mode::Train).unwrap();
        let (o2, _) = w.step(&x, &s1, Mode::Train).unwrap();
        // Accum's outputs are x then 2x: the same mask gives o2 = 2 o1.
        kept_fraction(&o1, &x, 0.5);
        assert_eq!(v(&o2), v(&(&o1 * 2.0)));
    }

    #[test]
    fn a_variational_state_of_zeros_is_refused_not_silently_all_dropped() {
        let store = Store::cpu();
        let config = DropoutWrapperConfig::new().with_output_dropout(0.5).with_variational(true);
        let w = wrap(&store, Accum::new(&store.root(), 2, 1.0), config);
        // Zeros would be all-zero masks: every output dropped in training, without an error.
        let e = State::zeros(&w.state_size(), 4, (Kind::Float, Device::Cpu)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert!(e.to_string().contains("drawn by the core"), "{e}");
        // With drop_cell_state an LSTM's h and c masks are both drawn leaves.
        let config = DropoutWrapperConfig::new()
            .with_state_dropout(0.5)
            .with_variational(true)
            .with_drop_cell_state(true);
        let w = wrap(&store, LstmLike::new(&store.root(), 2), config);
        assert!(State::zeros(&w.state_size(), 4, (Kind::Float, Device::Cpu)).is_err());
        let s = w.initial_state(4).unwrap();
        assert_eq!(
            s.size(),
            StateSize::Tuple(vec![
                StateSize::lstm(2, 2),
                StateSize::Tuple(vec![
                    StateSize::Empty,
                    StateSize::Tuple(vec![StateSize::vector(2), StateSize::vector(2)]),
                    StateSize::Empty,
                ])
            ])
        );
        let (_, s1) = w.step(&ones(4, 2), &s, Mode::Train).unwrap();
        assert_eq!(s1.size(), s.size());
    }

    #[test]
    fn mismatched_masks_and_states_are_errors() {
        let store = Store::cpu();
        let config =
            DropoutWrapperConfig::new().with_input_dropout(0.5).with_variational(true).with_input_size(3);
        let w = wrap(&store, Accum::new(&store.root(), 2, 1.0), config);
        let e = w.step(&ones(4, 2), &w.initial_state(4).unwrap(), Mode::Train).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dropout_wrapper: input must be [4, 3] (the shape of its variational mask), got [4, 2]"
        );
        let plain = w.core().initial_state(4).unwrap();
        let e = w.step(&ones(4, 2), &plain, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let e = w.wrap_state(plain.clone(), 5).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let wrapped = w.wrap_state(plain, 4).unwrap();
        assert_eq!(wrapped.size(), w.initial_state(4).unwrap().size());
    }

    #[test]
    fn projection_only_without_input_dropout() {
        tch::manual_seed(6);
        let store = Store::cpu();
        let with_input = DropoutWrapperConfig::new().with_input_dropout(0.5);
        let w = wrap(&store, Accum::new(&store.root(), 2, 0.5), with_input);
        let xs = Tensor::rand([3, 4, 2], (Kind::Float, Device::Cpu));
        assert!(w.projection().is_none());
        let e = InputProjection::step_projected(&w, &xs.get(0), &w.initial_state(4).unwrap(), Mode::Eval)
            .unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");

        let config = DropoutWrapperConfig::new().with_output_dropout(0.5).with_state_dropout(0.5);
        let w = wrap(&store, Accum::new(&store.root(), 2, 0.5), config);
        let proj = w.projection().unwrap();
        let p = proj.project_inputs(&xs).unwrap();
        let s = w.initial_state(4).unwrap();
        let (a, sa) = w.step(&xs.get(0), &s, Mode::Eval).unwrap();
        let (b, sb) = proj.step_projected(&p.get(0), &s, Mode::Eval).unwrap();
        assert_eq!((v(&a), leaves(&sa)), (v(&b), leaves(&sb)));
        let (b, _) = proj.step_projected(&p.get(0), &s, Mode::Train).unwrap();
        kept_fraction(&b, &a, 0.5);
    }

    #[test]
    fn variables_are_the_cores_and_wrapper_is_send() {
        let store = Store::cpu();
        let w = wrap(&store, Accum::boxed(&store.root(), 3), DropoutWrapperConfig::new());
        let names: Vec<_> = w.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["accum/w"]);
        assert_eq!(w.regularization_loss().unwrap().double_value(&[]), 3.0);
        assert_eq!(w.name(), "dropout_wrapper");
        fn send<T: Send>() {}
        send::<DropoutWrapper>();
        send::<DropoutWrapper<Accum>>();
    }
}
