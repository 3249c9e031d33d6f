// Hopper backward (sm90a) at d = 256 (FlashAttention-2, Alg. 2, with FlashAttention-3's producer/
// consumer split), where dK and dV of 128 keys do not fit one warpgroup's registers: a CTA per
// (64 keys, kv head, batch), its two consumer warpgroups splitting the work by head dim
// (bwd_traits.h, BwdSplitDTraits). Warp 0 loads K and V once and, per step (query head of the
// group, query block of 64 rows), Q and dO through a 2-stage TMA ring. Per step, in the plain
// variant warpgroup 0 computes S^T by wgmma (K = d) and P^T = exp(S^T - lse), to shared memory, and
// warpgroup 1 computes dP^T, reads P^T back and writes dS^T = P^T (dP^T - D); with dropout or
// softcap/ALiBi warpgroup w computes all of that for queries [32w, 32w + 32). Then warpgroup w runs
// dV[:, half w] += P^T dO, dK[:, half w] += dS^T Q and dQ[:, half w] = dS K, all from shared
// memory, and dQ is added to the fp32 dq_accum by vector reductions straight from registers (in
// deterministic mode the key blocks add in descending key order, as in the d64/d128 kernel; warps 1
// and 2 keep the turns).
// Every FA2 backward feature: causal, window, ALiBi, softcap, dropout, GQA/MQA, varlen.
#pragma once

#include <cutlass/arch/barrier.h>

#include <cuda/atomic>
#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/sm90/bwd_kernel.h"  // BwdKernelParams; includes bwd_pointwise.h

namespace flashattn::sm90 {

// *address += {a, b, c, d} (four consecutive floats, 16-byte aligned), no value returned.
__device__ __forceinline__ void reduce_add4(float* address, float a, float b, float c, float d) {
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(address), "f"(a), "f"(b), "f"(c), "f"(d)
               : "memory");
}

