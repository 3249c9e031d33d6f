// Hopper backward (sm90a) (FlashAttention-2, Alg. 2, with FlashAttention-3's producer/consumer
// split): a CTA per (128 keys, kv head, batch). Warp 0 loads K and V once and, per step (query
// head of the group, query block of kBlockM rows: 128 in the plain d64 kernel, else 64), Q and dO
// through a 2-stage TMA ring, with the step's lse and D (bulk copies from the pre-process's padded
// rows) on the same barrier; warpgroups 1
// and 2 each own 64 keys: S^T and dP^T by wgmma from shared memory, then P^T = exp(S^T - lse) and
// dS^T = P^T (dP^T - D) in registers, dV += P^T dO and dK += dS^T Q with the probabilities as
// register operands. dS goes to shared memory; the warpgroups take turns computing the step's
// dQ = dS K over all 128 keys, and warp 1 adds it to the fp32 dq_accum with one bulk reduction
// (post-processed to dQ); in deterministic mode the key blocks add in descending key order. Inside a step the
// GEMMs overlap the element-wise work: P is computed while dP^T runs, dS while dV += P^T dO runs.
// Every FA2 backward feature: causal, window, ALiBi, softcap, dropout, GQA/MQA, varlen. Not yet:
// ping-pong between the warpgroups, persistence over key blocks.
#pragma once

#include <cutlass/arch/barrier.h>

#include <cuda/atomic>
#include <cuda/ptx>
#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "api/validate.h"
#include "kernels/common/block_range.h"
#include "kernels/common/fast_exp2.h"
#include "kernels/common/philox.h"
#include "kernels/common/problem.h"
#include "kernels/common/store_tile.h"
#include "kernels/sm80/bwd.h"
#include "kernels/sm90/bwd_load.h"
#include "kernels/sm90/bwd_pointwise.h"
#include "kernels/sm90/bwd_traits.h"
#include "kernels/sm90/register_split.h"
#include "kernels/sm90/fwd_kernel.h"  // rowcol, acc_as_operand_a

namespace flashattn::sm90 {


// Named barriers (CUTLASS NamedBarrier numbering, as every other barrier of these kernels): wait for
// `sync_id` of `sync_threads` (bar.sync) when `wait`, else only arrive at `arrive_id` of
// `arrive_threads` (one predicated instruction each: no branch).
__device__ __forceinline__ void sync_or_arrive(bool wait, int sync_id, int sync_threads, int arrive_id,
                                               int arrive_threads) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %0, 0;\n @p bar.sync %1, %2;\n @!p bar.arrive %3, %4;\n}\n" ::"r"(
          int(wait)),
      "r"(hardware_barrier(sync_id)), "r"(sync_threads), "r"(hardware_barrier(arrive_id)), "r"(arrive_threads)
      : "memory");
}

