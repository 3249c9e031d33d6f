// The Hopper forward (BACKEND_SM90) against the fp64 reference, on what its first version covers
// (causal, window, ALiBi, softcap, dropout with the reference's mask, GQA/MQA, varlen with seqused_k
// and empty sequences, any scale; head dims up to 256), odd shapes included.
// Error at most 2x that of standard attention in the same dtype. Needs an sm90 device.
#include <gtest/gtest.h>

#include "common/kernel_cases.h"
#include "common/math_attention.h"

namespace flashattn::test {
namespace {

std::vector<KernelCase> sm90_cases() {
  return kernel_cases({FLASHATTN_BFLOAT16, FLASHATTN_FLOAT16}, {64, 96, 128, 192, 256},
                      // Odd lengths and every bucket (smaller head dims round up to a bucket).
                      {{1, 1, 64, false}, {17, 113, 128, true}, {113, 17, 256, false}, {1023, 1023, 128, true},
                       {200, 333, 40, false}, {64, 1, 96, true}, {1, 300, 128, false}, {257, 129, 256, true},
                       {1000, 3000, 64, true},
                       // Tiles by the keys a row sees (fwd_launch.h): d64 takes three consumer
                       // warpgroups from 769 keys on average or where every row sees 512, and two
                       // CTAs an SM below (two warpgroups with the overlap where the TMA store is
                       // not allowed: varlen), d256 above 512 keys its 80-key blocks (64 below).
                       {300, 4100, 64, false}, {200, 5000, 64, true}, {77, 2500, 64, false, FLASHATTN_FLOAT16},
                       {150, 1200, 64, false}, {200, 600, 64, false},
                       {300, 1100, 256, false}, {100, 2000, 256, true, FLASHATTN_FLOAT16},
                       // d256's 80-key tile stores O through its last block's K/V stages; here
                       // with whole tiles of rows that see no keys (no stage: O is written zero).
                       {1500, 1300, 256, true},
                       // Head dims below their bucket's width: through the epilogue from registers
                       // (d96 has no TMA store), O's columns one by one; d256's short tile by TMA
                       // (two 128-column passes, columns past d outside the box) and from
                       // registers (varlen, the feature variants); d256's 80-key tile through its
                       // K/V stages (700 keys a row), columns past d outside the box.
                       {100, 200, 80, true}, {150, 300, 200, false}, {150, 700, 200, false},
                       // Under a causal mask a warpgroup passes on the key blocks its 64 rows do
                       // not see: the one-block-at-a-time tiles (d64 and d256 short rows), and
                       // d64's three-consumer tile (2000 keys: its turns taken without GEMMs).
                       {600, 600, 64, true}, {520, 500, 256, true}, {2000, 2000, 64, true},
                       // The fast softmax's rescues over long rows (keys e^6 apart, walked from the
                       // last block: a numpy walk of such inputs, at both head dims, moves a
                       // reference ~960 times and recomputes a block's scores ~740 times over one
                       // head's 300 rows), in d64's three-consumer tile and d128's tile.
                       {300, 1000, 64, false, FLASHATTN_BFLOAT16, 6.0},
                       {300, 1000, 128, false, FLASHATTN_BFLOAT16, 6.0}});
}

using Sm90Fwd = GpuTestWithParam<KernelCase>;

TEST_P(Sm90Fwd, MatchesFp64Reference) {
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  check_forward_case(GetParam().c, Backend::kSm90);
}

INSTANTIATE_TEST_SUITE_P(Features, Sm90Fwd, ::testing::ValuesIn(sm90_cases()),
                         [](const auto& info) { return info.param.c.name; });

// On Hopper, AUTO runs the sm90a kernel where it covers the call (the same bits as BACKEND_SM90,
// not those of the FA2 kernel), and FlashAttention-2 where it does not (no keys at all).
TEST(Sm90FwdScope, AutoPicksHopperAndFallsBack) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  if (!bucket_built(128))
    GTEST_SKIP() << "the d128 bucket is not built (a call runs in the next one up, where FA2 may sum alike)";
  std::mt19937_64 rng(fresh_seed());
  Case c;
  c.dtype = FLASHATTN_BFLOAT16;
  c.batch = 2, c.seqlen_q = 200, c.seqlen_k = 300, c.nheads = 4, c.nheads_k = 2, c.head_dim = 128;
  HostProblem hp(c, rng);
  const DeviceRun autop = run_on_device(hp, Backend::kAuto), hopper = run_on_device(hp, Backend::kSm90),
                  fa2 = run_on_device(hp, Backend::kSm80);
  ASSERT_TRUE(autop.fwd_status.ok() && hopper.fwd_status.ok() && fa2.fwd_status.ok()) << autop.fwd_status.message;
  EXPECT_EQ(autop.out_raw.bytes, hopper.out_raw.bytes) << "AUTO did not run the Hopper kernel";
  EXPECT_NE(autop.out_raw.bytes, fa2.out_raw.bytes) << "AUTO ran the FA2 kernel";
  c.seqlen_k = 0;
  HostProblem empty(c, rng);
  const DeviceRun fallback = run_on_device(empty, Backend::kAuto);
  EXPECT_TRUE(fallback.fwd_status.ok()) << fallback.fwd_status.message;
}

// Problems of many more tiles than SMs, so a persistent CTA walks several tiles (its pipeline
// states, Q barriers and ping-pong turns carried from one tile to the next), against the fp32 GPU
// reference on the same inputs: a few bf16 ulps of the largest value. Dropout, softcap and ALiBi
// take the other kernel variants through the same walk (ALiBi alone: the unmasked tiles' own loop,
// on both sides of the diagonal); d64 at 4000 keys the long-row tile; d256 at 500 its short tile
// with the two-pass TMA store (a partial last query block).
TEST(Sm90Large, ManyTilesMatchFp32GpuReference) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  std::mt19937_64 rng(fresh_seed());
  struct Shape {
    int batch, seqlen, head_dim, nheads, nheads_k;
    bool causal;
    float dropout, softcap;
    bool alibi = false;
  };
  const Shape shapes[] = {{4, 2048, 128, 8, 2, false, 0.f, 0.f},       {4, 2048, 64, 8, 8, true, 0.f, 0.f},
                          {2, 4000, 64, 8, 8, false, 0.f, 0.f},        {4, 1024, 256, 8, 4, false, 0.f, 0.f},
                          {4, 1100, 96, 8, 8, false, 0.1f, 0.f},       {3, 1500, 192, 8, 2, true, 0.f, 30.f},
                          {8, 500, 256, 16, 4, false, 0.f, 0.f},       {2, 3000, 128, 8, 2, false, 0.f, 0.f, true},
                          {2, 2100, 128, 8, 8, true, 0.f, 0.f, true},  {2, 1700, 256, 4, 2, false, 0.f, 0.f, true}};
  for (const Shape& s : shapes) {
    if (!bucket_built(s.head_dim)) continue;  // a partial build (scripts/ab-bench); every bucket in gpu-check
    Case c;
    c.dtype = FLASHATTN_BFLOAT16;
    c.batch = s.batch;
    c.seqlen_q = c.seqlen_k = s.seqlen;
    c.head_dim = s.head_dim;
    c.nheads = s.nheads;
    c.nheads_k = s.nheads_k;
    c.causal = s.causal;
    c.dropout = s.dropout;
    c.softcap = s.softcap;
    c.alibi = s.alibi;
    SCOPED_TRACE("batch " + std::to_string(s.batch) + " seqlen " + std::to_string(s.seqlen) + " d " +
                 std::to_string(s.head_dim) + (s.causal ? " causal" : "") + (s.alibi ? " alibi" : ""));
    HostProblem hp(c, rng);
    const DeviceRun ref = run_on_device(hp, Backend::kReference);
    const DeviceRun got = run_on_device(hp, Backend::kSm90);
    ASSERT_TRUE(ref.fwd_status.ok()) << ref.fwd_status.message;
    ASSERT_TRUE(got.fwd_status.ok()) << got.fwd_status.message;
    const ErrorStats out = compare(got.out, ref.out), lse = compare(got.lse, ref.lse);
    EXPECT_EQ(out.nonfinite, 0);
    EXPECT_LE(out.max_abs, 4.0 / 256 * out.ref_max) << "max |ref| " << out.ref_max;
    EXPECT_LE(lse.max_abs, 1e-3 * lse.ref_max) << "lse, max |ref| " << lse.ref_max;
  }
}

