//! [`MultiAttentionDecoderCore`]: TF's `AttentionWrapper` over a list of attention
//! mechanisms, each with its own memory, alignments and attention layer; the attentions are
//! concatenated.

use crate::decoder_state::{AlignmentHistory, DecoderState};
use crate::mechanism::AttentionMechanism;
use crate::softmax::check_mask;
use couplet_modules::{Error, Linear, LinearConfig, Mode, Module, Result, Scope, TorchContext};
use couplet_rnn::{InnerStep, RnnCore, State, StateSize, Wrapper, WrapperInput};
use tch::{Kind, Tensor};

/// One mechanism of a [`MultiAttentionDecoderCore`] and its attention layer.
pub struct DecoderAttention {
    /// The mechanism, over its own memory.
    pub mechanism: Box<dyn AttentionMechanism>,
    /// Size `A_k` of its attention layer (`attention_k = [cell_out, context_k] W_k`, no bias),
    /// or `None`: the attention is the context itself (`A_k = Dm_k`).
    pub attention_layer_size: Option<i64>,
    /// Its memory depth `Dm_k`, if known in advance: required without an attention layer when
    /// the core outputs the attention; memories of another depth are then refused.
    pub memory_size: Option<i64>,
}

impl DecoderAttention {
    /// `mechanism` with an attention layer of `attention_layer_size` units (`None`: none).
    pub fn new(mechanism: Box<dyn AttentionMechanism>, attention_layer_size: Option<i64>) -> Self {
        DecoderAttention { mechanism, attention_layer_size, memory_size: None }
    }
    /// Sets the memory depth `Dm_k`.
    pub fn with_memory_size(mut self, memory_size: Option<i64>) -> Self {
        self.memory_size = memory_size;
        self
    }
}

/// TF's `AttentionWrapper` with a list of `K >= 1` mechanisms: the cell is queried against
/// every mechanism's memory at each step. One step, with `x [B, I]`:
///
/// 1. `cell_in = [x, previous attention]` (`[B, I + ΣA_k]`; `x` alone without input
///    feeding);
/// 2. `(cell_out, cell_state') = cell(cell_in, cell_state)`;
/// 3. for each mechanism `k`: `(context_k [B, Dm_k], alignments_k [B, N_k]) =
///    mechanism_k.attend_step(cell_out, memory_k, previous alignments_k, mode)`, and
///    `attention_k = [cell_out, context_k] W_k` (`[B, A_k]`; `context_k` without a layer);
/// 4. `attention = [attention_0, …, attention_{K-1}]` (`[B, ΣA_k]`), the output (or
///    `cell_out` when `output_attention` is false).
///
/// With one mechanism it computes what [`AttentionDecoderCore`](crate::AttentionDecoderCore)
/// computes. The state holds every memory (prepared once by
/// [`MultiAttentionDecoderCore::initial_state_with_memories`]):
/// `State::Tuple([cell state, part_0, …, part_{K-1}])`, where part `k` has the layout of
/// [`DecoderState`] with an empty cell slot and mechanism `k`'s attention `[B, A_k]`,
/// alignments, alignment history and memory, every leaf batch-major (unrolls and beam search
/// select and reorder rows).
///
/// Variables: the cell's, then each mechanism's in order, then
/// `multi_attention_decoder/attention_layer/w`, `attention_layer_1/w`, … (one per mechanism
/// with a layer, `[O_cell + Dm_k, A_k]`, created at the first step or at construction when
/// `memory_size` is set).
pub struct MultiAttentionDecoderCore {
    scope: Scope,
    output_attention: bool,
    input_feeding: bool,
    alignment_history: bool,
    cell: Box<dyn RnnCore>,
    mechanisms: Vec<Box<dyn AttentionMechanism>>,
    memory_sizes: Vec<Option<i64>>,
    attention_sizes: Vec<Option<i64>>,
    attention_layers: Vec<Option<Linear>>,
}

impl std::fmt::Debug for MultiAttentionDecoderCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mechanisms: Vec<&str> = self.mechanisms.iter().map(|m| m.name()).collect();
        f.debug_struct("MultiAttentionDecoderCore")
            .field("scope", &self.scope.path())
            .field("cell", &self.cell.name())
            .field("mechanisms", &mechanisms)
            .field("attention_sizes", &self.attention_sizes)
            .finish()
    }
}

