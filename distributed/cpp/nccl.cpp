// ProcessGroupNCCL for couplet's shim, compiled only when libtorch has CUDA and the NCCL and
// CUDA runtime headers were found (build.rs). Untested on couplet's CPU-only CI.

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "shim_internal.h"

extern "C" {

bool cpl_has_nccl(void) {
  return true;
}

char* cpl_group_nccl(cpl_store* store, int rank, int size, int64_t timeout_ms, cpl_group** out) {
  return cpl_guard([&] {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, size, options);
    *out = new cpl_group{std::move(group)};
  });
}

} // extern "C"
