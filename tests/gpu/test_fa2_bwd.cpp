// The FlashAttention-2 backward (BACKEND_SM80) against the fp64 reference: every feature, odd shapes,
// every head-dim bucket; error at most 2x that of standard attention's autograd in the same dtype.
// Also: deterministic mode bitwise equal across reruns, large shapes against the fp32 GPU reference.
#include <gtest/gtest.h>

#include <cstdio>

#include "common/kernel_cases.h"
#include "common/math_attention.h"

namespace flashattn::test {
namespace {

std::vector<KernelCase> bwd_cases() {
  std::vector<KernelCase> cases =
      kernel_cases({FLASHATTN_BFLOAT16, FLASHATTN_FLOAT16}, {64, 128},
                   // Odd lengths and every bucket (smaller head dims round up to a bucket).
                   {{1, 1, 32, false}, {17, 113, 96, true}, {113, 17, 192, false}, {1023, 1023, 256, true},
                    {200, 333, 40, false}, {64, 1, 72, true}, {1, 300, 128, false}, {257, 129, 256, false},
                    {300, 200, 192, true}});
  // d192 and d256 have their own tiles (64 x 64, other warp layouts): every feature there too.
  for (const KernelCase& k : kernel_cases({FLASHATTN_BFLOAT16}, {192, 256}, {})) cases.push_back(k);
  return cases;
}

using Fa2Bwd = GpuTestWithParam<KernelCase>;

TEST_P(Fa2Bwd, MatchesFp64Reference) {
  check_backward_case(GetParam().c, Backend::kSm80);
}

INSTANTIATE_TEST_SUITE_P(Features, Fa2Bwd, ::testing::ValuesIn(bwd_cases()),
                         [](const auto& info) { return info.param.c.name; });

// Deterministic mode: ten reruns give bitwise equal dq, dk, dv (many key blocks add into each query
// block, GQA sums over the group, causal skips tiles).
TEST(Fa2BwdDeterministic, TenRerunsBitwiseEqual) {
  FLASHATTN_REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  for (bool causal : {false, true}) {
    Case c;
    c.dtype = FLASHATTN_BFLOAT16;
    c.batch = 2;
    c.seqlen_q = 1000;
    c.seqlen_k = 1100;
    c.nheads = 4;
    c.nheads_k = 2;
    c.head_dim = 128;
    c.causal = causal;
    HostProblem hp(c, rng);
    HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
    const DeviceRun first = run_on_device(hp, Backend::kSm80, &dout, true);
    ASSERT_TRUE(first.bwd_status.ok()) << first.bwd_status.message;
    for (int run = 1; run < 10; ++run) {
      const DeviceRun again = run_on_device(hp, Backend::kSm80, &dout, true);
      ASSERT_TRUE(again.bwd_status.ok()) << again.bwd_status.message;
      ASSERT_EQ(again.dq, first.dq) << "dq differs on rerun " << run << (causal ? " (causal)" : "");
      ASSERT_EQ(again.dk, first.dk) << "dk differs on rerun " << run;
      ASSERT_EQ(again.dv, first.dv) << "dv differs on rerun " << run;
    }
  }
}

// Large shapes (too slow for the fp64 CPU reference): forward and backward against the fp32 GPU
// reference on the same bf16 inputs. Both see the same rounded inputs, so the difference is our
// low-precision P/dS operands and output rounding: a few bf16 ulps of the largest value.
TEST(Fa2Large, MatchesFp32GpuReference) {
  FLASHATTN_REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  const std::tuple<int, int, int, bool, int, int> shapes[] = {
      // seqlen_q, seqlen_k, head_dim, causal, nheads, nheads_k
      {4096, 4096, 128, true, 4, 2}, {3000, 5000, 64, false, 2, 2}, {2048, 2048, 256, false, 2, 1}};
  for (auto [sq, sk, d, causal, h, hk] : shapes) {
    Case c;
    c.dtype = FLASHATTN_BFLOAT16;
    c.batch = 1;
    c.seqlen_q = sq;
    c.seqlen_k = sk;
    c.head_dim = d;
    c.causal = causal;
    c.nheads = h;
    c.nheads_k = hk;
    SCOPED_TRACE("sq " + std::to_string(sq) + " sk " + std::to_string(sk) + " d " + std::to_string(d));
    HostProblem hp(c, rng);
    HostTensor dout = random_tensor(c.dtype, hp.q.shape, rng);
    const DeviceRun ref = run_on_device(hp, Backend::kReference, &dout);
    const DeviceRun got = run_on_device(hp, Backend::kSm80, &dout);
    ASSERT_TRUE(ref.bwd_status.ok()) << ref.bwd_status.message;
    ASSERT_TRUE(got.bwd_status.ok()) << got.bwd_status.message;
    const std::tuple<const char*, const std::vector<double>*, const std::vector<double>*> outs[] = {
        {"out", &got.out, &ref.out}, {"dq", &got.dq, &ref.dq}, {"dk", &got.dk, &ref.dk}, {"dv", &got.dv, &ref.dv}};
    for (auto [name, ours_v, ref_v] : outs) {
      const ErrorStats e = compare(*ours_v, *ref_v);
      EXPECT_EQ(e.nonfinite, 0) << name;
      EXPECT_LE(e.max_abs, 4.0 / 256 * e.ref_max) << name << " max |ref| " << e.ref_max;
      std::printf("%s: max abs error %.3g of max |ref| %.3g\n", name, e.max_abs, e.ref_max);
    }
  }
}

}  // namespace
}  // namespace flashattn::test

