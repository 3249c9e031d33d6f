// Device-side helpers for the GPU tests: skip without a device, buffers, poisoned outputs.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>

#include "common/cases.h"

namespace flashattn::test {

// Why GPU tests cannot run here, or "" when a device is usable.
inline std::string gpu_unavailable_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(err) + ")";
  }
  return n == 0 ? "no CUDA device (cudaGetDeviceCount returned 0)" : "";
}

// The compute capability major of the current device (0 without one).
inline int device_major() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major;
}

#define FLASHATTN_REQUIRE_GPU()                                    \
  do {                                                             \
    const std::string why_ = ::flashattn::test::gpu_unavailable_reason(); \
    if (!why_.empty()) GTEST_SKIP() << "GPU test skipped: " << why_; \
  } while (0)

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr << ": " << cudaGetErrorString(cudaGetLastError())

// Fixtures whose tests skip (with the reason) where no device exists.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override { FLASHATTN_REQUIRE_GPU(); }
};
template <typename Param>
class GpuTestWithParam : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { FLASHATTN_REQUIRE_GPU(); }
};

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : bytes(n) {
    if (n && cudaMalloc(&ptr, n) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// A host tensor mirrored on the device.
struct DeviceTensor {
  HostTensor host;
  std::unique_ptr<DeviceBuffer> buf;
  DeviceTensor() = default;
  explicit DeviceTensor(const HostTensor& h) : host(h), buf(std::make_unique<DeviceBuffer>(h.bytes.size())) {
    if (!h.bytes.empty()) cudaMemcpy(buf->ptr, h.bytes.data(), h.bytes.size(), cudaMemcpyHostToDevice);
  }
  // An output: filled with 0xff bytes (NaN in every float dtype), so an unwritten element fails.
  static DeviceTensor poisoned(int32_t dtype, std::vector<int64_t> shape) {
    DeviceTensor t(HostTensor(dtype, std::move(shape)));
    if (t.buf->bytes) cudaMemset(t.buf->ptr, 0xff, t.buf->bytes);
    return t;
  }
  flashattn_tensor view() {
    flashattn_tensor v = host.view();
    v.data = buf->ptr;
    return v;
  }
  HostTensor download() {
    HostTensor h = host;
    if (!h.bytes.empty()) cudaMemcpy(h.bytes.data(), buf->ptr, h.bytes.size(), cudaMemcpyDeviceToHost);
    return h;
  }
};

// The inputs of a HostProblem on the device, and an attention description that points at them.
struct DeviceProblem {
  DeviceTensor q, k, v, cu_q, cu_k, used, alibi;
  flashattn_attention attn;
  explicit DeviceProblem(const HostProblem& hp) : attn(hp.attn) {
    q = DeviceTensor(hp.q);
    k = DeviceTensor(hp.k);
    v = DeviceTensor(hp.v);
    attn.q = q.view();
    attn.k = k.view();
    attn.v = v.view();
    if (hp.c.varlen()) {
      cu_q = DeviceTensor(hp.cu_q);
      cu_k = DeviceTensor(hp.cu_k);
      attn.cu_seqlens_q = cu_q.view();
      attn.cu_seqlens_k = cu_k.view();
      if (!hp.c.seqused_k.empty()) {
        used = DeviceTensor(hp.used);
        attn.seqused_k = used.view();
      }
    }
    if (hp.c.alibi) {
      alibi = DeviceTensor(hp.alibi);
      attn.alibi_slopes = alibi.view();
    }
  }
};

inline uint64_t fresh_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) | rd();
}

}  // namespace flashattn::test
