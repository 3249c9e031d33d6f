// Entry points of the FlashAttention-2 backward, one instantiation per (dtype, head-dim bucket), and
// the layout of its workspace. Host-only code includes this; the kernels live in bwd_*.h (CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "api/validate.h"

namespace flashattn::sm80 {

// Query rows per block of the backward, for every head dim (tiles: bwd_launch.h).
constexpr int kBwdBlockM = 64;

// Caller-given workspace, carved into:
//   dq_accum  float [nheads x rows x head_dim_bucket]  dQ summed over key blocks (fp32, atomics)
//   dsum      float [nheads x rows]                     D = rowsum(dO * O)  (FA2, Alg. 2)
//   semaphore int   [batch x nheads x m_blocks]         deterministic mode: key blocks done per query block
// rows = batch * seqlen_q (fixed) or total_q (varlen), indexed like softmax_lse.
struct BwdWorkspace {
  size_t dq_accum = 0, dsum = 0, semaphore = 0;  // byte offsets
  size_t semaphore_bytes = 0, bytes = 0;
  int m_blocks = 0;
};

inline BwdWorkspace bwd_workspace(const Problem& p, int head_dim_bucket, bool deterministic) {
  auto align = [](size_t x) { return (x + 255) / 256 * 256; };
  const size_t rows = p.varlen ? size_t(p.total_q) : size_t(p.batch) * size_t(p.seqlen_q);
  BwdWorkspace w;
  w.m_blocks = (p.seqlen_q + kBwdBlockM - 1) / kBwdBlockM;
  w.dq_accum = 0;
  w.dsum = align(rows * size_t(p.nheads) * size_t(head_dim_bucket) * sizeof(float));
  w.semaphore = w.dsum + align(rows * size_t(p.nheads) * sizeof(float));
  w.semaphore_bytes = deterministic ? size_t(p.batch) * size_t(p.nheads) * size_t(w.m_blocks) * sizeof(int) : 0;
  w.bytes = w.semaphore + align(w.semaphore_bytes);
  return w;
}

// kDtype is FLASHATTN_FLOAT16 or FLASHATTN_BFLOAT16; kHeadDim the bucket (head_dim <= kHeadDim).
// call.workspace holds at least bwd_workspace(call.problem, kHeadDim, call.deterministic).bytes.
template <int kDtype, int kHeadDim>
Status run_bwd(const BwdCall& call, cudaStream_t stream);

}  // namespace flashattn::sm80