namespace flashattn::test {
namespace {

// Tensors of more than 2^31 elements (about 4.4 GB each in bf16): every offset is 64-bit. The last
// sequence of a 1040-sequence batch, computed in place, must equal the same sequence computed alone
// (a view at its address, where every offset is small); deterministic mode makes dQ comparable bit
// for bit. Sequences draw from a pool of 16 random blocks so a wrapped offset reads different data.
TEST(Fa2Large, MoreThan2Pow31Elements) {
  FLASHATTN_REQUIRE_GPU();
  constexpr int B = 1040, S = 128, H = 128, D = 128;
  constexpr int64_t kSeq = int64_t(S) * H * D, kElems = B * kSeq;
  static_assert(kElems > (int64_t(1) << 31));
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  if (free_bytes < (size_t(52) << 30)) GTEST_SKIP() << "GPU test skipped: needs 52 GB of free device memory";
  std::mt19937_64 rng(fresh_seed());
  DeviceBuffer q(kElems * 2), k(kElems * 2), v(kElems * 2), dout(kElems * 2), out(kElems * 2), dq(kElems * 2),
      dk(kElems * 2), dv(kElems * 2), lse(size_t(B) * H * S * 4);
  for (DeviceBuffer* t : {&q, &k, &v, &dout}) {
    std::vector<HostTensor> pool;
    for (int i = 0; i < 16; ++i) pool.push_back(random_tensor(FLASHATTN_BFLOAT16, {S, H, D}, rng));
    for (int b = 0; b < B; ++b)
      CUDA_OK(cudaMemcpy(static_cast<char*>(t->ptr) + b * kSeq * 2, pool[b % 16].bytes.data(), kSeq * 2,
                         cudaMemcpyHostToDevice));
  }
  auto run = [&](int64_t first_seq, int64_t batch, void* o, void* l, void* gq, void* gk, void* gv) {
    auto at = [&](const DeviceBuffer& t) { return static_cast<char*>(t.ptr) + first_seq * kSeq * 2; };
    auto sh = [&](const void* p) { return make_tensor(p, DType::kBFloat16, {batch, S, H, D}); };
    FwdParams f;
    f.attn.q = sh(at(q));
    f.attn.k = sh(at(k));
    f.attn.v = sh(at(v));
    f.attn.is_causal = 1;
    f.out = sh(o);
    f.softmax_lse = make_tensor(l, DType::kFloat32, {batch, H, S});
    f.backend = FLASHATTN_BACKEND_SM80;
    Status s = fwd(f, nullptr);
    if (!s.ok()) return s;
    BwdParams bp;
    bp.attn = f.attn;
    bp.out = f.out;
    bp.softmax_lse = f.softmax_lse;
    bp.dout = sh(at(dout));
    bp.dq = sh(gq);
    bp.dk = sh(gk);
    bp.dv = sh(gv);
    bp.deterministic = 1;
    bp.backend = FLASHATTN_BACKEND_SM80;
    size_t ws_bytes = 0;
    s = bwd_workspace_size(bp, &ws_bytes);
    if (!s.ok()) return s;
    DeviceBuffer ws(ws_bytes);
    bp.workspace = ws.ptr;
    bp.workspace_size = ws_bytes;
    s = bwd(bp, nullptr);
    cudaDeviceSynchronize();
    return s;
  };
  DeviceBuffer out1(kSeq * 2), lse1(size_t(H) * S * 4), dq1(kSeq * 2), dk1(kSeq * 2), dv1(kSeq * 2);
  for (DeviceBuffer* t : {&out, &lse, &dq, &dk, &dv, &out1, &lse1, &dq1, &dk1, &dv1})
    CUDA_OK(cudaMemset(t->ptr, 0xff, t->bytes));  // poisoned: NaN in bf16 and fp32
  Status s = run(0, B, out.ptr, lse.ptr, dq.ptr, dk.ptr, dv.ptr);
  ASSERT_TRUE(s.ok()) << s.message;
  s = run(B - 1, 1, out1.ptr, lse1.ptr, dq1.ptr, dk1.ptr, dv1.ptr);
  ASSERT_TRUE(s.ok()) << s.message;
  CUDA_OK(cudaGetLastError());
  auto last = [&](const DeviceBuffer& big, size_t bytes) {
    std::vector<char> h(bytes);
    cudaMemcpy(h.data(), static_cast<const char*>(big.ptr) + big.bytes - bytes, bytes, cudaMemcpyDeviceToHost);
    return h;
  };
  auto all = [&](const DeviceBuffer& small) { return last(small, small.bytes); };
  EXPECT_TRUE(last(out, kSeq * 2) == all(out1)) << "out of the last sequence differs";
  EXPECT_TRUE(last(lse, size_t(H) * S * 4) == all(lse1)) << "lse of the last sequence differs";
  EXPECT_TRUE(last(dq, kSeq * 2) == all(dq1)) << "dq of the last sequence differs";
  EXPECT_TRUE(last(dk, kSeq * 2) == all(dk1)) << "dk of the last sequence differs";
  EXPECT_TRUE(last(dv, kSeq * 2) == all(dv1)) << "dv of the last sequence differs";
  // And both were written: no poisoned (0xffff) bf16 value is left.
  for (const DeviceBuffer* t : {&out1, &dq1, &dk1, &dv1}) {
    const std::vector<char> h = all(*t);
    int64_t poisoned = 0;
    for (size_t i = 0; i + 1 < h.size(); i += 2) poisoned += h[i] == char(0xff) && h[i + 1] == char(0xff);
    EXPECT_EQ(poisoned, 0);
  }
}

}  // namespace
}  // namespace flashattn::test