/// The shared switches of a [`MultiAttentionDecoderCore`] (as in
/// [`AttentionDecoderConfig`](crate::AttentionDecoderConfig)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiAttentionOptions {
    /// Steps output the concatenated attention (`true`) or the cell's output (`false`).
    pub output_attention: bool,
    /// The cell's input is `[x, previous attention]` (`true`) or `x` alone.
    pub input_feeding: bool,
    /// Record every step's alignments of every mechanism in the state.
    pub alignment_history: bool,
}

impl Default for MultiAttentionOptions {
    /// TF's defaults: output the attention, input feeding, no history.
    fn default() -> Self {
        MultiAttentionOptions { output_attention: true, input_feeding: true, alignment_history: false }
    }
}

impl MultiAttentionDecoderCore {
    /// A decoder core in a new child scope `multi_attention_decoder` (or `.._1`, …) of
    /// `parent`, wrapping `cell` and the `attentions` (mechanisms built anywhere).
    ///
    /// # Errors
    /// [`Error::Config`] naming the module for no attentions, an `attention_layer_size` or
    /// `memory_size` <= 0, a cell whose output rows are not vectors, or an output of unknown
    /// size (an attention with neither a layer nor a `memory_size` while `output_attention`).
    pub fn new(
        parent: &Scope,
        cell: Box<dyn RnnCore>,
        attentions: Vec<DecoderAttention>,
        options: MultiAttentionOptions,
    ) -> Result<Self> {
        let scope = parent.child("multi_attention_decoder")?;
        let module = scope.path();
        if attentions.is_empty() {
            return Err(Error::config(module, "needs at least one attention mechanism, got none"));
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
        let (mut mechanisms, mut memory_sizes, mut attention_sizes, mut attention_layers) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, a) in attentions.into_iter().enumerate() {
            for (what, size) in
                [("attention_layer_size", a.attention_layer_size), ("memory_size", a.memory_size)]
            {
                if let Some(s) = size.filter(|&s| s <= 0) {
                    return Err(Error::config(module, format!("attention {k}: {what} must be > 0, got {s}")));
                }
            }
            let size = a.attention_layer_size.or(a.memory_size);
            if options.output_attention && size.is_none() {
                return Err(Error::config(
                    module,
                    format!(
                        "attention {k} has no attention layer, so its attention is the context [B, Dm]: set its \
                         memory_size or attention_layer_size, or output the cell output (output_attention = false)"
                    ),
                ));
            }
            let layer = match a.attention_layer_size {
                Some(units) => {
                    let mut config = LinearConfig::new(units).with_bias(false);
                    if let Some(dm) = a.memory_size {
                        config = config.with_input_size(cell_output + dm);
                    }
                    Some(Linear::named(&scope, "attention_layer", config)?)
                }
                None => None,
            };
            mechanisms.push(a.mechanism);
            memory_sizes.push(a.memory_size);
            attention_sizes.push(size);
            attention_layers.push(layer);
        }
        Ok(MultiAttentionDecoderCore {
            scope,
            output_attention: options.output_attention,
            input_feeding: options.input_feeding,
            alignment_history: options.alignment_history,
            cell,
            mechanisms,
            memory_sizes,
            attention_sizes,
            attention_layers,
        })
    }

    /// The wrapped cell.
    pub fn cell(&self) -> &dyn RnnCore {
        self.cell.as_ref()
    }

    /// The mechanisms, in order.
    pub fn mechanisms(&self) -> &[Box<dyn AttentionMechanism>] {
        &self.mechanisms
    }

    /// Mechanism `k`'s attention layer, if it has one (`None` also for `k >= K`).
    pub fn attention_layer(&self, k: usize) -> Option<&Linear> {
        self.attention_layers.get(k).and_then(Option::as_ref)
    }

    /// The attention size `ΣA_k`, once every `A_k` is known.
    pub fn attention_size(&self) -> Option<i64> {
        self.attention_sizes.iter().copied().sum()
    }

