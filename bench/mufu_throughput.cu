// Throughput of the multi-function unit's ops (MUFU.EX2, MUFU.TANH, MUFU.RCP) and of FFMA, in ops a
// clock an SM: one CTA of 1024 threads an SM, each thread 8 independent chains, cycles by clock64.
// The softcap's cost in the kernels is one such op a score beside the softmax's EX2
// (bench/NOTES.md, session 41).
//   nvcc -O3 -gencode arch=compute_90a,code=sm_90a bench/mufu_throughput.cu -o /tmp/mufu && /tmp/mufu
#include <cstdio>

#include <cuda_runtime.h>

enum Op { kEx2, kTanh, kRcp, kFfma };

template <Op op>
__device__ __forceinline__ float apply(float x) {
  float y;
  if constexpr (op == kEx2) asm volatile("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  if constexpr (op == kTanh) asm volatile("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  // rcp(rcp(x)) folds to x in ptxas: the chain adds 0.5 between reciprocals (one FADD, off the MUFU)
  if constexpr (op == kRcp)
    asm volatile("{.reg .f32 t; rcp.approx.ftz.f32 t, %1; add.f32 %0, t, 0f3F000000;}" : "=f"(y) : "f"(x));
  if constexpr (op == kFfma) asm volatile("fma.rn.f32 %0, %1, %1, 0f3F000000;" : "=f"(y) : "f"(x));
  return y;
}

template <Op op>
__global__ void run(int iters, float* sink, long long* cycles) {
  constexpr int kChains = 8;
  float v[kChains];
  for (int c = 0; c < kChains; ++c) v[c] = 0.25f + 1e-3f * (threadIdx.x + c);
  __syncthreads();
  const long long start = clock64();
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) v[c] = apply<op>(v[c]);
  }
  __syncthreads();
  const long long end = clock64();
  float s = 0.f;
  for (int c = 0; c < kChains; ++c) s += v[c];
  if (s == 12345.f) sink[threadIdx.x] = s;  // keeps the chains alive
  if (threadIdx.x == 0) cycles[blockIdx.x] = end - start;
}

template <Op op>
void measure(const char* name, int sms) {
  const int threads = 1024, iters = 4096;
  float* sink;
  long long* cycles;
  cudaMalloc(&sink, threads * sizeof(float));
  cudaMallocManaged(&cycles, sms * sizeof(long long));
  run<op><<<sms, threads>>>(iters, sink, cycles);  // warm-up
  run<op><<<sms, threads>>>(iters, sink, cycles);
  cudaDeviceSynchronize();
  long long worst = 0;
  for (int b = 0; b < sms; ++b) worst = cycles[b] > worst ? cycles[b] : worst;
  std::printf("%-5s %6.2f ops/clock/SM (%lld cycles, %s)\n", name, double(threads) * iters * 8 / double(worst), worst,
              cudaGetErrorString(cudaGetLastError()));
  cudaFree(sink);
  cudaFree(cycles);
}

int main() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  measure<kFfma>("ffma", sms);
  measure<kEx2>("ex2", sms);
  measure<kTanh>("tanh", sms);
  measure<kRcp>("rcp", sms);
}