// A bf16 d64 case named `stem` (`_causal` when causal, then `_d64`) for the tile tests below; each
// sets its shape.
Case d64_case(const std::string& stem, bool causal) {
  Case c;
  c.name = stem + (causal ? "_causal" : "") + "_d64";
  c.dtype = FLASHATTN_BFLOAT16;
  c.head_dim = 64;
  c.causal = causal;
  return c;
}

// Varlen rows long enough for the d64 three-consumer tile, which then stores O from registers (no
// TMA box bounds a packed sequence): 192-row blocks that straddle sequence ends, an empty sequence,
// causal and not.
TEST(Sm90FwdVarlen, LongRowsMatchFp64Reference) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  if (!bucket_built(64)) GTEST_SKIP() << "the d64 bucket is not built";
  for (const bool causal : {false, true}) {
    Case c = d64_case("varlen_long", causal);
    c.nheads = 4;
    c.nheads_k = 2;
    c.seqlens_q = {900, 0, 1700, 333};
    c.seqlens_k = {1000, 7, 1800, 333};
    SCOPED_TRACE(c.name);
    check_forward_case(c, Backend::kSm90);
  }
}

// Tiles where consumer warpgroups have no rows (the sequence ends within the first 64 or 128 rows
// of the d64 three-consumer tile's 192) skip their GEMMs and only pass the K/V stages and the
// ping-pong turns on. With 50 query rows and 192 heads every tile has two such consumers, and on a
// 132-SM card 60 CTAs walk two such tiles in a row; varlen mixes tiles with zero, one and two of
// them; causal and not.
TEST(Sm90FwdIdleConsumers, MatchFp64Reference) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  if (!bucket_built(64)) GTEST_SKIP() << "the d64 bucket is not built";
  for (const bool causal : {false, true}) {
    Case c = d64_case("idle_consumers", causal);
    c.batch = 4;
    c.nheads = c.nheads_k = 48;
    c.seqlen_q = 50;
    c.seqlen_k = 1000;
    SCOPED_TRACE(c.name);
    check_forward_case(c, Backend::kSm90);

    Case v = d64_case("idle_consumers_varlen", causal);
    v.nheads = 4;
    v.nheads_k = 4;
    v.seqlens_q = {5, 70, 130, 1, 200, 64};
    v.seqlens_k = {1500, 900, 1300, 1000, 1100, 800};
    SCOPED_TRACE(v.name);
    check_forward_case(v, Backend::kSm90);
  }
}

// Calls the Hopper kernel cannot take are refused by name under BACKEND_SM90 (AUTO falls back).
TEST(Sm90FwdScope, UncoveredCallsSayNotSupported) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  std::mt19937_64 rng(fresh_seed());
  Case c;
  c.dtype = FLASHATTN_BFLOAT16;
  c.head_dim = 64;
  c.seqlen_k = 0;  // no keys at all: no TMA descriptor
  HostProblem hp(c, rng);
  const DeviceRun r = run_on_device(hp, Backend::kSm90);
  EXPECT_EQ(r.fwd_status.code, FLASHATTN_NOT_SUPPORTED) << r.fwd_status.message;
  EXPECT_NE(r.fwd_status.message.find("BACKEND_SM90"), std::string::npos) << r.fwd_status.message;
}

}  // namespace
}  // namespace flashattn::test
