// 2^x as one MUFU.EX2. The exp2f of CUDA's math library (without --use_fast_math) guards against
// subnormal results with a compare and two predicated multiplies around it; a softmax probability
// below 2^-126 of the row maximum is zero for every purpose here, so flushing it costs nothing and
// saves three instructions per score in the kernels' inner loops. exp2(-inf) is +0.
#pragma once

namespace flashattn {

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace flashattn
