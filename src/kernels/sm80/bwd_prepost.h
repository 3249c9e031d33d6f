// The two small passes around the FlashAttention-2 backward (Dao 2023, Alg. 2):
//   pre:  D_i = rowsum(dO_i * O_i) (line 4), one warp per (row, head), beside lse in log2 units,
//         both in the padded rows of bwd.h (stat_row0; the padding rows too: D = 0, lse = +inf);
//   post: dQ = scale * dq_accum, converted to the input dtype and written with the caller's strides;
//         one CTA per query block, reading dq_accum in the dQ MMA's fragment order (bwd.h).
// Both are memory-bound; at short lengths they are a real part of the backward (at 1k, d128 on an
// H200 the post-process took 15% until it stored through shared memory: bench/NOTES.md, session 5).
#pragma once

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "kernels/common/problem.h"
#include "kernels/common/store_tile.h"
#include "kernels/sm80/bwd.h"
#include "kernels/sm80/bwd_traits.h"

namespace flashattn::sm80 {

constexpr int kPrePostRowsPerBlock = 8;  // one warp each

// grid (row blocks of round_up_stat_rows(seqlen_q) rows, nheads, batch)
inline dim3 bwd_preprocess_grid(const Problem& p) {
  return dim3(unsigned(round_up_stat_rows(p.seqlen_q) / kPrePostRowsPerBlock), p.nheads, p.batch);
}
template <typename Element, int kHeadDim>
__global__ void __launch_bounds__(32 * kPrePostRowsPerBlock) bwd_preprocess_kernel(const BwdCall call,
                                                                                    BwdWorkspace ws) {
  static_assert(kStatRowAlign % kPrePostRowsPerBlock == 0);
  const Problem& p = call.problem;
  const int h = blockIdx.y, b = blockIdx.z, lane = threadIdx.x % 32;
  const int row = blockIdx.x * kPrePostRowsPerBlock + threadIdx.x / 32;
  const SeqInfo si = seq_info(p, b);
  if (row >= round_up_stat_rows(si.seqlen_q)) return;  // the next sequence's rows (varlen)
  const int64_t stat = stat_row0(p, ws, b, si.q_row0, h) + row;
  float* dsum = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + ws.dsum);
  float* lse_log2 = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + ws.lse_log2);
  if (row >= si.seqlen_q) {  // padding: P = 0 there
    if (lane == 0) dsum[stat] = 0.f, lse_log2[stat] = INFINITY;
    return;
  }
  const Element* o = static_cast<const Element*>(call.out) + row_offset(call.out_stride, p.varlen, b, si.q_row0, row, h);
  const Element* dout =
      static_cast<const Element*>(call.dout) + row_offset(call.dout_stride, p.varlen, b, si.q_row0, row, h);
  // 16-byte pieces (8 elements) a lane where both rows allow; element by element otherwise.
  const bool vectors = reinterpret_cast<uintptr_t>(o) % 16 == 0 && reinterpret_cast<uintptr_t>(dout) % 16 == 0;
  float sum = 0.f;
  CUTE_UNROLL
  for (int c = lane * 8; c < kHeadDim; c += 32 * 8) {
    if (vectors && c + 8 <= p.head_dim) {
      const uint4 ov = *reinterpret_cast<const uint4*>(o + c), dv = *reinterpret_cast<const uint4*>(dout + c);
      const Element* oe = reinterpret_cast<const Element*>(&ov);
      const Element* de = reinterpret_cast<const Element*>(&dv);
      CUTE_UNROLL
      for (int e = 0; e < 8; ++e) sum += float(oe[e]) * float(de[e]);
    } else {
      for (int e = c; e < c + 8 && e < p.head_dim; ++e) sum += float(o[e]) * float(dout[e]);
    }
  }
  CUTE_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) {
    dsum[stat] = sum;
    lse_log2[stat] = call.lse[lse_offset(p, b, si.q_row0, row, h)] * float(M_LOG2E);
  }
}

// grid (query blocks, nheads, batch), Traits::kThreads threads. The block goes through shared memory
// and out in 16-byte row pieces (common/store_tile.h).
template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads) bwd_postprocess_kernel(const BwdCall call, BwdWorkspace ws) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kHeadDim = Traits::kHeadDim;
  constexpr int kPitch = kHeadDim + 8;  // rows 16 bytes longer than the tile: fewer bank conflicts
  __shared__ alignas(16) Element tile[kBlockM * kPitch];
  const Problem& p = call.problem;
  const int m_block = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const SeqInfo si = seq_info(p, b);
  if (m_block * kBlockM >= si.seqlen_q) return;
  const float* accum = reinterpret_cast<const float*>(static_cast<const char*>(call.workspace) + ws.dq_accum) +
                       dq_accum_block(p, ws, b, si.q_row0, h, m_block, kHeadDim);
  typename Traits::TiledMmadQ mma;
  Tensor coord = mma.get_thread_slice(tid).partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  CUTE_UNROLL
  for (int i = 0; i < size(coord); ++i)
    tile[get<0>(coord(i)) * kPitch + get<1>(coord(i))] = Element(p.scale * accum[i * Traits::kThreads + tid]);
  __syncthreads();
  Element* dq = static_cast<Element*>(call.dq) + row_offset(call.dq_stride, p.varlen, b, si.q_row0, 0, h);
  copy_tile_rows<kBlockM, kHeadDim, kPitch, Traits::kThreads>(tile, dq + int64_t(m_block) * kBlockM * call.dq_stride.row,
                                                              call.dq_stride.row, si.seqlen_q - m_block * kBlockM,
                                                              p.head_dim);
}

}  // namespace flashattn::sm80
