// FlashAttention-2 backward on mma.sync (sm80+), Dao 2023, Algorithm 2. One CTA per (key block,
// batch, kv head): K and V stay in shared memory, dK and dV accumulate in registers while the CTA walks
// every query block (and, for GQA/MQA, every query head of its group, which sums dK/dV over the group
// without atomics). Per query block it recomputes P from the forward's lse and adds its dQ share to an
// fp32 accumulator with atomics; in deterministic mode the key blocks of a query block take turns in
// descending key order (a per-query-block counter), so the floating-point sum is the same on every run.
#pragma once

#include <cuda/atomic>
#include <type_traits>
#include <cute/tensor.hpp>

#include "api/validate.h"
#include "kernels/common/block_range.h"
#include "kernels/common/fast_exp2.h"
#include "kernels/common/problem.h"
#include "kernels/common/store_tile.h"
#include "kernels/common/score.h"
#include "kernels/sm80/bwd_traits.h"
#include "kernels/sm80/tile_utils.h"

namespace flashattn::sm80 {

// *address += value with no value returned (PTX red). atomicAdd compiles to the same reduction only
// while no fence follows it; the deterministic mode's __threadfence turns it into a returning atomic
// whose source registers stay held until L2 answers (the next step then stalls on them).
__device__ __forceinline__ void reduce_add(float* address, float value) {
  asm volatile("red.global.add.f32 [%0], %1;" ::"l"(address), "f"(value) : "memory");
}

// kDropout and kTransform (softcap or ALiBi) are compile-time so the common path carries neither.
template <typename Traits, bool kDropout, bool kTransform>
__global__ void __launch_bounds__(Traits::kThreads) bwd_kernel(const BwdCall call, const BwdWorkspace ws) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  extern __shared__ char smem[];
  const Problem& p = call.problem;
  // Deterministic mode: the dQ adds of a query block go by descending key block, the order in which
  // the key blocks reach it under a causal mask (the last key block a query block sees starts there),
  // and key blocks are launched in that order, so a CTA only waits for CTAs launched before it.
  const int n_block = call.deterministic ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
  const int b = blockIdx.y, hk = blockIdx.z, tid = threadIdx.x;
  if (b >= p.batch) return;
  const SeqInfo si = seq_info(p, b);
  const int n0 = n_block * kBlockN;
  // Keys stored for this sequence; those at or past seqlen_k (seqused_k) get zero gradients.
  const int stored_k = p.varlen ? p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b] : p.seqlen_k;
  if (n0 >= stored_k) return;
  const int group = p.nheads / p.nheads_k;

  const BlockRange query_blocks = query_blocks_of(p, n_block, kBlockM, kBlockN, si.seqlen_q, si.seqlen_k);
  const int m_begin = query_blocks.begin, m_end = query_blocks.end;
  const int steps = m_end > m_begin ? group * (m_end - m_begin) : 0;  // (query head, query block) pairs

  const PhiloxState rng = philox_state(p);
  char* ws_base = static_cast<char*>(call.workspace);
  float* dq_accum = reinterpret_cast<float*>(ws_base + ws.dq_accum);
  const float* dsum = reinterpret_cast<const float*>(ws_base + ws.dsum);
  const float* lse_log2_ws = reinterpret_cast<const float*>(ws_base + ws.lse_log2);
  int* semaphore = reinterpret_cast<int*>(ws_base + ws.semaphore);

  // Global views of the tiles of one query head (set per step) and of this CTA's keys.
  const Element* k_ptr = static_cast<const Element*>(p.k) + row_offset(p.k_stride, p.varlen, b, si.k_row0, 0, hk);
  const Element* v_ptr = static_cast<const Element*>(p.v) + row_offset(p.v_stride, p.varlen, b, si.k_row0, 0, hk);
  Tensor mK = cute::make_tensor(make_gmem_ptr(k_ptr), make_shape(si.seqlen_k, Int<kHeadDim>{}), make_stride(p.k_stride.row, _1{}));
  Tensor mV = cute::make_tensor(make_gmem_ptr(v_ptr), make_shape(si.seqlen_k, Int<kHeadDim>{}), make_stride(p.v_stride.row, _1{}));
  Tensor gK = local_tile(mK, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(n_block, 0));
  Tensor gV = local_tile(mV, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(n_block, 0));

  Tensor sQ = cute::make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename Traits::SmemLayoutQ{});
  // Q and dO have two stages each (stage s at s * size(sQ)): step s reads stage s % 2 while the
  // tiles of step s + 1 land in the other. A stage is a whole number of swizzle periods, so a view
  // of stage 0 shifted by stage_offset(s) is the view of stage s.
  Tensor sdO = cute::make_tensor(sQ.data() + 2 * size(sQ), typename Traits::SmemLayoutQ{});
  Tensor sK = cute::make_tensor(sdO.data() + 2 * size(sdO), typename Traits::SmemLayoutKV{});
  auto stage_offset = [&](int step) { return (step % 2) * int(size(sQ)); };
  auto at_stage = [](auto const& view, int offset) { return cute::make_tensor(view.data() + offset, view.layout()); };
  Tensor sV = cute::make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});
  Tensor sP = cute::make_tensor(sV.data() + size(sV), typename Traits::SmemLayoutP{});
  Tensor sdS = cute::make_tensor(sP.data() + size(sP), typename Traits::SmemLayoutP{});
  Tensor sQt = cute::make_tensor(sQ.data(), typename Traits::SmemLayoutQt{});
  Tensor sQtNoSwizzle = cute::make_tensor(sQ.data().get(), typename Traits::SmemLayoutQtNoSwizzle{});
  Tensor sdOt = cute::make_tensor(sdO.data(), typename Traits::SmemLayoutQt{});
  Tensor sdOtNoSwizzle = cute::make_tensor(sdO.data().get(), typename Traits::SmemLayoutQtNoSwizzle{});
  Tensor sKt = cute::make_tensor(sK.data(), typename Traits::SmemLayoutKt{});
  Tensor sKtNoSwizzle = cute::make_tensor(sK.data().get(), typename Traits::SmemLayoutKtNoSwizzle{});
  Tensor sPt = cute::make_tensor(sP.data(), typename Traits::SmemLayoutPt{});
  Tensor sPtNoSwizzle = cute::make_tensor(sP.data().get(), typename Traits::SmemLayoutPtNoSwizzle{});
  Tensor sdSt = cute::make_tensor(sdS.data(), typename Traits::SmemLayoutPt{});
  Tensor sdStNoSwizzle = cute::make_tensor(sdS.data().get(), typename Traits::SmemLayoutPtNoSwizzle{});

  typename Traits::GmemCopy gmem_copy;
  auto gmem_thr = gmem_copy.get_thread_slice(tid);
  Tensor tQsQ = gmem_thr.partition_D(sQ);
  Tensor tdOsdO = gmem_thr.partition_D(sdO);
  Tensor tQcQ = gmem_thr.partition_S(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  Tensor tKVcKV = gmem_thr.partition_S(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDim>>{}));

  // Starts the cp.async of step `step`'s Q and dO tiles.
  // Step s is query block m of query head h, m_begin <= m < m_end, blocks innermost.
  auto load_q_do = [&](int step, int h, int m) {
    const Element* q_ptr = static_cast<const Element*>(p.q) + row_offset(p.q_stride, p.varlen, b, si.q_row0, 0, h);
    const Element* do_ptr =
        static_cast<const Element*>(call.dout) + row_offset(call.dout_stride, p.varlen, b, si.q_row0, 0, h);
    Tensor mQ = cute::make_tensor(make_gmem_ptr(q_ptr), make_shape(si.seqlen_q, Int<kHeadDim>{}), make_stride(p.q_stride.row, _1{}));
    Tensor mdO = cute::make_tensor(make_gmem_ptr(do_ptr), make_shape(si.seqlen_q, Int<kHeadDim>{}), make_stride(call.dout_stride.row, _1{}));
    Tensor gQ = local_tile(mQ, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m, 0));
    Tensor gdO = local_tile(mdO, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m, 0));
    Tensor dst_q = at_stage(tQsQ, stage_offset(step));
    Tensor dst_do = at_stage(tdOsdO, stage_offset(step));
    copy_tile(gmem_copy, gmem_thr.partition_S(gQ), dst_q, tQcQ, si.seqlen_q - m * kBlockM, p.head_dim);
    copy_tile(gmem_copy, gmem_thr.partition_S(gdO), dst_do, tQcQ, si.seqlen_q - m * kBlockM, p.head_dim);
  };

  // S = Q K^T and dP = dO V^T.
  typename Traits::TiledMmaSdP mma_sdp;
  auto thr_sdp = mma_sdp.get_thread_slice(tid);
  Tensor tSrQ = thr_sdp.partition_fragment_A(sQ);
  Tensor tSrK = thr_sdp.partition_fragment_B(sK);
  Tensor tdPrdO = thr_sdp.partition_fragment_A(sdO);
  Tensor tdPrV = thr_sdp.partition_fragment_B(sV);
  auto copy_sdp_a = make_tiled_copy_A(typename Traits::SmemCopy{}, mma_sdp);
  auto copy_sdp_b = make_tiled_copy_B(typename Traits::SmemCopy{}, mma_sdp);
  auto thr_sdp_a = copy_sdp_a.get_thread_slice(tid);
  auto thr_sdp_b = copy_sdp_b.get_thread_slice(tid);
  Tensor tSsQ = thr_sdp_a.partition_S(sQ);
  Tensor tSrQ_view = thr_sdp_a.retile_D(tSrQ);
  Tensor tdPsdO = thr_sdp_a.partition_S(sdO);
  Tensor tdPrdO_view = thr_sdp_a.retile_D(tdPrdO);
  Tensor tSsK = thr_sdp_b.partition_S(sK);
  Tensor tSrK_view = thr_sdp_b.retile_D(tSrK);
  Tensor tdPsV = thr_sdp_b.partition_S(sV);
  Tensor tdPrV_view = thr_sdp_b.retile_D(tdPrV);
  Tensor tScS = thr_sdp.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
  auto copy_pds = make_tiled_copy_C(typename Traits::SmemCopyStoreC{}, mma_sdp);
  auto thr_pds = copy_pds.get_thread_slice(tid);
  Tensor tPsP = thr_pds.partition_D(sP);
  Tensor tdSsdS = thr_pds.partition_D(sdS);

  // dV += P^T dO and dK += dS^T Q.
  typename Traits::TiledMmadKV mma_dkv;
  auto thr_dkv = mma_dkv.get_thread_slice(tid);
  Tensor tdVrPt = thr_dkv.partition_fragment_A(sPtNoSwizzle);
  Tensor tdVrdOt = thr_dkv.partition_fragment_B(sdOtNoSwizzle);
  Tensor tdKrdSt = thr_dkv.partition_fragment_A(sdStNoSwizzle);
  Tensor tdKrQt = thr_dkv.partition_fragment_B(sQtNoSwizzle);
  auto copy_dkv_a = make_tiled_copy_A(typename Traits::SmemCopyTransposed{}, mma_dkv);
  auto copy_dkv_b = make_tiled_copy_B(typename Traits::SmemCopyTransposed{}, mma_dkv);
  auto thr_dkv_a = copy_dkv_a.get_thread_slice(tid);
  auto thr_dkv_b = copy_dkv_b.get_thread_slice(tid);
  Tensor tdVsPt = thr_dkv_a.partition_S(sPt);
  Tensor tdVrPt_view = thr_dkv_a.retile_D(tdVrPt);
  Tensor tdKsdSt = thr_dkv_a.partition_S(sdSt);
  Tensor tdKrdSt_view = thr_dkv_a.retile_D(tdKrdSt);
  Tensor tdVsdOt = thr_dkv_b.partition_S(sdOt);
  Tensor tdVrdOt_view = thr_dkv_b.retile_D(tdVrdOt);
  Tensor tdKsQt = thr_dkv_b.partition_S(sQt);
  Tensor tdKrQt_view = thr_dkv_b.retile_D(tdKrQt);
  Tensor acc_dk = partition_fragment_C(mma_dkv, Shape<Int<kBlockN>, Int<kHeadDim>>{});
  Tensor acc_dv = partition_fragment_C(mma_dkv, Shape<Int<kBlockN>, Int<kHeadDim>>{});
  clear(acc_dk);
  clear(acc_dv);

  // dQ = dS K.
  typename Traits::TiledMmadQ mma_dq;
  auto thr_dq = mma_dq.get_thread_slice(tid);
  Tensor tdQrdS = thr_dq.partition_fragment_A(sdS);
  Tensor tdQrKt = thr_dq.partition_fragment_B(sKtNoSwizzle);
  auto copy_dq_a = make_tiled_copy_A(typename Traits::SmemCopy{}, mma_dq);
  auto copy_dq_b = make_tiled_copy_B(typename Traits::SmemCopyTransposed{}, mma_dq);
  auto thr_dq_a = copy_dq_a.get_thread_slice(tid);
  auto thr_dq_b = copy_dq_b.get_thread_slice(tid);
  Tensor tdQsdS = thr_dq_a.partition_S(sdS);
  Tensor tdQrdS_view = thr_dq_a.retile_D(tdQrdS);
  Tensor tdQsKt = thr_dq_b.partition_S(sKt);
  Tensor tdQrKt_view = thr_dq_b.retile_D(tdQrKt);

  if (steps > 0) {
    Tensor tKsK = gmem_thr.partition_D(sK);
    Tensor tVsV = gmem_thr.partition_D(sV);
    copy_tile(gmem_copy, gmem_thr.partition_S(gK), tKsK, tKVcKV, si.seqlen_k - n0, p.head_dim);
    copy_tile(gmem_copy, gmem_thr.partition_S(gV), tVsV, tKVcKV, si.seqlen_k - n0, p.head_dim);
    load_q_do(0, hk * group, m_begin);
  }
  cp_async_fence();

  // Scores arrive as raw q.k (scale folded into exp2) or, with a transform, in natural units.
  const float scale_log2 = float(M_LOG2E) * (kTransform ? 1.f : p.scale);
  const FastSoftcap cap(p.scale, p.softcap);
  const float keep_scale = kDropout ? 1.f / (1.f - p.dropout_p) : 1.f;
  const int diag = si.seqlen_k - si.seqlen_q;
  // This thread's rows of an S tile: (row-half, MMA_M) -> index r of rowcol().
  constexpr int kRows = 2 * decltype(size<1>(tScS))::value;

  for (int step = 0, h = hk * group, m_block = m_begin; step < steps; ++step) {
    const int st = stage_offset(step);
    const int next_h = m_block + 1 < m_end ? h : h + 1, next_m_block = m_block + 1 < m_end ? m_block + 1 : m_begin;
    const int m0 = m_block * kBlockM;
    // lse (in log2 units) and D of this thread's rows, from the pre-process (rows past the sequence:
    // lse = +inf, so P = 0, and D = 0).
    float lse_log2[kRows], d_row[kRows];
    static_assert(kStatRowAlign % kBlockM == 0, "a block's rows lie inside its sequence's padded rows");
    const int64_t stat0 = stat_row0(p, ws, b, si.q_row0, h);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const int64_t i = stat0 + m0 + get<0>(tScS(2 * (r % 2), r / 2, 0));
      lse_log2[r] = lse_log2_ws[i];
      d_row[r] = dsum[i];
    }
    const float slope = kTransform ? alibi_slope(p, b, h) : 0.f;
    const uint64_t subsequence = dropout_subsequence(rng.offset, p, b, h);

    cp_async_wait<0>();
    __syncthreads();  // this step's Q, dO (and K, V) landed; every warp is done with the last step
    // The next step's Q and dO into the other stage (its last reader, the last step's dK GEMM, is
    // behind the barrier above); they land while this step computes.
    if (step + 1 < steps) load_q_do(step + 1, next_h, next_m_block);
    cp_async_fence();

    Tensor acc_s = partition_fragment_C(mma_sdp, Shape<Int<kBlockM>, Int<kBlockN>>{});
    Tensor acc_dp = partition_fragment_C(mma_sdp, Shape<Int<kBlockM>, Int<kBlockN>>{});
    clear(acc_s);
    clear(acc_dp);
    gemm_smem(mma_sdp, acc_s, tSrQ, tSrK, at_stage(tSsQ, st), tSsK, copy_sdp_a, copy_sdp_b, tSrQ_view, tSrK_view);
    gemm_smem(mma_sdp, acc_dp, tdPrdO, tdPrV, at_stage(tdPsdO, st), tdPsV, copy_sdp_a, copy_sdp_b, tdPrdO_view,
              tdPrV_view);

    // Per pair (Alg. 2 lines 13-16, with dropout mask Z and the softcap derivative g):
    //   P = exp(s - lse),  dS = P * (Z * dP - D) * g,  and P * Z feeds dV.
    const bool need_mask =
        n0 + kBlockN > si.seqlen_k || (p.window_right >= 0 && n0 + kBlockN - 1 > m0 + diag + p.window_right) ||
        (p.window_left >= 0 && n0 < min(m0 + kBlockM, si.seqlen_q) - 1 + diag - p.window_left);
    // Copies of the pass, so the common unmasked tile carries no per-element branch on need_mask,
    // and the softcap alone or ALiBi alone (unmasked) none on the transform (its branches,
    // predicated, issued every path's instructions a score: the forward's TileMask, bench/NOTES.md,
    // session 41). ALiBi alone: row - col is a thread's offset plus a constant of the unrolled
    // element, so the bias is two FFMAs a score (AlibiFromFirst, fast_exp2.h).
    enum { kAnyTransform, kSoftcapOnly, kAlibiOnly };
    const AlibiFromFirst alibi(slope, get<0>(tScS(0, 0, 0)), get<1>(tScS(0, 0, 0)), m0 + diag - n0);
    auto pointwise = [&](auto masked, auto kind) {
      constexpr int kKind = decltype(kind)::value;
      CUTE_UNROLL
      for (int mi = 0; mi < size<1>(acc_s); ++mi) {
        CUTE_UNROLL
        for (int ni = 0; ni < size<2>(acc_s); ++ni) {
          Uint4 bits{};
          if constexpr (kDropout)  // one Philox call per 2x2 fragment group (philox.h)
            bits = philox4x32_10(
                dropout_counter(subsequence, m0 + get<0>(tScS(0, mi, ni)), n0 + get<1>(tScS(0, mi, ni))),
                uint32_t(rng.seed), uint32_t(rng.seed >> 32));
          CUTE_UNROLL
          for (int v = 0; v < 4; ++v) {
            const int row = m0 + get<0>(tScS(v, mi, ni)), col = n0 + get<1>(tScS(v, mi, ni));
            const int r = 2 * mi + v / 2;
            float s = acc_s(v, mi, ni), grad = 1.f;
            if constexpr (kTransform && kKind == kAlibiOnly) {
              s = alibi.score(s, p.scale, get<0>(tScS(v, mi, ni)), get<1>(tScS(v, mi, ni)));
            } else if constexpr (kTransform) {
              if (kKind == kSoftcapOnly || p.softcap > 0.f) {
                const float t = cap.tanh(s);
                s = cap.capped(t);
                grad = FastSoftcap::grad(t);
              } else {
                s *= p.scale;
              }
              if (kKind != kSoftcapOnly && slope != 0.f) s -= slope * float(abs(row + diag - col));
            }
            float prob = fast_exp2(s * scale_log2 - lse_log2[r]);
            if constexpr (decltype(masked)::value) {
              const bool visible = col < si.seqlen_k && (p.window_left < 0 || col >= row + diag - p.window_left) &&
                                   (p.window_right < 0 || col <= row + diag + p.window_right);
              if (!visible) prob = 0.f;
            }
            float z = 1.f;
            if constexpr (kDropout) {
              const int w = dropout_word(row, col);
              const uint32_t word = w == 0 ? bits.x : w == 1 ? bits.y : w == 2 ? bits.z : bits.w;
              z = word < p.dropout_threshold ? 0.f : keep_scale;
            }
            acc_dp(v, mi, ni) = prob * (z * acc_dp(v, mi, ni) - d_row[r]) * grad;
            acc_s(v, mi, ni) = prob * z;
          }
        }
      }
    };
    auto masked_or_not = [&](auto kind) {
      if (need_mask)
        pointwise(std::true_type{}, kind);
      else
        pointwise(std::false_type{}, kind);
    };
    using AnyTransform = std::integral_constant<int, kAnyTransform>;
    if constexpr (kTransform) {
      if (p.softcap > 0.f && slope == 0.f)
        masked_or_not(std::integral_constant<int, kSoftcapOnly>{});
      else if (p.softcap == 0.f && !need_mask)
        pointwise(std::false_type{}, std::integral_constant<int, kAlibiOnly>{});
      else
        masked_or_not(AnyTransform{});
    } else {
      masked_or_not(AnyTransform{});
    }
    {
      Tensor rP = cute::make_tensor<Element>(acc_s.layout());
      Tensor rdS = cute::make_tensor<Element>(acc_dp.layout());
      CUTE_UNROLL
      for (int i = 0; i < size(acc_s); ++i) {
        rP(i) = Element(acc_s(i));
        rdS(i) = Element(acc_dp(i));
      }
      copy(copy_pds, thr_pds.retile_S(rP), tPsP);
      copy(copy_pds, thr_pds.retile_S(rdS), tdSsdS);
    }
    __syncthreads();  // P, dS visible to every warp

    gemm_smem(mma_dkv, acc_dv, tdVrPt, tdVrdOt, tdVsPt, at_stage(tdVsdOt, st), copy_dkv_a, copy_dkv_b, tdVrPt_view,
              tdVrdOt_view);

    // dQ before dK: the dQ atomics (fire-and-forget, but their source registers stay held until the
    // memory system has taken them) drain while the dK GEMM runs instead of stalling the next step.
    Tensor acc_dq = partition_fragment_C(mma_dq, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    clear(acc_dq);
    gemm_smem(mma_dq, acc_dq, tdQrdS, tdQrKt, tdQsdS, tdQsKt, copy_dq_a, copy_dq_b, tdQrdS_view, tdQrKt_view);

    int* turn = semaphore + (int64_t(b) * p.nheads + h) * ws.m_blocks + m_block;
    if (call.deterministic) {
      // Key blocks add into a query block's dQ by descending key: wait for the ones above this.
      const int my_turn = key_blocks_of(p, m_block, kBlockM, kBlockN, si.seqlen_q, si.seqlen_k).end - 1 - n_block;
      if (tid == 0) {
        cuda::atomic_ref<int, cuda::thread_scope_device> ref(*turn);
        while (ref.load(cuda::memory_order_acquire) != my_turn) __nanosleep(64);
      }
      __syncthreads();
    }
    // Padded rows and columns past head_dim hold zeros (P = 0 there; K's extra columns are zero-filled),
    // so every value is added: one coalesced 128-byte reduction per warp and fragment value (bwd.h).
    float* dq_block = dq_accum + dq_accum_block(p, ws, b, si.q_row0, h, m_block, kHeadDim);
    CUTE_UNROLL
    for (int i = 0; i < size(acc_dq); ++i) reduce_add(dq_block + i * Traits::kThreads + tid, acc_dq(i));
    gemm_smem(mma_dkv, acc_dk, tdKrdSt, tdKrQt, tdKsdSt, at_stage(tdKsQt, st), copy_dkv_a, copy_dkv_b, tdKrdSt_view,
              tdKrQt_view);
    // The next key block's turn is given after the dK GEMM: no branch between the adds and the GEMM,
    // so the compiler can mix the two.
    if (call.deterministic) {
      __threadfence();
      __syncthreads();
      if (tid == 0) {
        cuda::atomic_ref<int, cuda::thread_scope_device> ref(*turn);
        ref.fetch_add(1, cuda::memory_order_release);
      }
    }
    h = next_h;
    m_block = next_m_block;
  }
  cp_async_wait<0>();

  // Epilogue: dK (times the softmax scale: S = scale * Q K^T) and dV for the stored keys of this block;
  // keys at or past seqlen_k saw no query and hold zeros.
  Tensor tdKVcdKV = thr_dkv.partition_C(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDim>>{}));
  store_dk_dv<Element, Traits::kDkvStoreSteps>(call, si, b, hk, n0, stored_k,
                                               cute::make_tensor(acc_dk.data(), rowcol(acc_dk.layout())),
                                               cute::make_tensor(acc_dv.data(), rowcol(acc_dv.layout())),
                                               cute::make_tensor(tdKVcdKV.data(), rowcol(tdKVcdKV.layout())));
}

}  // namespace flashattn::sm80
