// Host check of store_tile_wide's quad transpose (common/store_tile.h; no GPU needed): the four
// lanes of a quad are played in lockstep with the kernel's own step (quad_transpose_step), each
// lane's partner value taken from what that partner sends in the same step. Before the steps, lane
// L's word k holds columns 8k + 2L, 8k + 2L + 1 of the group (the wgmma / m16n8 accumulator
// layout); after them, the words each lane stores must be the consecutive columns from
// quad_store_column(q, steps), so that one 8- or 16-byte store per lane writes them in place.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "kernels/common/store_tile.h"

namespace flashattn {
namespace {

template <int kSteps>
void check_quad_transpose() {
  constexpr int kWords = 1 << kSteps;
  // Word ids: the group column of the word's first element (column 8k + 2L of lane L's word k).
  std::array<std::array<uint32_t, kWords>, 4> lanes;
  for (int lane = 0; lane < 4; ++lane)
    for (int k = 0; k < kWords; ++k) lanes[lane][k] = uint32_t(8 * k + 2 * lane);
  for (int s = 1; s < kWords; s *= 2) {
    // What each lane sends in this step, in order (the step run on a copy, sending only).
    std::array<std::vector<uint32_t>, 4> sent;
    for (int lane = 0; lane < 4; ++lane) {
      uint32_t copy[kWords];
      for (int k = 0; k < kWords; ++k) copy[k] = lanes[lane][k];
      quad_transpose_step(copy, lane, s, [&](uint32_t v) { sent[lane].push_back(v); return 0u; });
    }
    std::array<std::array<uint32_t, kWords>, 4> next;
    for (int lane = 0; lane < 4; ++lane) {
      uint32_t w[kWords];
      for (int k = 0; k < kWords; ++k) w[k] = lanes[lane][k];
      size_t n = 0;
      const int partner = lane ^ s;
      quad_transpose_step(w, lane, s, [&](uint32_t) { return sent[partner].at(n++); });
      EXPECT_EQ(n, sent[partner].size()) << "lane " << lane << " step " << s;
      for (int k = 0; k < kWords; ++k) next[lane][k] = w[k];
    }
    lanes = next;
  }
  // Every lane stores 2 kWords consecutive columns from its first; together the quad covers the
  // group's 8 kWords columns once.
  std::vector<int> covered(8 * kWords, 0);
  for (int lane = 0; lane < 4; ++lane) {
    const int first = quad_store_column(lane, kSteps);
    for (int k = 0; k < kWords; ++k) {
      EXPECT_EQ(lanes[lane][k], uint32_t(first + 2 * k)) << "steps " << kSteps << " lane " << lane << " word " << k;
      ++covered.at(first + 2 * k);
      ++covered.at(first + 2 * k + 1);
    }
  }
  for (int col = 0; col < 8 * kWords; ++col) EXPECT_EQ(covered[col], 1) << "steps " << kSteps << " column " << col;
}

TEST(StoreTileWide, OneStepGivesEachLaneFourNeighbouringColumns) { check_quad_transpose<1>(); }
TEST(StoreTileWide, TwoStepsGiveEachLaneAWholeBlock) { check_quad_transpose<2>(); }

}  // namespace
}  // namespace flashattn
