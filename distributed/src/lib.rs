//! # couplet-distributed
//!
//! Data-parallel training on libtorch's own c10d engine (`TCPStore`, `ProcessGroupGloo`,
//! `ProcessGroupNCCL`), the engine PyTorch's `DistributedDataParallel` runs on; couplet
//! binaries are launched by PyTorch's `torchrun`.
