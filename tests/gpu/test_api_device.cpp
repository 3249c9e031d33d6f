// The public API on a device: pointer checks, dispatch, RNG state, streams.
#include <gtest/gtest.h>

#include <cmath>

#include "common/runner.h"

namespace flashattn::test {
namespace {

using ApiDevice = GpuTest;

Case small_case(int32_t dtype) {
  Case c;
  c.dtype = dtype;
  c.head_dim = 64;
  c.nheads = 4;
  c.nheads_k = 2;
  return c;
}

TEST_F(ApiDevice, HostPointersAreRefusedByName) {
  std::mt19937_64 rng(fresh_seed());
  HostProblem hp(small_case(FLASHATTN_BFLOAT16), rng);
  DeviceProblem dp(hp);
  DeviceTensor out = DeviceTensor::poisoned(FLASHATTN_BFLOAT16, hp.q.shape);
  DeviceTensor lse = DeviceTensor::poisoned(FLASHATTN_FLOAT32, lse_shape(hp));
  FwdParams f;
  f.attn = dp.attn;
  f.out = out.view();
  f.softmax_lse = lse.view();
  f.backend = FLASHATTN_BACKEND_REFERENCE;
  ASSERT_TRUE(fwd(f, nullptr).ok());
  struct {
    const char* name;
    flashattn_tensor* slot;
    flashattn_tensor host;
  } cases[] = {{"q", &f.attn.q, hp.q.view()}, {"k", &f.attn.k, hp.k.view()}, {"v", &f.attn.v, hp.v.view()},
               {"out", &f.out, hp.q.view()}};
  for (auto& c : cases) {
    const flashattn_tensor saved = *c.slot;
    *c.slot = c.host;
    const Status s = fwd(f, nullptr);
    EXPECT_EQ(s.code, FLASHATTN_INVALID_ARGUMENT);
    EXPECT_NE(s.message.find(std::string(c.name) + ": points to host memory"), std::string::npos) << s.message;
    *c.slot = saved;
  }
  HostTensor lse_host(FLASHATTN_FLOAT32, lse_shape(hp));
  f.softmax_lse = lse_host.view();
  EXPECT_NE(fwd(f, nullptr).message.find("softmax_lse: points to host memory"), std::string::npos);
}

// The backward's workspace: too small is refused by name before anything runs.
TEST_F(ApiDevice, BackwardWorkspaceTooSmallIsRefused) {
  std::mt19937_64 rng(fresh_seed());
  HostProblem hp(small_case(FLASHATTN_BFLOAT16), rng);
  DeviceProblem dp(hp);
  DeviceTensor out(random_tensor(FLASHATTN_BFLOAT16, hp.q.shape, rng)), dout(out.host);
  DeviceTensor lse(random_tensor(FLASHATTN_FLOAT32, lse_shape(hp), rng));
  DeviceTensor dq = DeviceTensor::poisoned(FLASHATTN_BFLOAT16, hp.q.shape);
  DeviceTensor dk = DeviceTensor::poisoned(FLASHATTN_BFLOAT16, hp.k.shape);
  DeviceTensor dv = DeviceTensor::poisoned(FLASHATTN_BFLOAT16, hp.v.shape);
  BwdParams b;
  b.attn = dp.attn;
  b.out = out.view();
  b.softmax_lse = lse.view();
  b.dout = dout.view();
  b.dq = dq.view();
  b.dk = dk.view();
  b.dv = dv.view();
  b.backend = FLASHATTN_BACKEND_SM80;
  size_t need = 0;
  ASSERT_TRUE(bwd_workspace_size(b, &need).ok());
  ASSERT_GT(need, 0u);
  DeviceBuffer ws(need);
  b.workspace = ws.ptr;
  b.workspace_size = need - 1;
  const Status s = bwd(b, nullptr);
  EXPECT_EQ(s.code, FLASHATTN_INVALID_ARGUMENT);
  EXPECT_NE(s.message.find("workspace_size: " + std::to_string(need - 1) + " bytes"), std::string::npos) << s.message;
  EXPECT_TRUE(std::isnan(dq.download().to_double()[0])) << "dq was written: something ran";
}

TEST_F(ApiDevice, MissingKernelsSayNotSupportedYet) {
  std::mt19937_64 rng(fresh_seed());
  for (int32_t dt : {FLASHATTN_BFLOAT16, FLASHATTN_FLOAT32}) {
    HostProblem hp(small_case(dt), rng);
    for (Backend b : {Backend::kAuto, Backend::kSm80, Backend::kSm90}) {
      const DeviceRun r = run_on_device(hp, b);
      if (r.fwd_status.ok()) continue;  // a kernel exists for this call
      EXPECT_EQ(r.fwd_status.code, FLASHATTN_NOT_SUPPORTED) << r.fwd_status.message;
      EXPECT_NE(r.fwd_status.message.find("not supported yet: "), std::string::npos) << r.fwd_status.message;
    }
  }
}

// Dropout seeded by value and by device pointers (graph capture) draws the same mask, reports the
// (seed, offset) it used, and a new offset draws a new mask.
TEST_F(ApiDevice, DropoutRngStateAndSeedPointers) {
  std::mt19937_64 rng(fresh_seed());
  Case c = small_case(FLASHATTN_FLOAT32);
  c.dropout = 0.25f;
  c.seed = 0x123456789abcull;
  c.offset = 40;
  HostProblem hp(c, rng);
  DeviceProblem dp(hp);
  DeviceBuffer state(16), seeds(16);
  const uint64_t host_seeds[2] = {c.seed, 32};  // offset 32 + philox_offset 8 = 40
  CUDA_OK(cudaMemcpy(seeds.ptr, host_seeds, 16, cudaMemcpyHostToDevice));
  auto run = [&](bool by_pointer, uint64_t offset) {
    DeviceTensor out = DeviceTensor::poisoned(FLASHATTN_FLOAT32, hp.q.shape);
    DeviceTensor lse = DeviceTensor::poisoned(FLASHATTN_FLOAT32, lse_shape(hp));
    FwdParams f;
    f.attn = dp.attn;
    f.out = out.view();
    f.softmax_lse = lse.view();
    f.backend = FLASHATTN_BACKEND_REFERENCE;
    f.rng_state = static_cast<uint64_t*>(state.ptr);
    f.attn.philox_offset = offset;
    if (by_pointer) {
      f.attn.philox_seed_ptr = static_cast<const uint64_t*>(seeds.ptr);
      f.attn.philox_offset_ptr = static_cast<const uint64_t*>(seeds.ptr) + 1;
      f.attn.philox_seed = 999;  // ignored
    }
    EXPECT_TRUE(fwd(f, nullptr).ok());
    return out.download().to_double();
  };
  const std::vector<double> by_value = run(false, 40);
  uint64_t used[2];
  CUDA_OK(cudaMemcpy(used, state.ptr, 16, cudaMemcpyDeviceToHost));
  EXPECT_EQ(used[0], c.seed);
  EXPECT_EQ(used[1], 40u);
  const std::vector<double> by_pointer = run(true, 8);
  CUDA_OK(cudaMemcpy(used, state.ptr, 16, cudaMemcpyDeviceToHost));
  EXPECT_EQ(used[1], 40u);
  EXPECT_EQ(by_value, by_pointer);
  EXPECT_NE(run(false, 41), by_value);
}

TEST_F(ApiDevice, RunsOnTheGivenStream) {
  std::mt19937_64 rng(fresh_seed());
  HostProblem hp(small_case(FLASHATTN_BFLOAT16), rng);
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  HostTensor dout = random_tensor(FLASHATTN_BFLOAT16, hp.q.shape, rng);
  const DeviceRun on_stream = run_on_device(hp, Backend::kReference, &dout, false, stream);
  const DeviceRun on_default = run_on_device(hp, Backend::kReference, &dout);
  ASSERT_TRUE(on_stream.bwd_status.ok()) << on_stream.bwd_status.message;
  EXPECT_EQ(on_stream.out, on_default.out);
  EXPECT_EQ(on_stream.dq, on_default.dq);
  CUDA_OK(cudaStreamDestroy(stream));
}

TEST_F(ApiDevice, EmptyBatchIsANoOp) {
  std::mt19937_64 rng(fresh_seed());
  Case c = small_case(FLASHATTN_BFLOAT16);
  c.seqlens_q = {0, 0};
  c.seqlens_k = {0, 3};
  HostProblem hp(c, rng);
  HostTensor dout = random_tensor(FLASHATTN_BFLOAT16, hp.q.shape, rng);
  const DeviceRun r = run_on_device(hp, Backend::kReference, &dout);
  EXPECT_TRUE(r.fwd_status.ok()) << r.fwd_status.message;
  EXPECT_TRUE(r.bwd_status.ok()) << r.bwd_status.message;
  // k rows of a sequence with no queries get zero gradients
  for (double x : r.dk) EXPECT_EQ(x, 0.0);
}

}  // namespace
}  // namespace flashattn::test
