// Online softmax over key tiles (FlashAttention-2, Algorithm 1): a running max m and a running,
// per-thread partial sum l per row; O is rescaled by exp(m_old - m_new) when the max grows (and
// only then, FlashAttention-3's trick) and divided by l once at the end. Scores arrive in "raw"
// units; exp2 with scale·log2(e) folded in.
#pragma once

#include <cute/tensor.hpp>

#include <cmath>

#include "kernels/common/fast_exp2.h"

namespace flashattn::sm80 {

using namespace cute;

template <int kRows>
struct OnlineSoftmax {
  float row_max[kRows];
  float row_sum[kRows];  // this thread's columns only, until finish()
  float scale_log2;      // multiplies a raw score to give log2 of its weight

  __device__ explicit OnlineSoftmax(float scale_log2_) : scale_log2(scale_log2_) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      row_max[r] = -INFINITY;
      row_sum[r] = 0.f;
    }
  }

  float correction[kRows];  // exp(m_old - m_new) of the last exponentiate(), for rescale()
  bool max_grew;            // whether the last exponentiate() raised any of this thread's row maxima

  // scores (rows, cols) become unnormalized probabilities; acc_o (rows, d) is rescaled.
  template <typename Scores, typename AccO>
  __device__ void update(Scores& s, AccO& acc_o) {
    exponentiate(s);
    rescale(acc_o);
  }

  // The score half of update(): new row maxima, scores -> unnormalized probabilities, row sums.
  // Leaves O alone, so it can run while a GEMM still accumulates into O.
  template <typename Scores>
  __device__ void exponentiate(Scores& s) {
    max_grew = false;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float m = row_max[r];
      CUTE_UNROLL
      for (int c = 0; c < size<1>(s); ++c) m = fmaxf(m, s(r, c));
      // The four threads of a quad hold the columns of one row.
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
      // A row that has seen only masked keys keeps m = -inf; exponentiate against 0 so exp2 gives 0, not NaN.
      const float m_scaled = m == -INFINITY ? 0.f : m * scale_log2;
      correction[r] = fast_exp2(row_max[r] * scale_log2 - m_scaled);
      max_grew |= m != row_max[r];
      row_max[r] = m;
      row_sum[r] *= correction[r];
      float sum = 0.f;
      CUTE_UNROLL
      for (int c = 0; c < size<1>(s); ++c) {
        s(r, c) = fast_exp2(s(r, c) * scale_log2 - m_scaled);
        sum += s(r, c);
      }
      row_sum[r] += sum;
    }
  }

  // The O half: O *= exp(m_old - m_new) per row, from the last exponentiate(). Skipped, as a
  // warp-uniform branch, when no row of the warp saw its max grow: after the first key blocks that
  // is the common case, and the correction would be 1 (up to the rounding of m * scale).
  template <typename AccO>
  __device__ void rescale(AccO& acc_o) {
    if (!__any_sync(0xffffffffu, max_grew)) return;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      CUTE_UNROLL
      for (int c = 0; c < size<1>(acc_o); ++c) acc_o(r, c) *= correction[r];
    }
  }

  // Normalizes acc_o by the row sums (times `out_scale`, the dropout rescale) and returns each row's
  // logsumexp in natural log (+inf for a row that saw no key).
  template <typename AccO>
  __device__ void finish(AccO& acc_o, float out_scale, float (&lse)[kRows]) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float sum = row_sum[r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = sum == 0.f ? 0.f : out_scale / sum;
      CUTE_UNROLL
      for (int c = 0; c < size<1>(acc_o); ++c) acc_o(r, c) *= inv;
      lse[r] = sum == 0.f ? INFINITY : (row_max[r] * scale_log2 + log2f(sum)) * float(M_LN2);
    }
  }
};

}  // namespace flashattn::sm80
