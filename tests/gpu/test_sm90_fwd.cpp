// The Hopper forward (BACKEND_SM90) against the fp64 reference, on what its first version covers
// (causal, window, ALiBi, softcap, dropout with the reference's mask, GQA/MQA, varlen with seqused_k
// and empty sequences, any scale; head dims up to 256), odd shapes included.
// Error at most 2x that of standard attention in the same dtype. Needs an sm90 device.
#include <gtest/gtest.h>

#include "common/math_attention.h"
#include "common/runner.h"
#include "reference/reference_cpu.h"

namespace flashattn::test {
namespace {

struct Sm90Case {
  Case c;
  friend void PrintTo(const Sm90Case& f, std::ostream* os) { *os << f.c.name; }
};

std::vector<Sm90Case> sm90_cases() {
  std::vector<Sm90Case> out;
  for (int32_t dt : {FLASHATTN_BFLOAT16, FLASHATTN_FLOAT16})
    for (int d : {64, 128, 256})
      for (Case c : feature_cases()) {
        for (int& len : c.seqlens_q) len *= 37;
        for (int& len : c.seqlens_k) len *= 31;
        for (int& len : c.seqused_k) len *= 31;
        c.dtype = dt;
        c.head_dim = d;
        c.seqlen_q = c.seqlen_q * 29;
        c.seqlen_k = c.seqlen_k * 23;
        c.name += std::string(dt == FLASHATTN_BFLOAT16 ? "_bf16" : "_fp16") + "_d" + std::to_string(d);
        out.push_back({c});
      }
  const std::tuple<int, int, int, bool> shapes[] = {{1, 1, 64, false},      {17, 113, 128, true}, {113, 17, 256, false},
                                                    {1023, 1023, 128, true}, {200, 333, 40, false}, {64, 1, 96, true},
                                                    {1, 300, 128, false},   {257, 129, 256, true}, {1000, 3000, 64, true}};
  for (auto [sq, sk, d, causal] : shapes) {
    Case c;
    c.name = "len" + std::to_string(sq) + "x" + std::to_string(sk) + "_d" + std::to_string(d) + (causal ? "_causal" : "");
    c.dtype = FLASHATTN_BFLOAT16;
    c.batch = 2;
    c.nheads = 2;
    c.seqlen_q = sq;
    c.seqlen_k = sk;
    c.head_dim = d;
    c.causal = causal;
    out.push_back({c});
  }
  return out;
}

int device_major() {
  int device = 0, major = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  return major;
}

using Sm90Fwd = GpuTestWithParam<Sm90Case>;

TEST_P(Sm90Fwd, MatchesFp64Reference) {
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  HostProblem hp(GetParam().c, rng);
  const Problem p = hp.problem();
  const ReferenceFwd want = reference_fwd(p);
  const std::vector<double> math = math_attention_lowp(p);
  const DeviceRun got = run_on_device(hp, Backend::kSm90);
  ASSERT_TRUE(got.fwd_status.ok()) << got.fwd_status.message;
  const ErrorStats ours = compare(got.out, want.out), theirs = compare(math, want.out);
  EXPECT_EQ(ours.nonfinite, 0) << "unwritten or NaN outputs";
  EXPECT_LE(ours.max_abs, 2 * theirs.max_abs + 1e-3)
      << "ours " << ours.max_abs << " vs standard attention in the same dtype " << theirs.max_abs;
  for (size_t i = 0; i < want.lse.size(); ++i) {
    if (std::isinf(want.lse[i])) {
      ASSERT_EQ(got.lse[i], want.lse[i]) << "lse[" << i << "]";
    } else {
      ASSERT_NEAR(got.lse[i], want.lse[i], 1e-3 * std::max(1.0, std::fabs(want.lse[i]))) << "lse[" << i << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Features, Sm90Fwd, ::testing::ValuesIn(sm90_cases()),
                         [](const auto& info) { return info.param.c.name; });

// Calls the first version cannot take are refused by name (AUTO never sends them there).
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
