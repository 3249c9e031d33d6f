// Small CuTe helpers of the sm80 kernels: predicated tile copies, the two GEMM shapes of attention,
// and views of the mma.sync accumulator.
#pragma once

#include <cute/tensor.hpp>

namespace flashattn::sm80 {

using namespace cute;

// Copies a (CPY, CPY_M, CPY_K) partition global -> shared, zero-filling rows at or past `rows`
// and columns at or past `cols` (coordinates from an identity tensor partitioned the same way).
// The copy atom is a zero-filling cp.async (src-size 0 when out of bounds: nothing is read), so a
// chunk costs one instruction either way; a branch to clear() was if-converted by the compiler into
// four predicated-off stores a chunk that still took issue slots (bench/NOTES.md, session 6).
template <typename TiledCopy, typename Src, typename Dst, typename Coord>
__device__ __forceinline__ void copy_tile(TiledCopy const& tiled_copy, Src const& src, Dst& dst, Coord const& coord,
                                          int rows, int cols) {
  CUTE_UNROLL
  for (int m = 0; m < size<1>(src); ++m) {
    const bool row_ok = get<0>(coord(0, m, 0)) < rows;
    CUTE_UNROLL
    for (int k = 0; k < size<2>(src); ++k) {
      auto dst_chunk = dst(_, m, k);
      copy(tiled_copy.with(row_ok && get<1>(coord(0, m, k)) < cols), src(_, m, k), dst_chunk);
    }
  }
}

// acc += A B with both operands in shared memory; the next k-slice is loaded while this one multiplies.
template <typename Mma, typename Acc, typename RA, typename RB, typename SA, typename SB, typename CopyA, typename CopyB,
          typename RAView, typename RBView>
__device__ __forceinline__ void gemm_smem(Mma& mma, Acc& acc, RA& rA, RB& rB, SA const& sA, SB const& sB,
                                          CopyA const& copy_a, CopyB const& copy_b, RAView& rA_view, RBView& rB_view) {
  copy(copy_a, sA(_, _, 0), rA_view(_, _, 0));
  copy(copy_b, sB(_, _, 0), rB_view(_, _, 0));
  CUTE_UNROLL
  for (int k = 0; k < size<2>(rA); ++k) {
    if (k + 1 < size<2>(rA)) {
      copy(copy_a, sA(_, _, k + 1), rA_view(_, _, k + 1));
      copy(copy_b, sB(_, _, k + 1), rB_view(_, _, k + 1));
    }
    cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
  }
}

// acc += A B with A already in registers (P in O += P V).
template <typename Mma, typename Acc, typename RA, typename RB, typename SB, typename CopyB, typename RBView>
__device__ __forceinline__ void gemm_reg_smem(Mma& mma, Acc& acc, RA const& rA, RB& rB, SB const& sB,
                                              CopyB const& copy_b, RBView& rB_view) {
  copy(copy_b, sB(_, _, 0), rB_view(_, _, 0));
  CUTE_UNROLL
  for (int k = 0; k < size<2>(rA); ++k) {
    if (k + 1 < size<2>(rA)) copy(copy_b, sB(_, _, k + 1), rB_view(_, _, k + 1));
    cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
  }
}

// The m16n8 accumulator of a thread is ((2 cols, 2 rows), MMA_M, MMA_N); as (rows, cols):
// ((2, MMA_M), (2, MMA_N)), so softmax can walk rows.
template <typename Layout>
CUTE_HOST_DEVICE auto rowcol(Layout const& acc) {
  static_assert(decltype(rank(acc))::value == 3);
  return make_layout(make_layout(get<0, 1>(acc), get<1>(acc)), make_layout(get<0, 0>(acc), get<2>(acc)));
}

// Two neighbouring n8 accumulator tiles hold exactly the values of one k16 A-operand tile, so the
// probabilities feed the next MMA from registers: ((2,2), M, N) -> (((2,2),2), M, N/2).
template <typename Layout>
__device__ __forceinline__ auto acc_as_operand_a(Layout const& acc) {
  auto split = logical_divide(acc, Shape<Underscore, Underscore, _2>{});
  return make_layout(make_layout(get<0>(split), get<2, 0>(split)), get<1>(split), get<2, 1>(split));
}

}  // namespace flashattn::sm80
