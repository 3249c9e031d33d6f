// The launch of the Hopper backward (sm90a): the FA2 pre-process (D = rowsum(dO * O), dq_accum
// cleared), the main kernel over key blocks, and its own post-process (dq_accum blocks in the
// order of the main kernel's dQ registers).
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <type_traits>

#include "kernels/sm80/bwd_prepost.h"
#include "kernels/sm80/element.h"
#include "kernels/sm90/bwd_kernel.h"
#include "kernels/sm90/bwd_split_d_kernel.h"
#include "kernels/sm90/fwd.h"
#include "kernels/sm90/tma_view.h"

namespace flashattn::sm90 {

template <int kDtype, int kHeadDim>
Status run_bwd(const BwdCall& call, cudaStream_t stream) {
  using Element = typename sm80::ElementOf<kDtype>::type;
  // d <= 128: two warpgroups of 64 keys each; d = 256: 64 keys, the warpgroups split d (bwd_traits.h).
  using Traits = std::conditional_t<(kHeadDim > 128), BwdSplitDTraits<Element, kHeadDim>, BwdTraits<Element, kHeadDim>>;
  const Problem& p = call.problem;
  if (std::string why = bwd_unsupported(call); !why.empty()) return not_supported("BACKEND_SM90 backward with " + why);
  const sm80::BwdWorkspace ws = sm80::bwd_workspace(p, kHeadDim, call.deterministic);
  if (call.workspace_size < ws.bytes)
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(ws.bytes));
  if (p.batch == 0) return Status::Ok();
  auto launched = [](const char* what) {
    const cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? Status::Ok()
                              : Status{FLASHATTN_CUDA_ERROR,
                                       std::string("flashattn: sm90 ") + what + " launch failed: " + cudaGetErrorString(err)};
  };
  char* workspace = static_cast<char*>(call.workspace);
  if (cudaMemsetAsync(workspace + ws.dq_accum, 0, ws.dq_accum_bytes, stream) != cudaSuccess ||
      (ws.semaphore_bytes > 0 && cudaMemsetAsync(workspace + ws.semaphore, 0, ws.semaphore_bytes, stream) != cudaSuccess))
    return launched("workspace clear");
  const dim3 pre_grid((p.seqlen_q + sm80::kPrePostRowsPerBlock - 1) / sm80::kPrePostRowsPerBlock, p.nheads, p.batch);
  sm80::bwd_preprocess_kernel<Element, kHeadDim><<<pre_grid, 32 * sm80::kPrePostRowsPerBlock, 0, stream>>>(call, ws);
  if (Status s = launched("backward pre-process"); !s.ok()) return s;

  const int64_t rows_q = p.varlen ? p.total_q : p.seqlen_q, rows_k = p.varlen ? p.total_k : p.seqlen_k;
  auto box_q = Shape<Int<Traits::kBlockM>, Int<kHeadDim>>{};
  auto box_k = Shape<Int<Traits::kKeysPerGroup>, Int<kHeadDim>>{};
  auto smem_q = take<0, 2>(typename Traits::SmemLayoutQ{});
  auto smem_k = take<0, 2>(typename Traits::SmemLayoutK{});
  BwdKernelParams<Traits> params{
      call,
      ws,
      make_tma_copy(SM90_TMA_LOAD{}, tma_view<Element>(p, p.q, rows_q, p.nheads, p.q_stride), smem_q, box_q, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, tma_view<Element>(p, call.dout, rows_q, p.nheads, call.dout_stride), smem_q, box_q,
                    _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, tma_view<Element>(p, p.k, rows_k, p.nheads_k, p.k_stride), smem_k, box_k, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, tma_view<Element>(p, p.v, rows_k, p.nheads_k, p.v_stride), smem_k, box_k, _1{})};
  constexpr int smem = Traits::kSmemBytes;
  const bool transform = p.softcap > 0.f || p.alibi_slopes;
  auto pick = [&](auto dropout, auto transform_) {
    if constexpr (Traits::kSplitD)
      return bwd_split_d_kernel<Traits, decltype(dropout)::value, decltype(transform_)::value>;
    else
      return bwd_kernel<Traits, decltype(dropout)::value, decltype(transform_)::value>;
  };
  auto kernel =
      p.dropout_p > 0.f
          ? (transform ? pick(std::true_type{}, std::true_type{}) : pick(std::true_type{}, std::false_type{}))
          : (transform ? pick(std::false_type{}, std::true_type{}) : pick(std::false_type{}, std::false_type{}));
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  const int key_blocks = (p.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN;
  int device = 0, sms = 0;  // unknown: one head at a time (bwd_load.h)
  if (call.deterministic && (cudaGetDevice(&device) != cudaSuccess ||
                             cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess))
    sms = 0;
  const dim3 grid = bwd_grid(p, key_blocks, call.deterministic,
                             bwd_heads_together(p, key_blocks, call.deterministic, sms));
  kernel<<<grid, Traits::kThreads, smem, stream>>>(params);
  if (Status s = launched("backward"); !s.ok()) return s;
  constexpr int post_threads = decltype(size(typename Traits::TiledMmaQ{}))::value;
  sm90::bwd_postprocess_kernel<Traits>
      <<<dim3((p.seqlen_q + 63) / 64, p.nheads, p.batch), post_threads, 0, stream>>>(call, ws);
  return launched("backward post-process");
}

}  // namespace flashattn::sm90
