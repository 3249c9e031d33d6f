#include "api/dispatch.h"

#include <string>

#include "kernels/sm80/bwd.h"
#include "kernels/sm80/fwd.h"
#include "kernels/sm90/fwd.h"
#include "reference/reference_gpu.h"

namespace flashattn {
namespace {

// The compiled kernel instantiations (FLASHATTN_DTYPES x FLASHATTN_HEADDIMS), from CMake.
template <typename Call>
struct KernelEntry {
  int dtype, head_dim;
  Status (*run)(const Call&, cudaStream_t);
};
#define FLASHATTN_SM80_KERNEL(kind, dtype, head_dim) FLASHATTN_SM80_##kind(dtype, head_dim)
#define FLASHATTN_SM90_KERNEL(kind, dtype, head_dim)
#define FLASHATTN_SM80_fwd(dtype, head_dim) KernelEntry<FwdCall>{dtype, head_dim, &sm80::run_fwd<dtype, head_dim>},
#define FLASHATTN_SM80_bwd(dtype, head_dim)
const KernelEntry<FwdCall> kSm80Fwd[] = {
#include "flashattn_kernels.inc"
    KernelEntry<FwdCall>{-1, 0, nullptr}};
#undef FLASHATTN_SM80_fwd
#undef FLASHATTN_SM80_bwd
#define FLASHATTN_SM80_fwd(dtype, head_dim)
#define FLASHATTN_SM80_bwd(dtype, head_dim) KernelEntry<BwdCall>{dtype, head_dim, &sm80::run_bwd<dtype, head_dim>},
const KernelEntry<BwdCall> kSm80Bwd[] = {
#include "flashattn_kernels.inc"
    KernelEntry<BwdCall>{-1, 0, nullptr}};
#undef FLASHATTN_SM80_fwd
#undef FLASHATTN_SM80_bwd
#undef FLASHATTN_SM80_KERNEL
#undef FLASHATTN_SM90_KERNEL
// The Hopper instantiations (when FLASHATTN_ARCHS has 90a).
#define FLASHATTN_SM80_KERNEL(kind, dtype, head_dim)
#define FLASHATTN_SM90_KERNEL(kind, dtype, head_dim) FLASHATTN_SM90_##kind(dtype, head_dim)
#define FLASHATTN_SM90_fwd(dtype, head_dim) KernelEntry<FwdCall>{dtype, head_dim, &sm90::run_fwd<dtype, head_dim>},
#define FLASHATTN_SM90_bwd(dtype, head_dim)
const KernelEntry<FwdCall> kSm90Fwd[] = {
#include "flashattn_kernels.inc"
    KernelEntry<FwdCall>{-1, 0, nullptr}};
#undef FLASHATTN_SM90_fwd
#undef FLASHATTN_SM90_bwd
#define FLASHATTN_SM90_fwd(dtype, head_dim)
#define FLASHATTN_SM90_bwd(dtype, head_dim) KernelEntry<BwdCall>{dtype, head_dim, &sm90::run_bwd<dtype, head_dim>},
const KernelEntry<BwdCall> kSm90Bwd[] = {
#include "flashattn_kernels.inc"
    KernelEntry<BwdCall>{-1, 0, nullptr}};
#undef FLASHATTN_SM90_fwd
#undef FLASHATTN_SM90_bwd
#undef FLASHATTN_SM80_KERNEL
#undef FLASHATTN_SM90_KERNEL

int device_major() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major;
}

// The smallest compiled head-dim bucket of `table` that holds the call (nullptr: none).
template <typename Call, size_t N>
const KernelEntry<Call>* smallest_bucket(const KernelEntry<Call> (&table)[N], const Call& call) {
  const Problem& p = call.problem;
  const KernelEntry<Call>* best = nullptr;
  for (const KernelEntry<Call>& k : table)
    if (k.run && k.dtype == p.dtype && k.head_dim >= p.head_dim && (!best || k.head_dim < best->head_dim)) best = &k;
  return best;
}

// The FlashAttention-2 kernel for the call, on a device that runs it.
template <typename Call, size_t N>
const KernelEntry<Call>* find_sm80(const KernelEntry<Call> (&table)[N], const Call& call) {
  if (call.backend != Backend::kAuto && call.backend != Backend::kSm80) return nullptr;
  const KernelEntry<Call>* best = smallest_bucket(table, call);
  return best && device_major() >= 8 ? best : nullptr;
}

// The Hopper kernel for the call, on an sm90 device.
template <typename Call, size_t N>
const KernelEntry<Call>* find_sm90(const KernelEntry<Call> (&table)[N], const Call& call) {
  const KernelEntry<Call>* best = smallest_bucket(table, call);
  return best && device_major() == 9 ? best : nullptr;
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

// The backward kernel of a call: BACKEND_SM90 takes the Hopper one (it reports what it does not
// cover); AUTO takes it on sm90 where it covers the call in the head-dim bucket FA2 would use (64,
// 128 and 256: 1.08-1.65x PyTorch's FA2 backward on H100, bench/NOTES.md session 7), else FA2.
const KernelEntry<BwdCall>* choose_bwd(const BwdCall& call) {
  if (call.backend == Backend::kSm90 || call.backend == Backend::kAuto)
    if (const KernelEntry<BwdCall>* k = find_sm90(kSm90Bwd, call)) {
      const KernelEntry<BwdCall>* fa2 = find_sm80(kSm80Bwd, call);
      if (call.backend == Backend::kSm90 ||
          (sm90::bwd_unsupported(call).empty() && fa2 && fa2->head_dim == k->head_dim))
        return k;
    }
  return find_sm80(kSm80Bwd, call);
}

}  // namespace

size_t fwd_workspace_bytes(const FwdCall&) { return 0; }

size_t bwd_workspace_bytes(const BwdCall& call) {
  // Both kernels carve the same workspace (sm80/bwd.h) for their head-dim bucket.
  const KernelEntry<BwdCall>* k = choose_bwd(call);
  return k ? sm80::bwd_workspace(call.problem, k->head_dim, call.deterministic).bytes : 0;
}

Status dispatch_fwd(const FwdCall& call, cudaStream_t stream) {
  if (call.workspace_size < fwd_workspace_bytes(call))
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(fwd_workspace_bytes(call)));
  if (call.backend == Backend::kReference) return reference_gpu_fwd(call, stream);
  // Hopper: the sm90a forward where a kernel for the call is built, FlashAttention-2 for what it
  // does not cover (AUTO); BACKEND_SM90 reports what it does not cover instead.
  if (call.backend == Backend::kSm90 || call.backend == Backend::kAuto)
    if (const KernelEntry<FwdCall>* k = find_sm90(kSm90Fwd, call))
      if (call.backend == Backend::kSm90 || sm90::fwd_unsupported(call).empty()) return k->run(call, stream);
  if (const KernelEntry<FwdCall>* k = find_sm80(kSm80Fwd, call)) return k->run(call, stream);
  return no_fast_kernel(call.problem, "forward", call.backend);
}

Status dispatch_bwd(const BwdCall& call, cudaStream_t stream) {
  if (call.workspace_size < bwd_workspace_bytes(call))
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(bwd_workspace_bytes(call)) + " (flashattn_bwd_workspace_size)");
  if (call.backend == Backend::kReference) return reference_gpu_bwd(call, stream);
  if (const KernelEntry<BwdCall>* k = choose_bwd(call)) return k->run(call, stream);
  return no_fast_kernel(call.problem, "backward", call.backend);
}

}  // namespace flashattn
