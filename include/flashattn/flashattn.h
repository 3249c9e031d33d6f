// flashattn C++ API. The structs are the C ABI's (flashattn_c.h) with defaults filled in, so one
// set of fields serves both languages; see that header for shapes and conventions.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "flashattn/flashattn_c.h"

namespace flashattn {

enum class DType : int32_t {
  kFloat16 = FLASHATTN_FLOAT16,
  kBFloat16 = FLASHATTN_BFLOAT16,
  kFloat32 = FLASHATTN_FLOAT32,
  kFloat64 = FLASHATTN_FLOAT64,
  kInt32 = FLASHATTN_INT32,
};

enum class Backend : int32_t {
  kAuto = FLASHATTN_BACKEND_AUTO,
  kReference = FLASHATTN_BACKEND_REFERENCE,
  kSm80 = FLASHATTN_BACKEND_SM80,
  kSm90 = FLASHATTN_BACKEND_SM90,
};

using Tensor = flashattn_tensor;

// A view with the given shape; stride defaults to contiguous (row-major).
Tensor make_tensor(const void* data, DType dtype, std::initializer_list<int64_t> shape,
                   std::initializer_list<int64_t> stride = {});
int64_t element_size(DType dtype);
const char* dtype_name(int32_t dtype);

struct Status {
  flashattn_status code = FLASHATTN_OK;
  std::string message;
  bool ok() const { return code == FLASHATTN_OK; }
  static Status Ok() { return {}; }
};

struct FwdParams : flashattn_fwd_params {
  FwdParams() { flashattn_fwd_params_init(this); }
};
struct BwdParams : flashattn_bwd_params {
  BwdParams() { flashattn_bwd_params_init(this); }
};

// Forward: fills out and softmax_lse (and rng_state when dropout > 0).
Status fwd(const FwdParams& params, cudaStream_t stream);
Status varlen_fwd(const FwdParams& params, cudaStream_t stream);
// Backward: fills dq, dk, dv from dout, the forward's out and softmax_lse.
Status bwd(const BwdParams& params, cudaStream_t stream);
Status varlen_bwd(const BwdParams& params, cudaStream_t stream);

// Workspace bytes the call would need (0 when none). Every argument is validated as the call would,
// except that pointers are not asked where they live (the call does; a query is ~3 us cheaper).
Status fwd_workspace_size(const FwdParams& params, size_t* bytes);
Status bwd_workspace_size(const BwdParams& params, size_t* bytes);

}  // namespace flashattn