    /// The state before the first step over one memory per mechanism, `memories[k] =
    /// (memory_k [B, N_k, Dm_k] with N_k > 0, mask_k: bool [B, N_k], true = attend; None: all)`,
    /// all of one `B`. Each mechanism prepares its memory once; the cell's state is its
    /// [`RnnCore::initial_state`] (replace it with
    /// [`MultiAttentionDecoderCore::with_cell_state`]); the attentions are zeros and the
    /// alignments each mechanism's
    /// [`initial_alignments`](AttentionMechanism::initial_alignments). With
    /// `alignment_history`, `max_steps` is the most steps the histories hold.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the module if there are not `K` memories, or
    /// `alignment_history` is enabled and `max_steps` is `None` or negative; [`Error::Shape`]
    /// if a memory is not `[B, N, Dm]` with `N > 0` (the first memory's `B`; `Dm = memory_size`
    /// when set) or a mask is not bool `[B, N]`; the mechanisms' and the cell's errors.
    pub fn initial_state_with_memories(
        &self,
        memories: &[(&Tensor, Option<&Tensor>)],
        max_steps: Option<i64>,
    ) -> Result<State> {
        let module = self.name();
        if memories.len() != self.mechanisms.len() {
            return Err(Error::invalid(
                module,
                format!("needs one memory per mechanism ({}), got {}", self.mechanisms.len(), memories.len()),
            ));
        }
        let max_steps = match (self.alignment_history, max_steps) {
            (false, _) => None,
            (true, Some(t)) if t >= 0 => Some(t),
            (true, other) => {
                return Err(Error::invalid(
                    module,
                    format!("alignment_history is enabled: pass max_steps >= 0 (the most decoder steps), got {other:?}"),
                ))
            }
        };
        let mut batch = None;
        let mut parts = Vec::with_capacity(memories.len());
        for (k, &(memory, mask)) in memories.iter().enumerate() {
            couplet_modules::util::check_defined(module, "memory", memory)?;
            let size = memory.size();
            let dm = self.memory_sizes[k];
            let b = batch.unwrap_or_else(|| size.first().copied().unwrap_or(0));
            let ok = size.len() == 3 && size[0] == b && size[1] > 0 && dm.map_or(true, |dm| dm == size[2]);
            if !ok {
                let depth = dm.map_or("Dm".to_string(), |dm| dm.to_string());
                return Err(Error::shape(
                    module,
                    format!("memory {k}"),
                    format!("[{b}, N, {depth}] with N > 0"),
                    size,
                ));
            }
            batch = Some(b);
            if let Some(mask) = mask {
                check_mask(module, mask, b, size[1])?;
            }
            let prepared = self.mechanisms[k].prepare(memory, mask)?;
            let options = (memory.kind(), memory.device());
            let mask = match mask {
                Some(m) => m.shallow_clone(),
                None => Tensor::f_ones([b, size[1]], (Kind::Bool, memory.device())).ctx(module)?,
            };
            let alignments = self.mechanisms[k].initial_alignments(&prepared)?;
            let history = max_steps.map(|t| AlignmentHistory::zeros(module, &alignments, t)).transpose()?;
            let a = self.attention_sizes[k].unwrap_or(size[2]);
            parts.push(DecoderState {
                cell: State::Empty,
                attention: Tensor::f_zeros([b, a], options).ctx(module)?,
                alignments,
                history,
                memory: crate::AttentionMemory { mask: Some(mask), ..prepared },
            });
        }
        let cell = self.cell.initial_state(batch.unwrap_or(0))?;
        self.assemble(cell, parts)
    }

    fn assemble(&self, cell: State, parts: Vec<DecoderState>) -> Result<State> {
        let mut slots = vec![cell];
        for part in parts {
            slots.push(part.into_state()?);
        }
        Ok(State::Tuple(slots))
    }

    /// The cell's state and every mechanism's part of `state`, checked.
    fn parts(&self, state: &State) -> Result<(State, Vec<DecoderState>)> {
        let module = self.name();
        let k = self.mechanisms.len();
        let State::Tuple(slots) = state else {
            return Err(Error::shape(
                module,
                "state",
                format!("State::Tuple of {} states (built by initial_state_with_memories)", k + 1),
                format_args!("a state that is not a State::Tuple"),
            ));
        };
        if slots.len() != k + 1 {
            return Err(Error::shape(
                module,
                "state",
                format!("State::Tuple of {} states (built by initial_state_with_memories)", k + 1),
                format_args!("State::Tuple of {} states", slots.len()),
            ));
        }
        let parts = slots[1..]
            .iter()
            .map(|s| DecoderState::parse(module, s, self.alignment_history))
            .collect::<Result<Vec<_>>>()?;
        let b = parts[0].alignments.size()[0];
        if let Some(bad) = parts.iter().find(|p| p.alignments.size()[0] != b) {
            return Err(Error::shape(module, "state part", format!("[{b}, ..] rows"), bad.alignments.size()));
        }
        Ok((slots[0].clone(), parts))
    }

