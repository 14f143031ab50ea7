//! Recurrent state: a small tree of batch-major tensors, and its size description.
//!
//! Every leaf of a [`State`] has the batch as its first dimension, so row operations
//! (selecting beams, carrying finished rows, shrinking a batch) apply to every leaf alike.

use couplet_modules::{Error, Result, TorchContext};
use tch::{Device, Kind, Tensor};

/// The state a core carries from one step to the next.
#[derive(Debug)]
pub enum State {
    /// No tensors (a stateless core, or a wrapper's slot that is not filled yet).
    Empty,
    /// One tensor `[B, ..]` (vanilla RNN and GRU `[B, H]`).
    Tensor(Tensor),
    /// LSTM state, PyTorch/Keras order: `h [B, P]` (P = projection size, else H), `c [B, H]`
    /// (`[B, .., C]` both for a convolutional LSTM).
    Lstm {
        /// Hidden state (the output).
        h: Tensor,
        /// Cell state.
        c: Tensor,
    },
    /// A sequence of states: a stack's layers bottom-to-top, or a wrapper's inner state
    /// followed by its own.
    Tuple(Vec<State>),
}

impl Clone for State {
    /// A shallow clone: the tensors share storage (and autograd history).
    fn clone(&self) -> Self {
        match self {
            State::Empty => State::Empty,
            State::Tensor(t) => State::Tensor(t.shallow_clone()),
            State::Lstm { h, c } => State::Lstm { h: h.shallow_clone(), c: c.shallow_clone() },
            State::Tuple(v) => State::Tuple(v.clone()),
        }
    }
}

/// The shapes of a [`State`]'s leaves without the batch dimension, mirroring its structure:
/// a leaf `[B, ..shape]` has the size `shape` (`[n]` for the usual `[B, n]` leaves,
/// `[H, W, C]` for a 2-D convolutional LSTM's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateSize {
    /// No tensors.
    Empty,
    /// One tensor `[B, ..shape]`.
    Tensor(Vec<i64>),
    /// LSTM `h [B, ..h]`, `c [B, ..c]`.
    Lstm {
        /// Shape of `h`.
        h: Vec<i64>,
        /// Shape of `c`.
        c: Vec<i64>,
    },
    /// A sequence of sizes.
    Tuple(Vec<StateSize>),
    /// One tensor `[B, ..shape]` the core draws itself (a variational dropout mask): unrolls
    /// check its shape, but [`State::zeros`] refuses to build it, as zeros would be a valid
    /// looking but wrong state (an all-zero mask drops everything); the core's
    /// [`initial_state`](crate::RnnCore::initial_state) draws it.
    Drawn(Vec<i64>),
    /// One tensor `[B, ..]` whose other sizes depend on the data the state was built from
    /// (e.g. an attention decoder's memory): unrolls check only its batch size, and
    /// [`State::zeros`] cannot build it (the core's own constructor does).
    Dynamic,
}

impl StateSize {
    /// One vector leaf `[B, n]`.
    pub fn vector(n: i64) -> StateSize {
        StateSize::Tensor(vec![n])
    }

    /// An LSTM state of vectors `h [B, h]`, `c [B, c]`.
    pub fn lstm(h: i64, c: i64) -> StateSize {
        StateSize::Lstm { h: vec![h], c: vec![c] }
    }
}

/// `[batch, ..shape]`.
pub(crate) fn with_batch(batch: i64, shape: &[i64]) -> Vec<i64> {
    std::iter::once(batch).chain(shape.iter().copied()).collect()
}

fn structure_error(what: &str) -> Error {
    Error::invalid("state", format!("states have different structures in {what}"))
}

impl State {
    /// A state of zeros with the structure of `size` for `batch_size` rows.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `size` has a [`StateSize::Dynamic`] or
    /// [`StateSize::Drawn`] leaf.
    pub fn zeros(size: &StateSize, batch_size: i64, options: (Kind, Device)) -> Result<State> {
        let z = |shape: &[i64]| Tensor::f_zeros(with_batch(batch_size, shape), options).ctx("state");
        Ok(match size {
            StateSize::Empty => State::Empty,
            StateSize::Tensor(n) => State::Tensor(z(n)?),
            StateSize::Lstm { h, c } => State::Lstm { h: z(h)?, c: z(c)? },
            StateSize::Tuple(v) => {
                State::Tuple(v.iter().map(|s| State::zeros(s, batch_size, options)).collect::<Result<_>>()?)
            }
            StateSize::Dynamic => return Err(Error::invalid(
                "state",
                "a StateSize::Dynamic leaf depends on data: build the state with the core's own constructor",
            )),
            StateSize::Drawn(_) => return Err(Error::invalid(
                "state",
                "a StateSize::Drawn leaf (a dropout mask) is drawn by the core: start from its initial_state \
                 (zeros would drop everything)",
            )),
        })
    }

