// What the Hopper backwards (bwd_kernel.h, d <= 128; bwd_split_d_kernel.h, d = 256) share before
// their GEMMs: the kernel parameters, the steps a CTA of one key block walks, its barriers, and the
// producer's Q/dO loads through the TMA ring.
#pragma once

#include <cutlass/arch/barrier.h>

#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

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

// The Q/dO ring (Q and dO of a step on one barrier, consumed by Traits::kConsumerThreads) and the
// K/V barrier, initialized before anyone waits on them (ends with __syncthreads).
template <typename Traits, typename Shared>
__device__ __forceinline__ typename Traits::Pipeline init_bwd_barriers(Shared& shared, bool producer) {
  using Pipeline = typename Traits::Pipeline;
  typename Pipeline::Params pipe_params;
  pipe_params.transaction_bytes = 2 * Traits::kTmaBytesQ;
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

// The producer thread's Q/dO loads, one ring stage a step, in the order of `walk`.
template <typename Traits, typename Pipeline, typename SmemQ>
__device__ __forceinline__ void load_q_dout(const BwdKernelParams<Traits>& params, Pipeline& pipeline_q,
                                            const SmemQ& sQ, const SmemQ& sdO, const SeqInfo& si, const BwdTmaShape& t,
                                            const BwdSteps& walk) {
  constexpr int kBlockM = Traits::kBlockM, kHeadDim = Traits::kHeadDim;
  const Problem& p = params.call.problem;
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
    copy(params.tma_q.with(*pipeline_q.producer_get_barrier(state)), tQgQ, tQsQ);
    copy(params.tma_do.with(*pipeline_q.producer_get_barrier(state)), tdOgdO, tdOsdO);
    ++state;
  }
}

}  // namespace flashattn::sm90
