// Hopper backward (sm90a), first version (FlashAttention-2, Alg. 2, with FlashAttention-3's
// producer/consumer split): a CTA per (128 keys, kv head, batch). Warpgroup 0 loads K and V once
// and, per step (query head of the group, query block of 64 rows), Q and dO through a 2-stage TMA
// ring; warpgroups 1 and 2 each own 64 keys: S^T and dP^T by wgmma from shared memory, then
// P^T = exp(S^T - lse) and dS^T = P^T (dP^T - D) in registers, dV += P^T dO and dK += dS^T Q with
// the probabilities as register operands, and dQ += dS K through shared memory, added into the
// fp32 dq_accum with atomics (post-processed to dQ). Plain, causal, window, GQA/MQA, varlen; not
// yet: dropout, softcap/ALiBi, deterministic order, overlap between the GEMMs and the softmax.
#pragma once

#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "api/validate.h"
#include "kernels/common/block_range.h"
#include "kernels/common/fast_exp2.h"
#include "kernels/common/problem.h"
#include "kernels/sm80/bwd.h"
#include "kernels/sm90/bwd_traits.h"
#include "kernels/sm90/fwd_kernel.h"  // rowcol, acc_as_operand_a

namespace flashattn::sm90 {

template <typename Traits>
struct BwdKernelParams {
  BwdCall call;
  sm80::BwdWorkspace ws;
  typename Traits::TmaQ tma_q, tma_do;
  typename Traits::TmaK tma_k, tma_v;
};

template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    bwd_kernel(const __grid_constant__ BwdKernelParams<Traits> params) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  constexpr int kKeys = Traits::kKeysPerGroup;
  using Pipeline = typename Traits::Pipeline;
  extern __shared__ __align__(1024) char sm90_smem[];
  auto& shared = *reinterpret_cast<typename Traits::SharedStorage*>(sm90_smem);