    /// A new state with `f` applied to every leaf, keeping the structure.
    pub fn try_map(&self, f: &mut impl FnMut(&Tensor) -> Result<Tensor>) -> Result<State> {
        Ok(match self {
            State::Empty => State::Empty,
            State::Tensor(t) => State::Tensor(f(t)?),
            State::Lstm { h, c } => State::Lstm { h: f(h)?, c: f(c)? },
            State::Tuple(v) => State::Tuple(v.iter().map(|s| s.try_map(f)).collect::<Result<_>>()?),
        })
    }

    /// A new state with `f` applied to matching leaves of `self` and `other`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the two states have different structures.
    pub fn try_zip_map(
        &self,
        other: &State,
        f: &mut impl FnMut(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<State> {
        Ok(match (self, other) {
            (State::Empty, State::Empty) => State::Empty,
            (State::Tensor(a), State::Tensor(b)) => State::Tensor(f(a, b)?),
            (State::Lstm { h, c }, State::Lstm { h: h2, c: c2 }) => {
                State::Lstm { h: f(h, h2)?, c: f(c, c2)? }
            }
            (State::Tuple(a), State::Tuple(b)) if a.len() == b.len() => {
                State::Tuple(a.iter().zip(b).map(|(x, y)| x.try_zip_map(y, f)).collect::<Result<_>>()?)
            }
            _ => return Err(structure_error("zip")),
        })
    }

    /// The leaves in order (`h` before `c`, tuples in order).
    pub fn leaves(&self) -> Vec<&Tensor> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        match self {
            State::Empty => {}
            State::Tensor(t) => out.push(t),
            State::Lstm { h, c } => {
                out.push(h);
                out.push(c);
            }
            State::Tuple(v) => v.iter().for_each(|s| s.collect_leaves(out)),
        }
    }

    /// The structure's sizes (each leaf's shape without its first, batch, dimension).
    pub fn size(&self) -> StateSize {
        let n = |t: &Tensor| t.size().get(1..).map_or_else(Vec::new, <[i64]>::to_vec);
        match self {
            State::Empty => StateSize::Empty,
            State::Tensor(t) => StateSize::Tensor(n(t)),
            State::Lstm { h, c } => StateSize::Lstm { h: n(h), c: n(c) },
            State::Tuple(v) => StateSize::Tuple(v.iter().map(State::size).collect()),
        }
    }

    /// The batch size (first dimension of the first leaf), `None` for a state without leaves.
    pub fn batch_size(&self) -> Option<i64> {
        self.leaves().first().and_then(|t| t.size().first().copied())
    }

    /// The same values cut from the autograd graph (truncated backpropagation through time).
    pub fn detach(&self) -> State {
        self.try_map(&mut |t| Ok(t.detach())).unwrap_or(State::Empty)
    }

    /// Rows `index [K]` (int64) of every leaf, e.g. to reorder beams by their parents.
    ///
    /// # Errors
    /// [`Error::Torch`] if an index is out of range.
    pub fn select_rows(&self, index: &Tensor) -> Result<State> {
        self.try_map(&mut |t| t.f_index_select(0, index).ctx("state"))
    }

    /// Rows `start..start + len` of every leaf (a view, no copy).
    pub fn narrow_rows(&self, start: i64, len: i64) -> Result<State> {
        self.try_map(&mut |t| t.f_narrow(0, start, len).ctx("state"))
    }

    /// Row-wise choice: `mask [B]` (bool) true takes the row from `self`, false from `other`.
    /// Used to carry the state of rows past their length.
    pub fn where_rows(&self, mask: &Tensor, other: &State) -> Result<State> {
        self.try_zip_map(other, &mut |a, b| {
            // Broadcast the row mask over every other dimension of the leaf, whatever its rank.
            let mut shape = vec![1i64; a.dim().max(1)];
            shape[0] = -1;
            let m = mask.f_view(shape.as_slice()).ctx("state")?;
            a.f_where_self(&m, b).ctx("state")
        })
    }

    /// Concatenates states row-wise (the inverse of splitting a batch into parts).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `parts` is empty or the structures differ.
    pub fn cat_rows(parts: &[State]) -> Result<State> {
        let first =
            parts.first().ok_or_else(|| Error::invalid("state", "cat_rows needs at least one state"))?;
        let mut index = 0;
        first.try_map(&mut |_| {
            let mut leaves = Vec::with_capacity(parts.len());
            for p in parts {
                let l = p.leaves();
                leaves.push(l.get(index).ok_or_else(|| structure_error("cat_rows"))?.shallow_clone());
            }
            index += 1;
            Tensor::f_cat(&leaves, 0).ctx("state")
        })
    }

    /// The same state on `device`.
    ///
    /// # Errors
    /// [`Error::Torch`] naming `state` if a leaf cannot be moved there (e.g. a CUDA device on a
    /// machine without one).
    pub fn to_device(&self, device: Device) -> Result<State> {
        self.try_map(&mut |t| t.f_to_device(device).ctx("state"))
    }

    /// The LSTM `h`, or the single tensor of a vanilla/GRU state.
    pub fn h(&self) -> Option<&Tensor> {
        match self {
            State::Tensor(t) | State::Lstm { h: t, .. } => Some(t),
            _ => None,
        }
    }

    /// The elements of a [`State::Tuple`] (a stack's layers), else `None`.
    pub fn as_tuple(&self) -> Option<&[State]> {
        match self {
            State::Tuple(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], rows: i64) -> Tensor {
        Tensor::from_slice(v).view([rows, -1])
    }

    fn lstm() -> State {
        State::Tuple(vec![
            State::Lstm { h: t(&[1.0, 2.0, 3.0], 3), c: t(&[10.0, 20.0, 30.0], 3) },
            State::Tensor(t(&[5.0, 6.0, 7.0], 3)),
        ])
    }

    fn values(s: &State) -> Vec<Vec<f32>> {
        s.leaves().iter().map(|l| Vec::<f32>::try_from(l.flatten(0, -1)).unwrap()).collect()
    }

    #[test]
    fn row_operations_apply_to_every_leaf() {
        let s = lstm();
        let idx = Tensor::from_slice(&[2i64, 0]);
        assert_eq!(values(&s.select_rows(&idx).unwrap()), [vec![3.0, 1.0], vec![30.0, 10.0], vec![7.0, 5.0]]);
        assert_eq!(values(&s.narrow_rows(1, 2).unwrap()), [vec![2.0, 3.0], vec![20.0, 30.0], vec![6.0, 7.0]]);
        let zeros = s.try_map(&mut |x| Ok(x.zeros_like())).unwrap();
        let mask = Tensor::from_slice(&[true, false, true]);
        assert_eq!(
            values(&s.where_rows(&mask, &zeros).unwrap()),
            [vec![1.0, 0.0, 3.0], vec![10.0, 0.0, 30.0], vec![5.0, 0.0, 7.0]]
        );
        // Leaves of any rank: a [B, 2, 2] leaf takes whole rows too.
        let cube = State::Tensor(Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 2, 2]));
        let chosen = cube.where_rows(&mask, &cube.try_map(&mut |x| Ok(x.zeros_like())).unwrap()).unwrap();
        assert_eq!(values(&chosen), [vec![0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 8.0, 9.0, 10.0, 11.0]]);
        let parts = [s.narrow_rows(0, 1).unwrap(), s.narrow_rows(1, 2).unwrap()];
        assert_eq!(values(&State::cat_rows(&parts).unwrap()), values(&s));
        assert_eq!(s.batch_size(), Some(3));
        assert_eq!(s.size(), StateSize::Tuple(vec![StateSize::lstm(1, 1), StateSize::vector(1)]));
    }

