//! `AttentionDecoderCore`: TF's `AttentionWrapper`, a recurrent cell queried against a memory
//! at every step, with Luong's input feeding.

use crate::decoder_state::{AlignmentHistory, DecoderState};
use crate::mechanism::AttentionMechanism;
use crate::softmax::check_mask;
use couplet_modules::{Error, Linear, LinearConfig, Mode, Module, Result, Scope, TorchContext};
use couplet_rnn::{sequence_mask, InnerStep, Lengths, RnnCore, State, StateSize, Wrapper, WrapperInput};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Configuration of an [`AttentionDecoderCore`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttentionDecoderConfig {
    /// Size `A` of the attention layer `W_a` (`attention = [cell_out, context] W_a`, no bias,
    /// no activation). Default `None`: the attention is the context itself (`A = Dm`).
    pub attention_layer_size: Option<i64>,
    /// Each step outputs the attention (`true`, default) or the cell's output (`false`).
    pub output_attention: bool,
    /// Luong's input feeding: the cell's input is `[x, previous attention]` (default `true`);
    /// with `false` it is `x` alone.
    pub input_feeding: bool,
    /// Record every step's alignments in the state (default `false`); read them with
    /// [`AttentionDecoderCore::alignment_history`].
    pub alignment_history: bool,
    /// The memory depth `Dm`, if known in advance (default `None`). Required when the output
    /// is the context (`attention_layer_size` is `None` and `output_attention` is `true`), so
    /// that [`RnnCore::output_shape`] is known; when set, memories of another depth are refused
    /// and the attention layer is created at construction.
    pub memory_size: Option<i64>,
}

impl Default for AttentionDecoderConfig {
    fn default() -> Self {
        AttentionDecoderConfig {
            attention_layer_size: None,
            output_attention: true,
            input_feeding: true,
            alignment_history: false,
            memory_size: None,
        }
    }
}

impl AttentionDecoderConfig {
    /// An attention layer of `attention_layer_size` units, every other field at its default.
    pub fn new(attention_layer_size: i64) -> Self {
        AttentionDecoderConfig { attention_layer_size: Some(attention_layer_size), ..Default::default() }
    }
    /// Sets the attention layer size (`None`: the attention is the context).
    pub fn with_attention_layer_size(mut self, size: Option<i64>) -> Self {
        self.attention_layer_size = size;
        self
    }
    /// Sets whether steps output the attention (`true`) or the cell output (`false`).
    pub fn with_output_attention(mut self, output_attention: bool) -> Self {
        self.output_attention = output_attention;
        self
    }
    /// Sets whether the previous attention is concatenated to the cell's input.
    pub fn with_input_feeding(mut self, input_feeding: bool) -> Self {
        self.input_feeding = input_feeding;
        self
    }
    /// Sets whether the state records the alignment history.
    pub fn with_alignment_history(mut self, alignment_history: bool) -> Self {
        self.alignment_history = alignment_history;
        self
    }
    /// Sets the memory depth `Dm`.
    pub fn with_memory_size(mut self, memory_size: Option<i64>) -> Self {
        self.memory_size = memory_size;
        self
    }
}

/// TF's `AttentionWrapper` (Luong et al. 2015 with input feeding; Bahdanau et al. 2015 with
/// a Bahdanau mechanism): wraps a recurrent `cell` and an attention `mechanism` into one
/// [`RnnCore`]. One step, with `x [B, I]`:
///
/// 1. `cell_in = [x, previous attention]` (`[B, I + A]`; `x` alone without input feeding);
/// 2. `(cell_out, cell_state') = cell(cell_in, cell_state)`;
/// 3. `(context [B, Dm], alignments [B, N]) = mechanism.attend_step(cell_out, memory,
///    previous alignments, mode)`, `context = Σ_n α_n v_n` (the previous alignments matter to
///    monotonic mechanisms only);
/// 4. `attention = [cell_out, context] W_a` (`attention_layer/w [O_cell + Dm, A]`, no bias,
///    no activation), or `context` without an attention layer;
/// 5. output `attention` (or `cell_out` when `output_attention` is false).
///
/// **The memory lives in the state**, prepared once (keys computed once) by
/// [`AttentionDecoderCore::initial_state_with_memory`]: unrolls sort and drop rows, and beam
/// search reorders them, so every per-row tensor is a batch-major state leaf (see
/// [`DecoderState`] for the layout). [`RnnCore::initial_state`] therefore refuses to build a
/// state; pass the one from `initial_state_with_memory` to
/// [`dynamic_rnn`](couplet_rnn::dynamic_rnn) with `UnrollOptions::with_initial_state`.
///
/// Variables: the cell's, then the mechanism's, then `attention_decoder/attention_layer/w`
/// (created at the first step, or at construction when `memory_size` is set), each once.
pub struct AttentionDecoderCore {
    scope: Scope,
    config: AttentionDecoderConfig,
    cell: Box<dyn RnnCore>,
    mechanism: Box<dyn AttentionMechanism>,
    attention_layer: Option<Linear>,
}

impl std::fmt::Debug for AttentionDecoderCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentionDecoderCore")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .field("cell", &self.cell.name())
            .field("mechanism", &self.mechanism.name())
            .finish()
    }
}

