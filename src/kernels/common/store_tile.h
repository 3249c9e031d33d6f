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

// One butterfly step s (1 or 2) of store_tile_wide's quad transpose, for lane q of the quad: word
// k (bit s clear) pairs with word k + s; the lane keeps the one whose bit s matches its own and
// swaps the other with lane q ^ s. `swap(v)` sends v and returns what lane q ^ s sent (shfl.xor on
// the device; tests/cpu/test_store_tile.cu plays the four lanes on the host).
template <int kWords, typename Swap>
FA_HOST_DEVICE void quad_transpose_step(uint32_t (&w)[kWords], int q, int s, Swap&& swap) {
  const bool upper = q & s;
  CUTE_UNROLL
  for (int k = 0; k < kWords; ++k) {
    if (k & s) continue;
    const uint32_t got = swap(upper ? w[k] : w[k + s]);
    w[k] = upper ? got : w[k];
    w[k + s] = upper ? w[k + s] : got;
  }
}

// The first column lane q stores after `steps` transpose steps, from its group's first column:
// block q (two steps), or block q % 2 at columns 4 (q / 2) (one step).
FA_HOST_DEVICE constexpr int quad_store_column(int q, int steps) {
  return steps == 2 ? 8 * q : 8 * (q % 2) + 4 * (q / 2);
}

// store_tile for an accumulator whose rows hold their 8-column blocks in order (the wgmma layout,
// and mma.sync's m16n8 with the warps along M: column 2j + e of a row is 8j + 2q + e, q = lane % 4),
// in stores of 4 << kSteps bytes instead of 4, so that a warp's store writes whole 32-byte sectors
// (from kSteps = 1) rather than half ones: the four threads of a quad transpose their 4-byte column
// pairs in kSteps butterfly steps (shfl.xor 1, then 2). After step 1 a thread holds 4 neighbouring
// columns of one block; after step 2, the whole block 4g + q of each group g of four. Every lane of
// the warp must call it (the shuffles); rows past rows_left are not stored. Element by element where
// the destination is not aligned for the wide stores or the tile is wider than cols_left. kSteps = 0:
// store_tile itself (any accumulator layout).
template <int kSteps, typename Element, typename AccRC, typename CoordRC>
__device__ __forceinline__ void store_tile_wide(Element* tile, int64_t row_stride, int rows_left, int cols_left,
                                                AccRC const& acc_rc, CoordRC const& coord_rc, float scale = 1.f) {
  static_assert(sizeof(Element) == 2 && kSteps >= 0 && kSteps <= 2);
  if constexpr (kSteps == 0) {
    store_tile(tile, row_stride, rows_left, cols_left, acc_rc, coord_rc, scale);
  } else {
    constexpr int kRows = decltype(cute::size<0>(acc_rc))::value, kCols = decltype(cute::size<1>(acc_rc))::value;
    constexpr int kWords = 1 << kSteps;  // 32-bit words a store
    static_assert(kCols % (2 * kWords) == 0, "whole groups of 8-column blocks");
    // The last column any thread of the quad holds: the same for every quad of the warp.
    const int quad_last_col = cute::get<1>(coord_rc(0, kCols - 1)) | 7;
    const bool wide = reinterpret_cast<uintptr_t>(tile) % (4 * kWords) == 0 && row_stride % (2 * kWords) == 0 &&
                      quad_last_col < cols_left;
    const int q = threadIdx.x % 4;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const int row = cute::get<0>(coord_rc(r, 0));
      Element* row_ptr = tile + int64_t(row) * row_stride;
      CUTE_UNROLL
      for (int g = 0; g < kCols / (2 * kWords); ++g) {
        uint32_t w[kWords];  // w[k]: columns 2k, 2k + 1 of the thread's pair of block kWords g + k
        CUTE_UNROLL
        for (int k = 0; k < kWords; ++k) {
          const int c = 2 * (kWords * g + k);
          w[k] = uint32_t(Element(scale * acc_rc(r, c)).raw()) |
                 uint32_t(Element(scale * acc_rc(r, c + 1)).raw()) << 16;
        }
        CUTE_UNROLL
        for (int s = 1; s < kWords; s *= 2)
          quad_transpose_step(w, q, s, [s](uint32_t v) { return __shfl_xor_sync(0xffffffffu, v, s); });
        if (row >= rows_left) continue;
        // This thread's 2 kWords columns, from the group's first.
        const int col = cute::get<1>(coord_rc(r, 2 * kWords * g)) - 2 * q + quad_store_column(q, kSteps);
        if (wide) {
          if constexpr (kSteps == 2)
            *reinterpret_cast<uint4*>(row_ptr + col) = make_uint4(w[0], w[1], w[2], w[3]);
          else
            *reinterpret_cast<uint2*>(row_ptr + col) = make_uint2(w[0], w[1]);
        } else {  // element by element (rare: an unaligned or narrower destination)
          CUTE_UNROLL
          for (int e = 0; e < 2 * kWords; ++e)
            if (col + e < cols_left) row_ptr[col + e] = Element::bitcast(uint16_t(w[e / 2] >> (e % 2 * 16)));
        }
      }
    }
  }
}

// The backward's epilogue: dK (times the softmax scale: S = scale Q K^T) and dV of the keys from key0
// of kv head hk of sequence b, as (rows, cols) views at coord_rc (rows relative to key0); keys at or
// past stored_k are not written. kWideSteps: store_tile_wide's (> 0: accumulators with a row's 8-column
// blocks in order, where every lane calls).
template <typename Element, int kWideSteps = 0, typename AccRC, typename CoordRC>
__device__ __forceinline__ void store_dk_dv(const BwdCall& call, const SeqInfo& si, int b, int hk, int key0,
                                            int stored_k, AccRC const& dk_rc, AccRC const& dv_rc,
                                            CoordRC const& coord_rc) {
  const Problem& p = call.problem;
  Element* dk = static_cast<Element*>(call.dk) + row_offset(call.dk_stride, p.varlen, b, si.k_row0, 0, hk);
  Element* dv = static_cast<Element*>(call.dv) + row_offset(call.dv_stride, p.varlen, b, si.k_row0, 0, hk);
  Element* dk_tile = dk + int64_t(key0) * call.dk_stride.row;
  Element* dv_tile = dv + int64_t(key0) * call.dv_stride.row;
  store_tile_wide<kWideSteps>(dk_tile, call.dk_stride.row, stored_k - key0, p.head_dim, dk_rc, coord_rc, p.scale);
  store_tile_wide<kWideSteps>(dv_tile, call.dv_stride.row, stored_k - key0, p.head_dim, dv_rc, coord_rc);
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