    /// The alignments of mechanism `k` at the last step `[B, N_k]` (its initial alignments
    /// before the first).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `k >= K`; [`Error::Shape`] naming the module if `state`
    /// does not have this core's layout.
    pub fn alignments(&self, state: &State, k: usize) -> Result<Tensor> {
        Ok(self.part(state, k)?.alignments)
    }

    /// The concatenated attention of the last step `[B, ΣA_k]` (zeros before the first).
    ///
    /// # Errors
    /// As [`MultiAttentionDecoderCore::alignments`].
    pub fn attention(&self, state: &State) -> Result<Tensor> {
        let (_, parts) = self.parts(state)?;
        let attentions: Vec<&Tensor> = parts.iter().map(|p| &p.attention).collect();
        Tensor::f_cat(&attentions, 1).ctx(self.name())
    }

    /// Every step's alignments of mechanism `k`, time-major `[T, B, N_k]` (TF's
    /// `alignment_history[k].stack()`).
    ///
    /// # Errors
    /// [`Error::Config`] if `alignment_history` is disabled; [`Error::InvalidArgument`] for
    /// `k >= K` or a row that took more steps than `max_steps`; errors of
    /// [`MultiAttentionDecoderCore::alignments`].
    pub fn alignment_history(&self, state: &State, k: usize) -> Result<Tensor> {
        if !self.alignment_history {
            return Err(Error::config(self.name(), "alignment_history is disabled"));
        }
        match self.part(state, k)?.history {
            Some(h) => h.time_major(self.name()),
            None => Err(Error::config(self.name(), "the state has no alignment history")),
        }
    }

    /// The cell's part of `state`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module if `state` does not have this core's layout.
    pub fn cell_state(&self, state: &State) -> Result<State> {
        Ok(self.parts(state)?.0)
    }

    /// `state` with the cell's state replaced by `cell_state` (e.g. the encoder's final state).
    ///
    /// # Errors
    /// As [`MultiAttentionDecoderCore::cell_state`]; [`Error::Shape`] if a leaf of
    /// `cell_state` does not have the state's batch size.
    pub fn with_cell_state(&self, state: &State, cell_state: State) -> Result<State> {
        let (_, parts) = self.parts(state)?;
        let b = parts[0].alignments.size()[0];
        if let Some(bad) = cell_state.leaves().into_iter().find(|t| t.size().first() != Some(&b)) {
            return Err(Error::shape(self.name(), "cell state leaf", format!("[{b}, ..]"), bad.size()));
        }
        self.assemble(cell_state, parts)
    }

    fn part(&self, state: &State, k: usize) -> Result<DecoderState> {
        let count = self.mechanisms.len();
        if k >= count {
            return Err(Error::invalid(self.name(), format!("mechanism {k} does not exist (K = {count})")));
        }
        Ok(self.parts(state)?.1.swap_remove(k))
    }

    /// Reads `state` and checks an input of shape `x` (`[B, I]`) against its batch.
    fn read(&self, x: &[i64], state: &State) -> Result<(State, Vec<DecoderState>)> {
        let (cell, parts) = self.parts(state)?;
        let b = parts[0].alignments.size()[0];
        if x.len() != 2 || x[0] != b {
            return Err(Error::shape(self.name(), "input", format!("[{b}, I]"), x));
        }
        Ok((cell, parts))
    }

