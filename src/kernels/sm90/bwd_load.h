// What the Hopper backwards (bwd_kernel.h, d <= 128; bwd_split_d_kernel.h, d = 256) share before
// their GEMMs: the kernel parameters, the steps a CTA of one key block walks, its barriers, and the
// producer's Q/dO loads through the TMA ring.
#pragma once

#include <cutlass/arch/barrier.h>

#include <cuda/atomic>
#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include <algorithm>

#include "api/validate.h"
#include "kernels/common/block_range.h"
#include "kernels/common/problem.h"
#include "kernels/sm80/bwd.h"

namespace flashattn::sm90 {

using namespace cute;
using cute::Tensor;

template <typename Traits>
struct BwdKernelParams {
  BwdCall call;
  sm80::BwdWorkspace ws;
  typename Traits::TmaQ tma_q, tma_do;
  typename Traits::TmaK tma_k, tma_v;
};

// The CTA's key block, sequence and kv head, from the launch order. By default key blocks vary
// fastest, then sequences, then kv heads: the CTAs of a head run together and share its Q/dO reads
// and its dq_accum in L2. In deterministic mode the key blocks of a query block add into its dQ in
// descending order (DqTurn), so key blocks are launched descending too: a CTA waits only on CTAs
// launched before it, whatever the residency. There each CTA of a head starts one turn handoff
// behind the one above it; when every key block has the same work (no causal, window or varlen)
// and `heads_together` heads fill the GPU, they are launched as a group, key block by key block, so
// the SM that frees first (the top key block's) takes the next group's top key block and the
// stagger carries over instead of building up again in every wave.
struct BwdBlock {
  int n_block, b, hk;  // n_block -1: past the last (sequence, kv head) of the last group
};

inline int bwd_heads_together(const Problem& p, int key_blocks, bool deterministic, int sms) {
  const bool equal_work = p.window_left < 0 && p.window_right < 0 && !p.varlen;
  const int heads = p.batch * p.nheads_k;
  return deterministic && equal_work ? std::max(1, std::min(heads, sms / std::max(key_blocks, 1))) : 1;
}

// Deterministic grid: x = (key block from the top) x heads_together + head in the group, then the
// group index over y and z (launched in that order).
inline dim3 bwd_grid(const Problem& p, int key_blocks, bool deterministic, int heads_together) {
  if (!deterministic) return dim3(key_blocks, p.batch, p.nheads_k);
  const int groups = (p.batch * p.nheads_k + heads_together - 1) / heads_together;
  const int groups_y = std::min(groups, 65535);
  return dim3(heads_together * key_blocks, groups_y, (groups + groups_y - 1) / groups_y);
}

// The block of CTA `block` of `grid`.
FA_HOST_DEVICE BwdBlock bwd_block_at(const Problem& p, int key_blocks, bool deterministic, dim3 block, dim3 grid) {
  if (!deterministic) return BwdBlock{int(block.x), int(block.y), int(block.z)};
  const int heads_together = grid.x / key_blocks;
  const int group = block.y + grid.y * block.z;
  const int head = group * heads_together + block.x % heads_together;
  if (head >= p.batch * p.nheads_k) return BwdBlock{-1, 0, 0};
  return BwdBlock{key_blocks - 1 - int(block.x / heads_together), head / p.nheads_k, head % p.nheads_k};
}

// The CTA's block, its sequence, where its keys start and where the sequence's stored keys end.
struct BwdCta {
  int n_block, b, hk;
  SeqInfo si;
  int n0, stored_k;
  __device__ __forceinline__ bool empty() const { return n_block < 0 || n0 >= stored_k; }
};

template <int kBlockN>
__device__ __forceinline__ BwdCta bwd_cta(const Problem& p, bool deterministic) {
  const BwdBlock blk = bwd_block_at(p, (p.seqlen_k + kBlockN - 1) / kBlockN, deterministic, blockIdx, gridDim);
  BwdCta c;
  c.n_block = blk.n_block;
  c.b = blk.b;
  c.hk = blk.hk;
  c.si = seq_info(p, c.b);
  c.n0 = c.n_block * kBlockN;
  c.stored_k = p.varlen ? p.cu_seqlens_k[c.b + 1] - p.cu_seqlens_k[c.b] : p.seqlen_k;
  return c;
}

// A step: one query block of one query head.
struct BwdStep {
  int h, m_block;
};

// The steps of a CTA of key block n_block: the query blocks that see its keys (causal/window),
// for each query head of its kv head's group. Every role of the CTA walks them in the same order:
// the query blocks of a head, then the next head.
struct BwdSteps {
  int m_begin, m_end;
  int count;  // (query head, query block) pairs
  BwdStep first;
  __device__ __forceinline__ void advance(BwdStep& s) const {
    if (++s.m_block == m_end) {
      s.m_block = m_begin;
      ++s.h;
    }
  }
};

template <int kBlockM, int kBlockN>
__device__ __forceinline__ BwdSteps bwd_steps(const Problem& p, const SeqInfo& si, int n_block, int hk) {
  const int group = p.nheads / p.nheads_k;
  const BlockRange query_blocks = query_blocks_of(p, n_block, kBlockM, kBlockN, si.seqlen_q, si.seqlen_k);
  BwdSteps s;
  s.m_begin = query_blocks.begin;
  s.m_end = query_blocks.end;
  s.count = s.m_end > s.m_begin ? group * (s.m_end - s.m_begin) : 0;
  s.first = BwdStep{hk * group, s.m_begin};
  return s;
}

// Deterministic mode: the key blocks of a query block add into its dQ in descending order (the
// fp32 sums then come out bit for bit the same every run), through a counter per (sequence, query
// head, query block). Descending, because under causal masking key block n + 1 meets a query block
// two steps earlier in its walk than key block n: ascending order made each CTA wait for the one
// before it to catch up (-27..-41% causal), descending finds the adds already done.
struct DqTurn {
  int* counter;
  int mine;  // key blocks above this one that add into the query block
  __device__ __forceinline__ void wait() const {
    cuda::atomic_ref<int, cuda::thread_scope_device> ref(*counter);
    while (ref.load(cuda::memory_order_acquire) != mine) __nanosleep(32);
  }
  // After this key block's adds are complete and visible device-wide.
  __device__ __forceinline__ void pass() const {
    cuda::atomic_ref<int, cuda::thread_scope_device>(*counter).store(mine + 1, cuda::memory_order_release);
  }
};

// `lane`: the workspace's turn lane (sm80/bwd.h), 1 only for the d256 kernel's second chain of turns.
template <int kBlockM, int kBlockN>
__device__ __forceinline__ DqTurn dq_turn(const BwdCall& call, const sm80::BwdWorkspace& ws, int b, const SeqInfo& si,
                                          int n_block, const BwdStep& at, int lane = 0) {
  const Problem& p = call.problem;
  int* semaphore = reinterpret_cast<int*>(static_cast<char*>(call.workspace) + ws.semaphore);
  const int64_t turns = int64_t(p.batch) * p.nheads * ws.sem_blocks;
  return DqTurn{semaphore + lane * turns + (int64_t(b) * p.nheads + at.h) * ws.sem_blocks + at.m_block,
                key_blocks_of(p, at.m_block, kBlockM, kBlockN, si.seqlen_q, si.seqlen_k).end - 1 - n_block};
}

// A key block's done flag (workspace key_done, sm80/bwd.h): its CTA sets it once all its dQ adds
// are complete and visible device-wide. The post-process, started under this grid's tail
// (programmatic dependent launch, bwd_launch.h), waits for the flags of the key blocks that see its
// query block (key_blocks_of), not for the whole grid. One release a CTA: a done count per query
// block, added by the dQ writer every step, cost 6% at d128 2k (bench/NOTES.md, session 35).
struct KeyDone {
  int* flag;
  __device__ __forceinline__ void set() const {
    cuda::atomic_ref<int, cuda::thread_scope_device>(*flag).store(1, cuda::memory_order_release);
  }
  __device__ __forceinline__ void wait() const {
    cuda::atomic_ref<int, cuda::thread_scope_device> ref(*flag);
    while (ref.load(cuda::memory_order_acquire) == 0) __nanosleep(256);
  }
};

template <int kBlockN>
__device__ __forceinline__ KeyDone key_done(const BwdCall& call, const sm80::BwdWorkspace& ws, int b, int hk, int n_block) {
  static_assert(kBlockN % 64 == 0, "key_blocks counts 64-key blocks");
  int* flags = reinterpret_cast<int*>(static_cast<char*>(call.workspace) + ws.key_done);
  return KeyDone{flags + (int64_t(b) * call.problem.nheads_k + hk) * ws.key_blocks + n_block * (kBlockN / 64)};
}

// A step's lse (log2 units) and D: kBlockM floats each, bulk-copied from the pre-process's padded
// rows (sm80/bwd.h, stat_row0) onto the stage's barrier with its Q and dO.
template <typename Traits>
constexpr uint32_t kStatBytes = 2 * Traits::kBlockM * sizeof(float);

// The Q/dO ring (Q, dO, lse and D of a step on one barrier, consumed by Traits::kConsumerThreads) and the
// K/V barrier, initialized before anyone waits on them (ends with __syncthreads).
template <typename Traits, typename Shared>
__device__ __forceinline__ typename Traits::Pipeline init_bwd_barriers(Shared& shared, bool producer) {
  using Pipeline = typename Traits::Pipeline;
  typename Pipeline::Params pipe_params;
  pipe_params.transaction_bytes = 2 * Traits::kTmaBytesQ + kStatBytes<Traits>;
  pipe_params.role = producer ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
  pipe_params.is_leader = threadIdx.x == 0;
  pipe_params.num_consumers = Traits::kConsumerThreads;
  Pipeline pipeline_q(shared.pipeline_q, pipe_params, Shape<_1, _1, _1>{});
  if (threadIdx.x == 0) {
    cutlass::arch::ClusterTransactionBarrier::init(&shared.barrier_kv, 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
  return pipeline_q;
}

// Extents of the TMA views (rows, d, heads, batch) of Q/dO and K/V (tma_view.h); varlen packs every
// sequence into one batch entry. bb: the batch index of sequence b in those views.
struct BwdTmaShape {
  int32_t d, batches, bb, rows_q, rows_k;
};
__device__ __forceinline__ BwdTmaShape bwd_tma_shape(const Problem& p, int b) {
  return BwdTmaShape{p.head_dim, p.varlen ? 1 : p.batch, p.varlen ? 0 : b, p.varlen ? int32_t(p.total_q) : p.seqlen_q,
                     p.varlen ? int32_t(p.total_k) : p.seqlen_k};
}

// The producer thread's loads, one ring stage a step, in the order of `walk`: Q and dO by TMA, the
// step's lse and D by bulk copy (16-byte aligned runs inside the sequence's padded rows).
template <typename Traits, typename Pipeline, typename SmemQ, typename Shared>
__device__ __forceinline__ void load_q_dout(const BwdKernelParams<Traits>& params, Pipeline& pipeline_q,
                                            const SmemQ& sQ, const SmemQ& sdO, Shared& shared, int b,
                                            const SeqInfo& si, const BwdTmaShape& t, const BwdSteps& walk) {
  constexpr int kBlockM = Traits::kBlockM, kHeadDim = Traits::kHeadDim;
  static_assert(sm80::kStatRowAlign % kBlockM == 0 && kBlockM % 4 == 0,
                "a step's rows: one 16-byte aligned run inside its sequence's padded rows (stat_row0)");
  const Problem& p = params.call.problem;
  const char* workspace = static_cast<const char*>(params.call.workspace);
  const float* lse_log2 = reinterpret_cast<const float*>(workspace + params.ws.lse_log2);
  const float* dsum = reinterpret_cast<const float*>(workspace + params.ws.dsum);
  Tensor mQ = params.tma_q.get_tma_tensor(make_shape(t.rows_q, t.d, p.nheads, t.batches));
  Tensor mdO = params.tma_do.get_tma_tensor(make_shape(t.rows_q, t.d, p.nheads, t.batches));
  auto state = cutlass::make_producer_start_state<Pipeline>();
  BwdStep at = walk.first;
#pragma unroll 1  // 24 registers in this warpgroup
  for (int step = 0; step < walk.count; ++step, walk.advance(at)) {
    const int h = at.h;
    Tensor mQ_seq = domain_offset(make_coord(int32_t(si.q_row0), _0{}), mQ(_, _, h, t.bb));
    Tensor mdO_seq = domain_offset(make_coord(int32_t(si.q_row0), _0{}), mdO(_, _, h, t.bb));
    Tensor gQ = local_tile(mQ_seq, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(at.m_block, _0{}));
    Tensor gdO = local_tile(mdO_seq, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(at.m_block, _0{}));
    pipeline_q.producer_acquire(state);
    const int st = state.index();
    auto [tQgQ, tQsQ] =
        tma_partition(params.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ(_, _, st)), group_modes<0, 2>(gQ));
    auto [tdOgdO, tdOsdO] =
        tma_partition(params.tma_do, _0{}, Layout<_1>{}, group_modes<0, 2>(sdO(_, _, st)), group_modes<0, 2>(gdO));
    auto* barrier = pipeline_q.producer_get_barrier(state);
    copy(params.tma_q.with(*barrier), tQgQ, tQsQ);
    copy(params.tma_do.with(*barrier), tdOgdO, tdOsdO);
    const int64_t stat = sm80::stat_row0(p, params.ws, b, si.q_row0, h) + int64_t(at.m_block) * kBlockM;
    cute::SM90_BULK_COPY_G2S::copy(lse_log2 + stat, barrier, shared.lse_log2[st], kBlockM * sizeof(float));
    cute::SM90_BULK_COPY_G2S::copy(dsum + stat, barrier, shared.dsum[st], kBlockM * sizeof(float));
    ++state;
  }
}

}  // namespace flashattn::sm90
