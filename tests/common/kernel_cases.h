// The cases every kernel's GPU suite runs, and the forward and backward checks they share: the feature matrix at
// kernel scale (lengths over several tiles, never a multiple of one) for each dtype and head dim,
// then odd shapes; outputs within 2x the error of standard attention in the same dtype.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "common/cases.h"
#include "common/math_attention.h"
#include "common/runner.h"
#include "reference/reference_cpu.h"

namespace flashattn::test {

// Whether this build has the head-dim bucket `head_dim` (FLASHATTN_BUILT_HEADDIMS, tests/CMakeLists.txt):
// a call whose bucket is not built runs in the next one up, so a test that tells kernels apart by
// their results skips it.
inline bool bucket_built(int head_dim) {
  const int built[] = {FLASHATTN_BUILT_HEADDIMS};
  return std::find(std::begin(built), std::end(built), head_dim) != std::end(built);
}

// Whether some built bucket takes head_dim (its own or one above). A partial build (scripts/ab-bench,
// FLASHATTN_HEADDIMS) has none for the cases of larger head dims: the kernel cases skip those, as
// the full builds of gpu-check and CI never do.
inline bool some_bucket_takes(int head_dim) {
  const int built[] = {FLASHATTN_BUILT_HEADDIMS};
  return std::any_of(std::begin(built), std::end(built), [&](int b) { return b >= head_dim; });
}

// The kernel dtypes built (FLASHATTN_DTYPES): fp32 calls run only on the reference.
inline bool dtype_built(int32_t dtype) {
  return dtype == FLASHATTN_FLOAT16 ? FLASHATTN_BUILT_FP16 : dtype == FLASHATTN_BFLOAT16 ? FLASHATTN_BUILT_BF16 : false;
}

struct KernelCase {
  Case c;
  friend void PrintTo(const KernelCase& k, std::ostream* os) { *os << k.c.name; }
};

struct OddShape {
  int seqlen_q, seqlen_k, head_dim;
  bool causal;
  int32_t dtype = FLASHATTN_BFLOAT16;
  double key_growth = 0.0;  // Case::key_growth: named "_keys_grow" when set
};

inline std::vector<KernelCase> kernel_cases(std::initializer_list<int32_t> dtypes, std::initializer_list<int> head_dims,
                                            std::initializer_list<OddShape> odd_shapes) {
  std::vector<KernelCase> out;
  for (int32_t dt : dtypes)
    for (int d : head_dims)
      for (Case c : feature_cases()) {
        c.dtype = dt;
        c.head_dim = d;
        c.seqlen_q = c.seqlen_q * 29;  // several tiles, not multiples of the tile
        c.seqlen_k = c.seqlen_k * 23;
        for (int& s : c.seqlens_q) s *= 37;
        for (int& s : c.seqlens_k) s *= 31;
        for (int& s : c.seqused_k) s *= 31;
        c.name += std::string("_") + dtype_name(dt) + "_d" + std::to_string(d);
        out.push_back({c});
      }
  for (const OddShape& s : odd_shapes) {
    Case c;
    c.name = "len" + std::to_string(s.seqlen_q) + "x" + std::to_string(s.seqlen_k) + "_d" + std::to_string(s.head_dim) +
             (s.causal ? "_causal" : "") + (s.dtype == FLASHATTN_FLOAT16 ? "_fp16" : "") +
             (s.key_growth != 0.0 ? "_keys_grow" : "");
    c.dtype = s.dtype;
    c.batch = 2;
    c.nheads = 2;
    c.seqlen_q = s.seqlen_q;
    c.seqlen_k = s.seqlen_k;
    c.head_dim = s.head_dim;
    c.causal = s.causal;
    c.key_growth = s.key_growth;
    out.push_back({c});
  }
  return out;
}

// out within 2x the error of standard attention in the same dtype (+1e-3) of the fp64 reference,
// nothing unwritten; lse to 1e-3 relative, +inf exactly where a row sees no key.
inline void expect_forward_matches(const DeviceRun& got, const ReferenceFwd& want, const std::vector<double>& math) {
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

// One forward case on `backend` against the fp64 reference, on fresh random inputs.
inline void check_forward_case(const Case& c, Backend backend) {
  if (!some_bucket_takes(c.head_dim)) GTEST_SKIP() << "no built head-dim bucket takes d = " << c.head_dim;
  if (!dtype_built(c.dtype)) GTEST_SKIP() << "no " << dtype_name(c.dtype) << " kernels built (FLASHATTN_DTYPES)";
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  HostProblem hp(c, rng);
  const Problem p = hp.problem();
  const ReferenceFwd want = reference_fwd(p);
  const std::vector<double> math = math_attention_lowp(p);
  const DeviceRun got = run_on_device(hp, backend);
  ASSERT_TRUE(got.fwd_status.ok()) << got.fwd_status.message;
  expect_forward_matches(got, want, math);
}

// One backward case on `backend`, atomics and deterministic mode, against the fp64 reference on
// fresh random inputs: each gradient within 2x the error of standard attention's autograd in the
// same dtype, and every element written.
inline void check_backward_case(const Case& c, Backend backend) {
  if (!some_bucket_takes(c.head_dim)) GTEST_SKIP() << "no built head-dim bucket takes d = " << c.head_dim;
  if (!dtype_built(c.dtype)) GTEST_SKIP() << "no " << dtype_name(c.dtype) << " kernels built (FLASHATTN_DTYPES)";
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  HostProblem hp(c, rng);
  HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
  const Problem p = hp.problem();
  RowStrides ds;
  ASSERT_TRUE(validate_like_q(dout.view(), "dout", hp.attn, Target::kHost, &ds).ok());
  const ReferenceBwd want = reference_bwd(p, dout.data(), ds, c.dtype);
  const MathGrads math = math_attention_grad_lowp(p, dout.data(), ds);
  for (bool deterministic : {false, true}) {
    SCOPED_TRACE(deterministic ? "deterministic" : "any order");
    const DeviceRun got = run_on_device(hp, backend, &dout, deterministic);
    ASSERT_TRUE(got.fwd_status.ok()) << got.fwd_status.message;
    ASSERT_TRUE(got.bwd_status.ok()) << got.bwd_status.message;
    const std::tuple<const char*, const std::vector<double>*, const std::vector<double>*, const std::vector<double>*>
        grads[] = {{"dq", &got.dq, &want.dq, &math.dq}, {"dk", &got.dk, &want.dk, &math.dk}, {"dv", &got.dv, &want.dv, &math.dv}};
    for (auto [name, ours_v, ref_v, math_v] : grads) {
      const ErrorStats ours = compare(*ours_v, *ref_v), theirs = compare(*math_v, *ref_v);
      EXPECT_EQ(ours.nonfinite, 0) << name << ": unwritten or NaN gradients";
      EXPECT_LE(ours.max_abs, 2 * theirs.max_abs + 1e-3 * std::max(1.0, ours.ref_max))
          << name << ": ours " << ours.max_abs << " vs standard attention's autograd in the same dtype "
          << theirs.max_abs << " (max |ref| " << ours.ref_max << ")";
    }
  }
}

}  // namespace flashattn::test