    /// Steps 3–4 from the cell's output and new state.
    fn attend(
        &self,
        cell_out: Tensor,
        cell_state: State,
        parts: Vec<DecoderState>,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let module = self.name();
        let mut next = Vec::with_capacity(parts.len());
        for (k, part) in parts.into_iter().enumerate() {
            let mechanism = &self.mechanisms[k];
            let (context, alignments) =
                mechanism.attend_step(&cell_out, &part.memory, &part.alignments, mode)?;
            let attention = match &self.attention_layers[k] {
                Some(layer) => layer.forward(&Tensor::f_cat(&[&cell_out, &context], 1).ctx(module)?)?,
                None => context,
            };
            let history = part.history.as_ref().map(|h| h.record(module, &alignments)).transpose()?;
            next.push(DecoderState {
                cell: State::Empty,
                attention,
                alignments,
                history,
                memory: part.memory,
            });
        }
        let output = if self.output_attention {
            let attentions: Vec<&Tensor> = next.iter().map(|p| &p.attention).collect();
            Tensor::f_cat(&attentions, 1).ctx(module)?
        } else {
            cell_out
        };
        Ok((output, self.assemble(cell_state, next)?))
    }
}

impl Module for MultiAttentionDecoderCore {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The cell, the mechanisms in order, then the attention layers.
    fn children(&self) -> Vec<&dyn Module> {
        let mut parts: Vec<&dyn Module> = vec![&self.cell];
        parts.extend(self.mechanisms.iter().map(|m| m as &dyn Module));
        parts.extend(self.attention_layers.iter().flatten().map(|l| l as &dyn Module));
        parts
    }
}

impl Wrapper for MultiAttentionDecoderCore {
    type Inner = dyn RnnCore;

    /// The cell.
    fn inner(&self) -> &(dyn RnnCore + 'static) {
        &*self.cell
    }

    /// [`WrapperInput::Read`] with input feeding, else [`WrapperInput::Passed`].
    fn input_use(&self) -> WrapperInput {
        if self.input_feeding {
            WrapperInput::Read
        } else {
            WrapperInput::Passed
        }
    }

    /// One step without input feeding: the cell's step on the input, then attention.
    ///
    /// # Errors
    /// As [`Wrapper::read_step`].
    fn after_step(
        &self,
        inner: InnerStep<'_, dyn RnnCore>,
        state: &State,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let (cell, parts) = self.read(&inner.input_shape(), state)?;
        let (out, cell_state) = inner.run(&cell, mode)?;
        self.attend(out, cell_state, parts, mode)
    }

