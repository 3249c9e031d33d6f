// Tile choices of the FlashAttention-2 backward (one place), and its launch: pre-process, the main
// kernel over key blocks, post-process, all on the caller's stream.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>

#include "kernels/sm80/bwd.h"
#include "kernels/sm80/bwd_kernel.h"
#include "kernels/sm80/bwd_prepost.h"
#include "kernels/sm80/element.h"

namespace flashattn::sm80 {

// kBlockN and the warp layouts of the three GEMM shapes (bwd_traits.h); kBlockM is 64, 8 warps.
// dK and dV (kBlockN x d fp32 each) live in registers for the whole CTA, which caps kBlockN x d:
// 128 keys up to d = 128, 64 keys above (as FlashAttention-2 chooses on sm80).
// At d192/d256 the dK/dV and dQ GEMMs put 2 warps along their M (64 rows) and 4 along d: each
// operand byte is read by fewer warps (bench/NOTES.md, session 6: +6% over 4 x 2).
template <typename Element, int kHeadDim>
struct BwdTile;
template <typename E> struct BwdTile<E, 32> { using type = BwdTraits<E, 32, 128, 2, 4, 4>; };
template <typename E> struct BwdTile<E, 64> { using type = BwdTraits<E, 64, 128, 2, 4, 2>; };
template <typename E> struct BwdTile<E, 96> { using type = BwdTraits<E, 96, 128, 2, 4, 4>; };
template <typename E> struct BwdTile<E, 128> { using type = BwdTraits<E, 128, 128, 2, 4, 2>; };
template <typename E> struct BwdTile<E, 192> { using type = BwdTraits<E, 192, 64, 4, 2, 2>; };
template <typename E> struct BwdTile<E, 256> { using type = BwdTraits<E, 256, 64, 4, 2, 2>; };

inline Status launched(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return Status{FLASHATTN_CUDA_ERROR, std::string("flashattn: sm80 ") + what + " launch failed: " + cudaGetErrorString(err)};
  return Status::Ok();
}

template <int kDtype, int kHeadDim>
Status run_bwd(const BwdCall& call, cudaStream_t stream) {
  using Element = typename ElementOf<kDtype>::type;
  using Traits = typename BwdTile<Element, kHeadDim>::type;
  const Problem& p = call.problem;
  if (p.batch > 65535 || p.nheads > 65535) return not_supported("more than 65535 sequences or heads");
  const BwdWorkspace ws = bwd_workspace(p, kHeadDim, call.deterministic);
  if (call.workspace_size < ws.bytes)
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(ws.bytes));
  if (p.batch == 0) return Status::Ok();

  constexpr int smem = Traits::kSmemBytes;
  const bool transform = p.softcap > 0.f || p.alibi_slopes != nullptr;
  auto kernel = p.dropout_p > 0.f ? (transform ? bwd_kernel<Traits, true, true> : bwd_kernel<Traits, true, false>)
                                  : (transform ? bwd_kernel<Traits, false, true> : bwd_kernel<Traits, false, false>);
  int device = 0, max_smem = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (smem > max_smem)
    return not_supported("head_dim " + std::to_string(p.head_dim) + " backward needs " + std::to_string(smem) +
                         " bytes of shared memory; this device allows " + std::to_string(max_smem));
  if (smem > 48 * 1024) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);

  if (const cudaError_t err = bwd_clear_workspace(call, ws, stream); err != cudaSuccess)
    return Status{FLASHATTN_CUDA_ERROR, std::string("flashattn: clearing the workspace failed: ") + cudaGetErrorString(err)};
  if (p.seqlen_q > 0) {
    bwd_preprocess<Element, kHeadDim>(call, ws, stream);
    if (Status s = launched("backward pre-process"); !s.ok()) return s;
  }
  if (p.seqlen_k > 0) {
    const dim3 grid((p.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN, p.batch, p.nheads_k);
    kernel<<<grid, Traits::kThreads, smem, stream>>>(call, ws);
    if (Status s = launched("backward"); !s.ok()) return s;
  }
  if (p.seqlen_q > 0) {
    bwd_postprocess_kernel<Traits><<<dim3(ws.m_blocks, p.nheads, p.batch), Traits::kThreads, 0, stream>>>(call, ws);
    if (Status s = launched("backward post-process"); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace flashattn::sm80
