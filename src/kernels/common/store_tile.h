// One thread's share of an accumulator tile, stored to a row-major destination in the input dtype.
#pragma once

#include <cstdint>
#include <cute/tensor.hpp>

#include "api/validate.h"
#include "kernels/common/problem.h"

namespace flashattn {

// acc_rc and coord_rc: the thread's values and their (row, column) relative to `tile` as (rows,
// cols) views of an mma.sync or wgmma accumulator, where columns c and c + 1 (c even) are neighbours
// in a row. Stores scale * value to the rows < rows_left and columns < cols_left. Where the
// destination allows (a 4-byte aligned tile start, an even row stride, every column of the thread
// inside cols_left) a pair goes out as one 4-byte store from a per-row pointer; otherwise element by
// element with the column tested (64-bit address math per element made these epilogues a fifth of
// the stall samples at short lengths: bench/NOTES.md, session 5).
template <typename Element, typename AccRC, typename CoordRC>
__device__ __forceinline__ void store_tile(Element* tile, int64_t row_stride, int rows_left, int cols_left,
                                           AccRC const& acc_rc, CoordRC const& coord_rc, float scale = 1.f) {
  static_assert(sizeof(Element) == 2 && decltype(cute::size<1>(acc_rc))::value % 2 == 0);
  constexpr int kRows = decltype(cute::size<0>(acc_rc))::value, kCols = decltype(cute::size<1>(acc_rc))::value;
  const int last_col = cute::get<1>(coord_rc(0, kCols - 1));  // the columns of a thread ascend
  const bool paired = reinterpret_cast<uintptr_t>(tile) % 4 == 0 && row_stride % 2 == 0 && last_col < cols_left;
  CUTE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    const int row = cute::get<0>(coord_rc(r, 0));
    if (row >= rows_left) continue;
    Element* row_ptr = tile + int64_t(row) * row_stride;
    if (paired) {
      CUTE_UNROLL
      for (int c = 0; c < kCols; c += 2) {
        const uint32_t lo = Element(scale * acc_rc(r, c)).raw(), hi = Element(scale * acc_rc(r, c + 1)).raw();
        *reinterpret_cast<uint32_t*>(row_ptr + cute::get<1>(coord_rc(r, c))) = lo | hi << 16;
      }
    } else {
      CUTE_UNROLL
      for (int c = 0; c < kCols; ++c) {
        const int col = cute::get<1>(coord_rc(r, c));
        if (col < cols_left) row_ptr[col] = Element(scale * acc_rc(r, c));
      }
    }
  }
}

// The backward's epilogue: dK (times the softmax scale: S = scale Q K^T) and dV of the keys from key0
// of kv head hk of sequence b, as (rows, cols) views at coord_rc (rows relative to key0); keys at or
// past stored_k are not written.
template <typename Element, typename AccRC, typename CoordRC>
__device__ __forceinline__ void store_dk_dv(const BwdCall& call, const SeqInfo& si, int b, int hk, int key0,
                                            int stored_k, AccRC const& dk_rc, AccRC const& dv_rc,
                                            CoordRC const& coord_rc) {
  const Problem& p = call.problem;
  Element* dk = static_cast<Element*>(call.dk) + row_offset(call.dk_stride, p.varlen, b, si.k_row0, 0, hk);
  Element* dv = static_cast<Element*>(call.dv) + row_offset(call.dv_stride, p.varlen, b, si.k_row0, 0, hk);
  store_tile(dk + int64_t(key0) * call.dk_stride.row, call.dk_stride.row, stored_k - key0, p.head_dim, dk_rc, coord_rc,
             p.scale);
  store_tile(dv + int64_t(key0) * call.dv_stride.row, call.dv_stride.row, stored_k - key0, p.head_dim, dv_rc, coord_rc);
}

// A block's tile staged in shared memory (kRows x kCols elements, rows kPitch elements apart, 16-byte
// aligned) to rows < rows_left and columns < cols_left of a row-major destination, in 16-byte row
// pieces where the destination allows (whole sectors, where stores from an accumulator layout write
// 4 bytes of 8 rows a warp instruction); the block's kThreads threads stride over the pieces.
template <int kRows, int kCols, int kPitch, int kThreads, typename Element>
__device__ __forceinline__ void copy_tile_rows(const Element* tile, Element* dst, int64_t row_stride, int rows_left,
                                               int cols_left) {
  static_assert(sizeof(Element) == 2 && kCols % 8 == 0 && kPitch % 8 == 0);
  constexpr int kPieces = kCols / 8;
  const bool vectors = reinterpret_cast<uintptr_t>(dst) % 16 == 0 && row_stride % 8 == 0;
  CUTE_UNROLL
  for (int c = threadIdx.x; c < kRows * kPieces; c += kThreads) {
    const int row = c / kPieces, col = c % kPieces * 8;
    if (row >= rows_left) continue;
    const Element* from = tile + row * kPitch + col;
    Element* to = dst + int64_t(row) * row_stride + col;
    if (vectors && col + 8 <= cols_left) {
      *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(from);
    } else {
      for (int e = 0; e < 8 && col + e < cols_left; ++e) to[e] = from[e];
    }
  }
}

}  // namespace flashattn
