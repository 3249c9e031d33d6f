// Dropout on a probability tile in registers. Both accumulator layouts the kernels use (mma.sync's
// m16n8 fragment and wgmma's) hold groups of four consecutive values at rows {r, r+8} x cols {c, c+1}:
// one Philox call per group (philox.h), so every implementation drops the same elements.
#pragma once

#include <cute/tensor.hpp>

#include "kernels/common/philox.h"
#include "kernels/common/problem.h"

namespace flashattn {

// Zeroes the dropped values of `acc`; `coord` gives each value's (row, col) within the tile at
// (m0, n0). The 1 / (1 - p) rescale is left to the caller.
template <typename Acc, typename Coord>
__device__ __forceinline__ void apply_dropout(Acc& acc, Coord const& coord, int m0, int n0, uint64_t subsequence,
                                              const PhiloxState& rng, uint32_t threshold) {
  CUTE_UNROLL
  for (int j = 0; j < cute::size(acc) / 4; ++j) {
    const Uint4 bits = philox4x32_10(
        dropout_counter(subsequence, m0 + cute::get<0>(coord(4 * j)), n0 + cute::get<1>(coord(4 * j))),
        uint32_t(rng.seed), uint32_t(rng.seed >> 32));
    CUTE_UNROLL
    for (int v = 0; v < 4; ++v) {
      const int w = dropout_word(cute::get<0>(coord(4 * j + v)), cute::get<1>(coord(4 * j + v)));
      const uint32_t word = w == 0 ? bits.x : w == 1 ? bits.y : w == 2 ? bits.z : bits.w;
      if (word < threshold) acc(4 * j + v) = 0.f;
    }
  }
}

}  // namespace flashattn