    /// One step: `input [B, I]` and a state from
    /// [`MultiAttentionDecoderCore::initial_state_with_memories`] → `(attention [B, ΣA_k] (or
    /// the cell output), new state)`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the module if the state does not have this core's layout or
    /// `input` is not `[B, I]`; errors of the cell (a cell input `[x, attention]` of the wrong
    /// size) and of the mechanisms.
    fn read_step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let (cell, parts) = self.read(&input.size(), state)?;
        let cell_in = if self.input_feeding {
            let mut pieces = vec![input];
            pieces.extend(parts.iter().map(|p| &p.attention));
            Tensor::f_cat(&pieces, 1).ctx(self.name())?
        } else {
            input.shallow_clone()
        };
        let (out, cell_state) = self.cell.step(&cell_in, &cell, mode)?;
        self.attend(out, cell_state, parts, mode)
    }

    /// `[ΣA_k]` (or the cell's output shape when `output_attention` is false).
    fn wrapper_output_shape(&self) -> Vec<i64> {
        match self.attention_size() {
            Some(a) if self.output_attention => vec![a],
            _ => self.cell.output_shape(),
        }
    }

    /// `Tuple([cell, part_0, …])`, each part the 8-slot layout of [`DecoderState`] with an
    /// `Empty` cell, `Tensor(A_k)` (or `Dynamic`) for its attention and `Dynamic` for the
    /// memory-sized leaves (history and step counter `Empty` without an alignment history).
    fn wrapper_state_size(&self) -> StateSize {
        let (history, steps) = if self.alignment_history {
            (StateSize::Dynamic, StateSize::vector(1))
        } else {
            (StateSize::Empty, StateSize::Empty)
        };
        let mut slots = vec![self.cell.state_size()];
        for size in &self.attention_sizes {
            slots.push(StateSize::Tuple(vec![
                StateSize::Empty,
                size.map_or(StateSize::Dynamic, StateSize::vector),
                StateSize::Dynamic,
                history.clone(),
                steps.clone(),
                StateSize::Dynamic,
                StateSize::Dynamic,
                StateSize::Dynamic,
            ]));
        }
        StateSize::Tuple(slots)
    }

    /// Refused: the state holds the memories.
    ///
    /// # Errors
    /// Always [`Error::Config`] naming the module.
    fn wrapper_initial_state(&self, _batch_size: i64) -> Result<State> {
        Err(Error::config(
            self.name(),
            "the state holds the attention memories: build it with initial_state_with_memories(memories, \
             max_steps) and pass it as the initial state",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttentionDecoderConfig, AttentionDecoderCore, DotAttention};
    use couplet_modules::Store;
    use couplet_rnn::{VanillaRnn, VanillaRnnConfig};
    use tch::Device;

    #[test]
    fn one_mechanism_computes_what_the_single_core_computes_and_errors_are_typed() {
        let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
        let root = store.root();
        let cell = VanillaRnn::new(&root, VanillaRnnConfig::new(2).with_input_size(3 + 4)).unwrap();
        let single = AttentionDecoderCore::new(
            &root,
            Box::new(cell),
            Box::new(DotAttention::new(&root).unwrap()),
            AttentionDecoderConfig::new(4).with_memory_size(Some(2)),
        )
        .unwrap();
        let cell = VanillaRnn::new(&root, VanillaRnnConfig::new(2).with_input_size(3 + 4)).unwrap();
        let attention = DecoderAttention::new(Box::new(DotAttention::new(&root).unwrap()), Some(4))
            .with_memory_size(Some(2));
        let multi =
            MultiAttentionDecoderCore::new(&root, Box::new(cell), vec![attention], Default::default())
                .unwrap();
        for (a, b) in single.variables().unwrap().iter().zip(multi.variables().unwrap().iter()) {
            tch::no_grad(|| b.tensor().shallow_clone().copy_(a.tensor()));
        }
        let memory = Tensor::randn([2, 5, 2], (Kind::Double, Device::Cpu));
        let mask =
            Tensor::from_slice(&[true, true, true, true, true, true, true, false, false, false]).view([2, 5]);
        let mut s1 = single.initial_state_with_memory(&memory, Some(&mask), None).unwrap();
        let mut s2 = multi.initial_state_with_memories(&[(&memory, Some(&mask))], None).unwrap();
        for _ in 0..3 {
            let x = Tensor::randn([2, 3], (Kind::Double, Device::Cpu));
            let (y1, n1) = single.step(&x, &s1, Mode::Eval).unwrap();
            let (y2, n2) = multi.step(&x, &s2, Mode::Eval).unwrap();
            assert!(y1.allclose(&y2, 1e-12, 1e-12, false));
            (s1, s2) = (n1, n2);
        }
        assert!(single.alignments(&s1).unwrap().allclose(
            &multi.alignments(&s2, 0).unwrap(),
            1e-12,
            1e-12,
            false
        ));
        assert_eq!(multi.wrapper_output_shape(), [4]);
        let e = multi.alignments(&s2, 1).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { .. })
                && e.to_string().contains("mechanism 1 does not exist"),
            "{e}"
        );
        let e = multi.initial_state_with_memories(&[], None).unwrap_err();
        assert!(e.to_string().contains("needs one memory per mechanism (1), got 0"), "{e}");
        let e = multi.initial_state_with_memories(&[(&memory.narrow(2, 0, 1), None)], None).unwrap_err();
        assert!(
            matches!(e, Error::Shape { .. }) && e.to_string().contains("memory 0 must be [2, N, 2]"),
            "{e}"
        );
        let e = multi
            .step(&Tensor::zeros([2, 3], (Kind::Double, Device::Cpu)), &State::Empty, Mode::Eval)
            .unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let cell = VanillaRnn::new(&root, VanillaRnnConfig::new(2)).unwrap();
        let e =
            MultiAttentionDecoderCore::new(&root, Box::new(cell), vec![], Default::default()).unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("at least one"), "{e}");
        let cell = VanillaRnn::new(&root, VanillaRnnConfig::new(2)).unwrap();
        let bare = DecoderAttention::new(Box::new(DotAttention::new(&root).unwrap()), None);
        let e = MultiAttentionDecoderCore::new(&root, Box::new(cell), vec![bare], Default::default())
            .unwrap_err();
        assert!(e.to_string().contains("attention 0 has no attention layer"), "{e}");
    }
}
