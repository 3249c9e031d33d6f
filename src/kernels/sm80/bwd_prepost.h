// The two small passes around the FlashAttention-2 backward (Dao 2023, Alg. 2):
//   pre:  D_i = rowsum(dO_i * O_i) (line 4), and a zeroed fp32 dQ accumulator;
//   post: dQ = scale * dq_accum, converted to the input dtype and written with the caller's strides.
// One warp per (row, head); memory-bound, a small fraction of the backward's time.
#pragma once

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "kernels/common/problem.h"
#include "kernels/sm80/bwd.h"

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
  const int64_t r = lse_offset(p, b, si.q_row0, row, h);
  char* base = static_cast<char*>(call.workspace);
  float* dq_accum = reinterpret_cast<float*>(base + ws.dq_accum) + r * kHeadDim;
  float sum = 0.f;
  CUTE_UNROLL
  for (int c = lane; c < kHeadDim; c += 32) {
    if (c < p.head_dim) sum += float(o[c]) * float(dout[c]);
    dq_accum[c] = 0.f;
  }
  CUTE_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) reinterpret_cast<float*>(base + ws.dsum)[r] = sum;
}

// grid (row blocks, nheads, batch)
template <typename Element, int kHeadDim>
__global__ void __launch_bounds__(32 * kPrePostRowsPerBlock) bwd_postprocess_kernel(const BwdCall call,
                                                                                     BwdWorkspace ws) {
  const Problem& p = call.problem;
  const int h = blockIdx.y, b = blockIdx.z, lane = threadIdx.x % 32;
  const int row = blockIdx.x * kPrePostRowsPerBlock + threadIdx.x / 32;
  const SeqInfo si = seq_info(p, b);
  if (row >= si.seqlen_q) return;
  const float* dq_accum = reinterpret_cast<const float*>(static_cast<const char*>(call.workspace) + ws.dq_accum) +
                          lse_offset(p, b, si.q_row0, row, h) * kHeadDim;
  Element* dq = static_cast<Element*>(call.dq) + row_offset(call.dq_stride, p.varlen, b, si.q_row0, row, h);
  CUTE_UNROLL
  for (int c = lane; c < kHeadDim; c += 32)
    if (c < p.head_dim) dq[c] = Element(p.scale * dq_accum[c]);
}

}  // namespace flashattn::sm80
