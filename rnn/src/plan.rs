//! The row plan of a length-aware unroll: rows sorted by length, how many are still running
//! at each step, and the gather indices that put the compacted per-step outputs back in
//! place (host arithmetic on the lengths, done once before the loop); and [`RunningRows`],
//! the state of the rows still running, with ended rows' states set aside, that every
//! executor (step loop, fused kernels) carries.

use crate::state::State;
use couplet_modules::{Result, TorchContext};
use tch::{Device, Tensor};

/// How an unroll of `batch` rows over `time` steps visits its rows.
pub(crate) struct Plan {
    batch: i64,
    time: i64,
    /// Lengths in the original row order (all `time` without lengths).
    lengths: Vec<i64>,
    /// `perm[k]` = the original row at sorted position `k`; `None` if the rows are already
    /// in non-increasing length order.
    perm: Option<Vec<i64>>,
    /// Lengths in sorted (non-increasing) order.
    sorted: Vec<i64>,
}

impl Plan {
    /// A plan for validated `lengths` (each in `0..=time`), or every row running `time` steps.
    pub(crate) fn new(batch: i64, time: i64, lengths: Option<&[i64]>) -> Plan {
        let lengths = lengths.map_or_else(|| vec![time; batch as usize], <[i64]>::to_vec);
        let mut order: Vec<i64> = (0..batch).collect();
        // Stable sort, longest first: equal lengths keep their relative order.
        order.sort_by_key(|&b| std::cmp::Reverse(lengths[b as usize]));
        let sorted: Vec<i64> = order.iter().map(|&b| lengths[b as usize]).collect();
        let identity = order.iter().enumerate().all(|(k, &b)| k as i64 == b);
        Plan { batch, time, lengths, perm: (!identity).then_some(order), sorted }
    }

    /// The batch size `B`.
    pub(crate) fn batch(&self) -> i64 {
        self.batch
    }

    /// The padded time dimension `T`.
    pub(crate) fn time(&self) -> i64 {
        self.time
    }

    /// The number of steps the loop runs: the longest length (`0` for an empty batch).
    pub(crate) fn steps(&self) -> i64 {
        self.sorted.first().copied().unwrap_or(0)
    }

    /// The sorting permutation as an index tensor on `device`, `None` if it is the identity.
    pub(crate) fn perm(&self, device: Device) -> Option<Tensor> {
        self.perm.as_ref().map(|p| Tensor::from_slice(p).to_device(device))
    }

    /// The inverse permutation (`inv[b]` = sorted position of original row `b`) on `device`.
    pub(crate) fn inverse_perm(&self, device: Device) -> Option<Tensor> {
        self.perm.as_ref().map(|p| Tensor::from_slice(&self.inverse(p)).to_device(device))
    }

    fn inverse(&self, perm: &[i64]) -> Vec<i64> {
        let mut inv = vec![0; perm.len()];
        for (k, &b) in perm.iter().enumerate() {
            inv[b as usize] = k as i64;
        }
        inv
    }

    /// Whether the per-step outputs (each of all `batch` rows, `time` of them) can simply be
    /// stacked: every row runs every step, in its own order.
    pub(crate) fn is_full(&self) -> bool {
        self.perm.is_none() && self.lengths.iter().all(|&l| l == self.time)
    }

    /// `n_t`, the number of rows still running at step `t`, for `t < steps()`
    /// (PyTorch's `PackedSequence.batch_sizes`).
    pub(crate) fn batch_sizes(&self) -> Vec<i64> {
        (0..self.steps()).map(|t| self.sorted.iter().take_while(|&&l| l > t).count() as i64).collect()
    }

    /// The runs of consecutive steps with the same running rows: `(steps, rows)` pairs in
    /// time order, one per distinct nonzero length (their `steps` sum to [`Plan::steps`]).
    pub(crate) fn segments(&self) -> Vec<(i64, i64)> {
        let mut segments: Vec<(i64, i64)> = Vec::new();
        for n in self.batch_sizes() {
            match segments.last_mut() {
                Some((steps, rows)) if *rows == n => *steps += 1,
                _ => segments.push((1, n)),
            }
        }
        segments
    }

    /// The lengths in row order; `None` when every row runs every step.
    pub(crate) fn lengths(&self) -> Option<&[i64]> {
        (!self.is_full()).then_some(self.lengths.as_slice())
    }

