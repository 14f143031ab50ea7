//! # couplet-distributed
//!
//! Data-parallel training on libtorch's own c10d engine (`TCPStore`, `ProcessGroupGloo`,
//! `ProcessGroupNCCL`), the engine PyTorch's `DistributedDataParallel` runs on; couplet
//! binaries are launched by PyTorch's `torchrun`, and can share a group with Python
//! `torch.distributed` processes.
//!
//! - [`Store`]: the `TCPStore` rendezvous.
//! - [`ProcessGroup`]: a Gloo (CPU) or NCCL (CUDA) group, made by hand or
//!   [`ProcessGroup::from_env`] under torchrun; its collectives (`all_reduce` with every
//!   [`ReduceOp`], `broadcast`, `all_gather`, `reduce_scatter`, `barrier`) block or return a
//!   [`Work`] handle.
//! - [`DataParallel`]: DDP's scheme over a module's variables (broadcast from rank 0,
//!   bucketed gradient averaging, `no_sync`, rank-0 checkpoints).
//!
//! Every failure is a [`couplet_modules::Error`]: bad arguments are refused before c10d sees
//! them, and c10d's exceptions (a peer that died or never arrived, within the group's timeout)
//! come back as [`couplet_modules::Error::Distributed`].
//!
//! NCCL: compiled where libtorch has CUDA and the NCCL and CUDA headers exist; it is exercised
//! only on machines with GPUs, never on couplet's CPU-only CI.

mod collectives;
mod data_parallel;
mod env;
mod ffi;
mod group;
mod store;
mod work;

pub use collectives::ReduceOp;
pub use data_parallel::{DataParallel, DataParallelConfig};
pub use env::LaunchEnv;
pub use group::{torch_default_group_store, Backend, ProcessGroup, DEFAULT_TIMEOUT};
pub use store::Store;
pub use work::Work;
