//! [`DataParallel`]: PyTorch DDP's scheme over a couplet module's variables.
//!
//! - At construction the variables of rank 0 are broadcast to every rank, after checking that
//!   every rank holds the same variables (names' count, shapes, kinds), so a mismatch is an
//!   error rather than a hang.
//! - [`DataParallel::backward`] runs `loss.backward()` and averages the gradients over the
//!   group: the trainable variables are packed, in reverse creation order (the order backward
//!   produces them), into flat buckets of about [`DataParallelConfig::bucket_bytes`] (25 MB,
//!   DDP's default); each bucket's all-reduce starts as soon as it is packed, and bucket `k` is
//!   unpacked while the later ones are still on the wire.
//! - With equal per-rank batch sizes and a loss that is a mean over the batch, the averaged
//!   gradient is the gradient of the whole global batch, so the same optimizer on every rank
//!   makes the same step and the variables stay bit-identical across ranks.
//! - [`DataParallel::no_sync`] accumulates gradients locally (gradient accumulation); the next
//!   synchronized backward averages the accumulated sum.
//! - A variable without a gradient on every rank keeps none (as in one process); one with a
//!   gradient on some ranks only is averaged with zeros for the others.

use crate::collectives::{is_float, ReduceOp};
use crate::ffi::{self, check};
use crate::group::ProcessGroup;
use couplet_modules::checkpoint::{self, Checkpointable, RestoreReport};
use couplet_modules::{Error, Result, TorchContext, Variable};
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

const SCOPE: &str = "distributed/data_parallel";

/// Settings of [`DataParallel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataParallelConfig {
    /// The size of a gradient bucket, in bytes (default 25 MiB, as DDP's `bucket_cap_mb`).
    /// A variable larger than this gets a bucket of its own.
    pub bucket_bytes: usize,
}

impl Default for DataParallelConfig {
    fn default() -> Self {
        DataParallelConfig { bucket_bytes: 25 * 1024 * 1024 }
    }
}

impl DataParallelConfig {
    /// Sets [`DataParallelConfig::bucket_bytes`].
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes;
        self
    }
}

/// One flat gradient buffer and the trainable variables (indices) packed into it.
struct Bucket {
    members: Vec<usize>,
    flat: Tensor,
}

/// Data-parallel training over a [`ProcessGroup`]; see the module docs.
pub struct DataParallel {
    group: Arc<ProcessGroup>,
    trainable: Vec<Variable>,
    buckets: Vec<Bucket>,
    syncing: bool,
}

/// `(offset, numel)` of each member of a bucket in its flat buffer.
fn layout(trainable: &[Variable], members: &[usize]) -> Vec<(i64, i64)> {
    let mut offset = 0;
    members
        .iter()
        .map(|&i| {
            let n = trainable[i].tensor().numel() as i64;
            let slot = (offset, n);
            offset += n;
            slot
        })
        .collect()
}

impl DataParallel {
    /// Wraps `variables` (a built module's [`couplet_modules::Module::variables`]: every variable
    /// is broadcast from rank 0, the trainable ones have their gradients averaged) for training
    /// on `group`. Every rank of the group must call it, with the same variables.
    ///
    /// Errors: [`Error::Config`] for a zero bucket size, no variables, variables on a device the
    /// group does not serve or whose layout differs across ranks; [`Error::Distributed`] from
    /// the broadcast.
    pub fn new(
        group: Arc<ProcessGroup>,
        variables: Vec<Variable>,
        config: DataParallelConfig,
    ) -> Result<Self> {
        if config.bucket_bytes == 0 {
            return Err(Error::config(SCOPE, "bucket_bytes must be at least 1"));
        }
        if variables.is_empty() {
            return Err(Error::config(SCOPE, "no variables to train (build the module with a first call)"));
        }
        if let Some(v) = variables.iter().find(|v| !group.accepts(v.tensor().device())) {
            return Err(Error::config(
                SCOPE,
                format!(
                    "{} is on {:?}, which a {:?} group does not serve",
                    v.name(),
                    v.tensor().device(),
                    group.backend()
                ),
            ));
        }
        check_same_layout(&group, &variables)?;
        broadcast_variables(&group, &variables)?;
        let trainable: Vec<Variable> = variables.into_iter().filter(Variable::trainable).collect();
        let buckets = make_buckets(&trainable, config.bucket_bytes)?;
        Ok(DataParallel { group, trainable, buckets, syncing: true })
    }