    /// The original row of sorted position `k`.
    fn row(&self, k: usize) -> i64 {
        self.perm.as_ref().map_or(k as i64, |p| p[k])
    }

    /// Packs the real steps of `inputs` (`[B, T, ..]`, or `[T, B, ..]` if `time_major`) into
    /// `[Σ n_t, ..]`: step 0 of the sorted rows `0..n_0`, then step 1 of rows `0..n_1`, …
    /// One `index_select`; padded steps are left out.
    pub(crate) fn pack(&self, inputs: &Tensor, time_major: bool, func: &str) -> Result<Tensor> {
        let mut index = Vec::new();
        for (t, &n) in self.batch_sizes().iter().enumerate() {
            for k in 0..n as usize {
                let b = self.row(k);
                index.push(if time_major { t as i64 * self.batch + b } else { b * self.time + t as i64 });
            }
        }
        let index = Tensor::from_slice(&index).to_device(inputs.device());
        inputs.f_flatten(0, 1).ctx(func)?.f_index_select(0, &index).ctx(func)
    }

    /// Unpacks the per-step outputs of the compacted loop into `[B, T, ..]` (or `[T, B, ..]` if
    /// `time_major`), in the original row order with zeros at padded positions.
    ///
    /// Step `t` produced sorted rows `0..n_t`, concatenated into `flat [Σ n_t, ..]` followed by
    /// one zero row; `(b, t)` takes `offset[t] + inv[b]` for `t < len[b]`, else the zero row.
    /// One `cat` and one `index_select`.
    pub(crate) fn unpack(&self, step_outputs: &[Tensor], time_major: bool, func: &str) -> Result<Tensor> {
        let first = &step_outputs[0];
        let trailing = &first.size()[1..];
        let zero_shape: Vec<i64> = [1].iter().chain(trailing).copied().collect();
        let zero = Tensor::f_zeros(&zero_shape, (first.kind(), first.device())).ctx(func)?;
        let mut parts: Vec<&Tensor> = step_outputs.iter().collect();
        parts.push(&zero);
        let flat = Tensor::f_cat(&parts, 0).ctx(func)?;
        let mut offsets = Vec::with_capacity(step_outputs.len());
        let mut total = 0;
        for n in self.batch_sizes() {
            offsets.push(total);
            total += n;
        }
        let rank = self.perm.as_ref().map_or_else(|| (0..self.batch).collect(), |p| self.inverse(p));
        let (b_n, t_n) = (self.batch as usize, self.time as usize);
        let mut index = vec![total; b_n * t_n];
        for (b, (&len, &r)) in self.lengths.iter().zip(&rank).enumerate() {
            for (t, &offset) in offsets.iter().enumerate().take(len as usize) {
                let at = if time_major { t * b_n + b } else { b * t_n + t };
                index[at] = offset + r;
            }
        }
        let index = Tensor::from_slice(&index).to_device(first.device());
        let lead = if time_major { [self.time, self.batch] } else { [self.batch, self.time] };
        let shape: Vec<i64> = lead.iter().chain(trailing).copied().collect();
        flat.f_index_select(0, &index).ctx(func)?.f_view(shape.as_slice()).ctx(func)
    }
}

/// The state of a compacted unroll: the running rows (in sorted order) shrink as rows end,
/// the ended rows' states are set aside (views of the state's last rows), and
/// [`RunningRows::finish`] puts everything back in the original row order.
pub(crate) struct RunningRows {
    state: State,
    active: i64,
    ended: Vec<State>,
}

impl RunningRows {
    /// The rows of `initial` (original row order) sorted as `plan` runs them.
    pub(crate) fn new(plan: &Plan, initial: &State, device: Device) -> Result<Self> {
        let state = match plan.perm(device) {
            Some(p) => initial.select_rows(&p)?,
            None => initial.clone(),
        };
        Ok(RunningRows { state, active: plan.batch(), ended: Vec::new() })
    }

    /// The state of the first `rows` running rows, setting the others aside (`rows` never
    /// grows: the plan's rows end longest last).
    pub(crate) fn running(&mut self, rows: i64) -> Result<&State> {
        if rows < self.active {
            self.ended.push(self.state.narrow_rows(rows, self.active - rows)?);
            self.state = self.state.narrow_rows(0, rows)?;
            self.active = rows;
        }
        Ok(&self.state)
    }

