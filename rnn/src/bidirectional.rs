//! [`bidirectional_dynamic_rnn`]: a forward and a backward core over the same sequences.

use crate::core::RnnCore;
use crate::lengths::Lengths;
use crate::options::{Route, UnrollOptions};
use crate::sequence::reverse_within;
use crate::state::State;
use crate::unroll::unroll;
use couplet_modules::{util::check_rank, Error, Mode, Result, TorchContext};
use tch::Tensor;

/// The options of [`bidirectional_dynamic_rnn`]: those of
/// [`UnrollOptions`], with an initial state for each direction. There
/// is no default [`Mode`]: start from [`BiRnnOptions::train`], [`BiRnnOptions::eval`] or
/// [`BiRnnOptions::new`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct BiRnnOptions<'a> {
    /// Training or evaluation, passed to every step of both cores.
    pub mode: Mode,
    /// Per-row lengths `[B]`, each in `0..=T`. Default `None`: every row runs `T` steps.
    pub lengths: Option<Lengths<'a>>,
    /// The forward core's initial state. Default `None`: its [`RnnCore::initial_state`].
    pub fw_initial_state: Option<&'a State>,
    /// The backward core's initial state. Default `None`: its [`RnnCore::initial_state`].
    pub bw_initial_state: Option<&'a State>,
    /// Inputs and outputs are `[T, B, ..]` instead of `[B, T, ..]`. Default `false`.
    pub time_major: bool,
    /// Forces a [`Route`] for both directions. Default `None`: each direction takes the
    /// fastest exact route for its core (see [`unroll_route`](crate::unroll_route)).
    pub route: Option<Route>,
}

impl<'a> BiRnnOptions<'a> {
    /// Options for `mode`, without lengths or initial states, batch-major.
    pub fn new(mode: Mode) -> Self {
        BiRnnOptions {
            mode,
            lengths: None,
            fw_initial_state: None,
            bw_initial_state: None,
            time_major: false,
            route: None,
        }
    }

    /// [`BiRnnOptions::new`] in [`Mode::Train`].
    pub fn train() -> Self {
        Self::new(Mode::Train)
    }

    /// [`BiRnnOptions::new`] in [`Mode::Eval`].
    pub fn eval() -> Self {
        Self::new(Mode::Eval)
    }

    /// Sets the per-row lengths (an integer tensor `[B]` or a slice of `i64`).
    pub fn with_lengths(mut self, lengths: impl Into<Lengths<'a>>) -> Self {
        self.lengths = Some(lengths.into());
        self
    }

    /// Sets the forward core's initial state.
    pub fn with_fw_initial_state(mut self, state: &'a State) -> Self {
        self.fw_initial_state = Some(state);
        self
    }

    /// Sets the backward core's initial state.
    pub fn with_bw_initial_state(mut self, state: &'a State) -> Self {
        self.bw_initial_state = Some(state);
        self
    }

    /// Sets whether inputs and outputs are time-major (`[T, B, ..]`).
    pub fn with_time_major(mut self, time_major: bool) -> Self {
        self.time_major = time_major;
        self
    }

    /// Forces `route` for both directions instead of the automatic choice.
    pub fn with_route(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }
}

/// How [`BiRnnOutput::merge`] combines the two directions' outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MergeMode {
    /// Concatenation on the last axis: `[.., O_fw + O_bw]` (the default, as Keras).
    #[default]
    Concat,
    /// Element-wise sum (needs `O_fw = O_bw`).
    Sum,
    /// Element-wise mean (needs `O_fw = O_bw`).
    Mean,
    /// No merge: both outputs (Keras `merge_mode=None`).
    None,
}

/// The result of [`BiRnnOutput::merge`].
#[derive(Debug)]
pub enum Merged {
    /// The merged outputs (`Concat`, `Sum`, `Mean`).
    One(Tensor),
    /// Both outputs, unmerged (`MergeMode::None`).
    Pair {
        /// The forward outputs.
        fw: Tensor,
        /// The backward outputs.
        bw: Tensor,
    },
}

impl Merged {
    /// The merged tensor, or `None` for [`Merged::Pair`].
    pub fn one(self) -> Option<Tensor> {
        match self {
            Merged::One(t) => Some(t),
            Merged::Pair { .. } => None,
        }
    }

    /// The tensors: one, or `[fw, bw]`.
    pub fn into_vec(self) -> Vec<Tensor> {
        match self {
            Merged::One(t) => vec![t],
            Merged::Pair { fw, bw } => vec![fw, bw],
        }
    }
}

