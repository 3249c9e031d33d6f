// The two small passes around the FlashAttention-2 backward (Dao 2023, Alg. 2):
//   pre:  D_i = rowsum(dO_i * O_i) (line 4), a few lanes per (row, head), beside lse in log2 units,
//         both in the padded rows of bwd.h (stat_row0; the padding rows too: D = 0, lse = +inf);
//   post: dQ = scale * dq_accum, converted to the input dtype and written with the caller's strides;
//         one CTA per query block, reading dq_accum in the dQ MMA's fragment order (bwd.h).
// Both are memory-bound; at short lengths they are a real part of the backward (at 1k, d128 on an
// H200 the post-process took 15% until it stored through shared memory: bench/NOTES.md, session 5).
#pragma once

#include <cuda_runtime_api.h>

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "kernels/common/problem.h"
#include "kernels/common/store_tile.h"
#include "kernels/sm80/bwd.h"
#include "kernels/sm80/bwd_traits.h"

namespace flashattn::sm80 {

// The pre-process: a 16-byte piece (8 elements) of a row a lane, kLanes lanes a row (d / 8 rounded up
// to a power of two: d96 takes 16 lanes, 12 of them with data), so a 256-thread block takes 32 rows
// at d64. One warp a row (8 rows a block) left 24 of 32 lanes idle at d64 and launched 65536 blocks
// for the standard grid's 16k tokens x 32 heads: 132 us where reading O and dO takes about 35 (ncu,
// H200; bench/NOTES.md, session 33).
constexpr int kPreThreads = 256;
template <int kHeadDim>
constexpr int kPreLanesPerRow = kHeadDim <= 64 ? 8 : kHeadDim <= 128 ? 16 : 32;
template <int kHeadDim>
constexpr int kPreRowsPerBlock = kPreThreads / kPreLanesPerRow<kHeadDim>;

// grid (row blocks of round_up_stat_rows(seqlen_q) rows, nheads, batch), kPreThreads threads:
// launched by bwd_preprocess below.
template <typename Element, int kHeadDim>
__global__ void __launch_bounds__(kPreThreads) bwd_preprocess_kernel(const BwdCall call, BwdWorkspace ws) {
  constexpr int kLanes = kPreLanesPerRow<kHeadDim>, kRows = kPreRowsPerBlock<kHeadDim>;
  static_assert(kHeadDim <= 8 * kLanes && kLanes <= 32 && kStatRowAlign % kRows == 0);
  const Problem& p = call.problem;
  const int h = blockIdx.y, b = blockIdx.z, piece = threadIdx.x % kLanes;
  const int row = blockIdx.x * kRows + threadIdx.x / kLanes;
  const SeqInfo si = seq_info(p, b);
  // Rows past the sequence are padding (D = 0, lse = +inf: P = 0 there) up to the padded row count,
  // then the next sequence's (varlen). No lane returns before the shuffles below.
  const bool in_sequence = row < si.seqlen_q, padded = row < round_up_stat_rows(si.seqlen_q);
  float sum = 0.f;
  const int c = piece * 8;
  if (in_sequence && c < p.head_dim) {
    const Element* o = static_cast<const Element*>(call.out) + row_offset(call.out_stride, p.varlen, b, si.q_row0, row, h);
    const Element* dout =
        static_cast<const Element*>(call.dout) + row_offset(call.dout_stride, p.varlen, b, si.q_row0, row, h);
    // A 16-byte load of each where both rows allow it; element by element otherwise.
    const bool vectors = reinterpret_cast<uintptr_t>(o) % 16 == 0 && reinterpret_cast<uintptr_t>(dout) % 16 == 0;
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
  for (int offset = kLanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (piece == 0 && padded) {
    const int64_t stat = stat_row0(p, ws, b, si.q_row0, h) + row;
    float* dsum = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + ws.dsum);
    float* lse_log2 = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + ws.lse_log2);
    dsum[stat] = sum;  // 0 on padding rows: nothing was loaded there
    lse_log2[stat] = in_sequence ? call.lse[lse_offset(p, b, si.q_row0, row, h)] * float(M_LOG2E) : INFINITY;
  }
}

// Before the pre-process (both backwards): dq_accum starts at zero (padding included); so do the
// turn counters and key_done flags: one clear from dq_accum (offset 0) to the flags' end (the
// pre-process writes the D and lse rows between them).
inline cudaError_t bwd_clear_workspace(const BwdCall& call, const BwdWorkspace& ws, cudaStream_t stream) {
  return cudaMemsetAsync(static_cast<char*>(call.workspace) + ws.dq_accum, 0,
                         ws.key_done + ws.key_done_bytes - ws.dq_accum, stream);
}

// The pre-process's launch (both backwards); the caller checks the launch. seqlen_q > 0.
template <typename Element, int kHeadDim>
void bwd_preprocess(const BwdCall& call, const BwdWorkspace& ws, cudaStream_t stream) {
  const Problem& p = call.problem;
  const dim3 grid(unsigned(round_up_stat_rows(p.seqlen_q) / kPreRowsPerBlock<kHeadDim>), p.nheads, p.batch);
  bwd_preprocess_kernel<Element, kHeadDim><<<grid, kPreThreads, 0, stream>>>(call, ws);
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