    /// Replaces the running rows' state by their state after a step.
    pub(crate) fn advance(&mut self, next: State) {
        self.state = next;
    }

    /// Every row's final state, in the original row order.
    pub(crate) fn finish(mut self, plan: &Plan, device: Device) -> Result<State> {
        let state = if self.ended.is_empty() {
            self.state
        } else {
            self.ended.push(self.state);
            self.ended.reverse();
            State::cat_rows(&self.ended)?
        };
        match plan.inverse_perm(device) {
            Some(inv) => state.select_rows(&inv),
            None => Ok(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sorted_stably_longest_first() {
        let p = Plan::new(5, 4, Some(&[1, 3, 0, 3, 2]));
        assert_eq!(p.perm, Some(vec![1, 3, 4, 0, 2]));
        assert_eq!(p.sorted, [3, 3, 2, 1, 0]);
        assert_eq!(p.inverse(&[1, 3, 4, 0, 2]), [3, 0, 4, 1, 2]);
        assert_eq!(p.steps(), 3);
        assert_eq!(p.segments(), [(1, 4), (1, 3), (1, 2)]);
        assert_eq!(Plan::new(4, 6, Some(&[5, 0, 2, 5])).segments(), [(2, 3), (3, 2)]);
        assert!(!p.is_full());
        let q = Plan::new(3, 4, Some(&[4, 2, 2]));
        assert!(q.perm.is_none());
        assert!(Plan::new(3, 4, None).is_full());
        assert_eq!(Plan::new(0, 4, Some(&[])).steps(), 0);
    }

    #[test]
    fn packing_keeps_real_steps_and_unpacking_restores_them_with_zero_padding() {
        // x[b, t] = 10 b + t; lengths [1, 2, 0]: sorted rows [1, 0, 2], batch sizes [2, 1].
        let x = Tensor::from_slice(&[0.0f32, 1., 2., 10., 11., 12., 20., 21., 22.]).view([3, 3, 1]);
        let p = Plan::new(3, 3, Some(&[1, 2, 0]));
        let packed = p.pack(&x, false, "f").unwrap();
        assert_eq!(Vec::<f32>::try_from(packed.flatten(0, -1)).unwrap(), [10., 0., 11.]);
        let packed_tm = p.pack(&x.transpose(0, 1), true, "f").unwrap();
        assert_eq!(Vec::<f32>::try_from(packed_tm.flatten(0, -1)).unwrap(), [10., 0., 11.]);
        let steps = packed.split_with_sizes([2, 1], 0);
        let back = p.unpack(&steps, false, "f").unwrap();
        assert_eq!(
            Vec::<f32>::try_from(back.flatten(0, -1)).unwrap(),
            [0., 0., 0., 10., 11., 0., 0., 0., 0.]
        );
    }

    #[test]
    fn outputs_are_gathered_back_in_place_with_zero_padding() {
        // Rows (original) lengths [1, 2]: sorted order is [1, 0]. Step 0 ran both rows (sorted
        // positions 0, 1 = originals 1, 0), step 1 ran only sorted row 0 (original 1).
        let p = Plan::new(2, 3, Some(&[1, 2]));
        let s0 = Tensor::from_slice(&[10.0f32, 20.0]).view([2, 1]);
        let s1 = Tensor::from_slice(&[11.0f32]).view([1, 1]);
        assert_eq!(p.batch_sizes(), [2, 1]);
        let out = p.unpack(&[s0.shallow_clone(), s1.shallow_clone()], false, "f").unwrap();
        assert_eq!(out.size(), [2, 3, 1]);
        assert_eq!(Vec::<f32>::try_from(out.flatten(0, -1)).unwrap(), [20.0, 0.0, 0.0, 10.0, 11.0, 0.0]);
        let out = p.unpack(&[s0, s1], true, "f").unwrap();
        assert_eq!(out.size(), [3, 2, 1]);
        assert_eq!(Vec::<f32>::try_from(out.flatten(0, -1)).unwrap(), [20.0, 10.0, 0.0, 11.0, 0.0, 0.0]);
    }
}
