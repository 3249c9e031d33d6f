// The fp64 reference against hand-computed answers and invariances.
#include <gtest/gtest.h>

#include <cmath>

#include "common/cases.h"
#include "reference/reference_cpu.h"

namespace flashattn::test {
namespace {

constexpr double kTol = 1e-12;

// batch 1, 1 head, d = 8, fp64; q/k/v filled by the caller.
struct Tiny {
  HostTensor q, k, v;
  flashattn_attention attn{};
  Tiny(int sq, int sk) {
    q = HostTensor(FLASHATTN_FLOAT64, {1, sq, 1, 8});
    k = HostTensor(FLASHATTN_FLOAT64, {1, sk, 1, 8});
    v = HostTensor(FLASHATTN_FLOAT64, {1, sk, 1, 8});
    attn.window_size_left = attn.window_size_right = -1;
    attn.softmax_scale = 1.f;
  }
  ReferenceFwd run() {
    attn.q = q.view();
    attn.k = k.view();
    attn.v = v.view();
    Problem p;
    const Status s = validate_attention(attn, false, Target::kHost, &p);
    EXPECT_TRUE(s.ok()) << s.message;
    return reference_fwd(p);
  }
};

TEST(Reference, HandComputedSoftmax) {
  Tiny t(1, 2);
  t.q.set(0, std::log(3.0));  // s = (ln 3, 0): P = (3/4, 1/4), lse = ln 4
  t.k.set(0, 1.0);
  t.v.set(0, 4.0);      // v0 = 4 e0
  t.v.set(8 + 1, 8.0);  // v1 = 8 e1
  const ReferenceFwd r = t.run();
  EXPECT_NEAR(r.out[0], 3.0, kTol);
  EXPECT_NEAR(r.out[1], 2.0, kTol);
  for (int d = 2; d < 8; ++d) EXPECT_EQ(r.out[d], 0.0);
  EXPECT_NEAR(r.lse[0], std::log(4.0), kTol);
}

TEST(Reference, CausalIsBottomRightAligned) {
  Tiny t(2, 3);  // all scores 0: each row averages the values it sees
  for (int j = 0; j < 3; ++j) t.v.set(j * 8, double(j + 1));  // v = 1, 2, 3 in dim 0
  t.attn.is_causal = 1;
  const ReferenceFwd r = t.run();
  EXPECT_NEAR(r.out[0], 1.5, kTol);  // row 0 sees keys 0, 1
  EXPECT_NEAR(r.out[8], 2.0, kTol);  // row 1 sees keys 0, 1, 2
  EXPECT_NEAR(r.lse[0], std::log(2.0), kTol);
  EXPECT_NEAR(r.lse[1], std::log(3.0), kTol);
}

TEST(Reference, RowsThatSeeNoKeyAreZeroWithInfiniteLse) {
  Tiny t(4, 2);  // causal with sq > sk: rows 0 and 1 see nothing
  for (int i = 0; i < 4 * 8; ++i) t.q.set(i, 0.3 * i);
  for (int i = 0; i < 2 * 8; ++i) t.v.set(i, 1.0 + i);
  t.attn.is_causal = 1;
  const ReferenceFwd r = t.run();
  for (int d = 0; d < 16; ++d) EXPECT_EQ(r.out[d], 0.0);
  EXPECT_TRUE(std::isinf(r.lse[0]) && r.lse[0] > 0);
  EXPECT_TRUE(std::isinf(r.lse[1]) && r.lse[1] > 0);
  EXPECT_TRUE(std::isfinite(r.lse[2]));
  EXPECT_NEAR(r.out[2 * 8], 1.0, kTol);  // row 2 sees key 0 only
}

TEST(Reference, SlidingWindow) {
  Tiny t(4, 4);
  for (int j = 0; j < 4; ++j) t.v.set(j * 8, double(1 << j));  // 1, 2, 4, 8
  t.attn.window_size_left = 1;
  t.attn.window_size_right = 0;
  const ReferenceFwd r = t.run();
  EXPECT_NEAR(r.out[0 * 8], 1.0, kTol);      // row 0: key 0
  EXPECT_NEAR(r.out[3 * 8], 6.0, kTol);      // row 3: keys 2, 3
  t.attn.window_size_left = 0;
  t.attn.window_size_right = 1;
  const ReferenceFwd r2 = t.run();
  EXPECT_NEAR(r2.out[3 * 8], 8.0, kTol);     // row 3: key 3
  EXPECT_NEAR(r2.out[1 * 8], 3.0, kTol);     // row 1: keys 1, 2
}

TEST(Reference, Alibi) {
  Tiny t(1, 2);  // equal dots; bias 0 for key 0 (the diagonal), -ln 3 for key 1
  t.v.set(0, 4.0);
  t.v.set(8, 8.0);
  float slope = float(std::log(3.0));
  HostTensor slopes(FLASHATTN_FLOAT32, {1});
  slopes.set(0, slope);
  t.attn.alibi_slopes = slopes.view();
  const double s1 = -double(slope);  // the float slope, exactly
  const double p0 = 1.0 / (1.0 + std::exp(s1));
  // sk - sq = 1: query 0 sits at key 1, so key 1 has distance 0 and key 0 distance 1.
  const ReferenceFwd r = t.run();
  EXPECT_NEAR(r.out[0], 4.0 * (1 - p0) + 8.0 * p0, 1e-9);
}

TEST(Reference, Softcap) {
  Tiny t(1, 2);
  t.q.set(0, 3.0);
  t.k.set(0, 1.0);  // raw scores (3, 0)
  t.v.set(0, 1.0);
  t.attn.softcap = 2.f;
  const ReferenceFwd r = t.run();
  const double s0 = 2.0 * std::tanh(3.0 / 2.0);
  EXPECT_NEAR(r.out[0], std::exp(s0) / (std::exp(s0) + 1.0), kTol);
  EXPECT_NEAR(r.lse[0], std::log(std::exp(s0) + 1.0), kTol);
}

TEST(Reference, DefaultScaleIsInverseSqrtHeadDim) {
  Tiny t(1, 2);
  t.q.set(0, 2.0);
  t.k.set(0, 1.0);
  t.v.set(0, 1.0);
  t.attn.softmax_scale = 0.f;
  const double s0 = 2.0 / std::sqrt(8.0);
  const ReferenceFwd r = t.run();
  EXPECT_NEAR(r.out[0], std::exp(s0) / (std::exp(s0) + 1.0), 1e-7);  // the scale is a float
}

// Permuting keys and values together leaves the output unchanged (no mask, no ALiBi).
TEST(Reference, KeyPermutationInvariance) {
  std::mt19937_64 rng(7);
  Case c;
  c.seqlen_k = 9;
  HostProblem a(c, rng);
  const ReferenceFwd ra = reference_fwd(a.problem());
  std::vector<int> perm(9);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  HostTensor k2 = a.k, v2 = a.v;
  const int64_t row = int64_t(c.nheads_k) * c.head_dim;
  for (int b = 0; b < c.batch; ++b)
    for (int j = 0; j < 9; ++j)
      for (int64_t e = 0; e < row; ++e) {
        k2.set((b * 9 + perm[j]) * row + e, a.k.get((b * 9 + j) * row + e));
        v2.set((b * 9 + perm[j]) * row + e, a.v.get((b * 9 + j) * row + e));
      }
  a.attn.k = k2.view();
  a.attn.v = v2.view();
  const ReferenceFwd rb = reference_fwd(a.problem());
  EXPECT_LT(compare(rb.out, ra.out).max_abs, 1e-12);
  EXPECT_LT(compare(rb.lse, ra.lse).max_abs, 1e-12);
}

// GQA equals MHA with the kv heads repeated.
TEST(Reference, GqaEqualsRepeatedKvHeads) {
  std::mt19937_64 rng(8);
  Case c;
  c.nheads = 6;
  c.nheads_k = 2;
  c.causal = true;
  HostProblem g(c, rng);
  const ReferenceFwd rg = reference_fwd(g.problem());
  HostTensor k6(FLASHATTN_FLOAT64, {c.batch, c.seqlen_k, 6, c.head_dim}), v6 = k6;
  for (int b = 0; b < c.batch; ++b)
    for (int j = 0; j < c.seqlen_k; ++j)
      for (int h = 0; h < 6; ++h)
        for (int d = 0; d < c.head_dim; ++d) {
          const int64_t src = ((int64_t(b) * c.seqlen_k + j) * 2 + h / 3) * c.head_dim + d;
          const int64_t dst = ((int64_t(b) * c.seqlen_k + j) * 6 + h) * c.head_dim + d;
          k6.set(dst, g.k.get(src));
          v6.set(dst, g.v.get(src));
        }
  g.attn.k = k6.view();
  g.attn.v = v6.view();
  const ReferenceFwd rm = reference_fwd(g.problem());
  EXPECT_LT(compare(rm.out, rg.out).max_abs, 1e-12);
}

// Varlen equals running each sequence alone; seqused_k equals truncating k/v.
TEST(Reference, VarlenEqualsSeparateSequences) {
  std::mt19937_64 rng(9);
  Case c;
  c.seqlens_q = {3, 0, 5};
  c.seqlens_k = {4, 2, 6};
  c.seqused_k = {4, 1, 3};
  c.causal = true;
  c.alibi = true;
  HostProblem vp(c, rng);
  const ReferenceFwd rv = reference_fwd(vp.problem());
  const int64_t qrow = int64_t(c.nheads) * c.head_dim, krow = int64_t(c.nheads_k) * c.head_dim;
  for (int b = 0; b < 3; ++b) {
    const int sq = c.seqlens_q[b], sk = c.seqused_k[b];
    if (sq == 0) continue;
    HostTensor q(FLASHATTN_FLOAT64, {1, sq, c.nheads, c.head_dim}), k(FLASHATTN_FLOAT64, {1, sk, c.nheads_k, c.head_dim}), v = k;
    for (int64_t e = 0; e < sq * qrow; ++e) q.set(e, vp.q.get(vp.cu_q_host[b] * qrow + e));
    for (int64_t e = 0; e < sk * krow; ++e) {
      k.set(e, vp.k.get(vp.cu_k_host[b] * krow + e));
      v.set(e, vp.v.get(vp.cu_k_host[b] * krow + e));
    }
    flashattn_attention a = vp.attn;
    a.q = q.view();
    a.k = k.view();
    a.v = v.view();
    a.cu_seqlens_q = a.cu_seqlens_k = a.seqused_k = flashattn_tensor{};
    a.cu_seqlens_q_host = a.cu_seqlens_k_host = a.seqused_k_host = nullptr;
    Problem p;
    ASSERT_TRUE(validate_attention(a, false, Target::kHost, &p).ok());
    const ReferenceFwd rs = reference_fwd(p);
    for (int64_t e = 0; e < sq * qrow; ++e) ASSERT_NEAR(rs.out[e], rv.out[vp.cu_q_host[b] * qrow + e], 1e-12);
    for (int h = 0; h < c.nheads; ++h)
      for (int i = 0; i < sq; ++i)
        ASSERT_LT(compare({rs.lse[h * sq + i]}, {rv.lse[h * vp.q.shape[0] + vp.cu_q_host[b] + i]}).max_abs, 1e-12);
  }
}

// Strided views (q, k, v inside one packed qkv buffer) read the same numbers as contiguous copies.
TEST(Reference, PackedQkvViews) {
  std::mt19937_64 rng(10);
  Case c;
  c.seqlen_k = c.seqlen_q;
  HostProblem a(c, rng);
  const ReferenceFwd r = reference_fwd(a.problem());
  const int B = c.batch, S = c.seqlen_q, H = c.nheads, D = c.head_dim;  // nheads_k = 1: pack as H + 2 heads
  HostTensor qkv(FLASHATTN_FLOAT64, {B, S, H + 2, D});
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s)
      for (int d = 0; d < D; ++d) {
        for (int h = 0; h < H; ++h) qkv.set(((b * S + s) * (H + 2) + h) * D + d, a.q.get(((b * S + s) * H + h) * D + d));
        qkv.set(((b * S + s) * (H + 2) + H) * D + d, a.k.get((b * S + s) * D + d));
        qkv.set(((b * S + s) * (H + 2) + H + 1) * D + d, a.v.get((b * S + s) * D + d));
      }
  double* base = reinterpret_cast<double*>(qkv.data());
  const int64_t st[4] = {int64_t(S) * (H + 2) * D, int64_t(H + 2) * D, D, 1};
  auto view = [&](double* ptr, int heads) {
    flashattn_tensor t = qkv.view();
    t.data = ptr;
    t.shape[2] = heads;
    for (int i = 0; i < 4; ++i) t.stride[i] = st[i];
    return t;
  };
  a.attn.q = view(base, H);
  a.attn.k = view(base + H * D, 1);
  a.attn.v = view(base + (H + 1) * D, 1);
  const ReferenceFwd rp = reference_fwd(a.problem());
  EXPECT_LT(compare(rp.out, r.out).max_abs, 1e-12);
}

// With V = identity the output row is the probability row: check P * Z elementwise against
// an independent draw of the mask, and rows of P sum to one.
TEST(Reference, DropoutScalesKeptProbabilities) {
  Case c;
  c.batch = 1;
  c.nheads = 2;
  c.seqlen_q = 16;
  c.seqlen_k = 8;
  c.dropout = 0.4f;
  std::mt19937_64 rng(11);
  HostProblem a(c, rng);
  for (int64_t i = 0; i < a.v.numel(); ++i) a.v.set(i, 0.0);
  for (int j = 0; j < 8; ++j) a.v.set(j * c.head_dim + j, 1.0);  // v_j = e_j (nheads_k = 1)
  const ReferenceFwd rd = reference_fwd(a.problem());
  a.attn.dropout_p = 0.f;
  const ReferenceFwd r0 = reference_fwd(a.problem());
  int dropped = 0;
  const uint32_t threshold = dropout_threshold(0.4f);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 16; ++i) {
      double row_sum = 0;
      for (int j = 0; j < 8; ++j) {
        const double p = r0.out[(i * 2 + h) * 8 + j], pz = rd.out[(i * 2 + h) * 8 + j];
        row_sum += p;
        const bool keep = dropout_keep(c.seed, c.offset + h, i, j, threshold);
        EXPECT_NEAR(pz, keep ? p / (1.0 - double(0.4f)) : 0.0, 1e-12);
        dropped += !keep;
      }
      EXPECT_NEAR(row_sum, 1.0, 1e-12);
      EXPECT_NEAR(rd.lse[h * 16 + i], r0.lse[h * 16 + i], 1e-12);  // lse ignores dropout
    }
  EXPECT_GT(dropped, 256 * 0.4 - 40);
  EXPECT_LT(dropped, 256 * 0.4 + 40);
}

}  // namespace
}  // namespace flashattn::test