template <typename Traits, bool kDropout, bool kTransform>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    bwd_split_d_kernel(const __grid_constant__ BwdKernelParams<Traits> params) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  constexpr int kConsumers = Traits::kConsumerThreads;
  using Pipeline = typename Traits::Pipeline;
  extern __shared__ __align__(1024) char sm90_smem[];
  auto& shared = *reinterpret_cast<typename Traits::SharedStorage*>(sm90_smem);

  const BwdCall& call = params.call;
  const Problem& p = call.problem;
  const BwdCta cta = bwd_cta<kBlockN>(p, call.deterministic);  // bwd_load.h
  if (cta.empty()) return;  // every thread leaves together
  const int n_block = cta.n_block, b = cta.b, hk = cta.hk, n0 = cta.n0, stored_k = cta.stored_k;
  const SeqInfo& si = cta.si;
  const BwdSteps walk = bwd_steps<kBlockM, kBlockN>(p, si, n_block, hk);
  const int steps = walk.count;
  // The plain variant (no dropout, no softcap/ALiBi) spreads each step's dQ reductions over the next
  // step (below). Deterministic mode keeps two chains of turns: there, one per half of each thread's
  // reductions, kept for both warpgroups (a half goes out and is passed on while the other waits for
  // its turn); otherwise one per warpgroup (each adds its own half of d).
  constexpr bool kSpreadDq = !kDropout && !kTransform;

  const int warp_group = cutlass::canonical_warp_group_idx();
  Tensor sQ = cute::make_tensor(make_smem_ptr(shared.q.begin()), typename Traits::SmemLayoutQ{});
  Tensor sdO = cute::make_tensor(make_smem_ptr(shared.dout.begin()), typename Traits::SmemLayoutQ{});
  Tensor sQt = cute::make_tensor(make_smem_ptr(shared.q.begin()), typename Traits::SmemLayoutQt{});
  Tensor sdOt = cute::make_tensor(make_smem_ptr(shared.dout.begin()), typename Traits::SmemLayoutQt{});
  Tensor sK = cute::make_tensor(make_smem_ptr(shared.k.begin()), typename Traits::SmemLayoutK{});
  Tensor sKt = cute::make_tensor(make_smem_ptr(shared.k.begin()), typename Traits::SmemLayoutKt{});
  Tensor sV = cute::make_tensor(make_smem_ptr(shared.v.begin()), typename Traits::SmemLayoutK{});
  Tensor sPt = cute::make_tensor(make_smem_ptr(shared.pt.begin()), typename Traits::SmemLayoutPt{});
  Tensor sdSt = cute::make_tensor(make_smem_ptr(shared.dst.begin()), typename Traits::SmemLayoutPt{});
  Tensor sdS = cute::make_tensor(make_smem_ptr(shared.dst.begin()), typename Traits::SmemLayoutdS{});

  if (threadIdx.x == 0) {  // made visible by init_bwd_barriers' __syncthreads
    for (int w = 0; w < 2; ++w) {
      for (int j = 0; j < 2; ++j) {
        cutlass::arch::ClusterBarrier::init(&shared.turn_granted[w][j], 1);
        cutlass::arch::ClusterBarrier::init(&shared.turn_added[w][j], cutlass::NumThreadsPerWarpGroup);
      }
    }
  }
  Pipeline pipeline_q = init_bwd_barriers<Traits>(shared, warp_group == 0);

  if (warp_group == 0) {
    producer_registers<Traits>();
    if (threadIdx.x / 32 == 0 && cute::elect_one_sync()) {
      const BwdTmaShape t = bwd_tma_shape(p, b);
      Tensor mK = params.tma_k.get_tma_tensor(make_shape(t.rows_k, t.d, p.nheads_k, t.batches));
      Tensor mV = params.tma_v.get_tma_tensor(make_shape(t.rows_k, t.d, p.nheads_k, t.batches));
      Tensor mK_seq = domain_offset(make_coord(int32_t(si.k_row0), _0{}), mK(_, _, hk, t.bb));
      Tensor mV_seq = domain_offset(make_coord(int32_t(si.k_row0), _0{}), mV(_, _, hk, t.bb));
      Tensor gK = local_tile(mK_seq, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(n_block, _0{}));
      Tensor gV = local_tile(mV_seq, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(n_block, _0{}));
      cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&shared.barrier_kv, 2 * Traits::kTmaBytesK);
      auto [tKgK, tKsK] = tma_partition(params.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
      auto [tVgV, tVsV] = tma_partition(params.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sV), group_modes<0, 2>(gV));
      copy(params.tma_k.with(shared.barrier_kv), tKgK, tKsK);
      copy(params.tma_v.with(shared.barrier_kv), tVgV, tVsV);
      load_q_dout(params, pipeline_q, sQ, sdO, shared, b, si, t, walk);
    } else if ((threadIdx.x / 32 == 1 || threadIdx.x / 32 == 2) && call.deterministic) {
      // Deterministic mode's turn keepers: warp 1 + j keeps chain j (lane j of the workspace), of
      // both warpgroups' reductions in the plain variant, of warpgroup j's otherwise (kSpreadDq).
      // Per step the keeper waits until the key blocks above this one have added the chain's part
      // into the query block (DqTurn, bwd_load.h), lets the consumers send it, and once it is issued,
      // passes the turn on with a release store. The release waits for the reductions to complete;
      // here it stalls this warp only, not the consumers' next step.
      const int j = threadIdx.x / 32 - 1;
      BwdStep at = walk.first;
#pragma unroll 1
      for (int step = 0; step < steps; ++step, walk.advance(at)) {
        const DqTurn turn = dq_turn<kBlockM, kBlockN>(call, params.ws, b, si, n_block, at, j);
        if (cute::elect_one_sync()) {
          turn.wait();
          // The warpgroups this keeper serves: both in the plain variant (chain j), else warpgroup j.
          const int w_begin = kSpreadDq ? 0 : j, w_end = kSpreadDq ? 2 : j + 1;
          for (int w = w_begin; w < w_end; ++w) cutlass::arch::ClusterBarrier::arrive(&shared.turn_granted[w][j]);
          // The consumers' reductions precede their arrivals (release) and this wait (acquire); the
          // release store makes them visible device-wide before the turn (fence cumulativity).
          for (int w = w_begin; w < w_end; ++w) cutlass::arch::ClusterBarrier::wait(&shared.turn_added[w][j], step % 2);
          turn.pass();
        }
        __syncwarp();
      }
    }
    return;
  }

  // Consumers: thread tid of 256, warpgroup w = tid / 128. The plain variant splits S^T and dP^T by
  // role (kByRole: warpgroup 0 computes S^T and P, warpgroup 1 dP^T and dS); with dropout or
  // softcap/ALiBi each warpgroup computes both for queries [32w, 32w + 32), since there the pointwise
  // pass (Philox, tanh) is long, and by role it ran on one warpgroup after the other: -27% with
  // dropout, -15% with softcap at 4k (bench/NOTES.md, session 25). Warpgroup w computes head-dim
  // half w of dK, dV and dQ in both.
  consumer_registers<Traits>();
  constexpr bool kByRole = kSpreadDq;
  using TiledMmaSdP = std::conditional_t<kByRole, typename Traits::TiledMmaSdP, typename Traits::TiledMmaSdPHalves>;
  const int tid = threadIdx.x - 128, w = warp_group - 1;  // w warp-uniform
  TiledMmaSdP mma_sdp;
  typename Traits::TiledMmaKV mma_kv;
  typename Traits::TiledMmaQ mma_q;
  const int sdp_tid = kByRole ? tid % 128 : tid;  // the thread in mma_sdp
  auto thr_sdp = mma_sdp.get_thread_slice(sdp_tid);
  auto thr_kv = mma_kv.get_thread_slice(tid);
  auto thr_q = mma_q.get_thread_slice(tid);
  // S^T = K Q^T; by role, warpgroup 1 runs the same GEMM on V and dO: dP^T = V dO^T.
  const bool dp_role = kByRole && w == 1;
  Tensor sKV = cute::make_tensor(make_smem_ptr(dp_role ? shared.v.begin() : shared.k.begin()),
                                 typename Traits::SmemLayoutK{});
  Tensor sQdO = cute::make_tensor(make_smem_ptr(dp_role ? shared.dout.begin() : shared.q.begin()),
                                  typename Traits::SmemLayoutQ{});
  Tensor tSrK = thr_sdp.partition_fragment_A(sKV);   // descriptors
  Tensor tSrQ = thr_sdp.partition_fragment_B(sQdO);  // (MMA, N, K, stage)
  Tensor tdPrV = thr_sdp.partition_fragment_A(sV);   // split by queries only
  Tensor tdPrdO = thr_sdp.partition_fragment_B(sdO);
  Tensor tdVrPt = thr_kv.partition_fragment_A(sPt);    // (MMA, M, K, parity)
  Tensor tdVrdOt = thr_kv.partition_fragment_B(sdOt);  // (MMA, N = d half, K = queries, stage)
  Tensor tdKrdSt = thr_kv.partition_fragment_A(sdSt);
  Tensor tdKrQt = thr_kv.partition_fragment_B(sQt);
  Tensor tdQrdS = thr_q.partition_fragment_A(sdS);  // (MMA, M, K, parity)
  Tensor tdQrKt = thr_q.partition_fragment_B(sKt);
  Tensor acc_dk = partition_fragment_C(mma_kv, Shape<Int<kBlockN>, Int<kHeadDim>>{});
  Tensor acc_dv = partition_fragment_C(mma_kv, Shape<Int<kBlockN>, Int<kHeadDim>>{});
  clear(acc_dk);
  clear(acc_dv);
  using AccS = decltype(partition_fragment_C(mma_sdp, Shape<Int<kBlockN>, Int<kBlockM>>{}));
  Tensor tScS = thr_sdp.partition_C(make_identity_tensor(Shape<Int<kBlockN>, Int<kBlockM>>{}));  // (key, query)

  const float scale_log2 = float(M_LOG2E) * (kTransform ? 1.f : p.scale);
  const float keep_scale = kDropout ? 1.f / (1.f - p.dropout_p) : 1.f;
  const PhiloxState rng = philox_state(p);
  float* dq_accum = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + params.ws.dq_accum);

  cutlass::arch::ClusterTransactionBarrier::wait(&shared.barrier_kv, 0);
  // P^T and dS^T by stmatrix, and (by role) P^T back by ldmatrix, 8 x 8 tiles of the accumulator as
  // it is held.
  auto copy_pt = make_tiled_copy_C(typename Traits::SmemCopyPt{}, mma_sdp);
  auto thr_copy_pt = copy_pt.get_thread_slice(sdp_tid);
  Tensor tPsPt = thr_copy_pt.partition_D(sPt);  // (CPY, CPY_M, CPY_N, parity)
  Tensor tdSsdSt = thr_copy_pt.partition_D(sdSt);
  auto load_pt = make_tiled_copy_C(typename Traits::SmemLoadPt{}, mma_sdp);
  auto thr_load_pt = load_pt.get_thread_slice(sdp_tid);
  Tensor tPsPt_load = thr_load_pt.partition_S(sPt);
  constexpr bool kEarlyP = !kTransform;  // split by queries: as in bwd_kernel.h
  cutlass::PipelineState<Traits::kStages> state;
  BwdStep at = walk.first;
  // dQ of a step leaves in 4 batches of 4 vector reductions a thread: one under the step's dK GEMM,
  // the others at three points of the next step (its start, P^T written, dS^T written), so the load/store unit never
  // holds a whole step's 64 KB of reductions at once (the warps stalled on its queue, and on the reductions' registers,
  // when all 16 went out together). The dropout and softcap/ALiBi variants send all 4 under the dK GEMM (the held
  // values would spill there). Deterministic mode: batches 0-1 and 2-3 are chains 0 and 1 of the turns (kSpreadDq).
  Tensor acc_dq = partition_fragment_C(mma_q, Shape<Int<kBlockM>, Int<kHeadDim>>{});
  float* dq_block = nullptr;
  constexpr int kDqBatches = 4, kDqBatch = decltype(size(acc_dq))::value / kDqBatches;
  static_assert(kDqBatch % 4 == 0);
  auto send_dq = [&](int batch) {
    CUTE_UNROLL
    for (int i = batch * kDqBatch; i < (batch + 1) * kDqBatch; i += 4)
      reduce_add4(dq_block + (i / 4) * 4 * kConsumers + 4 * tid, acc_dq(i), acc_dq(i + 1), acc_dq(i + 2),
                  acc_dq(i + 3));
  };
  // Deterministic mode: the turn of chain j (its keeper in the producer warpgroup), and its adds issued.
  // (Each chain takes one turn a step: the turn of step s completes its barriers' phase s.)
  auto turn_begin = [&](int j, int step) {
    if (call.deterministic) cutlass::arch::ClusterBarrier::wait(&shared.turn_granted[w][j], step % 2);
  };
  auto turn_end = [&](int j) {
    if (call.deterministic) cutlass::arch::ClusterBarrier::arrive(&shared.turn_added[w][j]);
  };
  for (int step = 0; step < steps; ++step, walk.advance(at)) {
    const int m0 = at.m_block * kBlockM, st = state.index(), parity = step % 2;
    pipeline_q.consumer_wait(state);
    // (Not after the S^T / dP^T issue: reading these registers under those GEMMs makes ptxas wait for
    // them, C7517.)
    if (kSpreadDq && step > 0) {
      send_dq(1);
      turn_end(0);
    }
    if constexpr (kByRole) {
      AccS acc;  // S^T in warpgroup 0, dP^T in warpgroup 1
      warpgroup_fence_operand(acc);
      warpgroup_arrive();
      gemm_overwrite(mma_sdp, tSrK, tSrQ(_, _, _, st), acc);
      warpgroup_commit_batch();
      const float* lse_log2 = shared.lse_log2[st];  // beside Q and dO in the stage (log2 units)
      const float* dsum_q = shared.dsum[st];
      Tensor cS_rc = cute::make_tensor(tScS.data(), rowcol(tScS.layout()));
      Tensor acc_rc = cute::make_tensor(acc.data(), rowcol(acc.layout()));
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc);
      if (w == 0) {
        // P^T = exp(scale S^T - lse) (bwd_pointwise.h), to shared memory for dV and warpgroup 1.
        const BlockVisibility vis = block_visibility<kBlockN, kBlockM>(p, si, m0, n0);
        auto no_ds = [](int, int, float, float) {};
        block_probabilities<false>(acc_rc, cS_rc, p, si, m0, n0, vis, 0.f, FastSoftcap(0.f, 0.f), scale_log2, lse_log2,
                                   no_ds);
        Tensor rP = cute::make_tensor<Element>(acc.layout());
        CUTE_UNROLL
        for (int i = 0; i < size(acc); ++i) rP(i) = Element(acc(i));
        copy(copy_pt, thr_copy_pt.retile_S(rP), tPsPt(_, _, _, parity));
      }
      cutlass::arch::fence_view_async_shared();                          // read next by wgmma (async proxy)
      cutlass::arch::NamedBarrier::sync(kConsumers, Traits::kBarrierP);  // P^T written
      if (kSpreadDq && step > 0) {
        turn_begin(1, step - 1);
        send_dq(2);
      }

      // dV += P^T dO on this warpgroup's half of d, while warpgroup 1 computes dS.
      warpgroup_fence_operand(acc_dv);
      warpgroup_arrive();
      cute::gemm(mma_kv, tdVrPt(_, _, _, parity), tdVrdOt(_, _, _, st), acc_dv);
      warpgroup_commit_batch();
      if (w == 1) {
        // dS = P (dP - D) (Alg. 2 line 16), P read back as warpgroup 0 wrote it: the same thread
        // holds the same (key, query) in both accumulators.
        Tensor rP = cute::make_tensor<Element>(acc.layout());
        copy(load_pt, tPsPt_load(_, _, _, parity), thr_load_pt.retile_D(rP));
        Tensor rdS = cute::make_tensor<Element>(acc.layout());
        CUTE_UNROLL
        for (int i = 0; i < size(acc); ++i) rdS(i) = Element(float(rP(i)) * (acc(i) - dsum_q[get<1>(tScS(i))]));
        copy(copy_pt, thr_copy_pt.retile_S(rdS), tdSsdSt(_, _, _, parity));
      }
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(kConsumers, Traits::kBarrierdS);  // dS^T written
      if (kSpreadDq && step > 0) {
        send_dq(3);
        turn_end(1);
      }
    } else {
      AccS acc_s, acc_dp;
      warpgroup_fence_operand(acc_s);
      warpgroup_fence_operand(acc_dp);
      warpgroup_arrive();
      gemm_overwrite(mma_sdp, tSrK, tSrQ(_, _, _, st), acc_s);
      warpgroup_commit_batch();  // S^T
      gemm_overwrite(mma_sdp, tdPrV, tdPrdO(_, _, _, st), acc_dp);
      warpgroup_commit_batch();  // dP^T

      // lse (log2 units; +inf past the sequence, so P = 0 there) and D of the step's queries: in the
      // stage, beside Q and dO.
      const float* lse_log2 = shared.lse_log2[st];
      const float* dsum_q = shared.dsum[st];
      Tensor cS_rc = cute::make_tensor(tScS.data(), rowcol(tScS.layout()));
      constexpr int kCols = decltype(size<1>(cS_rc))::value;
      Tensor s_rc = cute::make_tensor(acc_s.data(), rowcol(acc_s.layout()));
      Tensor dp_rc = cute::make_tensor(acc_dp.data(), rowcol(acc_dp.layout()));

      // Dropout (the forward's mask), computed under the GEMMs: a keep bit per value.
      const auto z = dropout_scale<kDropout>(p, rng, b, at.h, cS_rc, m0, n0, keep_scale);
      // P = exp(s - lse), dS = P (Z dP - D) g, P Z feeds dV (Alg. 2 lines 13-16; Z the dropout mask,
      // g the softcap derivative).
      auto ds_value = [&](int r, int c, float prob, float grad) {
        const float zdp = z(r, c, dp_rc(r, c));
        return prob * (zdp - dsum_q[get<1>(cS_rc(r, c))]) * grad;
      };
      if constexpr (kEarlyP)
        warpgroup_wait<1>();  // S^T done
      else
        warpgroup_wait<0>();
      warpgroup_fence_operand(acc_s);

      // P^T = exp(scale S^T - lse), masked per element only where the block crosses the sequence end or
      // the causal/window diagonal (bwd_pointwise.h); with a transform, dS in the same pass.
      const BlockVisibility vis = block_visibility<kBlockN, kBlockM>(p, si, m0, n0);
      const float slope = kTransform ? alibi_slope(p, b, at.h) : 0.f;
      const FastSoftcap cap(p.scale, p.softcap);
      auto on_prob = [&](int r, int c, float prob, float grad) {
        if constexpr (!kEarlyP) dp_rc(r, c) = ds_value(r, c, prob, grad);
      };
      block_probabilities<kTransform>(s_rc, cS_rc, p, si, m0, n0, vis, slope, cap, scale_log2, lse_log2,
                                      on_prob);

      // (P Z)^T and dS^T of this warpgroup's queries into shared memory (stmatrix, 8 x 8 tiles).
      Tensor rP = cute::make_tensor<Element>(acc_s.layout());
      Tensor rP_rc = cute::make_tensor(rP.data(), rowcol(rP.layout()));
      dropout_probabilities(rP_rc, s_rc, z);
      copy(copy_pt, thr_copy_pt.retile_S(rP), tPsPt(_, _, _, parity));
      cutlass::arch::fence_view_async_shared();                          // read next by wgmma (async proxy)
      cutlass::arch::NamedBarrier::sync(kConsumers, Traits::kBarrierP);  // both halves of P^T written

      // dV += (P Z)^T dO on this warpgroup's half of d, while dS is computed.
      warpgroup_fence_operand(acc_dv);
      warpgroup_arrive();
      cute::gemm(mma_kv, tdVrPt(_, _, _, parity), tdVrdOt(_, _, _, st), acc_dv);
      warpgroup_commit_batch();
      if constexpr (kEarlyP) {
        warpgroup_wait<1>();  // dP^T done (dV may still run)
        warpgroup_fence_operand(acc_dp);
        CUTE_UNROLL
        for (int r = 0; r < size<0>(s_rc); ++r) {
          CUTE_UNROLL
          for (int c = 0; c < kCols; ++c) dp_rc(r, c) = ds_value(r, c, s_rc(r, c), 1.f);
        }
      }
      Tensor rdS = cute::make_tensor<Element>(acc_dp.layout());
      CUTE_UNROLL
      for (int i = 0; i < size(acc_dp); ++i) rdS(i) = Element(acc_dp(i));
      copy(copy_pt, thr_copy_pt.retile_S(rdS), tdSsdSt(_, _, _, parity));
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(kConsumers, Traits::kBarrierdS);  // both halves of dS^T written
    }

    // dQ = dS K, then dK += dS^T Q, on this warpgroup's half of d; dQ's reductions go out while
    // dK runs.
    warpgroup_fence_operand(acc_dq);
    warpgroup_arrive();
    gemm_overwrite(mma_q, tdQrdS(_, _, _, parity), tdQrKt, acc_dq);
    warpgroup_commit_batch();
    warpgroup_fence_operand(acc_dk);
    warpgroup_arrive();
    cute::gemm(mma_kv, tdKrdSt(_, _, _, parity), tdKrQt(_, _, _, st), acc_dk);
    warpgroup_commit_batch();
    warpgroup_wait<1>();  // dV and dQ done
    warpgroup_fence_operand(acc_dq);

    // dQ into dq_accum in the accumulator's register order (the post-process's layout: value i of
    // consumer thread t at (i / 4) * 4 * 256 + 4 t + i % 4): 16-byte reductions, a warp's 512
    // contiguous bytes. Padded rows hold zeros (P = 0 there), so every value is added.
    dq_block = dq_accum + sm80::dq_accum_block(p, params.ws, b, si.q_row0, at.h, 0, kHeadDim) +
               int64_t(at.m_block) * kBlockM * kHeadDim;
    turn_begin(kSpreadDq ? 0 : w, step);
    send_dq(0);
    if (!kSpreadDq) {
      CUTE_UNROLL
      for (int batch = 1; batch < kDqBatches; ++batch) send_dq(batch);
      turn_end(w);
    }
    warpgroup_wait<0>();  // dK done
    warpgroup_fence_operand(acc_dv);
    warpgroup_fence_operand(acc_dk);
    pipeline_q.consumer_release(state);  // Q and dO of this step are read
    ++state;
  }

  if (kSpreadDq && steps > 0) {
    send_dq(1);
    turn_end(0);
    turn_begin(1, steps - 1);
    send_dq(2);
    send_dq(3);
    turn_end(1);
  }

  // dK (times the softmax scale: S = scale Q K^T) and dV of the stored keys, this warpgroup's half of d.
  Tensor tKVcKV = thr_kv.partition_C(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDim>>{}));
  store_dk_dv<Element, 2>(call, si, b, hk, n0, stored_k, cute::make_tensor(acc_dk.data(), rowcol(acc_dk.layout())),
                          cute::make_tensor(acc_dv.data(), rowcol(acc_dv.layout())),
                          cute::make_tensor(tKVcKV.data(), rowcol(tKVcKV.layout())));
#endif
}

}  // namespace flashattn::sm90
