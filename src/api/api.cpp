// The public entry points (C++ and C): validate, then dispatch.
#include <cmath>
#include <string>

#include "api/dispatch.h"
#include "api/validate.h"

namespace flashattn {

int64_t element_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat64: return 8;
  }
  return 0;
}

const char* dtype_name(int32_t dtype) {
  switch (dtype) {
    case FLASHATTN_FLOAT16: return "float16";
    case FLASHATTN_BFLOAT16: return "bfloat16";
    case FLASHATTN_FLOAT32: return "float32";
    case FLASHATTN_FLOAT64: return "float64";
    case FLASHATTN_INT32: return "int32";
    default: return "unknown dtype";
  }
}

Tensor make_tensor(const void* data, DType dtype, std::initializer_list<int64_t> shape,
                   std::initializer_list<int64_t> stride) {
  Tensor t{};
  t.data = const_cast<void*>(data);
  t.dtype = int32_t(dtype);
  t.rank = int32_t(shape.size() < FLASHATTN_MAX_RANK ? shape.size() : FLASHATTN_MAX_RANK);
  int i = 0;
  for (int64_t s : shape)
    if (i < t.rank) t.shape[i++] = s;
  if (stride.size() == shape.size()) {
    i = 0;
    for (int64_t s : stride)
      if (i < t.rank) t.stride[i++] = s;
  } else {
    int64_t running = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      t.stride[d] = running;
      running *= t.shape[d];
    }
  }
  return t;
}

Status fwd_impl(const flashattn_fwd_params& params, bool varlen, cudaStream_t stream) {
  FwdCall call;
  Status s = validate_fwd(params, varlen, Target::kDevice, &call);
  return s.ok() ? dispatch_fwd(call, stream) : s;
}
Status bwd_impl(const flashattn_bwd_params& params, bool varlen, cudaStream_t stream) {
  BwdCall call;
  Status s = validate_bwd(params, varlen, Target::kDevice, &call);
  return s.ok() ? dispatch_bwd(call, stream) : s;
}

Status fwd(const FwdParams& params, cudaStream_t stream) { return fwd_impl(params, false, stream); }
Status varlen_fwd(const FwdParams& params, cudaStream_t stream) { return fwd_impl(params, true, stream); }
Status bwd(const BwdParams& params, cudaStream_t stream) { return bwd_impl(params, false, stream); }
Status varlen_bwd(const BwdParams& params, cudaStream_t stream) { return bwd_impl(params, true, stream); }

Status fwd_workspace_size(const FwdParams& params, size_t* bytes) {
  FwdCall call;
  Status s = validate_fwd(params, params.attn.cu_seqlens_q.rank != 0, Target::kShapes, &call);
  if (s.ok()) *bytes = fwd_workspace_bytes(call);
  return s;
}
Status bwd_workspace_size(const BwdParams& params, size_t* bytes) {
  BwdCall call;
  Status s = validate_bwd(params, params.attn.cu_seqlens_q.rank != 0, Target::kShapes, &call);
  if (s.ok()) *bytes = bwd_workspace_bytes(call);
  return s;
}

}  // namespace flashattn

// ---- C ABI ----
namespace {
thread_local std::string g_last_error;

flashattn_status remember(const flashattn::Status& s) {
  g_last_error = s.message;
  return s.code;
}
flashattn_status null_params(const char* name) {
  g_last_error = std::string("flashattn: invalid argument ") + name + ": is null";
  return FLASHATTN_INVALID_ARGUMENT;
}
}  // namespace

extern "C" {

void flashattn_fwd_params_init(flashattn_fwd_params* p) {
  *p = flashattn_fwd_params{};
  p->attn.window_size_left = -1;
  p->attn.window_size_right = -1;
}
void flashattn_bwd_params_init(flashattn_bwd_params* p) {
  *p = flashattn_bwd_params{};
  p->attn.window_size_left = -1;
  p->attn.window_size_right = -1;
}

flashattn_status flashattn_fwd(const flashattn_fwd_params* p, void* stream) {
  if (!p) return null_params("params");
  return remember(flashattn::fwd_impl(*p, false, static_cast<cudaStream_t>(stream)));
}
flashattn_status flashattn_varlen_fwd(const flashattn_fwd_params* p, void* stream) {
  if (!p) return null_params("params");
  return remember(flashattn::fwd_impl(*p, true, static_cast<cudaStream_t>(stream)));
}
flashattn_status flashattn_bwd(const flashattn_bwd_params* p, void* stream) {
  if (!p) return null_params("params");
  return remember(flashattn::bwd_impl(*p, false, static_cast<cudaStream_t>(stream)));
}
flashattn_status flashattn_varlen_bwd(const flashattn_bwd_params* p, void* stream) {
  if (!p) return null_params("params");
  return remember(flashattn::bwd_impl(*p, true, static_cast<cudaStream_t>(stream)));
}
flashattn_status flashattn_fwd_workspace_size(const flashattn_fwd_params* p, size_t* bytes) {
  if (!p) return null_params("params");
  if (!bytes) return null_params("bytes");
  flashattn::FwdParams params;
  static_cast<flashattn_fwd_params&>(params) = *p;
  return remember(flashattn::fwd_workspace_size(params, bytes));
}
flashattn_status flashattn_bwd_workspace_size(const flashattn_bwd_params* p, size_t* bytes) {
  if (!p) return null_params("params");
  if (!bytes) return null_params("bytes");
  flashattn::BwdParams params;
  static_cast<flashattn_bwd_params&>(params) = *p;
  return remember(flashattn::bwd_workspace_size(params, bytes));
}
const char* flashattn_last_error(void) { return g_last_error.c_str(); }
const char* flashattn_status_name(flashattn_status s) {
  switch (s) {
    case FLASHATTN_OK: return "ok";
    case FLASHATTN_INVALID_ARGUMENT: return "invalid argument";
    case FLASHATTN_NOT_SUPPORTED: return "not supported";
    case FLASHATTN_CUDA_ERROR: return "cuda error";
  }
  return "unknown status";
}

}  // extern "C"
