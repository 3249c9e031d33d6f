// The fp32 GPU reference (BACKEND_REFERENCE) against the fp64 CPU reference, every feature.
#include <gtest/gtest.h>

#include "common/runner.h"
#include "reference/reference_cpu.h"

namespace flashattn::test {
namespace {

struct GpuCase {
  friend void PrintTo(const GpuCase& g, std::ostream* os) { *os << g.c.name << " dtype " << g.dtype; }
  Case c;
  int32_t dtype;
};

std::vector<GpuCase> gpu_cases() {
  std::vector<GpuCase> out;
  for (int32_t dt : {FLASHATTN_FLOAT32, FLASHATTN_BFLOAT16, FLASHATTN_FLOAT16})
    for (Case c : feature_cases()) {
      c.head_dim = 64;
      out.push_back({c, dt});
    }
  // Odd lengths and the large head dims.
  for (auto [sq, sk, d] : {std::tuple{1, 1, 128}, {17, 113, 256}, {113, 17, 32}, {1023, 1023, 64}}) {
    Case c;
    c.name = "len" + std::to_string(sq) + "x" + std::to_string(sk) + "_d" + std::to_string(d);
    c.batch = 1;
    c.seqlen_q = sq;
    c.seqlen_k = sk;
    c.head_dim = d;
    c.nheads = 2;
    c.causal = sq == 1023;
    out.push_back({c, FLASHATTN_BFLOAT16});
  }
  return out;
}

// Relative tolerance of one output element in `dtype`: the final rounding (half an ulp) plus fp32 work.
double rounding(int32_t dtype) { return dtype == FLASHATTN_FLOAT32 ? 1e-5 : dtype == FLASHATTN_FLOAT16 ? 1.0 / 1024 : 1.0 / 128; }

using ReferenceGpu = GpuTestWithParam<GpuCase>;

TEST_P(ReferenceGpu, ForwardAndBackwardMatchFp64) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  Case c = GetParam().c;
  c.dtype = GetParam().dtype;
  HostProblem hp(c, rng);
  HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
  const Problem p = hp.problem();
  const ReferenceFwd want = reference_fwd(p);
  RowStrides ds;
  ASSERT_TRUE(validate_like_q(dout.view(), "dout", hp.attn, Target::kHost, &ds).ok());
  const ReferenceBwd want_g = reference_bwd(p, dout.data(), ds, c.dtype);

  const DeviceRun got = run_on_device(hp, Backend::kReference, &dout);
  ASSERT_TRUE(got.fwd_status.ok()) << got.fwd_status.message;
  ASSERT_TRUE(got.bwd_status.ok()) << got.bwd_status.message;
  const double tol = rounding(c.dtype);
  for (size_t i = 0; i < want.out.size(); ++i)
    ASSERT_NEAR(got.out[i], want.out[i], tol * std::fabs(want.out[i]) + 2e-5) << "out[" << i << "]";
  for (size_t i = 0; i < want.lse.size(); ++i) {
    if (std::isinf(want.lse[i])) {
      ASSERT_EQ(got.lse[i], want.lse[i]) << "lse[" << i << "]";
      continue;
    }
    ASSERT_NEAR(got.lse[i], want.lse[i], 1e-4 * std::max(1.0, std::fabs(want.lse[i]))) << "lse[" << i << "]";
  }
  // Keys e^5 apart (scores_leap_toward_first_key) put nearly all of a row's weight on its first key,
  // so dS = P (dP - D) cancels to almost nothing there and dq, dk are sums of terms ~150x the result:
  // the fp32 reference's gradients carry that cancellation (5e-3 of the largest gradient, seen on
  // the H200 in session 40), past this test's bound, which is relative to the result. Its forward
  // is well conditioned and checked above. The kernels' gradients on this case are held to standard
  // attention's autograd in the same dtype (check_backward_case), whose error sees the cancellation;
  // this reference's gradients serve only the large-shape tests, whose inputs are O(1).
  if (c.key_growth > 3.0) return;
  // Backward reads the rounded out for D = rowsum(dout * out), so low-precision dtypes carry that
  // error into every gradient: compare against the largest gradient.
  const std::pair<const std::vector<double>*, const std::vector<double>*> grads[] = {
      {&got.dq, &want_g.dq}, {&got.dk, &want_g.dk}, {&got.dv, &want_g.dv}};
  const char* names[] = {"dq", "dk", "dv"};
  for (int g = 0; g < 3; ++g) {
    const ErrorStats e = compare(*grads[g].first, *grads[g].second);
    EXPECT_EQ(e.nonfinite, 0) << names[g];
    const double bound = (c.dtype == FLASHATTN_FLOAT32 ? 1e-4 : 4 * tol) * std::max(e.ref_max, 1e-3);
    EXPECT_LE(e.max_abs, bound) << names[g] << " max |ref| " << e.ref_max;
  }
}

INSTANTIATE_TEST_SUITE_P(Features, ReferenceGpu, ::testing::ValuesIn(gpu_cases()),
                         [](const auto& info) { return info.param.c.name + "_" + dtype_name(info.param.dtype); });

}  // namespace
}  // namespace flashattn::test