  const BwdCall& call = params.call;
  const Problem& p = call.problem;
  const int n_block = blockIdx.x, b = blockIdx.y, hk = blockIdx.z;
  const SeqInfo si = seq_info(p, b);
  const int n0 = n_block * kBlockN;
  const int stored_k = p.varlen ? p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b] : p.seqlen_k;
  if (n0 >= stored_k) return;  // every thread leaves together
  const int group = p.nheads / p.nheads_k;
  // The query blocks whose key range holds this key block: a contiguous run (block_range.h).
  const int m_blocks = (si.seqlen_q + kBlockM - 1) / kBlockM;
  int m_begin = m_blocks, m_end = 0;
  for (int m = 0; m < m_blocks; ++m) {
    const BlockRange r = key_blocks_of(p, m, kBlockM, kBlockN, si.seqlen_q, si.seqlen_k);
    if (r.begin <= n_block && n_block < r.end) {
      m_begin = min(m_begin, m);
      m_end = m + 1;
    }
  }
  const int steps = m_end > m_begin ? group * (m_end - m_begin) : 0;  // (query head, query block) pairs
  auto step_head = [&](int step) { return hk * group + step / (m_end - m_begin); };
  auto step_block = [&](int step) { return m_begin + step % (m_end - m_begin); };

  const int warp_group = threadIdx.x / 128;
  Tensor sQ = cute::make_tensor(make_smem_ptr(shared.q.begin()), typename Traits::SmemLayoutQ{});
  Tensor sdO = cute::make_tensor(make_smem_ptr(shared.dout.begin()), typename Traits::SmemLayoutQ{});
  Tensor sQt = cute::make_tensor(make_smem_ptr(shared.q.begin()), typename Traits::SmemLayoutQt{});
  Tensor sdOt = cute::make_tensor(make_smem_ptr(shared.dout.begin()), typename Traits::SmemLayoutQt{});
  Tensor sK = cute::make_tensor(make_smem_ptr(shared.k.begin()), typename Traits::SmemLayoutK{});
  Tensor sKt = cute::make_tensor(make_smem_ptr(shared.k.begin()), typename Traits::SmemLayoutKt{});
  Tensor sV = cute::make_tensor(make_smem_ptr(shared.v.begin()), typename Traits::SmemLayoutK{});
  Tensor sdS = cute::make_tensor(make_smem_ptr(shared.ds.begin()), typename Traits::SmemLayoutdS{});

  typename Pipeline::Params pipe_params;
  pipe_params.transaction_bytes = 2 * Traits::kTmaBytesQ;  // Q and dO of a step on one barrier
  pipe_params.role = warp_group == 0 ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
  pipe_params.is_leader = threadIdx.x == 0;
  pipe_params.num_consumers = Traits::kConsumerThreads;
  Pipeline pipeline_q(shared.pipeline_q, pipe_params, Shape<_1, _1, _1>{});
  if (threadIdx.x == 0) {
    cutlass::arch::ClusterTransactionBarrier::init(&shared.barrier_kv, 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();  // barriers initialized before anyone waits on them

  if (warp_group == 0) {
    cutlass::arch::warpgroup_reg_dealloc<24>();
    if (threadIdx.x / 32 == 0 && cute::elect_one_sync()) {
      // TMA views (rows, d, heads, batch); varlen packs every sequence into one batch entry.
      const int32_t d = p.head_dim, batches = p.varlen ? 1 : p.batch, bb = p.varlen ? 0 : b;
      const int32_t rows_q = p.varlen ? int32_t(p.total_q) : p.seqlen_q;
      const int32_t rows_k = p.varlen ? int32_t(p.total_k) : p.seqlen_k;
      Tensor mK = params.tma_k.get_tma_tensor(make_shape(rows_k, d, p.nheads_k, batches));
      Tensor mV = params.tma_v.get_tma_tensor(make_shape(rows_k, d, p.nheads_k, batches));
      Tensor mK_seq = domain_offset(make_coord(int32_t(si.k_row0), _0{}), mK(_, _, hk, bb));
      Tensor mV_seq = domain_offset(make_coord(int32_t(si.k_row0), _0{}), mV(_, _, hk, bb));
      Tensor gK = local_tile(mK_seq, Shape<Int<kKeys>, Int<kHeadDim>>{}, make_coord(_, _0{}));
      Tensor gV = local_tile(mV_seq, Shape<Int<kKeys>, Int<kHeadDim>>{}, make_coord(_, _0{}));
      cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&shared.barrier_kv, 4 * Traits::kTmaBytesK);
      CUTE_UNROLL
      for (int w = 0; w < 2; ++w) {
        auto [tKgK, tKsK] = tma_partition(params.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK(_, _, w)),
                                          group_modes<0, 2>(gK));
        auto [tVgV, tVsV] = tma_partition(params.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sV(_, _, w)),
                                          group_modes<0, 2>(gV));
        copy(params.tma_k.with(shared.barrier_kv), tKgK(_, 2 * n_block + w), tKsK);
        copy(params.tma_v.with(shared.barrier_kv), tVgV(_, 2 * n_block + w), tVsV);
      }
      Tensor mQ = params.tma_q.get_tma_tensor(make_shape(rows_q, d, p.nheads, batches));
      Tensor mdO = params.tma_do.get_tma_tensor(make_shape(rows_q, d, p.nheads, batches));
      auto state = cutlass::make_producer_start_state<Pipeline>();
      for (int step = 0; step < steps; ++step) {
        const int h = step_head(step);
        Tensor mQ_seq = domain_offset(make_coord(int32_t(si.q_row0), _0{}), mQ(_, _, h, bb));
        Tensor mdO_seq = domain_offset(make_coord(int32_t(si.q_row0), _0{}), mdO(_, _, h, bb));
        Tensor gQ = local_tile(mQ_seq, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(step_block(step), _0{}));
        Tensor gdO = local_tile(mdO_seq, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(step_block(step), _0{}));
        pipeline_q.producer_acquire(state);
        const int st = state.index();
        auto [tQgQ, tQsQ] = tma_partition(params.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ(_, _, st)),
                                          group_modes<0, 2>(gQ));
        auto [tdOgdO, tdOsdO] = tma_partition(params.tma_do, _0{}, Layout<_1>{}, group_modes<0, 2>(sdO(_, _, st)),
                                              group_modes<0, 2>(gdO));
        copy(params.tma_q.with(*pipeline_q.producer_get_barrier(state)), tQgQ, tQsQ);
        copy(params.tma_do.with(*pipeline_q.producer_get_barrier(state)), tdOgdO, tdOsdO);
        ++state;
      }
    }
    return;
  }

  // Consumers: warpgroup w = 0, 1 owns keys [n0 + 64 w, n0 + 64 w + 64).
  cutlass::arch::warpgroup_reg_alloc<240>();
  const int w = warp_group - 1, tid = threadIdx.x % 128;
  typename Traits::TiledMmaSdP mma_sdp;
  typename Traits::TiledMmaKV mma_kv;
  typename Traits::TiledMmaQ mma_q;
  auto thr_sdp = mma_sdp.get_thread_slice(tid);
  auto thr_kv = mma_kv.get_thread_slice(tid);
  auto thr_q = mma_q.get_thread_slice(tid);
  Tensor tSrK = thr_sdp.partition_fragment_A(sK(_, _, w));   // descriptors
  Tensor tSrQ = thr_sdp.partition_fragment_B(sQ);            // (MMA, N, K, stage)
  Tensor tdPrV = thr_sdp.partition_fragment_A(sV(_, _, w));
  Tensor tdPrdO = thr_sdp.partition_fragment_B(sdO);
  Tensor tdVrdOt = thr_kv.partition_fragment_B(sdOt);        // (MMA, N = d, K = queries, stage)
  Tensor tdKrQt = thr_kv.partition_fragment_B(sQt);
  Tensor tdQrdS = thr_q.partition_fragment_A(sdS(_, _, w));
  Tensor tdQrKt = thr_q.partition_fragment_B(sKt(_, _, w));
  Tensor acc_dk = partition_fragment_C(mma_kv, Shape<Int<kKeys>, Int<kHeadDim>>{});
  Tensor acc_dv = partition_fragment_C(mma_kv, Shape<Int<kKeys>, Int<kHeadDim>>{});
  clear(acc_dk);
  clear(acc_dv);
  using AccS = decltype(partition_fragment_C(mma_sdp, Shape<Int<kKeys>, Int<kBlockM>>{}));
  // (key, query) of each S^T value of this thread; (query, d column) of each dQ value.
  Tensor tScS = thr_sdp.partition_C(make_identity_tensor(Shape<Int<kKeys>, Int<kBlockM>>{}));
  Tensor tQcQ = thr_q.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  // Where this thread writes its dS^T values: dS (query, key) of its own warpgroup's block.
  Tensor sdS_w = sdS(_, _, w);

  const float scale_log2 = p.scale * float(M_LOG2E);
  const int diag = si.seqlen_k - si.seqlen_q;
  const int k0 = n0 + w * kKeys;  // this warpgroup's first key
  const float* dsum = reinterpret_cast<const float*>(static_cast<const char*>(call.workspace) + params.ws.dsum);
  float* dq_accum = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + params.ws.dq_accum);

  cutlass::arch::ClusterTransactionBarrier::wait(&shared.barrier_kv, 0);
  cutlass::PipelineState<Traits::kStages> state;
  for (int step = 0; step < steps; ++step) {
    const int h = step_head(step), m0 = step_block(step) * kBlockM, st = state.index();
    pipeline_q.consumer_wait(state);
    AccS acc_s, acc_dp;
    warpgroup_fence_operand(acc_s);
    warpgroup_fence_operand(acc_dp);
    warpgroup_arrive();
    mma_sdp.accumulate_ = GMMA::ScaleOut::Zero;
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tSrK); ++k) {
      cute::gemm(mma_sdp, tSrK(_, _, k), tSrQ(_, _, k, st), acc_s);
      mma_sdp.accumulate_ = GMMA::ScaleOut::One;
    }
    mma_sdp.accumulate_ = GMMA::ScaleOut::Zero;
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdPrV); ++k) {
      cute::gemm(mma_sdp, tdPrV(_, _, k), tdPrdO(_, _, k, st), acc_dp);
      mma_sdp.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();

    // lse (log2 units) and D of the step's queries into shared memory, one per thread (loaded under
    // the GEMMs); rows past the sequence get lse = +inf, so P = 0 there.
    if (tid < kBlockM) {
      const int q = m0 + tid;
      const bool in = q < si.seqlen_q;
      const int64_t i = lse_offset(p, b, si.q_row0, in ? q : 0, h);
      shared.lse_log2[w][tid] = in ? call.lse[i] * float(M_LOG2E) : INFINITY;
    } else {
      const int q = m0 + tid - kBlockM;
      const bool in = q < si.seqlen_q;
      shared.dsum[w][tid - kBlockM] = in ? dsum[lse_offset(p, b, si.q_row0, in ? q : 0, h)] : 0.f;
    }
    cutlass::arch::NamedBarrier::sync(128, 1 + w);  // lse and D written
    Tensor cS_rc = cute::make_tensor(tScS.data(), rowcol(tScS.layout()));
    constexpr int kCols = decltype(size<1>(cS_rc))::value;
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_s);
    warpgroup_fence_operand(acc_dp);

    // P^T = exp(scale S^T - lse), masked; dS^T = P^T (dP^T - D) (Alg. 2 lines 13-16).
    Tensor s_rc = cute::make_tensor(acc_s.data(), rowcol(acc_s.layout()));
    Tensor dp_rc = cute::make_tensor(acc_dp.data(), rowcol(acc_dp.layout()));
    CUTE_UNROLL
    for (int r = 0; r < size<0>(s_rc); ++r) {
      CUTE_UNROLL
      for (int c = 0; c < kCols; ++c) {
        const int key = k0 + get<0>(cS_rc(r, c)), q = m0 + get<1>(cS_rc(r, c));
        const bool visible = key < si.seqlen_k && (p.window_left < 0 || key >= q + diag - p.window_left) &&
                             (p.window_right < 0 || key <= q + diag + p.window_right);
        const int qi = get<1>(cS_rc(r, c));
        const float prob = visible ? fast_exp2(s_rc(r, c) * scale_log2 - shared.lse_log2[w][qi]) : 0.f;
        dp_rc(r, c) = prob * (dp_rc(r, c) - shared.dsum[w][qi]);
        s_rc(r, c) = prob;
      }
    }
    Tensor rP = cute::make_tensor<Element>(acc_s.layout());
    Tensor rdS = cute::make_tensor<Element>(acc_dp.layout());
    CUTE_UNROLL
    for (int i = 0; i < size(acc_s); ++i) {
      rP(i) = Element(acc_s(i));
      rdS(i) = Element(acc_dp(i));
    }
    // dS (query, key) into shared memory for dQ; then visible to the async proxy (wgmma).
    CUTE_UNROLL
    for (int i = 0; i < size(rdS); ++i) sdS_w(get<1>(tScS(i)), get<0>(tScS(i))) = rdS(i);
    cutlass::arch::fence_view_async_shared();
    cutlass::arch::NamedBarrier::sync(128, 1 + w);  // this warpgroup's dS written

    Tensor tdVrP = cute::make_tensor(rP.data(), acc_as_operand_a(rP.layout()));
    Tensor tdKrdS = cute::make_tensor(rdS.data(), acc_as_operand_a(rdS.layout()));
    warpgroup_fence_operand(acc_dv);
    warpgroup_fence_operand(acc_dk);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdVrP); ++k) cute::gemm(mma_kv, tdVrP(_, _, k), tdVrdOt(_, _, k, st), acc_dv);
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdKrdS); ++k) cute::gemm(mma_kv, tdKrdS(_, _, k), tdKrQt(_, _, k, st), acc_dk);
    warpgroup_commit_batch();
    warpgroup_wait<0>();  // P and dS registers free before the dQ accumulator is live
    warpgroup_fence_operand(acc_dv);
    warpgroup_fence_operand(acc_dk);
    pipeline_q.consumer_release(state);  // Q and dO of this step are read
    ++state;
    Tensor acc_dq = partition_fragment_C(mma_q, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    warpgroup_fence_operand(acc_dq);
    warpgroup_arrive();
    mma_q.accumulate_ = GMMA::ScaleOut::Zero;
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdQrdS); ++k) {
      cute::gemm(mma_q, tdQrdS(_, _, k), tdQrKt(_, _, k), acc_dq);
      mma_q.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_dq);
    // dS, lse and D of this step are read: the next step may overwrite them after this.
    cutlass::arch::NamedBarrier::sync(128, 1 + w);

    // dQ of this warpgroup's keys into dq_accum (row-major in the sequence's block of the workspace;
    // the post-process scales and converts it).
    float* dq_rows = dq_accum + sm80::dq_accum_block(p, params.ws, b, si.q_row0, h, 0, kHeadDim);
    CUTE_UNROLL
    for (int i = 0; i < size(acc_dq); ++i) {
      const int q = m0 + get<0>(tQcQ(i)), col = get<1>(tQcQ(i));
      if (q < si.seqlen_q && col < p.head_dim) atomicAdd(dq_rows + int64_t(q) * kHeadDim + col, acc_dq(i));
    }
  }

  // dK (times the softmax scale: S = scale Q K^T) and dV of the stored keys of this warpgroup.
  Tensor tKVcKV = thr_kv.partition_C(make_identity_tensor(Shape<Int<kKeys>, Int<kHeadDim>>{}));
  Element* dk_ptr = static_cast<Element*>(call.dk) + row_offset(call.dk_stride, p.varlen, b, si.k_row0, 0, hk);
  Element* dv_ptr = static_cast<Element*>(call.dv) + row_offset(call.dv_stride, p.varlen, b, si.k_row0, 0, hk);
  CUTE_UNROLL
  for (int i = 0; i < size(acc_dk); ++i) {
    const int key = k0 + get<0>(tKVcKV(i)), col = get<1>(tKVcKV(i));
    if (key < stored_k && col < p.head_dim) {
      dk_ptr[int64_t(key) * call.dk_stride.row + col] = Element(p.scale * acc_dk(i));
      dv_ptr[int64_t(key) * call.dv_stride.row + col] = Element(acc_dv(i));
    }
  }