/// Outputs and final states of both directions of [`bidirectional_dynamic_rnn`].
#[derive(Debug)]
pub struct BiRnnOutput {
    /// Forward outputs `[B, T, O_fw]` (or `[T, B, O_fw]`), zero past each length.
    pub fw_outputs: Tensor,
    /// Backward outputs `[B, T, O_bw]` in the original time order: `bw_outputs[b, t]`
    /// summarises `x[b, t..len[b])`; zero past each length.
    pub bw_outputs: Tensor,
    /// The forward final state (after step `len[b] − 1`).
    pub fw_state: State,
    /// The backward final state (after reading `t = 0`, the backward core's last step).
    pub bw_state: State,
}

impl BiRnnOutput {
    /// Combines the two outputs as `mode` says.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `bidirectional_dynamic_rnn` if `Sum` or `Mean` is asked for
    /// outputs of different sizes.
    pub fn merge(&self, mode: MergeMode) -> Result<Merged> {
        const FUNC: &str = "bidirectional_dynamic_rnn";
        let (fw, bw) = (&self.fw_outputs, &self.bw_outputs);
        if matches!(mode, MergeMode::Sum | MergeMode::Mean) && fw.size() != bw.size() {
            return Err(Error::shape(
                FUNC,
                "backward outputs for sum/mean merge",
                format!("{:?}", fw.size()),
                bw.size(),
            ));
        }
        Ok(match mode {
            MergeMode::Concat => Merged::One(Tensor::f_cat(&[fw, bw], -1).ctx(FUNC)?),
            MergeMode::Sum => Merged::One(fw.f_add(bw).ctx(FUNC)?),
            MergeMode::Mean => Merged::One(fw.f_add(bw).ctx(FUNC)?.f_mul_scalar(0.5).ctx(FUNC)?),
            MergeMode::None => Merged::Pair { fw: fw.shallow_clone(), bw: bw.shallow_clone() },
        })
    }
}

/// Runs `fw` over `inputs` and `bw` over each row reversed within its length (TF
/// `bidirectional_dynamic_rnn`).
///
/// `inputs` is `[B, T, I]` (`[T, B, I]` if `options.time_major`). The forward direction is
/// [`dynamic_rnn`](crate::dynamic_rnn). The backward core reads
/// [`reverse_sequence`](crate::reverse_sequence)`(inputs, lengths)` (the whole time axis
/// flipped without lengths), and its outputs are reversed back the same way, so
/// `bw_outputs[b, t]` summarises `x[b, t..len[b])` and padded positions are zero in both
/// directions. The backward final state is the one after reading `t = 0`.
///
/// # Errors
/// As [`dynamic_rnn`](crate::dynamic_rnn), naming `bidirectional_dynamic_rnn`: a wrong
/// input rank, bad lengths, an initial state that does not fit its core, or a core's error.
pub fn bidirectional_dynamic_rnn<F: RnnCore + ?Sized, B: RnnCore + ?Sized>(
    fw: &F,
    bw: &B,
    inputs: &Tensor,
    options: &BiRnnOptions,
) -> Result<BiRnnOutput> {
    const FUNC: &str = "bidirectional_dynamic_rnn";
    let expected = if options.time_major { "[T, B, I]" } else { "[B, T, I]" };
    check_rank(FUNC, "inputs", inputs, 3, expected)?;
    crate::sequence::check_sequence_size(FUNC, inputs)?;
    let size = inputs.size();
    let (batch, time) = if options.time_major { (size[1], size[0]) } else { (size[0], size[1]) };
    let lengths = options.lengths.map(|l| l.validate(FUNC, batch, time)).transpose()?;
    let unroll_options = |initial_state| UnrollOptions {
        mode: options.mode,
        lengths: lengths.as_deref().map(Lengths::Slice),
        initial_state,
        time_major: options.time_major,
        route: options.route,
        // Keras' carried outputs are a dynamic_rnn option only: both directions write zeros.
        padded_outputs: crate::PaddedOutputs::Zeros,
    };
    let reverse = |x: &Tensor| match &lengths {
        Some(l) => reverse_within(FUNC, x, l, options.time_major),
        None => x.f_flip([if options.time_major { 0 } else { 1 }]).ctx(FUNC),
    };
    let (fw_outputs, fw_state) = unroll(FUNC, fw, inputs, &unroll_options(options.fw_initial_state))?;
    let (bw_reversed, bw_state) =
        unroll(FUNC, bw, &reverse(inputs)?, &unroll_options(options.bw_initial_state))?;
    Ok(BiRnnOutput { fw_outputs, bw_outputs: reverse(&bw_reversed)?, fw_state, bw_state })
}