    /// The group this trains on.
    pub fn group(&self) -> &Arc<ProcessGroup> {
        &self.group
    }

    /// This process's rank: which shard of the data to read.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// The number of processes: how many shards the data is split into.
    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// The number of gradient buckets (one all-reduce each per synchronized backward).
    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// `loss.backward()`, then (outside [`DataParallel::no_sync`]) the gradients averaged over
    /// the group. Call `zero_grad` on the optimizer before, and its `step` after, as usual.
    ///
    /// Errors: [`Error::Torch`] from backward, [`Error::Distributed`] when a peer fails.
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        loss.f_backward().ctx(SCOPE)?;
        if self.syncing {
            self.sync_gradients()?;
        }
        Ok(())
    }

    /// Runs `f` (usually forward and [`DataParallel::backward`] on a micro-batch) without
    /// averaging gradients: they accumulate locally until the next synchronized backward.
    pub fn no_sync<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let before = std::mem::replace(&mut self.syncing, false);
        let out = f(self);
        self.syncing = before;
        out
    }

    /// Averages the trainable variables' current gradients over the group (what
    /// [`DataParallel::backward`] does after backward).
    pub fn sync_gradients(&mut self) -> Result<()> {
        let world = self.world_size();
        if world == 1 {
            return Ok(());
        }
        tch::no_grad(|| self.sync_in_buckets())
    }

    fn sync_in_buckets(&mut self) -> Result<()> {
        let grads: Vec<Tensor> = self.trainable.iter().map(|v| v.tensor().grad()).collect();
        let mut present = Tensor::from_slice(&grads.iter().map(|g| g.defined() as i64).collect::<Vec<_>>());
        let presence = self.group.all_reduce_async(&mut present, ReduceOp::Max)?;
        let mut works = Vec::with_capacity(self.buckets.len());
        for bucket in &mut self.buckets {
            for (&i, (offset, n)) in bucket.members.iter().zip(layout(&self.trainable, &bucket.members)) {
                let mut slot = bucket.flat.f_narrow(0, offset, n).ctx(SCOPE)?;
                if grads[i].defined() {
                    slot.f_copy_(&grads[i].f_reshape([-1]).ctx(SCOPE)?).ctx(SCOPE)?;
                } else {
                    let _ = slot.f_zero_().ctx(SCOPE)?;
                }
            }
            works.push(self.group.all_reduce_async(&mut bucket.flat, ReduceOp::Avg)?);
        }
        presence.wait()?;
        let present = Vec::<i64>::try_from(&present).ctx(SCOPE)?;
        for (bucket, work) in self.buckets.iter().zip(works) {
            work.wait()?;
            for (&i, (offset, n)) in bucket.members.iter().zip(layout(&self.trainable, &bucket.members)) {
                let variable = self.trainable[i].tensor();
                let averaged = bucket
                    .flat
                    .f_narrow(0, offset, n)
                    .ctx(SCOPE)?
                    .f_view(variable.size().as_slice())
                    .ctx(SCOPE)?;
                let mut grad = grads[i].shallow_clone();
                if grad.defined() {
                    grad.f_copy_(&averaged).ctx(SCOPE)?;
                } else if present[i] > 0 {
                    let mut own = averaged.f_zeros_like().ctx(SCOPE)?;
                    own.f_copy_(&averaged).ctx(SCOPE)?;
                    // SAFETY: both handles are live; the shim only assigns the gradient.
                    check("data_parallel", unsafe {
                        ffi::cpl_set_grad(variable.as_ptr() as *mut _, own.as_mut_ptr())
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on rank 0 only and tells every rank how it went: rank 0 gets `Some` of its
    /// result, the others `None`, and when `f` fails on rank 0 every other rank gets an error
    /// too (so no rank goes on alone).
    pub fn on_rank_zero<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        let result = if self.rank() == 0 { Some(f()) } else { None };
        let failed = matches!(result, Some(Err(_)));
        let mut status = Tensor::from_slice(&[failed as i64]);
        self.group.broadcast(&mut status, 0)?;
        match result {
            Some(r) => r.map(Some),
            None if status.int64_value(&[0]) != 0 => {
                Err(Error::distributed("data_parallel", "rank 0 failed (see its error); this rank stops too"))
            }
            None => Ok(None),
        }
    }

    /// Saves `source` to `path` from rank 0 only (see [`checkpoint::save`]); every rank returns
    /// once the file is complete, or with an error when rank 0 could not write it.
    pub fn save_checkpoint(
        &self,
        source: &(impl Checkpointable + ?Sized),
        path: impl AsRef<Path>,
    ) -> Result<()> {
        self.on_rank_zero(|| checkpoint::save(source, path.as_ref()))?;
        Ok(())
    }

    /// Restores `target` from `path` on every rank (see [`checkpoint::restore`]); the ranks wait
    /// for each other first, so a file just written by [`DataParallel::save_checkpoint`] is
    /// complete. Errors on any rank are that rank's (the file must be readable from every rank).
    pub fn restore_checkpoint(
        &self,
        target: &(impl Checkpointable + ?Sized),
        path: impl AsRef<Path>,
    ) -> Result<RestoreReport> {
        self.group.barrier()?;
        checkpoint::restore(target, path)
    }
}

/// Fails on every rank unless all ranks hold variables of the same count, shapes and kinds.
fn check_same_layout(group: &ProcessGroup, variables: &[Variable]) -> Result<()> {
    // FNV-1a over (kind, shape) of each variable, plus the count: a cheap fingerprint.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: i64| {
        for byte in x.to_le_bytes() {
            hash = (hash ^ byte as u64).wrapping_mul(0x100_0000_01b3);
        }
    };
    mix(variables.len() as i64);
    for v in variables {
        mix(v.tensor().kind() as i64);
        mix(v.trainable() as i64);
        for d in v.tensor().size() {
            mix(d);
        }
    }
    let mine = Tensor::from_slice(&[hash as i64]);
    let mine = if group.accepts(Device::Cpu) {
        mine
    } else {
        mine.f_to_device(variables[0].tensor().device()).ctx(SCOPE)?
    };
    let all = group.all_gather(&mine)?;
    let all =
        Vec::<i64>::try_from(all.f_to_device(Device::Cpu).ctx(SCOPE)?.f_view([-1]).ctx(SCOPE)?).ctx(SCOPE)?;
    if let Some(rank) = all.iter().position(|&h| h != hash as i64) {
        return Err(Error::config(
            SCOPE,
            format!(
                "rank {} holds different variables (count, shapes, kinds or trainable flags) than rank {rank}",
                group.rank()
            ),
        ));
    }
    Ok(())
}

/// Copies rank 0's variables into every rank's, one asynchronous broadcast per variable.
fn broadcast_variables(group: &ProcessGroup, variables: &[Variable]) -> Result<()> {
    let mut works = Vec::with_capacity(variables.len());
    for v in variables {
        let mut t = v.tensor().shallow_clone();
        works.push(group.broadcast_async(&mut t, 0)?);
    }
    works.into_iter().try_for_each(|w| w.wait())
}

/// Trainable variables in reverse creation order, packed into buckets of at most `cap` bytes
/// (a larger variable alone) of one kind and device each.
fn make_buckets(trainable: &[Variable], cap: usize) -> Result<Vec<Bucket>> {
    let mut groups: Vec<(Vec<usize>, usize, Kind, Device)> = Vec::new();
    for i in (0..trainable.len()).rev() {
        let t = trainable[i].tensor();
        let (kind, device) = (t.kind(), t.device());
        if !is_float(kind) {
            return Err(Error::config(
                SCOPE,
                format!(
                    "trainable {} has kind {kind:?}; gradients need a floating kind",
                    trainable[i].name()
                ),
            ));
        }
        let bytes = t
            .numel()
            .checked_mul(kind.elt_size_in_bytes())
            .ok_or_else(|| Error::config(SCOPE, "variable size overflows"))?;
        match groups.last_mut() {
            Some((members, size, k, d)) if *k == kind && *d == device && *size + bytes <= cap => {
                members.push(i);
                *size += bytes;
            }
            _ => groups.push((vec![i], bytes, kind, device)),
        }
    }
    groups
        .into_iter()
        .map(|(members, _, kind, device)| {
            let numel: i64 = members.iter().map(|&i| trainable[i].tensor().numel() as i64).sum();
            let flat = Tensor::f_zeros([numel], (kind, device)).ctx(SCOPE)?;
            Ok(Bucket { members, flat })
        })
        .collect()
}
