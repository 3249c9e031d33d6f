// The forward's epilogue from registers, shared by the FlashAttention-2 and the Hopper kernels (the
// Hopper one stores O through shared memory and TMA at d64/d128 and uses store_lse alone there): out
// (rows of this sequence, columns < head_dim) and lse (one thread of each quad of a row) straight
// from the accumulator registers, with the caller's strides.
#pragma once

#include <cute/tensor.hpp>

#include <cstdint>

#include "api/validate.h"
#include "kernels/common/problem.h"
#include "kernels/common/store_tile.h"

namespace flashattn::sm80 {

// coord_rc: (row in the tile, column) of this thread's accumulator values as (rows, cols); m0: the
// tile's first row; lse: per row of the thread, natural log.
template <typename Coord, int kRows>
__device__ __forceinline__ void store_lse(const FwdCall& call, const SeqInfo& si, int b, int h, int m0, int tid,
                                          Coord const& coord_rc, const float (&lse)[kRows]) {
  const Problem& p = call.problem;
  if (tid % 4 == 0) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const int row = m0 + cute::get<0>(coord_rc(r, 0));
      if (row < si.seqlen_q) call.lse[lse_offset(p, b, si.q_row0, row, h)] = lse[r];
    }
  }
}

// acc_o_rc: this thread's O values as (rows, cols), at coord_rc. kWideSteps: store_tile_wide's (> 0:
// accumulators with a row's 8-column blocks in order, where every lane calls).
template <typename Element, int kWideSteps = 0, typename AccO, typename Coord, int kRows>
__device__ __forceinline__ void store_out_lse(const FwdCall& call, const SeqInfo& si, int b, int h, int m0, int tid,
                                              AccO const& acc_o_rc, Coord const& coord_rc, const float (&lse)[kRows]) {
  const Problem& p = call.problem;
  store_lse(call, si, b, h, m0, tid, coord_rc, lse);
  Element* o_ptr = static_cast<Element*>(call.out) + row_offset(call.out_stride, p.varlen, b, si.q_row0, 0, h);
  store_tile_wide<kWideSteps>(o_ptr + int64_t(m0) * call.out_stride.row, call.out_stride.row, si.seqlen_q - m0,
                              p.head_dim, acc_o_rc, coord_rc);
}

}  // namespace flashattn::sm80
