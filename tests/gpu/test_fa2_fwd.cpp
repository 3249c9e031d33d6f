// The FlashAttention-2 forward (BACKEND_SM80) against the fp64 reference: every feature, odd shapes,
// every head-dim bucket; error at most 2x that of standard attention in the same dtype.
#include <gtest/gtest.h>

#include "common/kernel_cases.h"
#include "common/math_attention.h"

namespace flashattn::test {
namespace {

std::vector<KernelCase> fa2_cases() {
  return kernel_cases({FLASHATTN_BFLOAT16, FLASHATTN_FLOAT16}, {64, 128},
                      // Odd lengths and every bucket (smaller head dims round up to a bucket).
                      {{1, 1, 32, false}, {17, 113, 96, true}, {113, 17, 192, false}, {1023, 1023, 256, true},
                       {200, 333, 40, false}, {64, 1, 72, true}, {1, 300, 128, false}, {257, 129, 256, false}});
}

using Fa2Fwd = GpuTestWithParam<KernelCase>;

TEST_P(Fa2Fwd, MatchesFp64Reference) {
  check_forward_case(GetParam().c, Backend::kSm80);
}

INSTANTIATE_TEST_SUITE_P(Features, Fa2Fwd, ::testing::ValuesIn(fa2_cases()),
                         [](const auto& info) { return info.param.c.name; });

// q, k, v as views of one packed qkv tensor [b, s, 3, h, d]: batch/row/head strides of the caller.
TEST(Fa2FwdLayout, PackedQkvViews) {
  FLASHATTN_REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  const int B = 2, S = 300, H = 4, D = 128;
  HostTensor qkv = random_tensor(FLASHATTN_BFLOAT16, {B, S, 3, H, D}, rng);
  Case c;
  c.dtype = FLASHATTN_BFLOAT16;
  c.batch = B;
  c.seqlen_q = c.seqlen_k = S;
  c.nheads = c.nheads_k = H;
  c.head_dim = D;
  c.causal = true;
  HostProblem hp(c, rng);
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s)
      for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) {
          const int64_t i = ((int64_t(b) * S + s) * H + h) * D + d;
          const int64_t base = ((int64_t(b) * S + s) * 3 * H + h) * D + d;
          hp.q.set(i, qkv.get(base));
          hp.k.set(i, qkv.get(base + H * D));
          hp.v.set(i, qkv.get(base + 2 * H * D));
        }
  const DeviceRun contiguous = run_on_device(hp, Backend::kSm80);
  ASSERT_TRUE(contiguous.fwd_status.ok()) << contiguous.fwd_status.message;
  DeviceTensor d_qkv(qkv);
  DeviceTensor out = DeviceTensor::poisoned(FLASHATTN_BFLOAT16, {B, S, H, D});
  DeviceTensor lse = DeviceTensor::poisoned(FLASHATTN_FLOAT32, {B, H, S});
  FwdParams f;
  auto* base = static_cast<uint16_t*>(d_qkv.buf->ptr);
  const std::initializer_list<int64_t> strides = {int64_t(S) * 3 * H * D, 3 * H * D, D, 1};
  f.attn.q = make_tensor(base, DType::kBFloat16, {B, S, H, D}, strides);
  f.attn.k = make_tensor(base + H * D, DType::kBFloat16, {B, S, H, D}, strides);
  f.attn.v = make_tensor(base + 2 * H * D, DType::kBFloat16, {B, S, H, D}, strides);
  f.attn.is_causal = 1;
  f.out = out.view();
  f.softmax_lse = lse.view();
  f.backend = FLASHATTN_BACKEND_SM80;
  const Status s = fwd(f, nullptr);
  ASSERT_TRUE(s.ok()) << s.message;
  EXPECT_EQ(out.download().to_double(), contiguous.out);
}

}  // namespace
}  // namespace flashattn::test
