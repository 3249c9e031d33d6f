#include <gtest/gtest.h>

#include <set>

#include "kernels/common/philox.h"

namespace flashattn {
namespace {

// Random123's kat_vectors for philox4x32 10: counter, key, expected output.
TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    Uint4 ctr;
    uint32_t k0, k1;
    Uint4 want;
  } kats[] = {
      {{0, 0, 0, 0}, 0, 0, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, 0xffffffff, 0xffffffff,
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822, 0x299f31d0,
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    const Uint4 r = philox4x32_10(k.ctr, k.k0, k.k1);
    EXPECT_EQ(r.x, k.want.x);
    EXPECT_EQ(r.y, k.want.y);
    EXPECT_EQ(r.z, k.want.z);
    EXPECT_EQ(r.w, k.want.w);
  }
}

// Every element of a 32x32 tile maps to a distinct (counter, word) pair, and a 2x2 group
// {r, r+8} x {c, c+1} shares one counter.
TEST(Philox, DropoutElementsMapToDistinctWords) {
  std::set<std::tuple<uint32_t, uint32_t, int>> seen;
  for (int row = 0; row < 32; ++row)
    for (int col = 0; col < 32; ++col) {
      const Uint4 c = dropout_counter(5, row, col);
      EXPECT_TRUE(seen.insert({c.x, c.y, dropout_word(row, col)}).second) << row << "," << col;
      if (row % 16 < 8 && col % 2 == 0) {
        for (int dr : {0, 8})
          for (int dc : {0, 1}) {
            const Uint4 o = dropout_counter(5, row + dr, col + dc);
            EXPECT_EQ(o.x, c.x);
            EXPECT_EQ(o.y, c.y);
          }
      }
    }
}

TEST(Philox, KeepRateMatchesProbability) {
  for (float p : {0.1f, 0.5f, 0.9f}) {
    const uint32_t threshold = dropout_threshold(p);
    int kept = 0, n = 0;
    for (int row = 0; row < 200; ++row)
      for (int col = 0; col < 200; ++col, ++n) kept += dropout_keep(42, 3, row, col, threshold);
    const double rate = double(kept) / n, want = 1.0 - p;
    // 40000 Bernoulli draws: sd <= 0.0025; 5 sd.
    EXPECT_NEAR(rate, want, 0.0125) << "p=" << p;
  }
  EXPECT_EQ(dropout_threshold(0.f), 0u);  // p = 0 keeps every element
  EXPECT_TRUE(dropout_keep(1, 2, 3, 4, 0u));
}

TEST(Philox, StreamsDifferBySeedOffsetAndHead) {
  const uint32_t t = dropout_threshold(0.5f);
  int same_seed = 0, same_sub = 0;
  for (int col = 0; col < 256; ++col) {
    same_seed += dropout_keep(1, 0, 0, col, t) == dropout_keep(2, 0, 0, col, t);
    same_sub += dropout_keep(1, 0, 0, col, t) == dropout_keep(1, 1, 0, col, t);
  }
  EXPECT_LT(same_seed, 170);  // about 128 agree by chance
  EXPECT_LT(same_sub, 170);
}

}  // namespace
}  // namespace flashattn
