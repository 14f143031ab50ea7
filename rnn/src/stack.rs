//! `StackedRnn`: cores stacked bottom-to-top (TF `MultiRNNCell`, Sonnet `DeepRNN`), and
//! conversions of a stack's final state to and from PyTorch's `[num_layers * D, B, H]` layout.

use crate::core::{InputProjection, RnnCore, Split};
use crate::state::{State, StateSize};
use crate::torch_cell::TorchCellWeights;
use couplet_modules::{Error, Mode, Module, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`StackedRnn`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StackedRnnConfig {
    /// Sonnet `DeepRNN` skip connections: layer `k > 0` reads `concat(input, output of
    /// layer k − 1)` and the stack's output is the concatenation of every layer's output
    /// (bottom first), so `output_size` is the sum of the layers' output sizes.
    /// Default `false` (layer `k > 0` reads layer `k − 1`'s output; the output is the top's).
    pub skip_connections: bool,
}

impl StackedRnnConfig {
    /// The default configuration (no skip connections).
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets whether skip connections are used.
    pub fn with_skip_connections(mut self, skip_connections: bool) -> Self {
        self.skip_connections = skip_connections;
        self
    }
}

/// Cores stacked bottom-to-top: the output of layer `k` is the input of layer `k + 1`, the
/// stack's output is the top layer's (or, with skip connections, every layer's,
/// concatenated). The state is `State::Tuple` of the layers' states, bottom-to-top (TF
/// `MultiRNNCell`, Keras).
///
/// Two stacks given to [`bidirectional_dynamic_rnn`](crate::bidirectional_dynamic_rnn)
/// (one per direction) are **not** PyTorch's multi-layer bidirectional model: there each
/// direction's upper layers read only that direction's outputs, while in `torch.nn.LSTM(..,
/// bidirectional=True)` layer `k + 1` reads both directions of layer `k`. For PyTorch's
/// model use [`TorchRnn`](crate::TorchRnn) (or one `bidirectional_dynamic_rnn` per layer).
///
/// The stack has no variables of its own; [`Module::variables`] lists its cores' variables
/// in layer order (each once, wherever the cores were built), then any other variable
/// created in the stack's scope.
pub struct StackedRnn {
    scope: Scope,
    config: StackedRnnConfig,
    cores: Vec<Box<dyn RnnCore>>,
}

impl std::fmt::Debug for StackedRnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cores: Vec<_> = self.cores.iter().map(|c| c.name().to_string()).collect();
        f.debug_struct("StackedRnn")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .field("cores", &cores)
            .finish()
    }
}

impl StackedRnn {
    /// Stacks `cores` (bottom first) in a new child scope `deep_rnn` (or `deep_rnn_1`, …)
    /// of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `cores` is empty.
    pub fn new(parent: &Scope, cores: Vec<Box<dyn RnnCore>>, config: StackedRnnConfig) -> Result<Self> {
        Self::named(parent, "deep_rnn", cores, config)
    }

    /// Like [`StackedRnn::new`] with the child scope named `name`.
    pub fn named(
        parent: &Scope,
        name: &str,
        cores: Vec<Box<dyn RnnCore>>,
        config: StackedRnnConfig,
    ) -> Result<Self> {
        Self::in_scope(parent.child(name)?, cores, config)
    }

    /// Like [`StackedRnn::new`] in an existing `scope`, e.g. one the cores were built in
    /// (`let s = root.child("deep_rnn")?;` then cores from `s`, giving Sonnet-like names
    /// such as `deep_rnn/lstm_1/weight_ih`).
    pub fn in_scope(scope: Scope, cores: Vec<Box<dyn RnnCore>>, config: StackedRnnConfig) -> Result<Self> {
        if cores.is_empty() {
            return Err(Error::config(scope.path(), "a stack needs at least one core"));
        }
        Ok(StackedRnn { scope, config, cores })
    }

    /// The configuration.
    pub fn config(&self) -> &StackedRnnConfig {
        &self.config
    }

