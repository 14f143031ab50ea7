//! The collectives of a [`ProcessGroup`]: `all_reduce`, `broadcast`, `all_gather`,
//! `reduce_scatter`, `barrier`, each blocking and `_async` (returning a [`Work`]).
//!
//! Tensors are checked before c10d sees them: defined, dense and contiguous, on a device the
//! backend serves (CPU for Gloo, CUDA for NCCL), of a kind c10d reduces (f16, bf16, f32, f64,
//! i8, u8, i32, i64; averages only for floating kinds), with matching shapes where one process
//! can check them. Shapes that differ across processes cannot be checked locally: c10d then
//! fails (or the group's timeout ends the collective).

use crate::ffi::{self, check, RawWork};
use crate::group::{Backend, ProcessGroup};
use crate::work::{Finish, Work};
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

/// How `all_reduce` and `reduce_scatter` combine the processes' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Elementwise sum.
    Sum,
    /// Elementwise mean over the processes (floating kinds only). Gloo has none, so couplet
    /// sums and divides by the world size when the work is waited for.
    Avg,
    /// Elementwise product.
    Product,
    /// Elementwise minimum.
    Min,
    /// Elementwise maximum.
    Max,
}

impl ReduceOp {
    /// The value of c10d's `ReduceOp::RedOpType`.
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Avg => 1,
            ReduceOp::Product => 2,
            ReduceOp::Min => 3,
            ReduceOp::Max => 4,
        }
    }
}

const KINDS: [Kind; 8] =
    [Kind::Half, Kind::BFloat16, Kind::Float, Kind::Double, Kind::Int8, Kind::Uint8, Kind::Int, Kind::Int64];

/// Whether `kind` is one of the floating kinds collectives take.
pub(crate) fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double)
}

/// The raw pointer of `tensor` for the shim, which only reads the `at::Tensor` handle (the
/// collective writes the shared storage, as an in-place op would).
fn ptr(tensor: &Tensor) -> *mut torch_sys::C_tensor {
    tensor.as_ptr() as *mut _
}

impl ProcessGroup {
    /// Checks that `tensor` can take part in a collective of this group.
    fn check_tensor(&self, op: &'static str, what: &str, tensor: &Tensor) -> Result<()> {
        if !tensor.defined() {
            return Err(Error::invalid(format!("distributed/{op}"), format!("{what} is undefined")));
        }
        let kind = tensor.f_kind().ctx(op)?;
        if !KINDS.contains(&kind) {
            return Err(Error::invalid(
                format!("distributed/{op}"),
                format!("{what} has kind {kind:?}; collectives take {KINDS:?}"),
            ));
        }
        if !self.accepts(tensor.device()) {
            return Err(Error::invalid(
                format!("distributed/{op}"),
                format!(
                    "{what} is on {:?}; a {:?} group takes tensors on {}",
                    tensor.device(),
                    self.backend(),
                    match self.backend() {
                        Backend::Gloo => "the CPU",
                        Backend::Nccl => "CUDA devices",
                    }
                ),
            ));
        }
        if tensor.is_sparse() || !tensor.is_contiguous() {
            return Err(Error::invalid(
                format!("distributed/{op}"),
                format!("{what} must be dense and contiguous (call .contiguous() first)"),
            ));
        }
        Ok(())
    }

    /// The average's extra step on this process, after checking the op fits `tensor`'s kind.
    fn finish_for(&self, op: &'static str, reduce: ReduceOp, tensor: &Tensor) -> Result<(ReduceOp, Finish)> {
        if reduce != ReduceOp::Avg {
            return Ok((reduce, Finish::Nothing));
        }
        if !is_float(tensor.f_kind().ctx(op)?) {
            return Err(Error::invalid(
                format!("distributed/{op}"),
                format!(
                    "ReduceOp::Avg needs a floating kind, got {:?}; sum and divide instead",
                    tensor.kind()
                ),
            ));
        }
        match self.backend() {
            Backend::Nccl => Ok((ReduceOp::Avg, Finish::Nothing)),
            // world_size fits a C int (checked when the group was made).
            Backend::Gloo => {
                Ok((ReduceOp::Sum, Finish::Divide(tensor.shallow_clone(), self.world_size() as i64)))
            }
        }
    }

    fn check_root(&self, op: &'static str, root: usize) -> Result<i32> {
        if root >= self.world_size() {
            return Err(Error::invalid(
                format!("distributed/{op}"),
                format!("root must be a rank in 0..{}, got {root}", self.world_size()),
            ));
        }
        Ok(root as i32)
    }

    fn issued(
        op: &'static str,
        message: *mut std::ffi::c_char,
        raw: *mut RawWork,
        finish: Finish,
    ) -> Result<Work> {
        check(op, message)?;
        Ok(Work::new(raw, op, finish))
    }

