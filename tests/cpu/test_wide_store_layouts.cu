// Host check of the accumulator layout that store_tile_wide relies on (common/store_tile.h), for
// every accumulator the kernels store with it (no GPU needed): in each row of a thread's (rows,
// cols) view, group g of 2^kSteps column pairs lies at base + 8k + 2q (+1), k < 2^kSteps, for lane
// q = thread % 4, with base a multiple of 8 * 2^kSteps, and the four threads of a quad share the
// row and the base. The FlashAttention-2 backward's dK/dV accumulator without its N permutation
// fails it: the check can fail.
#include <gtest/gtest.h>

#include <cutlass/numeric_types.h>

#include "kernels/sm80/bwd_launch.h"
#include "kernels/sm80/fwd_launch.h"
#include "kernels/sm90/bwd_launch.h"
#include "kernels/sm90/fwd_launch.h"

namespace flashattn {
namespace {

using namespace cute;
using Bf16 = cutlass::bfloat16_t;

// coord_rc(t): thread t's (row, column) coordinates as a (rows, cols) view.
template <int kSteps, typename CoordRC>
::testing::AssertionResult wide_store_layout(int threads, CoordRC coord_rc) {
  constexpr int kWords = 1 << kSteps;
  for (int t = 0; t < threads; ++t) {
    const auto rc = coord_rc(t), lead = coord_rc(t - t % 4);  // lead: lane 0 of the quad
    const int rows = int(size<0>(rc)), cols = int(size<1>(rc)), q = t % 4;
    if (cols % (2 * kWords) != 0) return ::testing::AssertionFailure() << cols << " columns a row";
    for (int r = 0; r < rows; ++r)
      for (int g = 0; g < cols / (2 * kWords); ++g) {
        const int base = get<1>(rc(r, 2 * kWords * g)) - 2 * q;
        if (base % (8 * kWords) != 0 || get<1>(lead(r, 2 * kWords * g)) != base ||
            get<0>(lead(r, 0)) != get<0>(rc(r, 0)))
          return ::testing::AssertionFailure() << "thread " << t << " row " << r << " group " << g << ": base " << base;
        for (int c = 2 * kWords * g; c < 2 * kWords * (g + 1); ++c) {
          const int k = c / 2 % kWords, e = c % 2;
          if (get<1>(rc(r, c)) != base + 8 * k + 2 * q + e || get<0>(rc(r, c)) != get<0>(rc(r, 0)))
            return ::testing::AssertionFailure() << "thread " << t << " row " << r << " value " << c << " at ("
                                                 << get<0>(rc(r, c)) << ", " << get<1>(rc(r, c)) << ")";
        }
      }
  }
  return ::testing::AssertionSuccess();
}

// The kernel's own view of each thread's accumulator coordinates: Mma's partition of a kRows x
// kCols tile as (rows, cols), through the wgmma (Hopper) or the m16n8 (FlashAttention-2) rowcol().
template <int kSteps, typename Mma, int kRows, int kCols, bool kWgmma>
::testing::AssertionResult accumulator_layout(int threads) {
  return wide_store_layout<kSteps>(threads, [](int t) {
    auto c = Mma{}.get_thread_slice(t).partition_C(make_identity_tensor(Shape<Int<kRows>, Int<kCols>>{}));
    if constexpr (kWgmma) return cute::make_tensor(c.data(), sm90::rowcol(c.layout()));
    else return cute::make_tensor(c.data(), sm80::rowcol(c.layout()));
  });
}

// Hopper forward: O of a tile (store_out_lse<Element, 2> in every variant but the TMA store's).
template <typename T>
auto sm90_fwd_o() {
  return accumulator_layout<2, typename T::TiledMmaO, T::kBlockM, T::kHeadDim, true>(T::kConsumerThreads);
}
// Hopper backward: dK and dV of a warpgroup's keys (64 / 128 keys a CTA), or of the split-D CTA.
template <typename T, int kThreads, int kKeys>
auto sm90_bwd_dkv() {
  return accumulator_layout<2, typename T::TiledMmaKV, kKeys, T::kHeadDim, true>(kThreads);
}
// FlashAttention-2 forward: O (store_out_lse<Element, 2>).
template <int kSteps, typename T>
auto sm80_fwd_o() {
  return accumulator_layout<kSteps, typename T::TiledMma, T::kBlockM, T::kHeadDim, false>(T::kThreads);
}
// FlashAttention-2 backward: dK/dV (store_dk_dv<Element, kDkvStoreSteps>), from Mma's partition.
template <int kSteps, typename T, typename Mma = typename T::TiledMmadKV>
auto sm80_bwd_dkv() {
  return accumulator_layout<kSteps, Mma, T::kBlockN, T::kHeadDim, false>(T::kThreads);
}

TEST(WideStoreLayouts, HopperForwardO) {
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 64>::type>()));
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 64>::long_keys>()));
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 64>::short_keys>()));
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 96>::type>()));
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 128>::type>()));
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 192>::type>()));
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 256>::type>()));
  EXPECT_TRUE((sm90_fwd_o<sm90::FwdTile<Bf16, 256>::short_keys>()));
}

