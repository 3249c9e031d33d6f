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

inline Status bwd_launched(const char* what) {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? Status::Ok()
                            : Status{FLASHATTN_CUDA_ERROR,
                                     std::string("flashattn: sm90 ") + what + " launch failed: " + cudaGetErrorString(err)};
}

// The tiles of a variant: d <= 128: two warpgroups of 64 keys each, 64 queries a step, 128 in the
// plain d64 kernel (its feature variants spill at 128: bwd_traits.h); d = 256: 64 keys, the
// warpgroups split d.
template <typename Element, int kHeadDim, bool kPlain>
using BwdTraitsOf = std::conditional_t<(kHeadDim > 128), BwdSplitDTraits<Element, kHeadDim>,
                                       BwdTraits<Element, kHeadDim, (kHeadDim <= 64 && kPlain) ? 128 : 64>>;

// The main kernel over key blocks and its post-process (dq_accum blocks in the order of the main
// kernel's dQ registers, so both take the variant's Traits).
template <typename Traits, bool kDropout, bool kTransform>
Status launch_bwd_main(const BwdCall& call, const sm80::BwdWorkspace& ws, cudaStream_t stream) {
  using Element = typename Traits::Element;
  constexpr int kHeadDim = Traits::kHeadDim;
  const Problem& p = call.problem;
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
  auto kernel = [] {
    if constexpr (Traits::kSplitD)
      return bwd_split_d_kernel<Traits, kDropout, kTransform>;
    else
      return bwd_kernel<Traits, kDropout, kTransform>;
  }();
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  const int key_blocks = (p.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN;
  int device = 0, sms = 0;  // unknown: one head at a time (bwd_load.h)
  if (call.deterministic && (cudaGetDevice(&device) != cudaSuccess ||
                             cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess))
    sms = 0;
  const dim3 grid = bwd_grid(p, key_blocks, call.deterministic,
                             bwd_heads_together(p, key_blocks, call.deterministic, sms));
  kernel<<<grid, Traits::kThreads, smem, stream>>>(params);
  if (Status s = bwd_launched("backward"); !s.ok()) return s;
  // The post-process as the main grid's programmatic dependent: it starts under the main grid's
  // tail, as SMs free up, and converts each query block once the key blocks that see it are done
  // (KeyDone, bwd_load.h): +1.5% at d128 2k on H200 at the capped clock, +3.3% causal
  // (bench/NOTES.md, sessions 35-36). The d256 kernel (two warpgroups, each adding half of d) sets
  // no done flags: after the grid.
  constexpr bool kUnderTail = !Traits::kSplitD;
  cudaLaunchConfig_t post{};
  post.gridDim = dim3((p.seqlen_q + Traits::kBlockM - 1) / Traits::kBlockM, p.batch, p.nheads);
  post.blockDim = dim3(decltype(size(typename Traits::TiledMmaQ{}))::value);
  post.stream = stream;
  cudaLaunchAttribute under_tail{};
  under_tail.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  under_tail.val.programmaticStreamSerializationAllowed = 1;
  post.attrs = &under_tail;
  post.numAttrs = kUnderTail ? 1 : 0;
  cudaLaunchKernelEx(&post, sm90::bwd_postprocess_kernel<Traits, kUnderTail>, call, ws);  // its error: the last error
  return bwd_launched("backward post-process");
}

template <int kDtype, int kHeadDim>
Status run_bwd(const BwdCall& call, cudaStream_t stream) {
  using Element = typename sm80::ElementOf<kDtype>::type;
  const Problem& p = call.problem;
  if (std::string why = bwd_unsupported(call); !why.empty()) return not_supported("BACKEND_SM90 backward with " + why);
  const sm80::BwdWorkspace ws = sm80::bwd_workspace(p, kHeadDim, call.deterministic);
  if (call.workspace_size < ws.bytes)
    return invalid("workspace_size: " + std::to_string(call.workspace_size) + " bytes, the call needs " +
                   std::to_string(ws.bytes));
  if (p.batch == 0) return Status::Ok();
  if (sm80::bwd_clear_workspace(call, ws, stream) != cudaSuccess) return bwd_launched("workspace clear");
  sm80::bwd_preprocess<Element, kHeadDim>(call, ws, stream);
  if (Status s = bwd_launched("backward pre-process"); !s.ok()) return s;

  using Plain = BwdTraitsOf<Element, kHeadDim, true>;
  using Featured = BwdTraitsOf<Element, kHeadDim, false>;
  const bool transform = p.softcap > 0.f || p.alibi_slopes;
  if (p.dropout_p > 0.f)
    return transform ? launch_bwd_main<Featured, true, true>(call, ws, stream)
                     : launch_bwd_main<Featured, true, false>(call, ws, stream);
  return transform ? launch_bwd_main<Featured, false, true>(call, ws, stream)
                   : launch_bwd_main<Plain, false, false>(call, ws, stream);
}

}  // namespace flashattn::sm90
