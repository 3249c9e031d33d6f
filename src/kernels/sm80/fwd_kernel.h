// FlashAttention-2 forward on mma.sync (sm80+). One CTA per (query block, batch, head); its warps
// split the query rows and share each K/V tile (split-Q, no inter-warp reduction). K and V tiles
// stream through shared memory with cp.async, the load of the next tile overlapping this tile's math.
#pragma once

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "kernels/common/block_range.h"
#include "kernels/common/problem.h"
#include "kernels/sm80/fwd_traits.h"
#include "kernels/sm80/epilogue.h"
#include "kernels/sm80/mask.h"
#include "kernels/sm80/softmax.h"
#include "kernels/sm80/tile_utils.h"

namespace flashattn::sm80 {

// kDropout and kTransform (softcap or ALiBi) are compile-time so the common path carries neither.
template <typename Traits, bool kDropout, bool kTransform>
__global__ void __launch_bounds__(Traits::kThreads) fwd_kernel(const FwdCall call) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  extern __shared__ char smem[];
  const Problem& p = call.problem;
  // Query blocks from the last: under causal masking they see the most keys, and launching the
  // longest blocks first shortens the tail of the grid.
  const int m_block = gridDim.x - 1 - blockIdx.x, b = blockIdx.y, h = blockIdx.z, tid = threadIdx.x;

  const PhiloxState rng = philox_state(p);
  if (call.rng_state && m_block == 0 && b == 0 && h == 0 && tid == 0) {
    call.rng_state[0] = rng.seed;
    call.rng_state[1] = rng.offset;
  }

  if (b >= p.batch) return;
  const SeqInfo si = seq_info(p, b);
  const int m0 = m_block * kBlockM;
  if (m0 >= si.seqlen_q) return;
  const int hk = h / (p.nheads / p.nheads_k);

  const BlockRange keys = key_blocks_of(p, m_block, kBlockM, kBlockN, si.seqlen_q, si.seqlen_k);
  const int n_block_min = keys.begin, n_block_max = keys.end;

