// Entry points of the FlashAttention-2 backward, one instantiation per (dtype, head-dim bucket), and
// the layout of its workspace. Host-only code includes this; the kernels live in bwd_*.h (CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "api/validate.h"

namespace flashattn::sm80 {

// Query rows per block of the backward: 128 for head dims up to 64 (fewer, larger steps per key
// block), 64 above (registers). Tiles: bwd_launch.h.
constexpr int bwd_block_m(int head_dim_bucket) { return head_dim_bucket <= 64 ? 128 : 64; }

// Caller-given workspace, carved into:
//   dq_accum  float  dQ summed over key blocks (fp32 atomics), zeroed per call. One kBlockM x head-dim
//             block per (query block, head); inside a block, value i of thread t of the dQ MMA
//             fragment sits at i * kThreads + t, so each warp's atomic add covers 128 contiguous
//             bytes. Blocks of sequence b start at padded row dq_accum_row0 (varlen: every sequence
//             gets up to block_m rows of padding, so blocks never overlap).
//   dsum      float  D = rowsum(dO * O) (FA2, Alg. 2), and
//   lse_log2  float  softmax_lse in log2 units, both in the padded row layout of stat_row0: a
//             step's rows are one 16-byte aligned run, which the Hopper backward's producer copies
//             with one bulk copy; rows past a sequence's end hold D = 0 and lse = +inf (P = 0).
//   semaphore int [2 x batch x nheads x sem_blocks]  deterministic mode: key blocks done per query
//             block (sem_blocks counts 64-row blocks, the Hopper backward's smallest; FA2 and the
//             Hopper d64 kernel's 128-row steps use the first m_blocks of them), in two lanes:
//             the d256 Hopper backward keeps a turn per warpgroup (each adds half of d), the
//             other kernels use lane 0
//   key_done  int [batch x nheads_k x key_blocks]  the Hopper backward, d <= 128: 1 once the CTA of
//             a key block (key_blocks counts 64-key blocks, the Hopper backward's smallest) has
//             finished its dQ adds, so that the post-process, started under the main grid's tail,
//             may convert a query block as soon as every key block that sees it is done
struct BwdWorkspace {
  size_t dq_accum = 0, dsum = 0, lse_log2 = 0, semaphore = 0, key_done = 0;  // byte offsets
  size_t dq_accum_bytes = 0, semaphore_bytes = 0, key_done_bytes = 0, bytes = 0;
  int64_t rows_per_head = 0;       // padded rows of dq_accum per head
  int64_t stat_rows_per_head = 0;  // padded rows of dsum and lse_log2 per head
  int m_blocks = 0;           // query blocks of the longest sequence
  int sem_blocks = 0;         // 64-row query blocks of the longest sequence (>= m_blocks)
  int block_m = 0;            // query rows per block
  int key_blocks = 0;         // 64-key blocks of the longest sequence
};

// The padded rows of dsum and lse_log2: every sequence starts at a multiple of kStatRowAlign rows
// and owns at least its length rounded up to one (the largest query block of any backward).
// Varlen: sequence b starts at floor((q_row0 + 128 b) / 128) * 128 (FlashAttention-3's padding):
// the next start is at least floor(seqlen / 128) + 1 blocks later, so sequences never share rows.
constexpr int kStatRowAlign = 128;
FA_HOST_DEVICE int64_t round_up_stat_rows(int64_t rows) { return (rows + kStatRowAlign - 1) / kStatRowAlign * kStatRowAlign; }

inline BwdWorkspace bwd_workspace(const Problem& p, int head_dim_bucket, bool deterministic) {
  auto align = [](size_t x) { return (x + 255) / 256 * 256; };
  BwdWorkspace w;
  w.block_m = bwd_block_m(head_dim_bucket);
  w.m_blocks = (p.seqlen_q + w.block_m - 1) / w.block_m;
  w.rows_per_head = p.varlen ? p.total_q + int64_t(p.batch) * w.block_m : int64_t(p.batch) * w.m_blocks * w.block_m;
  w.dq_accum_bytes = size_t(w.rows_per_head) * size_t(p.nheads) * size_t(head_dim_bucket) * sizeof(float);
  w.stat_rows_per_head = p.varlen ? round_up_stat_rows(p.total_q + int64_t(p.batch) * kStatRowAlign)
                                   : int64_t(p.batch) * round_up_stat_rows(p.seqlen_q);
  const size_t stat_bytes = align(size_t(w.stat_rows_per_head) * size_t(p.nheads) * sizeof(float));
  w.dsum = align(w.dq_accum_bytes);
  w.lse_log2 = w.dsum + stat_bytes;
  w.semaphore = w.lse_log2 + stat_bytes;
  w.sem_blocks = (p.seqlen_q + 63) / 64;
  w.semaphore_bytes = deterministic ? 2 * size_t(p.batch) * size_t(p.nheads) * size_t(w.sem_blocks) * sizeof(int) : 0;
  w.key_done = w.semaphore + align(w.semaphore_bytes);
  w.key_blocks = (p.seqlen_k + 63) / 64;
  w.key_done_bytes = size_t(p.batch) * size_t(p.nheads_k) * size_t(w.key_blocks) * sizeof(int);
  w.bytes = w.key_done + align(w.key_done_bytes);
  return w;
}

// Float offset of the dq_accum block of (sequence b, head h, query block m_block).
FA_HOST_DEVICE int64_t dq_accum_block(const Problem& p, const BwdWorkspace& w, int b, int64_t q_row0, int h,
                                      int m_block, int head_dim_bucket) {
  const int64_t row0 = p.varlen ? q_row0 + int64_t(b) * w.block_m : int64_t(b) * w.m_blocks * w.block_m;
  return (int64_t(h) * w.rows_per_head + row0 + int64_t(m_block) * w.block_m) * head_dim_bucket;
}

// Float offset of row 0 of (sequence b, head h) in dsum and lse_log2 (a multiple of kStatRowAlign).
FA_HOST_DEVICE int64_t stat_row0(const Problem& p, const BwdWorkspace& w, int b, int64_t q_row0, int h) {
  const int64_t row0 = p.varlen ? (q_row0 + int64_t(b) * kStatRowAlign) / kStatRowAlign * kStatRowAlign
                                : int64_t(b) * round_up_stat_rows(p.seqlen_q);
  return int64_t(h) * w.stat_rows_per_head + row0;
}

// kDtype is FLASHATTN_FLOAT16 or FLASHATTN_BFLOAT16; kHeadDim the bucket (head_dim <= kHeadDim).
// call.workspace holds at least bwd_workspace(call.problem, kHeadDim, call.deterministic).bytes.
template <int kDtype, int kHeadDim>
Status run_bwd(const BwdCall& call, cudaStream_t stream);

}  // namespace flashattn::sm80