    /// The cores, bottom first.
    pub fn cores(&self) -> &[Box<dyn RnnCore>] {
        &self.cores
    }

    /// Number of layers (≥ 1).
    pub fn num_layers(&self) -> usize {
        self.cores.len()
    }

    fn layer_states<'a>(&self, state: &'a State) -> Result<&'a [State]> {
        match state {
            State::Tuple(v) if v.len() == self.cores.len() => Ok(v),
            other => Err(Error::invalid(
                self.name(),
                format!(
                    "state must be State::Tuple of {} layer states (bottom first), got {:?}",
                    self.cores.len(),
                    other.size()
                ),
            )),
        }
    }

    /// Steps layers `1..` from the bottom layer's result; `input` is the stack's input
    /// (needed only with skip connections).
    fn step_upper(
        &self,
        input: Option<&Tensor>,
        bottom: (Tensor, State),
        states: &[State],
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let (mut prev, first) = bottom;
        let mut new_states = vec![first];
        let mut outputs = vec![prev.shallow_clone()];
        for (core, state) in self.cores.iter().zip(states).skip(1) {
            let layer_input = match input {
                Some(x) if self.config.skip_connections => {
                    if prev.size().first() != x.size().first() {
                        let expected = format!("[{}, ..] (the input's batch)", x.size()[0]);
                        return Err(Error::shape(self.name(), "layer output", expected, prev.size()));
                    }
                    Tensor::f_cat(&[x, &prev], -1).ctx(self.name())?
                }
                _ => prev,
            };
            let (output, new_state) = core.step(&layer_input, state, mode)?;
            outputs.push(output.shallow_clone());
            new_states.push(new_state);
            prev = output;
        }
        let output =
            if self.config.skip_connections { Tensor::f_cat(&outputs, -1).ctx(self.name())? } else { prev };
        Ok((output, State::Tuple(new_states)))
    }
}

impl Module for StackedRnn {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The cores, bottom first: the stack is built when they are, and lists their variables
    /// in layer order.
    fn children(&self) -> Vec<&dyn Module> {
        self.cores.iter().map(|c| c as &dyn Module).collect()
    }
}

impl RnnCore for StackedRnn {
    /// One step of every layer, bottom first: `input [B, I]` and `State::Tuple` of the
    /// layers' states → (top output `[B, O_top]`, or with skip connections every output
    /// concatenated `[B, ΣO]`; the new layer states).
    ///
    /// # Errors
    /// [`Error::Shape`] if `input` is not `[B, I]`; [`Error::InvalidArgument`] if `state` is
    /// not a tuple of one state per layer; any layer's error.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        if input.dim() < 2 {
            return Err(Error::shape(self.name(), "input", "[B, I..]", input.size()));
        }
        let states = self.layer_states(state)?;
        let bottom = self.cores[0].step(input, &states[0], mode)?;
        self.step_upper(Some(input), bottom, states, mode)
    }

    /// The top layer's output shape, or with skip connections the layers' outputs
    /// concatenated along their last dimension.
    fn output_shape(&self) -> Vec<i64> {
        let mut shape = self.cores[self.cores.len() - 1].output_shape();
        if self.config.skip_connections {
            let last = |c: &dyn RnnCore| c.output_shape().last().copied().unwrap_or(0);
            if let Some(n) = shape.last_mut() {
                *n = self.cores.iter().map(|c| last(&**c)).sum();
            }
        }
        shape
    }

    /// `StateSize::Tuple` of the layers' sizes, bottom first.
    fn state_size(&self) -> StateSize {
        StateSize::Tuple(self.cores.iter().map(|c| c.state_size()).collect())
    }

    /// `State::Tuple` of every layer's initial state (so learned initial states are kept).
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        Ok(State::Tuple(self.cores.iter().map(|c| c.initial_state(batch_size)).collect::<Result<_>>()?))
    }

    /// The bottom layer's projection when there are no skip connections (the input reaches
    /// only the bottom layer); `None` with skip connections.
    fn projection(&self) -> Option<&dyn InputProjection> {
        if self.config.skip_connections {
            return None;
        }
        self.cores[0].projection().map(|_| self as &dyn InputProjection)
    }

    /// Every core's single plain layer, bottom first (layer `k > 0` for the input size of
    /// layer `k − 1`'s output); `None` with skip connections or if any core is not plain
    /// or is itself several layers.
    fn torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        if self.config.skip_connections {
            return Ok(None);
        }
        let mut layers = Vec::with_capacity(self.cores.len());
        let mut size = input_size;
        for core in &self.cores {
            match core.torch_layers(size)? {
                Some(mut one) if one.len() == 1 => layers.append(&mut one),
                _ => return Ok(None),
            }
            size = match core.output_shape().as_slice() {
                [n] => *n,
                _ => return Ok(None),
            };
        }
        Ok(Some(layers))
    }

    /// The layers (bottom first) without skip connections, in any mode: unrolls run them
    /// layer by layer, each on its own route; `None` with skip connections.
    fn split(&self, _mode: Mode) -> Option<Split<'_>> {
        if self.config.skip_connections {
            return None;
        }
        Some(Split::Layers(self.cores.iter().map(|c| &**c as &dyn RnnCore).collect()))
    }
}