impl AttentionDecoderCore {
    /// A decoder core in a new child scope `attention_decoder` (or `attention_decoder_1`, …)
    /// of `parent`, wrapping `cell` and `mechanism` (built anywhere).
    ///
    /// # Errors
    /// [`Error::Config`] naming the module for `attention_layer_size` or `memory_size` ≤ 0, or
    /// for an output whose size is unknown (`attention_layer_size` and `memory_size` both
    /// `None` while `output_attention` is `true`).
    pub fn new(
        parent: &Scope,
        cell: Box<dyn RnnCore>,
        mechanism: Box<dyn AttentionMechanism>,
        config: AttentionDecoderConfig,
    ) -> Result<Self> {
        Self::named(parent, "attention_decoder", cell, mechanism, config)
    }

    /// Like [`AttentionDecoderCore::new`] with the child scope named `name`.
    pub fn named(
        parent: &Scope,
        name: &str,
        cell: Box<dyn RnnCore>,
        mechanism: Box<dyn AttentionMechanism>,
        config: AttentionDecoderConfig,
    ) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        for (what, size) in
            [("attention_layer_size", config.attention_layer_size), ("memory_size", config.memory_size)]
        {
            if let Some(s) = size.filter(|&s| s <= 0) {
                return Err(Error::config(module, format!("{what} must be > 0, got {s}")));
            }
        }
        if config.output_attention && config.attention_layer_size.is_none() && config.memory_size.is_none() {
            return Err(Error::config(
                module,
                "without an attention layer the output is the context [B, Dm]: set memory_size (Dm) \
                 or attention_layer_size, or output the cell output (output_attention = false)",
            ));
        }
        let cell_output = match cell.output_shape().as_slice() {
            [o] => *o,
            other => {
                return Err(Error::config(
                    module,
                    format!(
                        "the cell's output rows must be vectors [O] (attention reads them), got {other:?}"
                    ),
                ))
            }
        };
        let attention_layer = match config.attention_layer_size {
            Some(a) => {
                let mut layer = LinearConfig::new(a).with_bias(false);
                if let Some(dm) = config.memory_size {
                    layer = layer.with_input_size(cell_output + dm);
                }
                Some(Linear::named(&scope, "attention_layer", layer)?)
            }
            None => None,
        };
        Ok(AttentionDecoderCore { scope, config, cell, mechanism, attention_layer })
    }

    /// The configuration.
    pub fn config(&self) -> &AttentionDecoderConfig {
        &self.config
    }

    /// The wrapped cell.
    pub fn cell(&self) -> &dyn RnnCore {
        self.cell.as_ref()
    }

    /// The attention mechanism.
    pub fn mechanism(&self) -> &dyn AttentionMechanism {
        self.mechanism.as_ref()
    }

    /// The attention layer `W_a`, if `attention_layer_size` is set.
    pub fn attention_layer(&self) -> Option<&Linear> {
        self.attention_layer.as_ref()
    }

    /// The attention size `A`, once known (`attention_layer_size`, else `memory_size`).
    pub fn attention_size(&self) -> Option<i64> {
        self.config.attention_layer_size.or(self.config.memory_size)
    }

    /// The state before the first step over `memory [B, N, Dm]` (N > 0), of which only the
    /// slots where `mask` (bool `[B, N]`, true = attend; `None`: all) is true are attended.
    /// Calls the mechanism's `prepare` once (masked slots zeroed, keys computed); the cell's
    /// state is [`RnnCore::initial_state`] of the cell (replace it, e.g. by the encoder's final
    /// state, with [`AttentionDecoderCore::with_cell_state`]); the attention is zeros and the
    /// alignments the mechanism's
    /// [`initial_alignments`](AttentionMechanism::initial_alignments) (zeros; one-hot at slot
    /// 0 for monotonic mechanisms). With `alignment_history`, `max_steps` is the most steps the history holds.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module if `memory` is not `[B, N, Dm]` with `N > 0` (and
    /// `Dm = memory_size` when set) or the mask is not bool `[B, N]`;
    /// [`Error::InvalidArgument`] if `alignment_history` is enabled and `max_steps` is `None`
    /// or negative; the mechanism's and the cell's errors.
    pub fn initial_state_with_memory(
        &self,
        memory: &Tensor,
        mask: Option<&Tensor>,
        max_steps: Option<i64>,
    ) -> Result<State> {
        let module = self.name();
        let (b, n) = self.check_memory(memory)?;
        if let Some(mask) = mask {
            check_mask(module, mask, b, n)?;
        }
        let max_steps = match (self.config.alignment_history, max_steps) {
            (false, _) => None,
            (true, Some(t)) if t >= 0 => Some(t),
            (true, Some(t)) => {
                return Err(Error::invalid(module, format!("max_steps must be >= 0, got {t}")));
            }
            (true, None) => {
                return Err(Error::invalid(
                    module,
                    "alignment_history is enabled: pass max_steps (the most decoder steps) to \
                     initial_state_with_memory",
                ));
            }
        };
        let prepared = self.mechanism.prepare(memory, mask)?;
        let options = (memory.kind(), memory.device());
        let mask = match mask {
            Some(m) => m.shallow_clone(),
            None => Tensor::f_ones([b, n], (Kind::Bool, memory.device())).ctx(module)?,
        };
        let a = self.config.attention_layer_size.unwrap_or(memory.size()[2]);
        let alignments = self.mechanism.initial_alignments(&prepared)?;
        let history = max_steps.map(|t| AlignmentHistory::zeros(module, &alignments, t)).transpose()?;
        DecoderState {
            cell: self.cell.initial_state(b)?,
            attention: Tensor::f_zeros([b, a], options).ctx(module)?,
            alignments,
            history,
            memory: crate::AttentionMemory { mask: Some(mask), ..prepared },
        }
        .into_state()
    }

    /// [`AttentionDecoderCore::initial_state_with_memory`] with the valid slots given by
    /// `lengths [B]` (slot `n` of row `b` is attended iff `n < lengths[b]`).
    ///
    /// # Errors
    /// As `initial_state_with_memory`; [`Error::Shape`] or [`Error::InvalidArgument`] naming
    /// the module for lengths that are not `B` integers in `0..=N`.
    pub fn initial_state_with_memory_lengths<'a>(
        &self,
        memory: &Tensor,
        lengths: impl Into<Lengths<'a>>,
        max_steps: Option<i64>,
    ) -> Result<State> {
        let (b, n) = self.check_memory(memory)?;
        let lengths = lengths.into();
        let values = lengths.validate(self.name(), b, n)?;
        let mask = sequence_mask(&values, Some(n))?.f_to_device(memory.device()).ctx(self.name())?;
        self.initial_state_with_memory(memory, Some(&mask), max_steps)
    }

    /// Checks `memory [B, N, Dm]` and returns `(B, N)`.
    fn check_memory(&self, memory: &Tensor) -> Result<(i64, i64)> {
        let size = memory.size();
        let expected = match self.config.memory_size {
            Some(dm) => format!("[B, N, {dm}] with N > 0"),
            None => "[B, N, Dm] with N > 0".to_string(),
        };
        let ok = size.len() == 3 && size[1] > 0 && self.config.memory_size.map_or(true, |dm| dm == size[2]);
        if !ok {
            return Err(Error::shape(self.name(), "memory", expected, size));
        }
        Ok((size[0], size[1]))
    }

    /// The typed view of a state of this decoder.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module if `state` does not have the layout of
    /// [`DecoderState`] (a leaf missing, of another rank, batch or kind);
    /// [`Error::InvalidArgument`] if it has an alignment history and the decoder does not
    /// record one, or the reverse.
    pub fn decoder_state(&self, state: &State) -> Result<DecoderState> {
        DecoderState::parse(self.name(), state, self.config.alignment_history)
    }

    /// `state` with the cell's state replaced by `cell_state` (TF's
    /// `AttentionWrapperState.clone(cell_state=...)`), e.g. the encoder's final state.
    ///
    /// # Errors
    /// As [`AttentionDecoderCore::decoder_state`]; [`Error::Shape`] naming the module if a leaf
    /// of `cell_state` does not have the state's batch size.
    pub fn with_cell_state(&self, state: &State, cell_state: State) -> Result<State> {
        let s = self.decoder_state(state)?;
        let b = s.alignments.size()[0];
        if let Some(bad) = cell_state.leaves().into_iter().find(|t| t.size().first() != Some(&b)) {
            return Err(Error::shape(self.name(), "cell state leaf", format!("[{b}, ..]"), bad.size()));
        }
        DecoderState { cell: cell_state, ..s }.into_state()
    }

    /// The cell's part of `state`.
    ///
    /// # Errors
    /// As [`AttentionDecoderCore::decoder_state`].
    pub fn cell_state(&self, state: &State) -> Result<State> {
        Ok(self.decoder_state(state)?.cell)
    }

    /// The attention of the last step `[B, A]` (zeros before the first).
    ///
    /// # Errors
    /// As [`AttentionDecoderCore::decoder_state`].
    pub fn attention(&self, state: &State) -> Result<Tensor> {
        Ok(self.decoder_state(state)?.attention)
    }

    /// The alignments of the last step `[B, N]` (the mechanism's initial alignments before the
    /// first).
    ///
    /// # Errors
    /// As [`AttentionDecoderCore::decoder_state`].
    pub fn alignments(&self, state: &State) -> Result<Tensor> {
        Ok(self.decoder_state(state)?.alignments)
    }

    /// The prepared memory of `state`: values `[B, N, Dm]`, keys `[B, N, U]`, mask
    /// `Some(bool [B, N])`.
    ///
    /// # Errors
    /// As [`AttentionDecoderCore::decoder_state`].
    pub fn memory(&self, state: &State) -> Result<crate::AttentionMemory> {
        Ok(self.decoder_state(state)?.memory)
    }

    /// Every step's alignments, time-major `[T, B, N]` like TF's `alignment_history.stack()`,
    /// with `T` the most steps any row has taken; a row that took fewer steps (it ended early
    /// under [`dynamic_rnn`](couplet_rnn::dynamic_rnn) lengths) has zeros after its last step.
    /// Reading it copies the step counters to the host once.
    ///
    /// # Errors
    /// [`Error::Config`] naming the module if `alignment_history` is disabled;
    /// [`Error::InvalidArgument`] if a row took more steps than the `max_steps` the state was
    /// built with (steps past it are not recorded); errors of
    /// [`AttentionDecoderCore::decoder_state`].
    pub fn alignment_history(&self, state: &State) -> Result<Tensor> {
        if !self.config.alignment_history {
            return Err(Error::config(self.name(), "alignment_history is disabled in the config"));
        }
        match self.decoder_state(state)?.history {
            Some(h) => h.time_major(self.name()),
            None => Err(Error::config(self.name(), "the state has no alignment history")),
        }
    }

    /// Steps 3–5 of the step from the cell's output and new state.
    fn attend(
        &self,
        cell_out: Tensor,
        cell_state: State,
        s: DecoderState,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let module = self.name();
        let (context, alignments) = self.mechanism.attend_step(&cell_out, &s.memory, &s.alignments, mode)?;
        let attention = match &self.attention_layer {
            Some(layer) => layer.forward(&Tensor::f_cat(&[&cell_out, &context], 1).ctx(module)?)?,
            None => context,
        };
        let output = if self.config.output_attention { attention.shallow_clone() } else { cell_out };
        let history = s.history.as_ref().map(|h| h.record(module, &alignments)).transpose()?;
        let state = DecoderState { cell: cell_state, attention, alignments, history, memory: s.memory };
        Ok((output, state.into_state()?))
    }

    /// Reads `state` and checks an input of shape `x` (`[B, I]`) against its batch.
    fn read(&self, x: &[i64], state: &State, what: &str) -> Result<DecoderState> {
        let s = self.decoder_state(state)?;
        let b = s.alignments.size()[0];
        if x.len() != 2 || x[0] != b {
            return Err(Error::shape(self.name(), what, format!("[{b}, I]"), x));
        }
        Ok(s)
    }
}

