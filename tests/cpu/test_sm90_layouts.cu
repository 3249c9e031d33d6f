// Host checks of the Hopper forward's register and shared-memory layout algebra (no GPU needed):
// the S accumulator reshaped into the A operand of O += P V holds, for every thread and value, the
// (row, key) that wgmma expects there; each 2x2 dropout group is where philox.h puts it; rowcol()
// groups each thread's values by row; the V^T view addresses the same bytes as V, transposed; the
// epilogues' assumptions about the O accumulator hold.
#include <gtest/gtest.h>

#include <cutlass/numeric_types.h>

#include "kernels/sm90/fwd_launch.h"

namespace flashattn::sm90 {
namespace {

template <typename Traits>
void check_layouts() {
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  typename Traits::TiledMmaS mma_s;
  typename Traits::TiledMmaO mma_o;
  for (int t = 0; t < Traits::kConsumerThreads; ++t) {
    auto thr_s = mma_s.get_thread_slice(t);
    auto thr_o = mma_o.get_thread_slice(t);
    // (row, key) of each S accumulator value, and of each value of P as the A operand.
    Tensor cS = thr_s.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
    Tensor cA = thr_o.partition_A(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
    Tensor cS_as_A = cute::make_tensor(cS.data(), acc_as_operand_a(cS.layout()));
    ASSERT_EQ(int(size(cS_as_A)), int(size(cA)));
    ASSERT_EQ(int(size<2>(cS_as_A)), int(size<2>(cA))) << "k slices";
    for (int i = 0; i < size(cA); ++i) {
      ASSERT_EQ(get<0>(cS_as_A(i)), get<0>(cA(i))) << "thread " << t << " value " << i << ": row";
      ASSERT_EQ(get<1>(cS_as_A(i)), get<1>(cA(i))) << "thread " << t << " value " << i << ": key";
    }
    // The check can fail: pairing 8-column blocks the other way round (k slice outer) breaks it.
    auto split = logical_divide(cS.layout(), Shape<Shape<Underscore, Underscore, _2>, Underscore, Underscore>{});
    auto wrong = make_layout(make_layout(get<0, 0>(split), get<0, 1>(split), get<0, 2, 1>(split)), get<1>(split),
                             make_layout(get<0, 2, 0>(split), get<2>(split)));
    Tensor cS_wrong = cute::make_tensor(cS.data(), wrong);
    bool differs = false;
    for (int i = 0; i < size(cA); ++i) differs |= get<1>(cS_wrong(i)) != get<1>(cA(i));
    EXPECT_TRUE(differs || kBlockN == 16) << "thread " << t;
    // Dropout draws one Philox word group per 2x2 block (philox.h): values 4j..4j+3 must be rows
    // {r, r+8} x keys {c, c+1} with r % 16 < 8 and c even, in that order.
    for (int j = 0; j < size(cS) / 4; ++j) {
      const int r = get<0>(cS(4 * j)), c = get<1>(cS(4 * j));
      EXPECT_TRUE(r % 16 < 8 && c % 2 == 0) << "thread " << t << " group " << j;
      for (int v = 0; v < 4; ++v) {
        EXPECT_EQ(get<0>(cS(4 * j + v)), r + 8 * (v / 2)) << "thread " << t << " group " << j << " value " << v;
        EXPECT_EQ(get<1>(cS(4 * j + v)), c + v % 2) << "thread " << t << " group " << j << " value " << v;
      }
    }
    // rowcol(): one row per r, the row's keys across c.
    Tensor cS_rc = cute::make_tensor(cS.data(), rowcol(cS.layout()));
    Tensor cO = thr_o.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
    Tensor cO_rc = cute::make_tensor(cO.data(), rowcol(cO.layout()));
    ASSERT_EQ(int(size<0>(cS_rc)), int(size<0>(cO_rc))) << "S and O rows of a thread";
    for (int r = 0; r < size<0>(cS_rc); ++r) {
      EXPECT_EQ(get<0>(cS_rc(r, 0)), get<0>(cO_rc(r, 0))) << "thread " << t << ": S row " << r << " is O's row";
      for (int c = 0; c < size<1>(cS_rc); ++c) EXPECT_EQ(get<0>(cS_rc(r, c)), get<0>(cS_rc(r, 0)));
      for (int c = 0; c < size<1>(cO_rc); ++c) EXPECT_EQ(get<0>(cO_rc(r, c)), get<0>(cO_rc(r, 0)));
    }
    // store_tile (common/store_tile.h): columns c, c + 1 (c even) of a row are neighbours, and a
    // thread's columns ascend (its last one bounds them all).
    for (int r = 0; r < size<0>(cO_rc); ++r)
      for (int c = 0; c < size<1>(cO_rc); ++c) {
        if (c % 2 == 0) EXPECT_EQ(get<1>(cO_rc(r, c + 1)), get<1>(cO_rc(r, c)) + 1) << "thread " << t << " col " << c;
        if (c > 0) EXPECT_GT(get<1>(cO_rc(r, c)), get<1>(cO_rc(r, c - 1))) << "thread " << t << " col " << c;
      }
    // The TMA-store epilogue partitions a warpgroup's O with the one-warpgroup TiledMmaOStore,
    // kOCols columns a pass: value i of pass k's fragment is value (its size) k + i of TiledMmaO's,
    // 64 rows down for each warpgroup after the first and kOCols k columns right.
    constexpr int kOCols = Traits::kOCols;
    Tensor cOh = typename Traits::TiledMmaOStore{}.get_thread_slice(t % 128).partition_C(
        make_identity_tensor(Shape<_64, Int<kOCols>>{}));
    ASSERT_EQ(int(size(cOh)) * (kHeadDim / kOCols), int(size(cO)));
    for (int i = 0; i < size(cO); ++i) {
      const int pass = i / int(size(cOh)), j = i % int(size(cOh));
      EXPECT_EQ(get<0>(cOh(j)) + 64 * (t / 128), get<0>(cO(i))) << "thread " << t << " value " << i;
      EXPECT_EQ(get<1>(cOh(j)) + kOCols * pass, get<1>(cO(i))) << "thread " << t << " value " << i;
    }
    // The four threads of a quad (the softmax's shuffles) share each row.
    if (t % 4 == 0) {
      for (int q = 1; q < 4; ++q) {
        Tensor other = mma_s.get_thread_slice(t + q).partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
        Tensor other_rc = cute::make_tensor(other.data(), rowcol(other.layout()));
        for (int r = 0; r < size<0>(cS_rc); ++r) EXPECT_EQ(get<0>(other_rc(r, 0)), get<0>(cS_rc(r, 0)));
      }
    }
  }
  // V^T is V transposed, byte for byte.
  typename Traits::SmemLayoutV v;
  typename Traits::SmemLayoutVt vt;
  for (int st = 0; st < Traits::kStages; ++st)
    for (int key = 0; key < kBlockN; ++key)
      for (int d = 0; d < kHeadDim; ++d) ASSERT_EQ(int(vt(d, key, st)), int(v(key, d, st)));
}

// The tiles the launcher uses (fwd_launch.h, FwdTile).
TEST(Sm90Layouts, Bf16HeadDim64) { check_layouts<FwdTile<cutlass::bfloat16_t, 64>::type>(); }
TEST(Sm90Layouts, Bf16HeadDim64LongKeys) {  // three consumer warpgroups
  static_assert(FwdTile<cutlass::bfloat16_t, 64>::long_keys::kConsumers == 3);
  check_layouts<FwdTile<cutlass::bfloat16_t, 64>::long_keys>();
}
TEST(Sm90Layouts, Fp16HeadDim96) { check_layouts<FwdTile<cutlass::half_t, 96>::type>(); }
TEST(Sm90Layouts, Bf16HeadDim128) { check_layouts<FwdTile<cutlass::bfloat16_t, 128>::type>(); }
TEST(Sm90Layouts, Bf16HeadDim192) { check_layouts<FwdTile<cutlass::bfloat16_t, 192>::type>(); }
TEST(Sm90Layouts, Fp16HeadDim256) {  // O through the last key block's K/V stages, all columns at once
  static_assert(FwdTile<cutlass::half_t, 256>::type::kOInStages && FwdTile<cutlass::half_t, 256>::type::kOCols == 256);
  check_layouts<FwdTile<cutlass::half_t, 256>::type>();
}
TEST(Sm90Layouts, Bf16HeadDim256ShortKeys) {  // O through shared memory in two passes of 128 columns
  static_assert(FwdTile<cutlass::bfloat16_t, 256>::short_keys::kTmaStoreO &&
                FwdTile<cutlass::bfloat16_t, 256>::short_keys::kOCols == 128);
  check_layouts<FwdTile<cutlass::bfloat16_t, 256>::short_keys>();
}

}  // namespace
}  // namespace flashattn::sm90
