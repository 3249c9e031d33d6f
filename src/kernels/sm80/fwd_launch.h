// Tile choices of the FlashAttention-2 forward (one place), and its launch.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/sm80/element.h"
#include "kernels/sm80/fwd.h"
#include "kernels/sm80/fwd_kernel.h"

namespace flashattn::sm80 {

// kBlockM x kBlockN, warps. Started from the FlashAttention-2 choices (shared/KERNELS.md). Measured on
// H100 (bench/NOTES.md): the first tiles spilled registers (10x slower); d96/d128 at 128 x 32 with 4
// warps (32 query rows a warp, two CTAs an SM) beat 128 x 64 with 8 warps by 24% at d128, because each
// K/V fragment read from shared memory feeds two m16 row tiles instead of one. Re-measure before changing.
template <typename Element, int kHeadDim>
struct FwdTile;
template <typename E> struct FwdTile<E, 32> { using type = FwdTraits<E, 32, 128, 64, 4>; };
template <typename E> struct FwdTile<E, 64> { using type = FwdTraits<E, 64, 128, 64, 4>; };
template <typename E> struct FwdTile<E, 96> { using type = FwdTraits<E, 96, 128, 32, 4>; };
template <typename E> struct FwdTile<E, 128> { using type = FwdTraits<E, 128, 128, 32, 4>; };
template <typename E> struct FwdTile<E, 192> { using type = FwdTraits<E, 192, 128, 64, 8>; };
template <typename E> struct FwdTile<E, 256> { using type = FwdTraits<E, 256, 128, 64, 8>; };

template <int kDtype, int kHeadDim>
Status run_fwd(const FwdCall& call, cudaStream_t stream) {
  using Traits = typename FwdTile<typename ElementOf<kDtype>::type, kHeadDim>::type;
  const Problem& p = call.problem;
  if (p.batch > 65535 || p.nheads > 65535) return not_supported("more than 65535 sequences or heads");
  constexpr int smem = Traits::kSmemBytes;
  const bool transform = p.softcap > 0.f || p.alibi_slopes != nullptr;
  auto kernel = p.dropout_p > 0.f ? (transform ? fwd_kernel<Traits, true, true> : fwd_kernel<Traits, true, false>)
                                  : (transform ? fwd_kernel<Traits, false, true> : fwd_kernel<Traits, false, false>);
  int device = 0, max_smem = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (smem > max_smem)
    return not_supported("head_dim " + std::to_string(p.head_dim) + " forward needs " + std::to_string(smem) +
                         " bytes of shared memory; this device allows " + std::to_string(max_smem));
  if (smem > 48 * 1024) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  const int m_blocks = (p.seqlen_q + Traits::kBlockM - 1) / Traits::kBlockM;
  if (p.batch == 0 || m_blocks == 0) {
    if (!call.rng_state) return Status::Ok();  // nothing to compute; one block still reports the RNG state
  }
  const dim3 grid(std::max(m_blocks, 1), std::max(p.batch, 1), p.nheads);
  kernel<<<grid, Traits::kThreads, smem, stream>>>(call);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return Status{FLASHATTN_CUDA_ERROR, std::string("flashattn: sm80 forward launch failed: ") + cudaGetErrorString(err)};
  return Status::Ok();
}

}  // namespace flashattn::sm80