  // Global views (row stride from the caller; the head dim is contiguous).
  const Element* q_ptr = static_cast<const Element*>(p.q) + row_offset(p.q_stride, p.varlen, b, si.q_row0, 0, h);
  const Element* k_ptr = static_cast<const Element*>(p.k) + row_offset(p.k_stride, p.varlen, b, si.k_row0, 0, hk);
  const Element* v_ptr = static_cast<const Element*>(p.v) + row_offset(p.v_stride, p.varlen, b, si.k_row0, 0, hk);
  Tensor mQ = cute::make_tensor(make_gmem_ptr(q_ptr), make_shape(si.seqlen_q, Int<kHeadDim>{}), make_stride(p.q_stride.row, _1{}));
  Tensor mK = cute::make_tensor(make_gmem_ptr(k_ptr), make_shape(si.seqlen_k, Int<kHeadDim>{}), make_stride(p.k_stride.row, _1{}));
  Tensor mV = cute::make_tensor(make_gmem_ptr(v_ptr), make_shape(si.seqlen_k, Int<kHeadDim>{}), make_stride(p.v_stride.row, _1{}));
  Tensor gQ = local_tile(mQ, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m_block, 0));
  Tensor gK = local_tile(mK, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, 0));  // (N, D, n_blocks)
  Tensor gV = local_tile(mV, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, 0));

  Tensor sQ = cute::make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename Traits::SmemLayoutQ{});
  Tensor sK = cute::make_tensor(sQ.data() + size(sQ), typename Traits::SmemLayoutKV{});
  Tensor sV = cute::make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});
  Tensor sVt = cute::make_tensor(sV.data(), typename Traits::SmemLayoutVt{});
  Tensor sVtNoSwizzle = cute::make_tensor(sV.data().get(), typename Traits::SmemLayoutVtNoSwizzle{});

  typename Traits::GmemCopy gmem_copy;
  auto gmem_thr = gmem_copy.get_thread_slice(tid);
  Tensor tQgQ = gmem_thr.partition_S(gQ);
  Tensor tQsQ = gmem_thr.partition_D(sQ);
  Tensor tKgK = gmem_thr.partition_S(gK);  // (CPY, CPY_N, CPY_D, n_blocks)
  Tensor tKsK = gmem_thr.partition_D(sK);
  Tensor tVgV = gmem_thr.partition_S(gV);
  Tensor tVsV = gmem_thr.partition_D(sV);
  Tensor tQcQ = gmem_thr.partition_S(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  Tensor tKVcKV = gmem_thr.partition_S(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDim>>{}));

  typename Traits::TiledMma mma;
  auto thr_mma = mma.get_thread_slice(tid);
  Tensor tSrQ = thr_mma.partition_fragment_A(sQ);
  Tensor tSrK = thr_mma.partition_fragment_B(sK);
  Tensor tOrVt = thr_mma.partition_fragment_B(sVtNoSwizzle);
  Tensor acc_o = partition_fragment_C(mma, Shape<Int<kBlockM>, Int<kHeadDim>>{});
  clear(acc_o);

  auto smem_copy_q = make_tiled_copy_A(typename Traits::SmemCopyQK{}, mma);
  auto smem_thr_q = smem_copy_q.get_thread_slice(tid);
  Tensor tSsQ = smem_thr_q.partition_S(sQ);
  Tensor tSrQ_view = smem_thr_q.retile_D(tSrQ);
  auto smem_copy_k = make_tiled_copy_B(typename Traits::SmemCopyQK{}, mma);
  auto smem_thr_k = smem_copy_k.get_thread_slice(tid);
  Tensor tSsK = smem_thr_k.partition_S(sK);
  Tensor tSrK_view = smem_thr_k.retile_D(tSrK);
  auto smem_copy_v = make_tiled_copy_B(typename Traits::SmemCopyVt{}, mma);
  auto smem_thr_v = smem_copy_v.get_thread_slice(tid);
  Tensor tOsVt = smem_thr_v.partition_S(sVt);
  Tensor tOrVt_view = smem_thr_v.retile_D(tOrVt);

  // (row, col) of every accumulator value, as rows x cols for the softmax.
  Tensor tScS = thr_mma.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
  Tensor tOcO = thr_mma.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  Tensor acc_o_rc = cute::make_tensor(acc_o.data(), rowcol(acc_o.layout()));
  constexpr int kRows = decltype(size<0>(acc_o_rc))::value;

  TileMask mask{si.seqlen_q, si.seqlen_k, p.window_left, p.window_right, p.scale, p.softcap, alibi_slope(p, b, h)};
  // Scores after a transform in natural units (tanh units with the softcap alone); raw q.k
  // otherwise, with the scale folded into exp2.
  OnlineSoftmax<kRows> softmax(mask.softmax_scale_log2<kTransform>());
  const uint64_t subsequence = dropout_subsequence(rng.offset, p, b, h);

  const int rows_q = si.seqlen_q - m0;
  copy_tile(gmem_copy, tQgQ, tQsQ, tQcQ, rows_q, p.head_dim);
  if (n_block_max > n_block_min) {
    const int n = n_block_max - 1;
    copy_tile(gmem_copy, tKgK(_, _, _, n), tKsK, tKVcKV, si.seqlen_k - n * kBlockN, p.head_dim);
  }
  cp_async_fence();

  // Walk key tiles from the last: the tiles that need masking (sequence end, causal diagonal) come first.
  for (int n = n_block_max - 1; n >= n_block_min; --n) {
    Tensor acc_s = partition_fragment_C(mma, Shape<Int<kBlockM>, Int<kBlockN>>{});
    clear(acc_s);
    cp_async_wait<0>();
    __syncthreads();  // K[n] landed; every warp is done with V[n+1]
    copy_tile(gmem_copy, tVgV(_, _, _, n), tVsV, tKVcKV, si.seqlen_k - n * kBlockN, p.head_dim);
    cp_async_fence();

    gemm_smem(mma, acc_s, tSrQ, tSrK, tSsQ, tSsK, smem_copy_q, smem_copy_k, tSrQ_view, tSrK_view);
    const int n0 = n * kBlockN;
    mask.apply<kTransform>(acc_s, tScS, m0, n0, mask.tile_needs_mask(m0, kBlockM, n0, kBlockN));

    cp_async_wait<0>();
    __syncthreads();  // V[n] landed; every warp is done with K[n]
    if (n > n_block_min) {
      copy_tile(gmem_copy, tKgK(_, _, _, n - 1), tKsK, tKVcKV, si.seqlen_k - (n - 1) * kBlockN, p.head_dim);
      cp_async_fence();
    }

    Tensor s_rc = cute::make_tensor(acc_s.data(), rowcol(acc_s.layout()));
    softmax.update(s_rc, acc_o_rc);
    if constexpr (kDropout) {
      // A thread's four values of one m16n8 tile, rows {r, r+8} x cols {c, c+1}, share one Philox
      // call (see philox.h), so each word drawn is used once.
      CUTE_UNROLL
      for (int m = 0; m < size<1>(acc_s); ++m) {
        CUTE_UNROLL
        for (int n = 0; n < size<2>(acc_s); ++n) {
          const Uint4 r = philox4x32_10(
              dropout_counter(subsequence, m0 + get<0>(tScS(0, m, n)), n0 + get<1>(tScS(0, m, n))), uint32_t(rng.seed),
              uint32_t(rng.seed >> 32));
          CUTE_UNROLL
          for (int v = 0; v < 4; ++v) {
            const int w = dropout_word(get<0>(tScS(v, m, n)), get<1>(tScS(v, m, n)));
            const uint32_t word = w == 0 ? r.x : w == 1 ? r.y : w == 2 ? r.z : r.w;
            if (word < p.dropout_threshold) acc_s(v, m, n) = 0.f;
          }
        }
      }
    }
    // P (fp32 accumulator) -> the input dtype, reused in place as the A operand of O += P V.
    Tensor rP = cute::make_tensor<Element>(acc_s.layout());
    CUTE_UNROLL
    for (int i = 0; i < size(acc_s); ++i) rP(i) = Element(acc_s(i));
    Tensor tOrP = cute::make_tensor(rP.data(), acc_as_operand_a(rP.layout()));
    gemm_reg_smem(mma, acc_o, tOrP, tOrVt, tOsVt, smem_copy_v, tOrVt_view);
  }
  cp_async_wait<0>();

  float lse[kRows];
  softmax.finish(acc_o_rc, p.dropout_p > 0.f ? 1.f / (1.f - p.dropout_p) : 1.f, lse);

  // 16-byte stores (store_tile_wide: a warp's rows hold their 8-column blocks in order, m16n8):
  // +0-11% on H100, most at 512 (bench/NOTES.md, session 15).
  store_out_lse<Element, 2>(call, si, b, h, m0, tid, acc_o_rc,
                            cute::make_tensor(tOcO.data(), rowcol(tOcO.layout())), lse);
}

}  // namespace flashattn::sm80
