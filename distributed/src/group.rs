//! [`ProcessGroup`]: a c10d backend (Gloo, or NCCL where libtorch has CUDA) joined by
//! `world_size` processes, each with its own rank.

use crate::env::LaunchEnv;
use crate::ffi::{self, check, RawGroup};
use crate::store::{timeout_ms, Store};
use couplet_modules::{Error, Result};
use std::ffi::c_int;
use std::time::Duration;
use tch::Device;

/// The c10d backend a group runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors over TCP.
    Gloo,
    /// `ProcessGroupNCCL`: CUDA tensors over NVLink/InfiniBand/TCP. Only where couplet was
    /// built against a CUDA libtorch with NCCL headers ([`ProcessGroup::nccl_available`]);
    /// untested on couplet's CPU-only CI.
    Nccl,
}

/// The timeout torch.distributed uses by default for its process groups (30 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A process group: this process's membership (rank `rank` of `world_size`) in a c10d backend.
///
/// Every process of the group must call the same collectives in the same order with tensors of
/// the same shape and kind. A collective whose peers do not all arrive within the group's
/// timeout, or whose peer dies, fails with [`Error::Distributed`] on the survivors.
pub struct ProcessGroup {
    raw: *mut RawGroup,
    rank: usize,
    world_size: usize,
    backend: Backend,
}

// SAFETY: c10d backends enqueue work under their own mutexes; the handle owns its pointer.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

/// `(rank, world_size)` as C ints, or the error naming what is wrong.
fn check_rank(op: &str, rank: usize, world_size: usize) -> Result<(c_int, c_int)> {
    if world_size == 0 {
        return Err(Error::distributed(op, "world size must be at least 1, got 0"));
    }
    if rank >= world_size {
        return Err(Error::distributed(
            op,
            format!("rank must be in 0..{world_size} (the world size), got {rank}"),
        ));
    }
    let size = c_int::try_from(world_size)
        .map_err(|_| Error::distributed(op, format!("world size {world_size} is too large")))?;
    // rank < world_size <= c_int::MAX, so the conversion cannot fail.
    Ok((rank as c_int, size))
}

impl ProcessGroup {
    /// Joins a Gloo group through `store`: this process is `rank` of `world_size`, and every
    /// collective (and the rendezvous itself) fails after `timeout` when a peer is missing.
    ///
    /// Errors ([`Error::Distributed`] `gloo`): a rank outside `0..world_size`, a zero world size
    /// or timeout, peers that do not all arrive within the timeout.
    pub fn gloo(store: &Store, rank: usize, world_size: usize, timeout: Duration) -> Result<Self> {
        let (r, w) = check_rank("gloo", rank, world_size)?;
        let ms = timeout_ms("gloo", timeout)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: store.raw() is live; the group keeps its own reference to the store.
        check("gloo", unsafe { ffi::cpl_group_gloo(store.raw(), r, w, ms, &mut raw) })?;
        Ok(ProcessGroup { raw, rank, world_size, backend: Backend::Gloo })
    }

    /// Whether this build of couplet has NCCL (a CUDA libtorch and NCCL headers at build time).
    pub fn nccl_available() -> bool {
        // SAFETY: no arguments; never fails.
        unsafe { ffi::cpl_has_nccl() }
    }

    /// Joins an NCCL group (CUDA tensors; call `tch::Cuda` device selection first, one GPU per
    /// rank, e.g. `Device::Cuda(local_rank)`). Same arguments and errors as
    /// [`ProcessGroup::gloo`], plus an error when couplet was built without NCCL.
    ///
    /// Compiled where CUDA and NCCL headers exist; exercised only on machines with GPUs.
    pub fn nccl(store: &Store, rank: usize, world_size: usize, timeout: Duration) -> Result<Self> {
        let (r, w) = check_rank("nccl", rank, world_size)?;
        let ms = timeout_ms("nccl", timeout)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: as in gloo.
        check("nccl", unsafe { ffi::cpl_group_nccl(store.raw(), r, w, ms, &mut raw) })?;
        Ok(ProcessGroup { raw, rank, world_size, backend: Backend::Nccl })
    }

    /// Joins the group torchrun launched this process into, on Gloo with
    /// [`DEFAULT_TIMEOUT`]; see [`ProcessGroup::from_env_with`].
    pub fn from_env() -> Result<Self> {
        ProcessGroup::from_env_with(Backend::Gloo, DEFAULT_TIMEOUT)
    }

    /// Joins the group described by torchrun's variables (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
    /// `MASTER_PORT`; see [`LaunchEnv`]) the way `torch.distributed.init_process_group` does:
    /// the store is torchrun's agent store when `TORCHELASTIC_USE_AGENT_STORE=True`, else rank 0
    /// hosts it; keys live under the same prefixes as PyTorch's default group, so couplet and
    /// Python processes can share one group.
    ///
    /// Errors: a missing or malformed variable ([`Error::Config`] naming it), then those of
    /// [`Store`] and [`ProcessGroup::gloo`]/[`ProcessGroup::nccl`].
    pub fn from_env_with(backend: Backend, timeout: Duration) -> Result<Self> {
        let env = LaunchEnv::from_env()?;
        let store = env.store(timeout)?;
        let device = match backend {
            Backend::Gloo => "cpu",
            Backend::Nccl => "cuda",
        };
        let store = torch_default_group_store(&store, device)?;
        match backend {
            Backend::Gloo => ProcessGroup::gloo(&store, env.rank, env.world_size, timeout),
            Backend::Nccl => ProcessGroup::nccl(&store, env.rank, env.world_size, timeout),
        }
    }

    /// This process's rank, in `0..world_size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes in the group.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The backend the group runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether tensors on `device` can take part in this group's collectives.
    pub(crate) fn accepts(&self, device: Device) -> bool {
        match self.backend {
            Backend::Gloo => device == Device::Cpu,
            Backend::Nccl => matches!(device, Device::Cuda(_)),
        }
    }

    pub(crate) fn raw(&self) -> *mut RawGroup {
        self.raw
    }
}

/// `store` seen through the prefixes torch.distributed's default group uses for its backend on
/// `device` (`PrefixStore("default_pg")`, then the group name `"0/"`, then `"{device}/"`).
pub fn torch_default_group_store(store: &Store, device: &str) -> Result<Store> {
    store.prefixed("default_pg")?.prefixed("0/")?.prefixed(&format!("{device}/"))
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: raw came from the shim and is freed once.
        unsafe { ffi::cpl_group_free(self.raw) }
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("backend", &self.backend)
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .finish()
    }
}