impl InputProjection for StackedRnn {
    /// The bottom layer's projection.
    ///
    /// # Errors
    /// [`Error::Config`] with skip connections or a bottom layer without projection.
    fn project_inputs(&self, inputs: &Tensor) -> Result<Tensor> {
        self.bottom_projection()?.project_inputs(inputs)
    }

    /// The bottom layer's `step_projected`, then the upper layers' `step`.
    ///
    /// # Errors
    /// [`Error::Config`] with skip connections (the upper layers need the raw input) or a
    /// bottom layer without projection; as [`RnnCore::step`].
    fn step_projected(&self, projected: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let states = self.layer_states(state)?;
        let bottom = self.bottom_projection()?.step_projected(projected, &states[0], mode)?;
        self.step_upper(None, bottom, states, mode)
    }
}

impl StackedRnn {
    fn bottom_projection(&self) -> Result<&dyn InputProjection> {
        match self.cores[0].projection() {
            Some(p) if !self.config.skip_connections => Ok(p),
            _ => Err(Error::config(self.name(), "this stack has no input projection; call step")),
        }
    }
}

/// A stack's final states, one per direction (each `State::Tuple` of `L` layer states,
/// bottom first, every layer a `State::Tensor` or every layer a `State::Lstm`), in PyTorch's
/// layout: `h [L * D, B, H]` with index `layer * D + direction`, and for LSTM states
/// `Some(c [L * D, B, Hc])` (`h` and `c` separately, as `nn.LSTM`'s `(h_n, c_n)`), else `None`.
///
/// # Errors
/// [`Error::InvalidArgument`] (named `to_torch_layout`) if `states` is empty, a state is not a
/// non-empty tuple, the directions have different numbers of layers, or the layers mix
/// state kinds; [`Error::Shape`] if the `h` (or `c`) leaves do not all have one shape.
pub fn to_torch_layout(states: &[&State]) -> Result<(Tensor, Option<Tensor>)> {
    const NAME: &str = "to_torch_layout";
    let first = states.first().ok_or_else(|| Error::invalid(NAME, "needs at least one direction"))?;
    let layers = first.as_tuple().map_or(0, <[State]>::len);
    let mut hs = Vec::new();
    let mut cs = Vec::new();
    for layer in 0..layers {
        for (direction, s) in states.iter().enumerate() {
            let layer_state = match s.as_tuple() {
                Some(v) if v.len() == layers => &v[layer],
                _ => {
                    return Err(Error::invalid(
                        NAME,
                        format!("direction {direction} must be State::Tuple of {layers} layer states"),
                    ))
                }
            };
            match layer_state {
                State::Tensor(h) => hs.push(h),
                State::Lstm { h, c } => {
                    hs.push(h);
                    cs.push(c);
                }
                _ => {
                    return Err(Error::invalid(
                        NAME,
                        format!(
                            "layer {layer} of direction {direction} must be State::Tensor or State::Lstm"
                        ),
                    ))
                }
            }
        }
    }
    if layers == 0 {
        return Err(Error::invalid(NAME, "direction 0 must be a non-empty State::Tuple of layer states"));
    }
    if !cs.is_empty() && cs.len() != hs.len() {
        return Err(Error::invalid(NAME, "layers mix State::Tensor and State::Lstm states"));
    }
    let stack = |leaves: &[&Tensor], what: &str| -> Result<Tensor> {
        let shape = leaves[0].size();
        if let Some((i, bad)) = leaves.iter().enumerate().find(|(_, l)| l.size() != shape) {
            let what = format!("{what} of layer {} direction {}", i / states.len(), i % states.len());
            return Err(Error::shape(NAME, what, format!("{shape:?} like layer 0"), bad.size()));
        }
        Tensor::f_stack(leaves, 0).ctx(NAME)
    };
    let c = if cs.is_empty() { None } else { Some(stack(&cs, "c")?) };
    Ok((stack(&hs, "h")?, c))
}

