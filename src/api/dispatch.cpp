#include "api/dispatch.h"

#include <string>

#include "reference/reference_gpu.h"

namespace flashattn {
namespace {

std::string describe(const Problem& p, const char* pass) {
  return std::string(pass) + " for " + dtype_name(p.dtype) + ", head_dim " + std::to_string(p.head_dim) +
         (p.varlen ? ", varlen" : "") + (p.is_causal ? ", causal" : "") +
         (p.window_left >= 0 || (p.window_right >= 0 && !p.is_causal) ? ", local window" : "") +
         (p.alibi_slopes ? ", alibi" : "") + (p.softcap > 0 ? ", softcap" : "") + (p.dropout_p > 0 ? ", dropout" : "");
}

// The fast kernels: none is built yet, so AUTO, SM80 and SM90 report what is missing.
Status no_fast_kernel(const Problem& p, const char* pass, Backend backend) {
  if (p.dtype == FLASHATTN_FLOAT32)
    return not_supported(std::string(pass) + " in float32 outside BACKEND_REFERENCE (the kernels take "
                                             "float16 and bfloat16)");
  const char* which = backend == Backend::kSm90 ? "BACKEND_SM90" : backend == Backend::kSm80 ? "BACKEND_SM80" : "AUTO";
  return not_supported(describe(p, pass) + " on " + which +
                       " (no FlashAttention kernel is built for it; BACKEND_REFERENCE computes it in fp32, slowly)");
}

}  // namespace

size_t fwd_workspace_bytes(const FwdCall&) { return 0; }
size_t bwd_workspace_bytes(const BwdCall&) { return 0; }

Status dispatch_fwd(const FwdCall& call, cudaStream_t stream) {
  if (call.workspace_size < fwd_workspace_bytes(call))
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(fwd_workspace_bytes(call)));
  switch (call.backend) {
    case Backend::kReference: return reference_gpu_fwd(call, stream);
    default: return no_fast_kernel(call.problem, "forward", call.backend);
  }
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
