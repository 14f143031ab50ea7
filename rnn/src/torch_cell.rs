//! [`TorchCellWeights`]: what a core tells the unrolls when it computes exactly what one of
//! PyTorch's recurrent layers (`nn.LSTM`, `nn.GRU`, `nn.RNN`) computes, so they can run
//! libtorch's fused kernels instead of stepping the core (see [`Route`](crate::Route)).

use crate::cell::TorchWeights;
use crate::state::State;
use tch::{Device, Kind, Tensor};

/// Which of PyTorch's recurrent layers a plain core computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TorchCellKind {
    /// `nn.LSTM` (gate rows `i, f, g, o`; with `weight_hr`, `proj_size`).
    Lstm,
    /// `nn.GRU` (gate rows `r, z, n`, reset gate applied after the matrix product).
    Gru,
    /// `nn.RNN` with `nonlinearity = "tanh"`.
    RnnTanh,
    /// `nn.RNN` with `nonlinearity = "relu"`.
    RnnRelu,
}

/// One layer of a plain core in PyTorch's layout: shallow clones of the core's variables
/// (they share storage and autograd identity with them, so gradients reach the variables).
///
/// `weight_ih [G·H, I]`, `weight_hh [G·H, P]`, optionally `bias_ih`, `bias_hh [G·H]` and,
/// for an LSTM with a projection, `weight_hr [P, H]` (`G` = 4, 3, 1 for LSTM, GRU, RNN;
/// `P` = `H` without a projection).
#[derive(Debug)]
pub struct TorchCellWeights {
    /// The layer's kind.
    pub kind: TorchCellKind,
    /// Input-to-hidden weights `[G·H, I]`.
    pub weight_ih: Tensor,
    /// Hidden-to-hidden weights `[G·H, P]`.
    pub weight_hh: Tensor,
    /// `(bias_ih, bias_hh)`, each `[G·H]`, if the layer has biases.
    pub bias: Option<(Tensor, Tensor)>,
    /// LSTM projection `[P, H]`, if any.
    pub weight_hr: Option<Tensor>,
}

impl TorchCellWeights {
    /// A layer of `kind` from its PyTorch weights: `weight_ih [G·H, I]`, `weight_hh [G·H, P]`,
    /// optional `(bias_ih, bias_hh)` `[G·H]` and, for a projected LSTM, `weight_hr [P, H]`
    /// (shallow clones, sharing storage and autograd identity with the given tensors).
    /// Cores outside this crate describe themselves with it in
    /// [`RnnCore::torch_layers`](crate::RnnCore::torch_layers).
    pub fn from_weights(
        kind: TorchCellKind,
        weight_ih: &Tensor,
        weight_hh: &Tensor,
        bias: Option<(&Tensor, &Tensor)>,
        weight_hr: Option<&Tensor>,
    ) -> Self {
        TorchCellWeights {
            kind,
            weight_ih: weight_ih.shallow_clone(),
            weight_hh: weight_hh.shallow_clone(),
            bias: bias.map(|(i, h)| (i.shallow_clone(), h.shallow_clone())),
            weight_hr: weight_hr.map(Tensor::shallow_clone),
        }
    }

    /// A layer of `kind` from a cell's PyTorch weights (shallow clones).
    pub(crate) fn new(kind: TorchCellKind, weights: &TorchWeights, weight_hr: Option<&Tensor>) -> Self {
        let bias = weights.bias.as_ref().map(|(i, h)| (i, h));
        Self::from_weights(kind, &weights.weight_ih, &weights.weight_hh, bias, weight_hr)
    }

    /// The flat weight list of libtorch's recurrent kernels, PyTorch's order:
    /// `[w_ih, w_hh, (b_ih, b_hh), (w_hr)]`.
    pub fn params(&self) -> Vec<&Tensor> {
        let mut params = vec![&self.weight_ih, &self.weight_hh];
        if let Some((bias_ih, bias_hh)) = &self.bias {
            params.extend([bias_ih, bias_hh]);
        }
        params.extend(&self.weight_hr);
        params
    }
}

/// Whether an unroll of `layers` over `inputs` from `initial` records a gradient: autograd is
/// on for this thread (not under `tch::no_grad`) and some tensor requires one.
pub(crate) fn needs_grad(layers: &[TorchCellWeights], inputs: &Tensor, initial: &State) -> bool {
    let any = inputs.requires_grad()
        || initial.leaves().iter().any(|t| t.requires_grad())
        || layers.iter().any(|l| l.params().iter().any(|t| t.requires_grad()));
    any && grad_mode_enabled()
}

/// Whether autograd records operations on this thread: a product with a tensor that requires a
/// gradient requires one only then (tch does not expose the grad mode itself).
fn grad_mode_enabled() -> bool {
    let probe = Tensor::ones([], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    probe.f_mul_scalar(1.0).map_or(true, |t| t.requires_grad())
}

/// The layers' states within a plain core's state: the state itself for one layer, or the
/// entries of a `State::Tuple` of one state per layer.
pub(crate) fn layer_states(state: &State, layers: usize) -> Option<&[State]> {
    match state {
        State::Tuple(v) if v.len() == layers => Some(v),
        State::Tuple(_) => None,
        single if layers == 1 => Some(std::slice::from_ref(single)),
        _ => None,
    }
}