#endif
}

// dQ = scale * dq_accum (row-major per sequence, bwd_kernel above), in the input dtype with the
// caller's strides. grid (query blocks of 64, nheads, batch), 128 threads.
template <typename Element, int kHeadDim>
__global__ void __launch_bounds__(128) bwd_postprocess_kernel(const BwdCall call, sm80::BwdWorkspace ws) {
  const Problem& p = call.problem;
  const int h = blockIdx.y, b = blockIdx.z;
  const SeqInfo si = seq_info(p, b);
  const float* accum = reinterpret_cast<const float*>(static_cast<const char*>(call.workspace) + ws.dq_accum) +
                       sm80::dq_accum_block(p, ws, b, si.q_row0, h, 0, kHeadDim);
  Element* dq = static_cast<Element*>(call.dq) + row_offset(call.dq_stride, p.varlen, b, si.q_row0, 0, h);
  for (int i = threadIdx.x; i < 64 * kHeadDim; i += 128) {
    const int q = blockIdx.x * 64 + i / kHeadDim, col = i % kHeadDim;
    if (q < si.seqlen_q && col < p.head_dim)
      dq[int64_t(q) * call.dq_stride.row + col] = Element(p.scale * accum[int64_t(q) * kHeadDim + col]);
  }
}

}  // namespace flashattn::sm90