TEST(WideStoreLayouts, HopperBackwardDkDv) {
  EXPECT_TRUE((sm90_bwd_dkv<sm90::BwdTraitsOf<Bf16, 64, true>, 128, 64>()));
  EXPECT_TRUE((sm90_bwd_dkv<sm90::BwdTraitsOf<Bf16, 64, false>, 128, 64>()));
  EXPECT_TRUE((sm90_bwd_dkv<sm90::BwdTraitsOf<Bf16, 128, true>, 128, 64>()));
  EXPECT_TRUE((sm90_bwd_dkv<sm90::BwdTraitsOf<Bf16, 256, true>, 256, 64>()));
}

TEST(WideStoreLayouts, Fa2ForwardO) {
  EXPECT_TRUE((sm80_fwd_o<2, sm80::FwdTile<Bf16, 32>::type>()));
  EXPECT_TRUE((sm80_fwd_o<2, sm80::FwdTile<Bf16, 64>::type>()));
  EXPECT_TRUE((sm80_fwd_o<2, sm80::FwdTile<Bf16, 96>::type>()));
  EXPECT_TRUE((sm80_fwd_o<2, sm80::FwdTile<Bf16, 128>::type>()));
  EXPECT_TRUE((sm80_fwd_o<2, sm80::FwdTile<Bf16, 192>::type>()));
  EXPECT_TRUE((sm80_fwd_o<2, sm80::FwdTile<Bf16, 256>::type>()));
}

template <typename T>
void check_fa2_bwd_dkv() {
  EXPECT_TRUE((sm80_bwd_dkv<T::kDkvStoreSteps, T>())) << "d" << T::kHeadDim;
  // Without the N permutation (the warps interleaved every 8 columns, as in the S/dP and dQ GEMMs)
  // a thread's blocks of a row are not neighbours: the check can fail.
  using Interleaved = typename T::template Mma<T::kNWarps / T::kWarpsAlongNdKV>;
  EXPECT_FALSE((sm80_bwd_dkv<1, T, Interleaved>())) << "d" << T::kHeadDim;
}

TEST(WideStoreLayouts, Fa2BackwardDkDv) {
  check_fa2_bwd_dkv<sm80::BwdTile<Bf16, 32>::type>();
  check_fa2_bwd_dkv<sm80::BwdTile<Bf16, 64>::type>();
  check_fa2_bwd_dkv<sm80::BwdTile<Bf16, 96>::type>();
  check_fa2_bwd_dkv<sm80::BwdTile<Bf16, 128>::type>();
  check_fa2_bwd_dkv<sm80::BwdTile<Bf16, 192>::type>();
  check_fa2_bwd_dkv<sm80::BwdTile<Bf16, 256>::type>();
}

}  // namespace
}  // namespace flashattn
