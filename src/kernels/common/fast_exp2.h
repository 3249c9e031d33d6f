// The kernels' fast math. 2^x as one MUFU.EX2: the exp2f of CUDA's math library (without
// --use_fast_math) guards against subnormal results with a compare and two predicated multiplies
// around it; a softmax probability below 2^-126 of the row maximum is zero for every purpose here,
// so flushing it costs nothing and saves three instructions per score in the kernels' inner loops.
// exp2(-inf) is +0.
#pragma once

namespace flashattn {

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// tanh(x) as one MUFU.TANH (sm75+; max relative error 1.1e-5).
__device__ __forceinline__ float fast_tanh(float x) {
  float t;
  asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(x));
  return t;
}

// The kernels' softcap, softcap tanh(scale dot / softcap), with tanh as one MUFU.TANH
// (tanh.approx.f32, sm75+: max relative error 1.1e-5, i.e. 3.3e-4 absolute in a score at softcap 30,
// under a bf16 P's rounding of 4e-3). CUDA's tanhf (without --use_fast_math) branches to a
// polynomial for small arguments, and the kernels divided by softcap a score: the Hopper forward's
// softcap variant ran at a fifth of the plain one. 1 - 2 / (1 + e^2x) by MUFU.EX2 and MUFU.RCP
// measured 1.6x slower than this on H200 (bench/NOTES.md, session 41). The references keep
// tanh / tanhf (score.h).
struct FastSoftcap {
  float cap;    // softcap (> 0)
  float x_mul;  // scale / softcap
  __device__ FastSoftcap(float scale, float softcap) : cap(softcap), x_mul(softcap > 0.f ? scale / softcap : 0.f) {}
  // tanh(scale dot / softcap) of a raw dot product q.k
  __device__ float tanh(float dot) const { return fast_tanh(dot * x_mul); }
  __device__ float capped(float t) const { return cap * t; }
  // d capped / d (scale dot) = 1 - tanh^2
  __device__ static float grad(float t) { return 1.f - t * t; }
};

// scale dot - slope |row + diag - col| for ALiBi without integer math or an int-to-float conversion
// a score. Within one thread's unrolled accumulator, row + diag - col is the distance of the
// thread's first element (row0, col0) plus a constant of the element, (row - row0) - (col - col0);
// slope_first = slope x that first distance, once a tile. Two FFMAs a score; the absolute value is
// an operand modifier (bench/NOTES.md, session 42). Rows and columns are the tile's own (from 0);
// offset = m0 + diag - n0 places the tile.
struct AlibiFromFirst {
  int row0, col0;
  float slope, slope_first;
  __device__ AlibiFromFirst(float slope_, int row0_, int col0_, int offset)
      : row0(row0_), col0(col0_), slope(slope_), slope_first(slope_ * float(offset + row0_ - col0_)) {}
  __device__ float score(float dot, float scale, int row, int col) const {
    const float step = float((row - row0) - (col - col0));  // a constant of the unrolled element
    return fmaf(dot, scale, -fabsf(fmaf(slope, step, slope_first)));
  }
};

}  // namespace flashattn