// kDropout and kTransform (softcap or ALiBi) are compile-time, so the common path carries neither.
template <typename Traits, bool kDropout, bool kTransform>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    bwd_kernel(const __grid_constant__ BwdKernelParams<Traits> params) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  constexpr int kKeys = Traits::kKeysPerGroup;
  using Pipeline = typename Traits::Pipeline;
  extern __shared__ __align__(1024) char sm90_smem[];
  auto& shared = *reinterpret_cast<typename Traits::SharedStorage*>(sm90_smem);

  // The post-process may launch once every CTA of this grid has started (it waits for the key
  // blocks' done flags: KeyDone, bwd_load.h).
  cudaTriggerProgrammaticLaunchCompletion();
  const BwdCall& call = params.call;
  const Problem& p = call.problem;
  const BwdCta cta = bwd_cta<kBlockN>(p, call.deterministic);  // bwd_load.h
  if (cta.empty()) {  // every thread leaves together
    // No keys, no adds (the post-process would wait for it only if seqused_k exceeds the stored keys).
    if (threadIdx.x == 0 && cta.n_block >= 0) key_done<kBlockN>(call, params.ws, cta.b, cta.hk, cta.n_block).set();
    return;
  }
  const int n_block = cta.n_block, b = cta.b, hk = cta.hk, n0 = cta.n0, stored_k = cta.stored_k;
  const SeqInfo& si = cta.si;
  const BwdSteps walk = bwd_steps<kBlockM, kBlockN>(p, si, n_block, hk);
  const int steps = walk.count;

  const int warp_group = cutlass::canonical_warp_group_idx();  // warp-uniform to the compiler
  Tensor sQ = cute::make_tensor(make_smem_ptr(shared.q.begin()), typename Traits::SmemLayoutQ{});
  Tensor sdO = cute::make_tensor(make_smem_ptr(shared.dout.begin()), typename Traits::SmemLayoutQ{});
  Tensor sQt = cute::make_tensor(make_smem_ptr(shared.q.begin()), typename Traits::SmemLayoutQt{});
  Tensor sdOt = cute::make_tensor(make_smem_ptr(shared.dout.begin()), typename Traits::SmemLayoutQt{});
  Tensor sK = cute::make_tensor(make_smem_ptr(shared.k.begin()), typename Traits::SmemLayoutK{});
  Tensor sKt = cute::make_tensor(make_smem_ptr(shared.k.begin()), typename Traits::SmemLayoutKt{});
  Tensor sV = cute::make_tensor(make_smem_ptr(shared.v.begin()), typename Traits::SmemLayoutK{});
  Tensor sdS = cute::make_tensor(make_smem_ptr(shared.ds.begin()), typename Traits::SmemLayoutdS{});
  Tensor sdSt = cute::make_tensor(make_smem_ptr(shared.ds.begin()), typename Traits::SmemLayoutdSt{});

  Pipeline pipeline_q = init_bwd_barriers<Traits>(shared, warp_group == 0);

  if (warp_group == 0) {
    producer_registers<Traits>();
    if (threadIdx.x / 32 == 0 && cute::elect_one_sync()) {
      const BwdTmaShape t = bwd_tma_shape(p, b);
      Tensor mK = params.tma_k.get_tma_tensor(make_shape(t.rows_k, t.d, p.nheads_k, t.batches));
      Tensor mV = params.tma_v.get_tma_tensor(make_shape(t.rows_k, t.d, p.nheads_k, t.batches));
      Tensor mK_seq = domain_offset(make_coord(int32_t(si.k_row0), _0{}), mK(_, _, hk, t.bb));
      Tensor mV_seq = domain_offset(make_coord(int32_t(si.k_row0), _0{}), mV(_, _, hk, t.bb));
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
      load_q_dout(params, pipeline_q, sQ, sdO, shared, b, si, t, walk);
    } else if (threadIdx.x / 32 == 1) {
      // The dQ writer: per step, once the step's consumer warpgroup has put its dQ in shared memory,
      // one bulk reduction adds the whole kBlockM x d block to dq_accum (32 KB at d = 64 and 128 in one
      // instruction, where atomics took 8192), then the buffer is handed back.
      float* dq_accum = reinterpret_cast<float*>(static_cast<char*>(call.workspace) + params.ws.dq_accum);
      if (steps > 0) cutlass::arch::NamedBarrier::arrive(Traits::kDqSyncThreads, Traits::kBarrierDqEmpty);
      BwdStep at = walk.first;
#pragma unroll 1  // 24 registers in this warpgroup
      for (int step = 0; step < steps; ++step, walk.advance(at)) {
        cutlass::arch::NamedBarrier::sync(Traits::kDqSyncThreads, Traits::kBarrierDqFull);
        // Lane 0 issues, and so waits for, the bulk reductions (bulk-async groups belong to the
        // thread that commits them; the key block's done flag below waits for them all).
        const bool leader = threadIdx.x % 32 == 0;
        DqTurn turn{};
        if (leader) {
          float* block = dq_accum + sm80::dq_accum_block(p, params.ws, b, si.q_row0, at.h, 0, kHeadDim) +
                         int64_t(at.m_block) * kBlockM * kHeadDim;
          // Deterministic mode: wait for the key blocks above this one (DqTurn, bwd_load.h).
          if (call.deterministic) {
            turn = dq_turn<kBlockM, kBlockN>(call, params.ws, b, si, n_block, at);
            turn.wait();
            cuda::ptx::fence_proxy_async(cuda::ptx::space_global);  // the reduction below after the acquire
          }
          cuda::ptx::cp_reduce_async_bulk(cuda::ptx::space_global, cuda::ptx::space_shared, cuda::ptx::op_add, block,
                                          shared.dq, Traits::kDqBytes);
          tma_store_arrive();
          tma_store_wait<0>();  // the buffer is read
        }
        __syncwarp();
        if (step + 1 < steps) cutlass::arch::NamedBarrier::arrive(Traits::kDqSyncThreads, Traits::kBarrierDqEmpty);
        if (call.deterministic && leader) {
          // The adds done, not only the buffer read, then the next key block's turn. The buffer went
          // back before this wait: +2-6% deterministic d128 on H200 (bench/NOTES.md, session 15).
          cuda::ptx::cp_async_bulk_wait_group(cuda::ptx::n32_t<0>{});
          cuda::ptx::fence_proxy_async(cuda::ptx::space_global);
          turn.pass();
        }
      }
      if (threadIdx.x % 32 == 0) {
        // Every add of this key block complete: the post-process may convert the query blocks it saw.
        cuda::ptx::cp_async_bulk_wait_group(cuda::ptx::n32_t<0>{});
        cuda::ptx::fence_proxy_async(cuda::ptx::space_global);
        key_done<kBlockN>(call, params.ws, b, hk, n_block).set();
      }
    }
    return;
  }

  // Consumers: warpgroup w = 0, 1 owns keys [n0 + 64 w, n0 + 64 w + 64).
  consumer_registers<Traits>();
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
  Tensor tdQrdS = thr_q.partition_fragment_A(sdS);           // (MMA, M, K, key half + 2 x buffer)
  Tensor tdQrKt = thr_q.partition_fragment_B(sKt);           // (MMA, N, K, key half)
  Tensor acc_dk = partition_fragment_C(mma_kv, Shape<Int<kKeys>, Int<kHeadDim>>{});
  Tensor acc_dv = partition_fragment_C(mma_kv, Shape<Int<kKeys>, Int<kHeadDim>>{});
  clear(acc_dk);
  clear(acc_dv);
  using AccS = decltype(partition_fragment_C(mma_sdp, Shape<Int<kKeys>, Int<kBlockM>>{}));
  // (key, query) of each S^T value of this thread.
  Tensor tScS = thr_sdp.partition_C(make_identity_tensor(Shape<Int<kKeys>, Int<kBlockM>>{}));

  // Scores arrive as raw q.k (the scale folded into exp2) or, with a transform, in natural units.
  const float scale_log2 = float(M_LOG2E) * (kTransform ? 1.f : p.scale);
  const float keep_scale = kDropout ? 1.f / (1.f - p.dropout_p) : 1.f;
  const PhiloxState rng = philox_state(p);
  const int k0 = n0 + w * kKeys;  // this warpgroup's first key

  cutlass::arch::ClusterTransactionBarrier::wait(&shared.barrier_kv, 0);
  // dS^T into shared memory by stmatrix, 8 x 8 tiles of the accumulator as they are held.
  auto copy_ds = make_tiled_copy_C(typename Traits::SmemCopydS{}, mma_sdp);
  auto thr_copy_ds = copy_ds.get_thread_slice(tid);
  Tensor tdSsdSt = thr_copy_ds.partition_D(sdSt);  // (CPY, CPY_M, CPY_N, warpgroup + 2 x buffer)
  // Without a transform the probabilities are ready before dP^T: P is computed (and dV += P^T dO
  // issued) while the dP^T GEMM still runs. With softcap/ALiBi both are computed in one pass after
  // both GEMMs (the softcap derivative would otherwise be kept in 32 more registers), and so at
  // 128 queries a step (P in fp32 beside its bf16 copy and dP^T did not fit: 48 bytes spilled).
  constexpr bool kEarlyP = !kTransform && kBlockM == 64;
  cutlass::PipelineState<Traits::kStages> state;
  BwdStep at = walk.first;
  for (int step = 0; step < steps; ++step, walk.advance(at)) {
    const int m0 = at.m_block * kBlockM, st = state.index(), parity = step % 2;
    pipeline_q.consumer_wait(state);
    AccS acc_s, acc_dp;
    warpgroup_fence_operand(acc_s);
    warpgroup_fence_operand(acc_dp);
    warpgroup_arrive();
    gemm_overwrite(mma_sdp, tSrK, tSrQ(_, _, _, st), acc_s);
    warpgroup_commit_batch();  // group 1: S^T
    gemm_overwrite(mma_sdp, tdPrV, tdPrdO(_, _, _, st), acc_dp);
    warpgroup_commit_batch();  // group 2: dP^T

    // lse (log2 units; +inf past the sequence, so P = 0 there) and D of the step's queries: in the
    // stage, beside Q and dO.
    const float* lse_log2 = shared.lse_log2[st];
    const float* dsum_q = shared.dsum[st];
    // A warpgroup barrier a step. Nothing here needs it (lse and D came with the stage, and the
    // DsFull/DqEmpty barriers order the two warpgroups' writes of shared.dq), but without it
    // compute-sanitizer's racecheck reports write-after-write hazards on shared.dq in every variant
    // (bench/NOTES.md, session 12), and at d64 it costs nothing measurable.
    cutlass::arch::NamedBarrier::sync(128, Traits::kBarrierWarpGroup + w);
    Tensor cS_rc = cute::make_tensor(tScS.data(), rowcol(tScS.layout()));
    constexpr int kCols = decltype(size<1>(cS_rc))::value;
    Tensor s_rc = cute::make_tensor(acc_s.data(), rowcol(acc_s.layout()));
    Tensor dp_rc = cute::make_tensor(acc_dp.data(), rowcol(acc_dp.layout()));

    // Dropout (the forward's mask), computed under the GEMMs: a keep bit per value.
    const auto z = dropout_scale<kDropout>(p, rng, b, at.h, cS_rc, m0, k0, keep_scale);
    // Per value (with dropout mask Z and the softcap derivative g):
    //   P = exp(s - lse),  dS = P (Z dP - D) g,  and P Z feeds dV  (Alg. 2 lines 13-16).
    auto ds_value = [&](int r, int c, float prob, float grad) {
      const float zdp = z(r, c, dp_rc(r, c));
      return prob * (zdp - dsum_q[get<1>(cS_rc(r, c))]) * grad;
    };
    if constexpr (kEarlyP) warpgroup_wait<1>();  // S^T done
    else warpgroup_wait<0>();
    warpgroup_fence_operand(acc_s);

    // P^T = exp(scale S^T - lse), masked per element only where the block crosses the sequence end or
    // the causal/window diagonal (bwd_pointwise.h); with a transform, dS in the same pass.
    const BlockVisibility vis = block_visibility<kKeys, kBlockM>(p, si, m0, k0);
    const float slope = kTransform ? alibi_slope(p, b, at.h) : 0.f;
    const FastSoftcap cap(p.scale, p.softcap);
    auto on_prob = [&](int r, int c, float prob, float grad) {
      if constexpr (!kEarlyP) dp_rc(r, c) = ds_value(r, c, prob, grad);
    };
    block_probabilities<kTransform>(s_rc, cS_rc, p, si, m0, k0, vis, slope, cap, scale_log2, lse_log2,
                                    on_prob);

    // dV += (P Z)^T dO, issued as soon as P is (group 3).
    Tensor rP = cute::make_tensor<Element>(acc_s.layout());
    Tensor rP_rc = cute::make_tensor(rP.data(), rowcol(rP.layout()));
    dropout_probabilities(rP_rc, s_rc, z);
    Tensor tdVrP = cute::make_tensor(rP.data(), acc_as_operand_a(rP.layout()));
    warpgroup_fence_operand(acc_dv);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdVrP); ++k) cute::gemm(mma_kv, tdVrP(_, _, k), tdVrdOt(_, _, k, st), acc_dv);
    warpgroup_commit_batch();

    if constexpr (kEarlyP) {
      warpgroup_wait<1>();  // dP^T done (groups retire in order; dV may still run)
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
    // dS^T into shared memory for dQ, visible to the async proxy (wgmma); then "this warpgroup's
    // half is written": the step's dQ warpgroup waits for both halves, the other goes on.
    copy(copy_ds, thr_copy_ds.retile_S(rdS), tdSsdSt(_, _, _, w + 2 * parity));
    cutlass::arch::fence_view_async_shared();
    const bool dq_turn = w == parity;  // the warpgroups take turns computing dQ

    Tensor tdKrdS = cute::make_tensor(rdS.data(), acc_as_operand_a(rdS.layout()));
    warpgroup_fence_operand(acc_dk);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdKrdS); ++k) cute::gemm(mma_kv, tdKrdS(_, _, k), tdKrQt(_, _, k, st), acc_dk);
    warpgroup_commit_batch();  // group 4: dK += dS^T Q
    // Under those GEMMs: the step's dQ warpgroup waits until its own half of dS is written (its
    // warpgroup barrier), the other says its half is (one predicated instruction: no branch around
    // the wgmma operands).
    sync_or_arrive(dq_turn, Traits::kBarrierWarpGroup + w, 128, Traits::kBarrierDsFull + parity, 256);
    warpgroup_wait<0>();  // P and dS registers free before the dQ accumulator is live
    warpgroup_fence_operand(acc_dv);
    warpgroup_fence_operand(acc_dk);
    pipeline_q.consumer_release(state);  // Q and dO of this step are read
    ++state;
    if (!dq_turn) continue;

    // dQ = dS K over the CTA's 128 keys (both halves of dS), into the shared dQ buffer in register
    // order (value i of thread t at (i / 4) * 512 + 4 t + i % 4: 16-byte stores, no bank conflicts),
    // then handed to the writer warp. This warpgroup's own keys first: those GEMMs run while the
    // other warpgroup, a dQ behind, still computes its half of dS (waiting for both halves first
    // was 8% of the kernel's stall samples at d128: bench/NOTES.md, session 37).
    Tensor acc_dq = partition_fragment_C(mma_q, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    warpgroup_fence_operand(acc_dq);
    warpgroup_arrive();
    mma_q.accumulate_ = GMMA::ScaleOut::Zero;
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdQrdS); ++k) {
      cute::gemm(mma_q, tdQrdS(_, _, k, w + 2 * parity), tdQrKt(_, _, k, w), acc_dq);
      mma_q.accumulate_ = GMMA::ScaleOut::One;
    }
    cutlass::arch::NamedBarrier::sync(256, Traits::kBarrierDsFull + parity);  // the other half written
    warpgroup_fence_operand(acc_dq);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < size<2>(tdQrdS); ++k)
      cute::gemm(mma_q, tdQrdS(_, _, k, 1 - w + 2 * parity), tdQrKt(_, _, k, 1 - w), acc_dq);
    warpgroup_commit_batch();
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_dq);
    static_assert(decltype(size(acc_dq))::value % 4 == 0);
    cutlass::arch::NamedBarrier::sync(Traits::kDqSyncThreads, Traits::kBarrierDqEmpty);
    CUTE_UNROLL
    for (int i = 0; i < size(acc_dq); i += 4)
      *reinterpret_cast<float4*>(shared.dq + (i / 4) * 512 + 4 * tid) =
          make_float4(acc_dq(i), acc_dq(i + 1), acc_dq(i + 2), acc_dq(i + 3));
    cutlass::arch::fence_view_async_shared();  // read next by the bulk reduction (async proxy)
    cutlass::arch::NamedBarrier::arrive(Traits::kDqSyncThreads, Traits::kBarrierDqFull);
  }

  // dK (times the softmax scale: S = scale Q K^T) and dV of the stored keys of this warpgroup.
  Tensor tKVcKV = thr_kv.partition_C(make_identity_tensor(Shape<Int<kKeys>, Int<kHeadDim>>{}));
  // 16-byte stores (store_tile_wide): +1-11% at 512-2k, d64-d256 (bench/NOTES.md, session 14).
  store_dk_dv<Element, 2>(call, si, b, hk, k0, stored_k, cute::make_tensor(acc_dk.data(), rowcol(acc_dk.layout())),
                          cute::make_tensor(acc_dv.data(), rowcol(acc_dv.layout())),
                          cute::make_tensor(tKVcKV.data(), rowcol(tKVcKV.layout())));