    #[test]
    fn zeros_follow_the_size_and_mismatched_structures_are_errors() {
        let size = StateSize::Tuple(vec![StateSize::lstm(2, 3), StateSize::Empty]);
        let z = State::zeros(&size, 4, (Kind::Float, Device::Cpu)).unwrap();
        assert_eq!(z.leaves().iter().map(|l| l.size()).collect::<Vec<_>>(), [vec![4, 2], vec![4, 3]]);
        assert_eq!(z.size(), size);
        let other = State::Tensor(Tensor::zeros([4, 2], (Kind::Float, Device::Cpu)));
        let e = z.where_rows(&Tensor::from_slice(&[true; 4]), &other).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert!(State::cat_rows(&[]).is_err());
    }

    #[test]
    fn dynamic_and_drawn_sizes_cannot_be_zeroed_and_leaves_take_any_shape() {
        let size = StateSize::Tuple(vec![StateSize::vector(2), StateSize::Dynamic]);
        let e = State::zeros(&size, 4, (Kind::Float, Device::Cpu)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let e = State::zeros(&StateSize::Drawn(vec![3]), 4, (Kind::Float, Device::Cpu)).unwrap_err();
        assert!(e.to_string().contains("drawn by the core"), "{e}");
        // Leaves of any shape.
        let conv = StateSize::Lstm { h: vec![3, 4, 2], c: vec![3, 4, 2] };
        let z = State::zeros(&conv, 5, (Kind::Float, Device::Cpu)).unwrap();
        assert_eq!(z.leaves()[1].size(), [5, 3, 4, 2]);
        assert_eq!(z.size(), conv);
    }

    #[test]
    fn to_device_is_fallible() {
        let s = lstm();
        assert_eq!(s.to_device(Device::Cpu).unwrap().leaves()[1].device(), Device::Cpu);
        // An absent device used to panic inside tch's infallible `to_device`.
        let cuda = s.to_device(Device::Cuda(0));
        if tch::Cuda::is_available() {
            assert_eq!(cuda.unwrap().leaves()[0].device(), Device::Cuda(0));
        } else {
            let e = cuda.unwrap_err();
            assert!(matches!(&e, Error::Torch { module, .. } if module == "state"), "{e}");
        }
    }

    #[test]
    fn detach_cuts_the_graph() {
        let x = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let s = State::Lstm { h: &x * 2.0, c: &x * 3.0 };
        assert!(s.leaves().iter().all(|l| l.requires_grad()));
        assert!(s.detach().leaves().iter().all(|l| !l.requires_grad()));
    }
}