    /// Reduces `tensor` over every process, in place: afterwards every process holds the same
    /// result (any shape, same on every process). See the module docs for what is checked.
    pub fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        self.all_reduce_async(tensor, op)?.wait()
    }

    /// [`ProcessGroup::all_reduce`] without waiting: `tensor` holds the result once the returned
    /// work is waited for.
    pub fn all_reduce_async(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<Work> {
        self.check_tensor("all_reduce", "tensor", tensor)?;
        let (op, finish) = self.finish_for("all_reduce", op, tensor)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: the group and tensor handles are live for the call; c10d keeps its own
        // references to the tensor until the work ends.
        let message = unsafe { ffi::cpl_all_reduce(self.raw(), ptr(tensor), op.code(), &mut raw) };
        Self::issued("all_reduce", message, raw, finish)
    }

    /// Copies `tensor` of process `root` into `tensor` of every process (same shape and kind
    /// everywhere). Errors: a root outside `0..world_size`, a tensor c10d cannot take.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        self.broadcast_async(tensor, root)?.wait()
    }

    /// [`ProcessGroup::broadcast`] without waiting.
    pub fn broadcast_async(&self, tensor: &mut Tensor, root: usize) -> Result<Work> {
        self.check_tensor("broadcast", "tensor", tensor)?;
        let root = self.check_root("broadcast", root)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: as in all_reduce_async.
        let message = unsafe { ffi::cpl_broadcast(self.raw(), ptr(tensor), root, &mut raw) };
        Self::issued("broadcast", message, raw, Finish::Nothing)
    }

    /// Every process's `input` (shape `S`, the same everywhere), stacked in rank order into a
    /// new tensor of shape `[world_size, S...]` on every process.
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor> {
        self.check_tensor("all_gather", "input", input)?;
        let mut shape = vec![self.world_size() as i64];
        shape.extend(input.size());
        let mut output = Tensor::f_empty(&shape, (input.kind(), input.device())).ctx("all_gather")?;
        self.all_gather_async(input, &mut output)?.wait()?;
        Ok(output)
    }

    /// [`ProcessGroup::all_gather`] into `output` (shape `[world_size, S...]`, `input`'s kind
    /// and device, contiguous), without waiting.
    pub fn all_gather_async(&self, input: &Tensor, output: &mut Tensor) -> Result<Work> {
        self.check_tensor("all_gather", "input", input)?;
        self.check_tensor("all_gather", "output", output)?;
        let slots = self.stacked_slots("all_gather", "output", input, output)?;
        let slot_ptrs: Vec<_> = slots.iter().map(ptr).collect();
        let mut raw = std::ptr::null_mut();
        // SAFETY: every slot handle is live for the call; c10d keeps its own references.
        let message = unsafe {
            ffi::cpl_all_gather(self.raw(), slot_ptrs.as_ptr(), slot_ptrs.len(), ptr(input), &mut raw)
        };
        Self::issued("all_gather", message, raw, Finish::Nothing)
    }

    /// Reduces `input` (shape `[world_size, S...]`, the same everywhere) over the processes and
    /// gives process `r` row `r` of the result, a new tensor of shape `S`.
    pub fn reduce_scatter(&self, input: &Tensor, op: ReduceOp) -> Result<Tensor> {
        self.check_tensor("reduce_scatter", "input", input)?;
        let size = input.size();
        if size.first() != Some(&(self.world_size() as i64)) {
            return Err(Error::shape(
                "distributed/reduce_scatter",
                "input",
                format!("[{}, ...]", self.world_size()),
                size,
            ));
        }
        let mut output = Tensor::f_empty(&size[1..], (input.kind(), input.device())).ctx("reduce_scatter")?;
        self.reduce_scatter_async(input, &mut output, op)?.wait()?;
        Ok(output)
    }

    /// [`ProcessGroup::reduce_scatter`] into `output` (shape `S`, `input`'s kind and device,
    /// contiguous), without waiting.
    pub fn reduce_scatter_async(&self, input: &Tensor, output: &mut Tensor, op: ReduceOp) -> Result<Work> {
        self.check_tensor("reduce_scatter", "input", input)?;
        self.check_tensor("reduce_scatter", "output", output)?;
        let slots = self.stacked_slots("reduce_scatter", "input", output, input)?;
        let (op, finish) = self.finish_for("reduce_scatter", op, output)?;
        let slot_ptrs: Vec<_> = slots.iter().map(ptr).collect();
        let mut raw = std::ptr::null_mut();
        // SAFETY: as in all_gather_async.
        let message = unsafe {
            ffi::cpl_reduce_scatter(
                self.raw(),
                ptr(output),
                slot_ptrs.as_ptr(),
                slot_ptrs.len(),
                op.code(),
                &mut raw,
            )
        };
        Self::issued("reduce_scatter", message, raw, finish)
    }

    /// The `world_size` rows of `stacked` (`[world_size, S...]`), after checking it against
    /// `single` (`S`): same kind, same device, matching shape.
    fn stacked_slots(
        &self,
        op: &'static str,
        what: &str,
        single: &Tensor,
        stacked: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let mut expected = vec![self.world_size() as i64];
        expected.extend(single.size());
        if stacked.size() != expected {
            return Err(Error::shape(
                format!("distributed/{op}"),
                what,
                format!("{expected:?}"),
                stacked.size(),
            ));
        }
        if stacked.kind() != single.kind() || stacked.device() != single.device() {
            return Err(Error::invalid(
                format!("distributed/{op}"),
                format!(
                    "{what} must have kind {:?} on {:?}, got {:?} on {:?}",
                    single.kind(),
                    single.device(),
                    stacked.kind(),
                    stacked.device()
                ),
            ));
        }
        (0..self.world_size() as i64).map(|r| stacked.f_select(0, r).ctx(op)).collect()
    }

    /// Waits until every process of the group has reached this barrier.
    pub fn barrier(&self) -> Result<()> {
        self.barrier_async()?.wait()
    }

    /// [`ProcessGroup::barrier`] without waiting.
    pub fn barrier_async(&self) -> Result<Work> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: the group handle is live.
        let message = unsafe { ffi::cpl_barrier(self.raw(), &mut raw) };
        Self::issued("barrier", message, raw, Finish::Nothing)
    }
}
