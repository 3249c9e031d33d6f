// The forward's epilogue, shared by the FlashAttention-2 and the Hopper kernels: out (rows of this
// sequence, columns < head_dim) and lse (one thread of each quad of a row) straight from the
// accumulator registers, with the caller's strides.
#pragma once

#include <cute/tensor.hpp>

#include <cstdint>

#include "api/validate.h"
#include "kernels/common/problem.h"

namespace flashattn::sm80 {

// acc_o_rc and coord_rc: this thread's O values and their (row in the tile, column) as (rows, cols);
// m0: the tile's first row; lse: per row of the thread, natural log. Columns c and c + 1 (c even) of
// an mma/wgmma accumulator are neighbours in a row: where the destination allows (a 4-byte aligned
// row start, every column of the tile inside head_dim), a pair goes out as one 4-byte store from a
// per-row pointer; otherwise element by element with the bounds tested.
template <typename Element, typename AccO, typename Coord, int kRows>
__device__ __forceinline__ void store_out_lse(const FwdCall& call, const SeqInfo& si, int b, int h, int m0, int tid,
                                              AccO const& acc_o_rc, Coord const& coord_rc, const float (&lse)[kRows]) {
  static_assert(sizeof(Element) == 2 && cute::size<1>(AccO{}) % 2 == 0);
  const Problem& p = call.problem;
  Element* o_ptr = static_cast<Element*>(call.out) + row_offset(call.out_stride, p.varlen, b, si.q_row0, 0, h);
  constexpr int kCols = cute::size<1>(AccO{});
  const bool paired = reinterpret_cast<uintptr_t>(o_ptr) % 4 == 0 && call.out_stride.row % 2 == 0 &&
                      cute::get<1>(coord_rc(0, kCols - 1)) < p.head_dim;  // this thread's last column
  CUTE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    const int row = m0 + cute::get<0>(coord_rc(r, 0));
    if (row >= si.seqlen_q) continue;
    Element* row_ptr = o_ptr + int64_t(row) * call.out_stride.row;
    if (paired) {
      CUTE_UNROLL
      for (int c = 0; c < kCols; c += 2) {
        const uint32_t lo = Element(acc_o_rc(r, c)).raw(), hi = Element(acc_o_rc(r, c + 1)).raw();
        *reinterpret_cast<uint32_t*>(row_ptr + cute::get<1>(coord_rc(r, c))) = lo | hi << 16;
      }
    } else {
      CUTE_UNROLL
      for (int c = 0; c < kCols; ++c) {
        const int col = cute::get<1>(coord_rc(r, c));
        if (col < p.head_dim) row_ptr[col] = Element(acc_o_rc(r, c));
      }
    }
    if (tid % 4 == 0) call.lse[lse_offset(p, b, si.q_row0, row, h)] = lse[r];
  }
}

}  // namespace flashattn::sm80
