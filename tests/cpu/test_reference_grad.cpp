// The reference backward against central finite differences of the reference forward, for every
// feature: L = sum(out * dout), dL/dx by (L(x + eps) - L(x - eps)) / (2 eps) in fp64.
#include <gtest/gtest.h>

#include "common/cases.h"
#include "reference/reference_cpu.h"

namespace flashattn::test {
namespace {

double loss(const HostProblem& hp, const std::vector<double>& dout) {
  const ReferenceFwd r = reference_fwd(hp.problem());
  double l = 0;
  for (size_t i = 0; i < dout.size(); ++i) l += r.out[i] * dout[i];
  return l;
}

class ReferenceGrad : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceGrad, MatchesFiniteDifferences) {
  std::mt19937_64 rng(99);
  HostProblem hp(GetParam(), rng);
  HostTensor dout = random_tensor(FLASHATTN_FLOAT64, hp.q.shape, rng);
  const std::vector<double> dout_v = dout.to_double();
  const Problem p = hp.problem();
  RowStrides ds;
  ASSERT_TRUE(validate_like_q(dout.view(), "dout", hp.attn, Target::kHost, &ds).ok());
  const ReferenceBwd g = reference_bwd(p, dout.data(), ds, FLASHATTN_FLOAT64);
  struct Input {
    HostTensor* t;
    const std::vector<double>* grad;
    const char* name;
  } inputs[] = {{&hp.q, &g.dq, "dq"}, {&hp.k, &g.dk, "dk"}, {&hp.v, &g.dv, "dv"}};
  constexpr double eps = 1e-6;
  double grad_scale = 0;
  for (const Input& in : inputs)
    for (double x : *in.grad) grad_scale = std::max(grad_scale, std::fabs(x));
  ASSERT_GT(grad_scale, 0.0);
  for (const Input& in : inputs) {
    ASSERT_EQ(int64_t(in.grad->size()), in.t->numel());
    for (int64_t i = 0; i < in.t->numel(); ++i) {
      const double x = in.t->get(i);
      in.t->set(i, x + eps);
      const double lp = loss(hp, dout_v);
      in.t->set(i, x - eps);
      const double lm = loss(hp, dout_v);
      in.t->set(i, x);
      const double fd = (lp - lm) / (2 * eps);
      ASSERT_NEAR((*in.grad)[i], fd, 1e-6 * grad_scale) << in.name << "[" << i << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Features, ReferenceGrad, ::testing::ValuesIn(feature_cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace flashattn::test
