// The Hopper backward (BACKEND_SM90) against the fp64 reference: causal, window, ALiBi, softcap,
// dropout (the forward's mask), GQA/MQA, varlen with seqused_k and empty sequences, any scale; head
// dims 64, 128 and 256 (the d256 kernel splits d between its warpgroups), odd shapes included,
// deterministic mode too; error at most 2x that of standard attention's autograd in the same dtype.
// The forward of each case runs on the Hopper forward too. Needs an sm90 device.
#include <gtest/gtest.h>

#include <iostream>

#include "common/kernel_cases.h"
#include "common/math_attention.h"

namespace flashattn::test {
namespace {

std::vector<KernelCase> sm90_bwd_cases() {
  return kernel_cases({FLASHATTN_BFLOAT16, FLASHATTN_FLOAT16}, {64, 128, 256},
                      {{1, 1, 64, false}, {17, 113, 128, true}, {113, 17, 64, false}, {1023, 1023, 128, true},
                       {200, 333, 40, false}, {64, 1, 96, true}, {1, 300, 128, false}, {257, 129, 128, false},
                       {300, 200, 64, true}, {1, 1, 256, false}, {17, 113, 256, true}, {1023, 1023, 256, true},
                       {200, 333, 192, false}, {113, 17, 160, true}});
}

using Sm90Bwd = GpuTestWithParam<KernelCase>;

TEST_P(Sm90Bwd, MatchesFp64Reference) {
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  check_backward_case(GetParam().c, Backend::kSm90);
}

// Deterministic mode: ten reruns give bitwise equal dq, dk, dv (16-64 key blocks add into each
// query block, GQA sums over the group, causal skips blocks, non-causal launches heads in groups;
// d 64, 128 and 256).
TEST(Sm90BwdDeterministic, TenRerunsBitwiseEqual) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  std::mt19937_64 rng(fresh_seed());
  for (auto [causal, d, seqlen] :
       {std::tuple{false, 128, 2100}, std::tuple{true, 64, 8000}, std::tuple{true, 256, 3000},
        std::tuple{false, 256, 2000}}) {
    if (!bucket_built(d)) continue;  // a partial build (scripts/ab-bench); every bucket in gpu-check
    Case c;
    c.dtype = FLASHATTN_BFLOAT16;
    c.batch = 2, c.seqlen_q = seqlen - 100, c.seqlen_k = seqlen, c.nheads = 4, c.nheads_k = 2;
    c.head_dim = d;
    c.causal = causal;
    HostProblem hp(c, rng);
    HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
    const DeviceRun first = run_on_device(hp, Backend::kSm90, &dout, true);
    ASSERT_TRUE(first.bwd_status.ok()) << first.bwd_status.message;
    for (int run = 1; run < 10; ++run) {
      const DeviceRun again = run_on_device(hp, Backend::kSm90, &dout, true);
      ASSERT_TRUE(again.bwd_status.ok()) << again.bwd_status.message;
      ASSERT_EQ(again.dq, first.dq) << "dq differs on rerun " << run << (causal ? " (causal)" : "");
      ASSERT_EQ(again.dk, first.dk) << "dk differs on rerun " << run;
      ASSERT_EQ(again.dv, first.dv) << "dv differs on rerun " << run;
    }
  }
}

// Large shapes (too slow for the fp64 CPU reference): against the fp32 GPU reference on the same
// bf16 inputs, a few bf16 ulps of the largest value. Many CTAs add into each dQ block. ALiBi alone
// takes whole blocks through its own loop, on both sides of the diagonal (sq != sk).
TEST(Sm90BwdLarge, MatchesFp32GpuReference) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  std::mt19937_64 rng(fresh_seed());
  const std::tuple<int, int, int, bool, int, int, float, bool> shapes[] = {
      // seqlen_q, seqlen_k, head_dim, causal, nheads, nheads_k, dropout, alibi
      {4096, 4096, 128, true, 4, 2, 0.f, false}, {3000, 5000, 64, false, 2, 2, 0.f, false},
      {2048, 2048, 128, false, 4, 4, 0.15f, false}, {3000, 4100, 256, true, 4, 2, 0.f, false},
      {2048, 2048, 256, false, 2, 2, 0.1f, false}, {2500, 1800, 128, false, 4, 2, 0.f, true},
      {2048, 3000, 128, true, 4, 4, 0.f, true}, {1500, 2200, 256, false, 2, 2, 0.f, true}};
  for (auto [sq, sk, d, causal, h, hk, dropout, alibi] : shapes) {
    if (!bucket_built(d)) continue;  // a partial build (scripts/ab-bench); every bucket in gpu-check
    Case c;
    c.dtype = FLASHATTN_BFLOAT16;
    c.batch = 1, c.seqlen_q = sq, c.seqlen_k = sk, c.head_dim = d, c.causal = causal, c.nheads = h, c.nheads_k = hk;
    c.dropout = dropout;
    c.alibi = alibi;
    SCOPED_TRACE("sq " + std::to_string(sq) + " sk " + std::to_string(sk) + " d " + std::to_string(d) +
                 (alibi ? " alibi" : ""));
    HostProblem hp(c, rng);
    HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
    const DeviceRun ref = run_on_device(hp, Backend::kReference, &dout);
    const DeviceRun got = run_on_device(hp, Backend::kSm90, &dout);
    ASSERT_TRUE(ref.bwd_status.ok()) << ref.bwd_status.message;
    ASSERT_TRUE(got.bwd_status.ok()) << got.bwd_status.message;
    const std::tuple<const char*, const std::vector<double>*, const std::vector<double>*> outs[] = {
        {"dq", &got.dq, &ref.dq}, {"dk", &got.dk, &ref.dk}, {"dv", &got.dv, &ref.dv}};
    for (auto [name, ours_v, ref_v] : outs) {
      const ErrorStats e = compare(*ours_v, *ref_v);
      EXPECT_EQ(e.nonfinite, 0) << name;
      EXPECT_LE(e.max_abs, 4.0 / 256 * e.ref_max) << name << " max |ref| " << e.ref_max;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Features, Sm90Bwd, ::testing::ValuesIn(sm90_bwd_cases()),
                         [](const auto& info) { return info.param.c.name; });

// What the Hopper backward does not take is refused by name under BACKEND_SM90: more sequences than
// its grid's y dimension holds (65536 one-token sequences).
TEST(Sm90BwdScope, UncoveredCallsSayNotSupported) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  std::mt19937_64 rng(fresh_seed());
  Case c;
  c.dtype = FLASHATTN_BFLOAT16;
  c.batch = 65536, c.seqlen_q = 1, c.seqlen_k = 1, c.nheads = 1, c.nheads_k = 1, c.head_dim = 64;
  HostProblem hp(c, rng);
  HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
  const DeviceRun r = run_on_device(hp, Backend::kSm90, &dout);
  ASSERT_TRUE(r.fwd_status.ok()) << r.fwd_status.message;
  EXPECT_EQ(r.bwd_status.code, FLASHATTN_NOT_SUPPORTED) << r.bwd_status.message;
  EXPECT_NE(r.bwd_status.message.find("65535 sequences"), std::string::npos) << r.bwd_status.message;
}

// AUTO runs the Hopper backward on sm90 where it covers the call in FA2's head-dim bucket (64, 128,
// 256): its dK and dV are summed in one CTA's registers in a fixed order, so AUTO's equal
// BACKEND_SM90's bit for bit; d192 (no Hopper bucket of its own) falls back to FA2. At d128 the two
// kernels sum in different orders, so the outputs also tell which one ran; at d192/d256 both sum dK
// and dV over the same 64-query steps and come out bit for bit equal (measured on H100), so there
// the test shows only that AUTO's result is the chosen kernel's.
TEST(Sm90BwdScope, AutoPicksHopperAndFallsBack) {
  FLASHATTN_REQUIRE_GPU();
  if (device_major() != 9) GTEST_SKIP() << "GPU test skipped: the Hopper kernels need an sm90 device";
  std::mt19937_64 rng(fresh_seed());
  for (int d : {128, 256, 192}) {
    SCOPED_TRACE("head_dim " + std::to_string(d));
    if (!bucket_built(d)) {
      std::cout << "[ skipped  ] head_dim " << d << ": its bucket is not built (a call runs in the next one up)\n";
      continue;
    }
    Case c;
    c.dtype = FLASHATTN_BFLOAT16;
    c.batch = 2, c.seqlen_q = 200, c.seqlen_k = 300, c.nheads = 4, c.nheads_k = 2, c.head_dim = d;
    HostProblem hp(c, rng);
    HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
    const DeviceRun autop = run_on_device(hp, Backend::kAuto, &dout), hopper = run_on_device(hp, Backend::kSm90, &dout),
                    fa2 = run_on_device(hp, Backend::kSm80, &dout);
    if (!hopper.fwd_status.ok() || !fa2.fwd_status.ok() || !autop.fwd_status.ok()) {
      std::cout << "[ skipped  ] head_dim " << d << ": a kernel is not built (" << hopper.fwd_status.message
                << fa2.fwd_status.message << ")\n";
      continue;
    }
    ASSERT_TRUE(autop.bwd_status.ok() && hopper.bwd_status.ok() && fa2.bwd_status.ok())
        << autop.bwd_status.message << hopper.bwd_status.message << fa2.bwd_status.message;
    const DeviceRun& want = d == 192 ? fa2 : hopper;
    EXPECT_EQ(autop.dk, want.dk) << "AUTO did not run the " << (d == 192 ? "FA2" : "Hopper") << " backward";
    EXPECT_EQ(autop.dv, want.dv);
    if (d == 128) {
      EXPECT_NE(autop.dk, fa2.dk) << "AUTO ran the FA2 backward";
    }
  }
}

}  // namespace
}  // namespace flashattn::test
