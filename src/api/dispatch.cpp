#include "api/dispatch.h"

#include <string>

#include "kernels/sm80/fwd.h"
#include "reference/reference_gpu.h"

namespace flashattn {
namespace {

// The compiled FlashAttention-2 instantiations (FLASHATTN_DTYPES x FLASHATTN_HEADDIMS), from CMake.
struct Sm80FwdKernel {
  int dtype, head_dim;
  Status (*run)(const FwdCall&, cudaStream_t);
};
#define FLASHATTN_SM80_KERNEL(kind, dtype, head_dim) FLASHATTN_SM80_##kind(dtype, head_dim)
#define FLASHATTN_SM80_fwd(dtype, head_dim) Sm80FwdKernel{dtype, head_dim, &sm80::run_fwd<dtype, head_dim>},
const Sm80FwdKernel kSm80Fwd[] = {
#include "flashattn_kernels.inc"
    Sm80FwdKernel{-1, 0, nullptr}};
#undef FLASHATTN_SM80_fwd
#undef FLASHATTN_SM80_KERNEL

int device_major() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major;
}

// The smallest compiled head-dim bucket that holds the call.
const Sm80FwdKernel* find_sm80_fwd(const Problem& p) {
  const Sm80FwdKernel* best = nullptr;
  for (const Sm80FwdKernel& k : kSm80Fwd)
    if (k.run && k.dtype == p.dtype && k.head_dim >= p.head_dim && (!best || k.head_dim < best->head_dim)) best = &k;
  return best;
}

std::string describe(const Problem& p, const char* pass) {
  return std::string(pass) + " for " + dtype_name(p.dtype) + ", head_dim " + std::to_string(p.head_dim) +
         (p.varlen ? ", varlen" : "") + (p.is_causal ? ", causal" : "") +
         (p.window_left >= 0 || (p.window_right >= 0 && !p.is_causal) ? ", local window" : "") +
         (p.alibi_slopes ? ", alibi" : "") + (p.softcap > 0 ? ", softcap" : "") + (p.dropout_p > 0 ? ", dropout" : "");
}

// No compiled kernel covers the call (or it is float32 outside the reference): say what is missing.
Status no_fast_kernel(const Problem& p, const char* pass, Backend backend) {
  if (p.dtype == FLASHATTN_FLOAT32)
    return not_supported(std::string(pass) + " in float32 outside BACKEND_REFERENCE (the kernels take "
                                             "float16 and bfloat16)");
  const char* which = backend == Backend::kSm90 ? "BACKEND_SM90" : backend == Backend::kSm80 ? "BACKEND_SM80" : "AUTO";
  return not_supported(describe(p, pass) + " on " + which +
                       " (no kernel for it is built for this device; FLASHATTN_HEADDIMS, FLASHATTN_DTYPES and "
                       "FLASHATTN_ARCHS choose the kernels; BACKEND_REFERENCE computes any call in fp32, slowly)");
}

}  // namespace

size_t fwd_workspace_bytes(const FwdCall&) { return 0; }
size_t bwd_workspace_bytes(const BwdCall&) { return 0; }

Status dispatch_fwd(const FwdCall& call, cudaStream_t stream) {
  if (call.workspace_size < fwd_workspace_bytes(call))
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(fwd_workspace_bytes(call)));
  if (call.backend == Backend::kReference) return reference_gpu_fwd(call, stream);
  if (call.backend == Backend::kAuto || call.backend == Backend::kSm80) {
    const Sm80FwdKernel* k = find_sm80_fwd(call.problem);
    if (k && device_major() >= 8) return k->run(call, stream);
  }
  return no_fast_kernel(call.problem, "forward", call.backend);
}

Status dispatch_bwd(const BwdCall& call, cudaStream_t stream) {
  if (call.workspace_size < bwd_workspace_bytes(call))
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(bwd_workspace_bytes(call)));
  switch (call.backend) {
    case Backend::kReference: return reference_gpu_bwd(call, stream);
    default: return no_fast_kernel(call.problem, "backward", call.backend);
  }
}

}  // namespace flashattn