/// The inverse of [`to_torch_layout`]: PyTorch's `h [L * D, B, H]` (and for LSTM
/// `c [L * D, B, Hc]`) → one state per direction, each `State::Tuple` of `num_layers`
/// layer states bottom first (`State::Lstm` with `c`, else `State::Tensor`), layer `l` of
/// direction `d` taken from index `l * D + d`. The leaves are views of `h` and `c`.
///
/// # Errors
/// [`Error::InvalidArgument`] (named `from_torch_layout`) if `num_layers < 1` or
/// `num_directions` is not 1 or 2; [`Error::Shape`] if `h` or `c` is not rank 3 with
/// `L * D` entries, or `c`'s batch differs from `h`'s.
pub fn from_torch_layout(
    h: &Tensor,
    c: Option<&Tensor>,
    num_layers: i64,
    num_directions: i64,
) -> Result<Vec<State>> {
    const NAME: &str = "from_torch_layout";
    if !(1..=couplet_modules::util::MAX_COUNT).contains(&num_layers) {
        let max = couplet_modules::util::MAX_COUNT;
        return Err(Error::invalid(NAME, format!("num_layers must be in 1..={max}, got {num_layers}")));
    }
    couplet_modules::util::check_defined(NAME, "h", h)?;
    if let Some(c) = c {
        couplet_modules::util::check_defined(NAME, "c", c)?;
    }
    if !(1..=2).contains(&num_directions) {
        return Err(Error::invalid(NAME, format!("num_directions must be 1 or 2, got {num_directions}")));
    }
    let n = num_layers * num_directions;
    let expected = |what: &str| format!("[{n}, B, {what}] (num_layers * num_directions = {n})");
    if h.dim() != 3 || h.size()[0] != n {
        return Err(Error::shape(NAME, "h", expected("H"), h.size()));
    }
    if let Some(c) = c {
        if c.dim() != 3 || c.size()[0] != n || c.size()[1] != h.size()[1] {
            let batch = h.size()[1];
            return Err(Error::shape(NAME, "c", format!("[{n}, {batch}, Hc] (h's batch {batch})"), c.size()));
        }
    }
    (0..num_directions)
        .map(|d| {
            let layers = (0..num_layers)
                .map(|l| {
                    let i = l * num_directions + d;
                    let h = h.f_select(0, i).ctx(NAME)?;
                    Ok(match c {
                        Some(c) => State::Lstm { h, c: c.f_select(0, i).ctx(NAME)? },
                        None => State::Tensor(h),
                    })
                })
                .collect::<Result<_>>()?;
            Ok(State::Tuple(layers))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_cores::{leaves, t, v, Accum, LstmLike};
    use couplet_modules::Store;

    fn two_accums(store: &Store, skip: bool) -> StackedRnn {
        let root = store.root();
        let cores: Vec<Box<dyn RnnCore>> =
            vec![Accum::boxed(&root, 2), Accum::boxed(&root, if skip { 4 } else { 2 })];
        StackedRnn::new(&root, cores, StackedRnnConfig::new().with_skip_connections(skip)).unwrap()
    }

    #[test]
    fn layers_run_bottom_to_top_and_state_is_bottom_first() {
        let store = Store::cpu();
        let stack = two_accums(&store, false);
        let x = t(&[1.0, 2.0], 1);
        let mut s = stack.initial_state(1).unwrap();
        let mut out = Tensor::new();
        for _ in 0..3 {
            (out, s) = stack.step(&x, &s, Mode::Train).unwrap();
        }
        // Bottom: s0 = 3x. Top accumulates the bottom's outputs x, 2x, 3x: s1 = 6x.
        assert_eq!(leaves(&s), [vec![3.0, 6.0], vec![6.0, 12.0]]);
        assert_eq!(v(&out), [6.0, 12.0]);
        assert_eq!(stack.output_shape(), [2]);
        assert_eq!(stack.state_size(), StateSize::Tuple(vec![StateSize::vector(2); 2]));
        assert_eq!(stack.name(), "deep_rnn");
    }

    #[test]
    fn mixed_state_kinds_keep_their_layer_order() {
        let store = Store::cpu();
        let root = store.root();
        let cores: Vec<Box<dyn RnnCore>> = vec![Accum::boxed(&root, 1), Box::new(LstmLike::new(&root, 1))];
        let stack = StackedRnn::new(&root, cores, StackedRnnConfig::new()).unwrap();
        let s = stack.initial_state(1).unwrap();
        let (out, s) = stack.step(&t(&[3.0], 1), &s, Mode::Eval).unwrap();
        // Accum: s0 = 3; LstmLike on 3: c = 3, h = 6.
        assert_eq!(s.size(), StateSize::Tuple(vec![StateSize::vector(1), StateSize::lstm(1, 1)]));
        assert_eq!(leaves(&s), [vec![3.0], vec![6.0], vec![3.0]]);
        assert_eq!(v(&out), [6.0]);
    }

    #[test]
    fn skip_connections_feed_the_input_upward_and_concat_every_output() {
        let store = Store::cpu();
        let stack = two_accums(&store, true);
        assert_eq!(stack.output_shape(), [6]);
        let x = t(&[1.0, 2.0], 1);
        let s = stack.initial_state(1).unwrap();
        let (out, s) = stack.step(&x, &s, Mode::Train).unwrap();
        // out0 = [1, 2]; layer 1 reads [1, 2, 1, 2].
        assert_eq!(v(&out), [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let (out, _) = stack.step(&x, &s, Mode::Train).unwrap();
        // out0 = [2, 4]; layer 1 reads [1, 2, 2, 4] onto [1, 2, 1, 2].
        assert_eq!(v(&out), [2.0, 4.0, 2.0, 4.0, 3.0, 6.0]);
        assert!(stack.projection().is_none());
        let e = stack.step_projected(&x, &s, Mode::Train).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }

    #[test]
    fn empty_stack_and_wrong_states_are_errors() {
        let store = Store::cpu();
        let e = StackedRnn::new(&store.root(), vec![], StackedRnnConfig::new()).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(e.to_string().starts_with("deep_rnn: "), "{e}");
        let stack = two_accums(&store, false);
        let one = State::Tuple(vec![State::Tensor(t(&[0.0, 0.0], 1))]);
        let e = stack.step(&t(&[1.0, 2.0], 1), &one, Mode::Train).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert!(e.to_string().starts_with("deep_rnn_1: state must be State::Tuple of 2"), "{e}");
        let flat = Tensor::from_slice(&[1.0f32, 2.0]);
        let e = stack.step(&flat, &stack.initial_state(1).unwrap(), Mode::Train).unwrap_err();
        assert_eq!(e.to_string(), "deep_rnn_1: input must be [B, I..], got [2]");
    }

    #[test]
    fn projection_delegates_to_the_bottom_layer() {
        let store = Store::cpu();
        let root = store.root();
        let cores: Vec<Box<dyn RnnCore>> =
            vec![Box::new(Accum::new(&root, 2, 0.5)), Box::new(Accum::new(&root, 2, 3.0))];
        let stack = StackedRnn::new(&root, cores, StackedRnnConfig::new()).unwrap();
        let xs = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0], 3).view([3, 2, 2]);
        let p = stack.projection().unwrap().project_inputs(&xs).unwrap();
        let (mut a, mut b) = (stack.initial_state(2).unwrap(), stack.initial_state(2).unwrap());
        for step in 0..3 {
            let (oa, sa) = stack.step(&xs.get(step), &a, Mode::Train).unwrap();
            let (ob, sb) = stack.step_projected(&p.get(step), &b, Mode::Train).unwrap();
            assert_eq!(v(&oa), v(&ob));
            assert_eq!(leaves(&sa), leaves(&sb));
            (a, b) = (sa, sb);
        }
        // Bottom s0 = 0.5 · (x0 + x1 + x2) for row 0 = [7.5, 9]; top scales by 3.
        assert_eq!(leaves(&a)[0][..2], [7.5, 9.0]);
    }

    #[test]
    fn variables_are_the_cores_listed_once() {
        let store = Store::cpu();
        let root = store.root();
        let scope = root.child("deep_rnn").unwrap();
        let cores: Vec<Box<dyn RnnCore>> = vec![Accum::boxed(&scope, 2), Accum::boxed(&root, 2)];
        let stack = StackedRnn::in_scope(scope, cores, StackedRnnConfig::new()).unwrap();
        let names: Vec<_> = stack.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["deep_rnn/accum/w", "accum/w"]);
        assert!(stack.is_built());
        // Each core: L2 of w = [1, 1] is 2.
        assert_eq!(stack.regularization_loss().unwrap().double_value(&[]), 4.0);
    }

    fn lstm_states() -> [State; 2] {
        // Direction d, layer l: h = 10 l + d + [0, 0.5], c = -h; batch 1, H = 2.
        let layer = |l: f32, d: f32| {
            let h = t(&[10.0 * l + d, 10.0 * l + d + 0.5], 1);
            State::Lstm { c: -&h, h }
        };
        [
            State::Tuple(vec![layer(0.0, 0.0), layer(1.0, 0.0)]),
            State::Tuple(vec![layer(0.0, 1.0), layer(1.0, 1.0)]),
        ]
    }

    #[test]
    fn torch_layout_indexes_layer_times_directions_plus_direction() {
        let [fw, bw] = lstm_states();
        let (h, c) = to_torch_layout(&[&fw, &bw]).unwrap();
        assert_eq!(h.size(), [4, 1, 2]);
        // Index 1 = layer 0 backward, index 2 = layer 1 forward.
        assert_eq!(v(&h), [0.0, 0.5, 1.0, 1.5, 10.0, 10.5, 11.0, 11.5]);
        assert_eq!(v(&c.unwrap()), [-0.0, -0.5, -1.0, -1.5, -10.0, -10.5, -11.0, -11.5]);
        let back = from_torch_layout(&h, Some(&-&h), 2, 2).unwrap();
        assert_eq!(leaves(&back[0]), leaves(&fw));
        assert_eq!(leaves(&back[1]), leaves(&bw));
        // Single-tensor states: no c.
        let gru = State::Tuple(vec![State::Tensor(t(&[1.0], 1)), State::Tensor(t(&[2.0], 1))]);
        let (h, c) = to_torch_layout(&[&gru]).unwrap();
        assert!(c.is_none());
        assert_eq!(v(&h), [1.0, 2.0]);
        assert_eq!(leaves(&from_torch_layout(&h, None, 2, 1).unwrap()[0]), leaves(&gru));
    }

    #[test]
    fn torch_layout_validates_shapes_and_structures() {
        let [fw, bw] = lstm_states();
        let h = Tensor::zeros([4, 3, 2], (tch::Kind::Float, tch::Device::Cpu));
        let e = from_torch_layout(&h, None, 3, 2).unwrap_err();
        assert!(e.to_string().starts_with("from_torch_layout: h must be [6, B, H]"), "{e}");
        let c = Tensor::zeros([4, 2, 2], (tch::Kind::Float, tch::Device::Cpu));
        assert!(matches!(from_torch_layout(&h, Some(&c), 2, 2), Err(Error::Shape { .. })));
        assert!(matches!(from_torch_layout(&h, None, 2, 3), Err(Error::InvalidArgument { .. })));
        assert!(matches!(from_torch_layout(&h, None, 0, 1), Err(Error::InvalidArgument { .. })));
        let short = State::Tuple(vec![fw.as_tuple().unwrap()[0].clone()]);
        assert!(matches!(to_torch_layout(&[&fw, &short]), Err(Error::InvalidArgument { .. })));
        let mixed = State::Tuple(vec![State::Tensor(t(&[1.0, 2.0], 1)), bw.as_tuple().unwrap()[1].clone()]);
        assert!(matches!(to_torch_layout(&[&mixed]), Err(Error::InvalidArgument { .. })));
        let wide = State::Tuple(vec![State::Tensor(t(&[1.0], 1)), State::Tensor(t(&[1.0, 2.0], 1))]);
        let e = to_torch_layout(&[&wide]).unwrap_err();
        assert!(e.to_string().starts_with("to_torch_layout: h of layer 1 direction 0 must be [1, 1]"), "{e}");
        assert!(to_torch_layout(&[]).is_err());
    }

    #[test]
    fn wrappers_compose_into_a_stack() {
        use crate::{DropoutWrapper, DropoutWrapperConfig, ResidualWrapper, ZoneoutConfig, ZoneoutWrapper};
        tch::manual_seed(8);
        let store = Store::cpu();
        let root = store.root();
        let layer = |root: &Scope| -> Box<dyn RnnCore> {
            let config = DropoutWrapperConfig::new()
                .with_input_dropout(0.5)
                .with_state_dropout(0.5)
                .with_output_dropout(0.5)
                .with_variational(true)
                .with_input_size(2);
            let dropout = DropoutWrapper::new(root, Accum::boxed(root, 2), config).unwrap();
            Box::new(ResidualWrapper::new(root, dropout).unwrap())
        };
        let cores = vec![layer(&root), layer(&root)];
        let stack = StackedRnn::new(&root, cores, StackedRnnConfig::new()).unwrap();
        let top = ZoneoutWrapper::new(&root, stack, ZoneoutConfig::new().with_zoneout_h(0.5)).unwrap();
        let names: Vec<_> = top.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["accum/w", "accum_1/w"]);
        let x = t(&[1.0, 2.0, 3.0, 4.0], 2);
        // Eval: dropout is the identity, zoneout blends. Per layer s' = s + x, out = x + s'.
        let mut s = top.initial_state(2).unwrap();
        let mut out = Tensor::new();
        for _ in 0..3 {
            (out, s) = top.core().step(&x, &s, Mode::Eval).unwrap();
        }
        // Steps: (s0, out0, s1, out1) = (x, 2x, 2x, 4x), (2x, 3x, 5x, 8x), (3x, 4x, 9x, 13x).
        assert_eq!(v(&out), v(&(&x * 13.0)));
        for _ in 0..3 {
            (out, s) = top.step(&x, &s, Mode::Train).unwrap();
            assert_eq!(out.size(), [2, 2]);
        }
        // The state has the stack's structure (its masks are leaves the wrappers draw).
        assert_eq!(format!("{:?}", s.size()), format!("{:?}", top.state_size()).replace("Drawn", "Tensor"));
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<StackedRnn>();
    }
}
