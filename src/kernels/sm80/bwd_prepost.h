// The two small passes around the FlashAttention-2 backward (Dao 2023, Alg. 2):
//   pre:  D_i = rowsum(dO_i * O_i) (line 4), one warp per (row, head);
//   post: dQ = scale * dq_accum, converted to the input dtype and written with the caller's strides;
//         one CTA per query block, reading dq_accum in the dQ MMA's fragment order (bwd.h).
// Both are memory-bound and a small fraction of the backward's time.
#pragma once

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "kernels/common/problem.h"
#include "kernels/sm80/bwd.h"
#include "kernels/sm80/bwd_traits.h"

namespace flashattn::sm80 {

constexpr int kPrePostRowsPerBlock = 8;  // one warp each

// grid (row blocks, nheads, batch)
template <typename Element, int kHeadDim>
__global__ void __launch_bounds__(32 * kPrePostRowsPerBlock) bwd_preprocess_kernel(const BwdCall call,
                                                                                    BwdWorkspace ws) {
  const Problem& p = call.problem;
  const int h = blockIdx.y, b = blockIdx.z, lane = threadIdx.x % 32;
  const int row = blockIdx.x * kPrePostRowsPerBlock + threadIdx.x / 32;
  const SeqInfo si = seq_info(p, b);
  if (row >= si.seqlen_q) return;
  const Element* o = static_cast<const Element*>(call.out) + row_offset(call.out_stride, p.varlen, b, si.q_row0, row, h);
  const Element* dout =
      static_cast<const Element*>(call.dout) + row_offset(call.dout_stride, p.varlen, b, si.q_row0, row, h);
  float sum = 0.f;
  CUTE_UNROLL
  for (int c = lane; c < kHeadDim; c += 32)
    if (c < p.head_dim) sum += float(o[c]) * float(dout[c]);
  CUTE_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  float* dsum = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + ws.dsum);
  if (lane == 0) dsum[lse_offset(p, b, si.q_row0, row, h)] = sum;
}

// grid (query blocks, nheads, batch), Traits::kThreads threads
template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads) bwd_postprocess_kernel(const BwdCall call, BwdWorkspace ws) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kHeadDim = Traits::kHeadDim;
  const Problem& p = call.problem;
  const int m_block = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const SeqInfo si = seq_info(p, b);
  if (m_block * kBlockM >= si.seqlen_q) return;
  const float* accum = reinterpret_cast<const float*>(static_cast<const char*>(call.workspace) + ws.dq_accum) +
                       dq_accum_block(p, ws, b, si.q_row0, h, m_block, kHeadDim);
  typename Traits::TiledMmadQ mma;
  Tensor coord = mma.get_thread_slice(tid).partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  Element* dq = static_cast<Element*>(call.dq) + row_offset(call.dq_stride, p.varlen, b, si.q_row0, 0, h);
  CUTE_UNROLL
  for (int i = 0; i < size(coord); ++i) {
    const int row = m_block * kBlockM + get<0>(coord(i)), col = get<1>(coord(i));
    const float value = accum[i * Traits::kThreads + tid];
    if (row < si.seqlen_q && col < p.head_dim) dq[int64_t(row) * call.dq_stride.row + col] = Element(p.scale * value);
  }
}

}  // namespace flashattn::sm80
