// couplet's C interface to libtorch's c10d (TCPStore, ProcessGroupGloo, ProcessGroupNCCL).
//
// Every function that can fail returns NULL on success, or an error message allocated with
// malloc that the caller frees with cpl_free. No C++ exception crosses this interface.
// Tensors are passed as the `at::Tensor*` that tch's `C_tensor` pointers are.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include <ATen/ATen.h>
typedef at::Tensor cpl_tensor;
extern "C" {
#else
typedef void cpl_tensor;
#endif

typedef struct cpl_store cpl_store;
typedef struct cpl_group cpl_group;
typedef struct cpl_work cpl_work;

void cpl_free(void* pointer);

char* cpl_store_tcp(const char* host, uint16_t port, bool is_server, int64_t world_size,
                    int64_t timeout_ms, uint16_t* bound_port, cpl_store** out);
char* cpl_store_prefix(cpl_store* store, const char* prefix, cpl_store** out);
char* cpl_store_set(cpl_store* store, const char* key, const uint8_t* data, size_t len);
char* cpl_store_get(cpl_store* store, const char* key, uint8_t** data, size_t* len);
char* cpl_store_add(cpl_store* store, const char* key, int64_t delta, int64_t* out);
char* cpl_store_set_timeout(cpl_store* store, int64_t timeout_ms);
void cpl_store_free(cpl_store* store);

char* cpl_group_gloo(cpl_store* store, int rank, int size, int64_t timeout_ms, cpl_group** out);
bool cpl_has_nccl(void);
char* cpl_group_nccl(cpl_store* store, int rank, int size, int64_t timeout_ms, cpl_group** out);
void cpl_group_free(cpl_group* group);

char* cpl_all_reduce(cpl_group* group, cpl_tensor* tensor, int op, cpl_work** out);
char* cpl_broadcast(cpl_group* group, cpl_tensor* tensor, int root, cpl_work** out);
char* cpl_all_gather(cpl_group* group, cpl_tensor** outputs, size_t n, cpl_tensor* input,
                     cpl_work** out);
char* cpl_reduce_scatter(cpl_group* group, cpl_tensor* output, cpl_tensor** inputs, size_t n,
                         int op, cpl_work** out);
char* cpl_barrier(cpl_group* group, cpl_work** out);

// Makes `grad` the gradient of `variable` (`variable.mutable_grad() = grad`).
char* cpl_set_grad(cpl_tensor* variable, cpl_tensor* grad);

char* cpl_work_wait(cpl_work* work, int64_t timeout_ms);
char* cpl_work_is_completed(cpl_work* work, bool* out);
void cpl_work_free(cpl_work* work);

#ifdef __cplusplus
}
#endif