impl Module for AttentionDecoderCore {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The cell, the mechanism and the attention layer (if any), in that order: the core is
    /// built when they are, and lists their variables (then any other of its scope), each once.
    fn children(&self) -> Vec<&dyn Module> {
        let mut parts: Vec<&dyn Module> = vec![&self.cell, &self.mechanism];
        if let Some(layer) = &self.attention_layer {
            parts.push(layer);
        }
        parts
    }
}

impl Wrapper for AttentionDecoderCore {
    type Inner = dyn RnnCore;

    /// The cell.
    fn inner(&self) -> &(dyn RnnCore + 'static) {
        &*self.cell
    }

    /// [`WrapperInput::Read`] with input feeding (the cell's input includes the previous
    /// attention), else [`WrapperInput::Passed`]: unrolls then use the cell's projection.
    fn input_use(&self) -> WrapperInput {
        if self.config.input_feeding {
            WrapperInput::Read
        } else {
            WrapperInput::Passed
        }
    }

    /// One step without input feeding: the cell's step on the input (raw or projected by the
    /// cell's projection), then attention.
    ///
    /// # Errors
    /// As [`Wrapper::read_step`].
    fn after_step(
        &self,
        inner: InnerStep<'_, dyn RnnCore>,
        state: &State,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let s = self.read(&inner.input_shape(), state, "input")?;
        let (out, cell_state) = inner.run(&s.cell, mode)?;
        self.attend(out, cell_state, s, mode)
    }

