// Host check of the forward kernels' tile mask (sm80/mask.h, used by the FA2 and Hopper forwards;
// no GPU needed): on random tiles, windows and lengths (causal = window_right 0, unbounded sides,
// windows wider than the sequences, unequal q/k lengths), an element is -inf exactly where the
// rule of the reference hides it: col >= seqlen_k, col < row + diag - window_left, or
// col > row + diag + window_right (diag = seqlen_k - seqlen_q); and a tile tile_needs_mask() calls
// clean hides nothing in its rows that exist.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/sm80/mask.h"

namespace flashattn::sm80 {
namespace {

bool reference_visible(int row, int col, int seqlen_q, int seqlen_k, int window_left, int window_right) {
  const long diag = long(seqlen_k) - seqlen_q;
  return col < seqlen_k && (window_left < 0 || col >= row + diag - window_left) &&
         (window_right < 0 || col <= row + diag + window_right);
}

TEST(TileMask, HidesExactlyWhatTheReferenceHides) {
  std::mt19937 rng(12345);
  constexpr int kBlockM = 16, kBlockN = 24;
  const int windows[] = {-1, 0, 1, 7, 64, 1000, 1 << 29, 2147483647};
  int masked_tiles = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const int seqlen_q = 1 + int(rng() % 300), seqlen_k = 1 + int(rng() % 300);
    TileMask mask{seqlen_q, seqlen_k, windows[rng() % 8], windows[rng() % 8], 1.f, 0.f, 0.f};
    const int m0 = int(rng() % ((seqlen_q + kBlockM - 1) / kBlockM)) * kBlockM;
    const int n0 = int(rng() % ((seqlen_k + kBlockN - 1) / kBlockN)) * kBlockN;
    auto acc = make_tensor<float>(Shape<Int<kBlockM>, Int<kBlockN>>{});
    auto coord = make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{});
    for (int i = 0; i < size(acc); ++i) acc(i) = float(i);
    const bool need = mask.tile_needs_mask(m0, kBlockM, n0, kBlockN);
    masked_tiles += need;
    mask.apply<false>(acc, coord, m0, n0, true);
    for (int i = 0; i < size(acc); ++i) {
      const int row = m0 + get<0>(coord(i)), col = n0 + get<1>(coord(i));
      const bool visible = reference_visible(row, col, seqlen_q, seqlen_k, mask.window_left, mask.window_right);
      ASSERT_EQ(acc(i) == -INFINITY, !visible)
          << "row " << row << " col " << col << " seqlen_q " << seqlen_q << " seqlen_k " << seqlen_k << " window ("
          << mask.window_left << ", " << mask.window_right << ")";
      if (visible) ASSERT_EQ(acc(i), float(i));
      if (!need && row < seqlen_q) ASSERT_TRUE(visible) << "tile_needs_mask() missed row " << row << " col " << col;
    }
  }
  EXPECT_GT(masked_tiles, 500);  // both kinds of tile were drawn
  EXPECT_LT(masked_tiles, 3500);
}

}  // namespace
}  // namespace flashattn::sm80
