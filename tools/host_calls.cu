// flashattn_host_calls: the host time of one small forward and backward call through the C API, and
// of the CUDA runtime calls a launch is made of, each timed alone while the GPU is held by a spin
// kernel (so no call waits on the GPU and no queue fills: the numbers are the host's own).
//   flashattn_host_calls [--calls N] [--json FILE]
// Shape: batch 1, seqlen 128, 2 heads, d 128, bf16, causal (the Python host_time.py's).
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "flashattn/flashattn.h"  // make_tensor; the calls timed are the C API's

namespace {

__global__ void spin_kernel(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}
__global__ void empty_kernel() {}

// Median over `rounds` of the mean microseconds of `calls` calls of fn, each round queued behind a
// spin kernel long enough that the GPU runs none of them until the round's clock has stopped.
template <typename Fn>
double host_us(Fn&& fn, int calls, int rounds = 9) {
  std::vector<double> us;
  for (int r = 0; r < rounds; ++r) {
    cudaDeviceSynchronize();
    spin_kernel<<<1, 1>>>(200'000'000ll);  // ~100 ms at 2 GHz
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) fn();
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
  }
  cudaDeviceSynchronize();
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

void check(flashattn_status s, const char* what) {
  if (s != FLASHATTN_OK) {
    std::fprintf(stderr, "flashattn_host_calls: %s failed: %s\n", what, flashattn_last_error());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 100;
  const char* json = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--calls")) calls = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--json")) json = argv[i + 1];
    else {
      std::fprintf(stderr, "flashattn_host_calls: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "flashattn_host_calls: no CUDA device here; nothing was measured.\n");
    return 2;
  }
  constexpr int64_t b = 1, s = 128, h = 2, d = 128, n = b * s * h * d;
  void *q, *k, *v, *out, *dout, *dq, *dk, *dv, *lse;
  for (void** p : {&q, &k, &v, &out, &dout, &dq, &dk, &dv}) cudaMalloc(p, n * 2);
  cudaMalloc(&lse, b * h * s * 4);
  for (void* p : {q, k, v, dout}) cudaMemset(p, 0, n * 2);

  flashattn_fwd_params fp;
  flashattn_fwd_params_init(&fp);
  using flashattn::make_tensor;
  constexpr auto bf16 = flashattn::DType::kBFloat16;
  fp.attn.q = make_tensor(q, bf16, {b, s, h, d});
  fp.attn.k = make_tensor(k, bf16, {b, s, h, d});
  fp.attn.v = make_tensor(v, bf16, {b, s, h, d});
  fp.attn.is_causal = 1;
  fp.out = make_tensor(out, bf16, {b, s, h, d});
  fp.softmax_lse = make_tensor(lse, flashattn::DType::kFloat32, {b, h, s});
  flashattn_bwd_params bp;
  flashattn_bwd_params_init(&bp);
  bp.attn = fp.attn;
  bp.out = fp.out;
  bp.softmax_lse = fp.softmax_lse;
  bp.dout = make_tensor(dout, bf16, {b, s, h, d});
  bp.dq = make_tensor(dq, bf16, {b, s, h, d});
  bp.dk = make_tensor(dk, bf16, {b, s, h, d});
  bp.dv = make_tensor(dv, bf16, {b, s, h, d});
  size_t workspace_bytes = 0;
  check(flashattn_bwd_workspace_size(&bp, &workspace_bytes), "bwd_workspace_size");
  cudaMalloc(&bp.workspace, std::max<size_t>(workspace_bytes, 1));
  bp.workspace_size = workspace_bytes;
  check(flashattn_fwd(&fp, nullptr), "fwd");
  check(flashattn_bwd(&bp, nullptr), "bwd");
  cudaDeviceSynchronize();

  // The runtime calls one launch is made of.
  void* encode = nullptr;
  cudaDriverEntryPointQueryResult found;
  cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &encode, 12000, cudaEnableDefault, &found);
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  const cuuint64_t dims[3] = {d, s, b * h}, strides[2] = {d * 2 * h, d * 2};
  const cuuint32_t box[3] = {64, 128, 1}, elem[3] = {1, 1, 1};
  CUtensorMap map;
  int device = 0, sms = 0;
  cudaPointerAttributes attr;
  struct Row {
    const char* name;
    double us;
  };
  std::vector<Row> rows;
  auto row = [&](const char* name, auto&& fn) {
    rows.push_back({name, host_us(fn, calls)});
    std::printf("%9.3f us  %s\n", rows.back().us, name);
    std::fflush(stdout);
  };
  row("cudaGetDevice", [&] { cudaGetDevice(&device); });
  row("cudaDeviceGetAttribute (SM count)",
      [&] { cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); });
  row("cudaPointerGetAttributes", [&] { cudaPointerGetAttributes(&attr, q); });
  row("cudaFuncSetAttribute (max dynamic shared memory)",
      [&] { cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024); });
  row("cudaGetDriverEntryPointByVersion (cuTensorMapEncodeTiled)", [&] {
    void* fn = nullptr;
    cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
  });
  row("cuTensorMapEncodeTiled", [&] {
    reinterpret_cast<Encode>(encode)(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, q, dims, strides, box, elem,
                                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                     CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  });
  row("empty kernel launch", [&] { empty_kernel<<<1, 32>>>(); });
  row("flashattn_fwd_workspace_size (validation)", [&] {
    size_t bytes;
    flashattn_fwd_workspace_size(&fp, &bytes);
  });
  row("flashattn_fwd", [&] { flashattn_fwd(&fp, nullptr); });
  row("flashattn_bwd_workspace_size (validation)", [&] {
    size_t bytes;
    flashattn_bwd_workspace_size(&bp, &bytes);
  });
  row("flashattn_bwd", [&] { flashattn_bwd(&bp, nullptr); });
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    std::fprintf(stderr, "flashattn_host_calls: %s\n", cudaGetErrorString(err));
    return 1;
  }
  if (json) {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    FILE* f = std::fopen(json, "w");
    if (!f) return 1;
    std::fprintf(f, "{\"card\": \"%s\", \"calls\": %d, \"shape\": [%lld, %lld, %lld, %lld], \"us_per_call\": {",
                 prop.name, calls, (long long)b, (long long)s, (long long)h, (long long)d);
    for (size_t i = 0; i < rows.size(); ++i)
      std::fprintf(f, "%s\"%s\": %.3f", i ? ", " : "", rows[i].name, rows[i].us);
    std::fprintf(f, "}}\n");
    std::fclose(f);
  }
  return 0;
}
