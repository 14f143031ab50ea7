// couplet's shim over libtorch's c10d: TCPStore, ProcessGroupGloo and the collectives of
// c10d::Backend. See shim.h for the calling convention.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <vector>

#include "shim_internal.h"

namespace {

std::chrono::milliseconds millis(int64_t ms) {
  return std::chrono::milliseconds(ms);
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case 1:
      return c10d::ReduceOp(c10d::ReduceOp::AVG);
    case 2:
      return c10d::ReduceOp(c10d::ReduceOp::PRODUCT);
    case 3:
      return c10d::ReduceOp(c10d::ReduceOp::MIN);
    case 4:
      return c10d::ReduceOp(c10d::ReduceOp::MAX);
    default:
      throw std::invalid_argument("unknown reduce op " + std::to_string(op));
  }
}

void finish(c10::intrusive_ptr<c10d::Work> work, cpl_work** out) {
  *out = new cpl_work{std::move(work)};
}

} // namespace

extern "C" {

void cpl_free(void* pointer) {
  std::free(pointer);
}

char* cpl_store_tcp(const char* host, uint16_t port, bool is_server, int64_t world_size,
                    int64_t timeout_ms, uint16_t* bound_port,
                    cpl_store** out) {
  return cpl_guard([&] {
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = is_server;
    // Every store (server or client) with numWorkers and waitWorkers counts itself in at the
    // server, as Python's TCPStore does; only the server then waits for world_size of them.
    options.numWorkers = static_cast<std::size_t>(world_size > 0 ? world_size : 1);
    options.waitWorkers = true;
    options.timeout = millis(timeout_ms);
    options.multiTenant = true;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    *bound_port = store->getPort();
    *out = new cpl_store{std::move(store)};
  });
}

char* cpl_store_prefix(cpl_store* store, const char* prefix, cpl_store** out) {
  return cpl_guard([&] {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store->store);
    *out = new cpl_store{std::move(prefixed)};
  });
}

char* cpl_store_set(cpl_store* store, const char* key, const uint8_t* data, size_t len) {
  return cpl_guard([&] { store->store->set(key, std::vector<uint8_t>(data, data + len)); });
}

char* cpl_store_get(cpl_store* store, const char* key, uint8_t** data, size_t* len) {
  return cpl_guard([&] {
    std::vector<uint8_t> value = store->store->get(key);
    // malloc(0) may return NULL; one spare byte keeps the pointer valid for every length.
    auto* copy = static_cast<uint8_t*>(std::malloc(value.size() + 1));
    if (copy == nullptr) {
      throw std::bad_alloc();
    }
    std::memcpy(copy, value.data(), value.size());
    *data = copy;
    *len = value.size();
  });
}

char* cpl_store_add(cpl_store* store, const char* key, int64_t delta, int64_t* out) {
  return cpl_guard([&] { *out = store->store->add(key, delta); });
}

char* cpl_store_set_timeout(cpl_store* store, int64_t timeout_ms) {
  return cpl_guard([&] { store->store->setTimeout(millis(timeout_ms)); });
}

void cpl_store_free(cpl_store* store) {
  delete store;
}

char* cpl_group_gloo(cpl_store* store, int rank, int size, int64_t timeout_ms, cpl_group** out) {
  return cpl_guard([&] {
    // create_default picks the device the way torch.distributed does (this host's address,
    // or the loopback when the host name does not resolve).
    auto options = c10d::ProcessGroupGloo::Options::create_default(millis(timeout_ms));
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, size, options);
    *out = new cpl_group{std::move(group)};
  });
}

void cpl_group_free(cpl_group* group) {
  delete group;
}

char* cpl_all_reduce(cpl_group* group, cpl_tensor* tensor, int op, cpl_work** out) {
  return cpl_guard([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    finish(group->backend->allreduce(tensors, options), out);
  });
}

char* cpl_broadcast(cpl_group* group, cpl_tensor* tensor, int root, cpl_work** out) {
  return cpl_guard([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    finish(group->backend->broadcast(tensors, options), out);
  });
}

char* cpl_all_gather(cpl_group* group, cpl_tensor** outputs, size_t n, cpl_tensor* input,
                     cpl_work** out) {
  return cpl_guard([&] {
    std::vector<std::vector<at::Tensor>> output_lists(1);
    for (size_t i = 0; i < n; ++i) {
      output_lists[0].push_back(*outputs[i]);
    }
    std::vector<at::Tensor> inputs{*input};
    finish(group->backend->allgather(output_lists, inputs), out);
  });
}

char* cpl_reduce_scatter(cpl_group* group, cpl_tensor* output, cpl_tensor** inputs, size_t n,
                         int op, cpl_work** out) {
  return cpl_guard([&] {
    std::vector<at::Tensor> outputs{*output};
    std::vector<std::vector<at::Tensor>> input_lists(1);
    for (size_t i = 0; i < n; ++i) {
      input_lists[0].push_back(*inputs[i]);
    }
    c10d::ReduceScatterOptions options;
    options.reduceOp = reduce_op(op);
    finish(group->backend->reduce_scatter(outputs, input_lists, options), out);
  });
}

char* cpl_barrier(cpl_group* group, cpl_work** out) {
  return cpl_guard([&] { finish(group->backend->barrier(), out); });
}

char* cpl_set_grad(cpl_tensor* variable, cpl_tensor* grad) {
  return cpl_guard([&] { variable->mutable_grad() = *grad; });
}

char* cpl_work_wait(cpl_work* work, int64_t timeout_ms) {
  return cpl_guard([&] {
    // 0 is c10d's kNoTimeout: wait until the collective ends (the group's timeout ends it).
    work->work->wait(millis(timeout_ms));
  });
}

char* cpl_work_is_completed(cpl_work* work, bool* out) {
  return cpl_guard([&] { *out = work->work->isCompleted(); });
}

void cpl_work_free(cpl_work* work) {
  delete work;
}

#ifndef COUPLET_WITH_NCCL
bool cpl_has_nccl(void) {
  return false;
}

char* cpl_group_nccl(cpl_store*, int, int, int64_t, cpl_group**) {
  return cpl_message(
      "couplet-distributed was built without NCCL (no CUDA libtorch, or no nccl.h and "
      "cuda_runtime.h found at build time)");
}
#endif

} // extern "C"