#endif
}

// dQ = scale * dq_accum in the input dtype with the caller's strides. A kBlockM-row block of dq_accum
// holds the dQ accumulator of the main kernel's TiledMmaQ in register order (value i of thread t at
// (i / 4) * 512 + 4 t + i % 4), so thread t here reads thread t's values (16-byte loads, coalesced)
// and finds their (row, column) from the same partition. The block goes through shared memory so
// that dQ leaves in whole 16-byte row pieces (stored from the accumulator layout, 4-byte pieces of
// 8 rows a warp instruction, it took 15% of a 1k backward: bench/NOTES.md, session 5).
// grid (query blocks of kBlockM, batch, nheads: the order in which the main grid finishes heads), one
// thread per thread of TiledMmaQ (128; 256 at d = 256, where the two warpgroups hold the two halves
// of d: value i of thread t at (i / 4) * 1024 + 4 t + i % 4).
// kUnderTail: launched as the main grid's programmatic dependent (bwd_launch.h), it starts once every
// main CTA has, and converts each query block once every key block that sees it is done (KeyDone);
// otherwise it runs after the main grid.
template <typename Traits, bool kUnderTail>
__global__ void __launch_bounds__(decltype(size(typename Traits::TiledMmaQ{}))::value)
    bwd_postprocess_kernel(const BwdCall call, sm80::BwdWorkspace ws) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kHeadDim = Traits::kHeadDim;
  constexpr int kThreads = decltype(size(typename Traits::TiledMmaQ{}))::value;
  // Rows 16 bytes longer than the tile: the 8 rows of a warp's 4-byte writes land in distinct banks.
  constexpr int kPitch = kHeadDim + 8;
  __shared__ alignas(16) Element tile[kBlockM * kPitch];
  const Problem& p = call.problem;
  const int m_block = blockIdx.x, b = blockIdx.y, h = blockIdx.z;
  const SeqInfo si = seq_info(p, b);
  // kUnderTail: the first block waits for the main grid at its end, so that this grid ends after the
  // main one (whose dK and dV the next kernel in the stream may read); the others leave at once and
  // free their slot for the next query block (with every block waiting, finished blocks held their
  // slots until the main grid ended: +1.6% at d128 2k against +4.2%, bench/NOTES.md, session 35).
  const bool waits_for_main = kUnderTail && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0;
  if (m_block * kBlockM >= si.seqlen_q) {
    if (waits_for_main) cudaGridDependencySynchronize();
    return;
  }
  if constexpr (kUnderTail) {
    // Wait for the key blocks that see this query block (KeyDone, bwd_load.h), a flag a thread.
    const BlockRange keys = key_blocks_of(p, m_block, kBlockM, Traits::kBlockN, si.seqlen_q, si.seqlen_k);
    const int hk = h / (p.nheads / p.nheads_k);
    const int grid_keys = (p.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN;  // the main grid's key blocks
    for (int n = keys.begin + int(threadIdx.x); n < min(keys.end, grid_keys); n += kThreads)
      key_done<Traits::kBlockN>(call, ws, b, hk, n).wait();
    __syncthreads();  // every thread's loads below after every thread's acquire
  }
  const float* block = reinterpret_cast<const float*>(static_cast<const char*>(call.workspace) + ws.dq_accum) +
                       sm80::dq_accum_block(p, ws, b, si.q_row0, h, 0, kHeadDim) +
                       int64_t(m_block) * kBlockM * kHeadDim;
  typename Traits::TiledMmaQ mma_q;
  Tensor tQcQ =
      mma_q.get_thread_slice(threadIdx.x).partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  // Values i, i + 1 (i even) are neighbours in a row.
  CUTE_UNROLL
  for (int i = 0; i < size(tQcQ); i += 4) {
    // From L2: the main grid may still be running, and its adds land there.
    const float4 v = __ldcg(reinterpret_cast<const float4*>(block + (i / 4) * 4 * kThreads + 4 * threadIdx.x));
    const float values[4] = {v.x, v.y, v.z, v.w};
    CUTE_UNROLL
    for (int j = 0; j < 4; j += 2) {
      const uint32_t lo = Element(p.scale * values[j]).raw(), hi = Element(p.scale * values[j + 1]).raw();
      *reinterpret_cast<uint32_t*>(&tile[get<0>(tQcQ(i + j)) * kPitch + get<1>(tQcQ(i + j))]) = lo | hi << 16;
    }
  }
  __syncthreads();
  Element* dq = static_cast<Element*>(call.dq) + row_offset(call.dq_stride, p.varlen, b, si.q_row0, 0, h);
  copy_tile_rows<kBlockM, kHeadDim, kPitch, kThreads>(tile, dq + int64_t(m_block) * kBlockM * call.dq_stride.row,
                                                 call.dq_stride.row, si.seqlen_q - m_block * kBlockM, p.head_dim);
  if (waits_for_main) cudaGridDependencySynchronize();
}

}  // namespace flashattn::sm90