    /// One step: `input [B, I]` and a state from
    /// [`AttentionDecoderCore::initial_state_with_memory`] → `(attention [B, A] (or the cell
    /// output), new state)`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module if the state does not have the decoder's layout, or
    /// `input` is not `[B, I]` with the state's `B`; with input feeding, a cell input of the
    /// wrong size is reported by this module (`"attention_decoder: cell input [x, attention]
    /// (3 + 4 features) must be [B, 6], got [2, 7]"`); other errors of the cell and mechanism.
    fn read_step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let s = self.read(&input.size(), state, "input")?;
        if !self.config.input_feeding {
            let (out, cell_state) = self.cell.step(input, &s.cell, mode)?;
            return self.attend(out, cell_state, s, mode);
        }
        let cell_in = Tensor::f_cat(&[input, &s.attention], 1).ctx(self.name())?;
        let (out, cell_state) = self.cell.step(&cell_in, &s.cell, mode).map_err(|e| match e {
            Error::Shape { what, expected, actual, .. } if what == "input" => Error::Shape {
                module: self.name().to_string(),
                what: format!(
                    "cell input [x, attention] ({} + {} features)",
                    input.size()[1],
                    s.attention.size()[1]
                ),
                expected,
                actual,
            },
            other => other,
        })?;
        self.attend(out, cell_state, s, mode)
    }

    /// `[A]`, the attention size (or the cell's output shape when `output_attention` is
    /// false).
    fn wrapper_output_shape(&self) -> Vec<i64> {
        match self.attention_size() {
            Some(a) if self.config.output_attention => vec![a],
            _ => self.cell.output_shape(),
        }
    }

    /// `Tuple([cell, attention, alignments, history, step counter, values, keys, mask])`:
    /// the cell's state size, `Tensor(A)` for the attention when `A` is known (else
    /// `Dynamic`), `Dynamic` for the memory-sized leaves, and `Dynamic` and `Tensor(1)` for the
    /// history and the step counter (both `Empty` without an alignment history). The sizes
    /// depend on the memory: build the state with
    /// [`AttentionDecoderCore::initial_state_with_memory`].
    fn wrapper_state_size(&self) -> StateSize {
        let (history, steps) = if self.config.alignment_history {
            (StateSize::Dynamic, StateSize::vector(1))
        } else {
            (StateSize::Empty, StateSize::Empty)
        };
        StateSize::Tuple(vec![
            self.cell.state_size(),
            self.attention_size().map_or(StateSize::Dynamic, StateSize::vector),
            StateSize::Dynamic,
            history,
            steps,
            StateSize::Dynamic,
            StateSize::Dynamic,
            StateSize::Dynamic,
        ])
    }

    /// Refused: the state holds the memory.
    ///
    /// # Errors
    /// Always [`Error::Config`] naming the module and pointing to
    /// [`AttentionDecoderCore::initial_state_with_memory`].
    fn wrapper_initial_state(&self, _batch_size: i64) -> Result<State> {
        Err(Error::config(
            self.name(),
            "the state holds the attention memory: build it with initial_state_with_memory(memory, mask, \
             max_steps) and pass it as the initial state",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DotAttention;
    use couplet_modules::Store;
    use couplet_rnn::{VanillaRnn, VanillaRnnConfig};
    use tch::Device;

    fn decoder(store: &Store, config: AttentionDecoderConfig) -> AttentionDecoderCore {
        let root = store.root();
        let cell = VanillaRnn::new(&root, VanillaRnnConfig::new(2)).unwrap();
        let mechanism = DotAttention::new(&root).unwrap();
        AttentionDecoderCore::new(&root, Box::new(cell), Box::new(mechanism), config).unwrap()
    }

    #[test]
    fn state_layout_round_trips_and_bad_states_are_refused() {
        let store = Store::cpu();
        let dec = decoder(&store, AttentionDecoderConfig::new(3).with_alignment_history(true));
        let memory = Tensor::rand([2, 4, 2], (Kind::Float, Device::Cpu));
        let state = dec.initial_state_with_memory(&memory, None, Some(5)).unwrap();
        let sizes: Vec<_> = state.leaves().iter().map(|t| t.size()).collect();
        assert_eq!(
            sizes,
            [vec![2, 2], vec![2, 3], vec![2, 4], vec![2, 20], vec![2, 1], vec![2, 8], vec![2, 8], vec![2, 4]]
        );
        let s = dec.decoder_state(&state).unwrap();
        assert_eq!(s.memory.values.size(), [2, 4, 2]);
        assert_eq!(s.history.as_ref().unwrap().alignments.size(), [2, 5, 4]);
        let e = dec.decoder_state(&State::Empty).unwrap_err();
        assert_eq!(
            e.to_string(),
            "attention_decoder: state must be State::Tuple of 8 states (built by \
             initial_state_with_memory), got State::Empty"
        );
        let mut slots = state.as_tuple().unwrap().to_vec();
        slots[7] = State::Tensor(Tensor::ones([2, 4], (Kind::Float, Device::Cpu)));
        let e = dec.decoder_state(&State::Tuple(slots)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "attention_decoder: state mask must be State::Tensor(Bool [2, n]), got State::Tensor(Float [2, 4])"
        );
        let mut slots = state.as_tuple().unwrap().to_vec();
        slots[3] = State::Empty;
        slots[4] = State::Empty;
        let e = dec.decoder_state(&State::Tuple(slots)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(
            e.to_string(),
            "attention_decoder: state must have an alignment history (alignment_history is enabled): build \
             it with this decoder's initial_state_with_memory"
        );
    }
}
