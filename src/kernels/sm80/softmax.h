// Online softmax over key tiles (FlashAttention-2, Algorithm 1): a running max m and a running,
// per-thread partial sum l per row, both against a reference max that moves only when the row's
// max passes it by more than 2^8 in weight (then O is rescaled by exp(m_old - m_new)), and O is
// divided by l once at the end. Scores arrive in "raw" units; exp2 with scale·log2(e) folded in.
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

  // How far (log2 units) a row's max may rise above the reference the weights are taken against
  // before the reference moves and O is rescaled (the conditional rescaling FlashAttention-4
  // describes for Blackwell): weights stay <= 2^8, and O's rescale (a multiply per O element, and
  // a warp-uniform branch) runs in the first key blocks of a row, not in most blocks up to 8k
  // keys as it did when any new max moved it.
  static constexpr float kMaxSlack = 8.f;
  float correction[kRows];  // exp(m_old - m_new) of the last exponentiate(), for rescale()
  bool max_grew;            // whether the last exponentiate() moved any of this thread's references

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
      // The reference max moves only when the row's max passes it by more than kMaxSlack in log2
      // units: below that, exponentiating against the stale reference gives weights up to
      // 2^kMaxSlack (exact in fp32 and in P's dtype, as relative precision does not depend on
      // magnitude), and O needs no rescale. The first finite max always moves it (from -inf; a
      // row of masked keys compares NaN and stays at -inf).
      const bool grow = (m - row_max[r]) * scale_log2 > kMaxSlack;
      if (grow) {
        correction[r] = fast_exp2((row_max[r] - m) * scale_log2);
        row_max[r] = m;
        row_sum[r] *= correction[r];
      } else {
        correction[r] = 1.f;
      }
      max_grew |= grow;
      row_sum[r] += weigh_row(s, r);
    }
  }

  // Row r of the scores -> weights against its reference; returns their sum (this thread's columns).
  template <typename Scores>
  __device__ float weigh_row(Scores& s, int r) const {
    // A row that has seen only masked keys keeps -inf; exponentiate against 0 so exp2 gives 0, not NaN.
    const float m_scaled = row_max[r] == -INFINITY ? 0.f : row_max[r] * scale_log2;
    float sum = 0.f;
    CUTE_UNROLL
    for (int c = 0; c < size<1>(s); ++c) {
      s(r, c) = fast_exp2(s(r, c) * scale_log2 - m_scaled);
      sum += s(r, c);
    }
    return sum;
  }

  // Whether every row of this thread has a reference (a row that has seen only masked keys has none).
  __device__ bool has_references() const {
    bool all = true;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) all &= row_max[r] != -INFINITY;
    return all;
  }

  // exponentiate() without looking for a new max: scores -> weights against the current references
  // (rows without one as in exponentiate()), the row maxima's FMNMX over the columns and their
  // shuffles skipped. Returns whether every weight stayed <= kReferenceLimit, which holds when each
  // of this thread's row sums does (weights are >= 0; an overflow to +inf fails it). If so, the
  // caller may keep it: keep_block(block_sum). If not, the scores are gone and the caller must
  // recompute them and run exponentiate(); row statistics are untouched either way.
  template <typename Scores>
  __device__ bool exponentiate_against_references(Scores& s, float (&block_sum)[kRows]) const {
    bool fits = true;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      block_sum[r] = weigh_row(s, r);
      fits &= block_sum[r] <= kReferenceLimit;
    }
    return fits;
  }
  // After exponentiate_against_references() failed somewhere in the warp (a thread's block sum of a
  // row passed kReferenceLimit): moves the reference of each of the warp's rows whose largest weight
  // passed 2^kMaxSlack up by a whole power of two, 2^k with 2^(k-1) <= that weight < 2^k, so the
  // block's weights become exactly p 2^-k (a power-of-two scale is exact in fp32: the same weights
  // exponentiate() would give against the moved reference) and O, rescaled by the same 2^-k
  // (rescale()), stays consistent; then counts the block, as keep_block() does. Every thread of the
  // warp must call it (quad shuffles, a warp vote). Returns false, touching nothing, if a weight of
  // the warp reached 2^126 or +inf (a score 126 log2 units or more above its reference: at +inf the
  // score is lost); the caller then computes the scores again and runs exponentiate().
  template <typename Scores>
  __device__ bool move_references(Scores& s, float (&block_sum)[kRows]) {
    float top[kRows];
    bool finite = true;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      top[r] = 0.f;
      CUTE_UNROLL
      for (int c = 0; c < size<1>(s); ++c) top[r] = fmaxf(top[r], s(r, c));
      top[r] = fmaxf(top[r], __shfl_xor_sync(0xffffffffu, top[r], 1));
      top[r] = fmaxf(top[r], __shfl_xor_sync(0xffffffffu, top[r], 2));
      finite &= top[r] < 0x1p126f;  // so 2^-k below stays a normal float (no flush to zero)
    }
    if (!__all_sync(0xffffffffu, finite)) return false;
    max_grew = false;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      correction[r] = 1.f;
      if (top[r] > float(1 << int(kMaxSlack))) {
        int k;
        frexpf(top[r], &k);
        const float down = ldexpf(1.f, -k);
        float sum = 0.f;
        CUTE_UNROLL
        for (int c = 0; c < size<1>(s); ++c) {
          s(r, c) *= down;
          sum += s(r, c);
        }
        block_sum[r] = sum;
        correction[r] = down;
        row_max[r] += __fdividef(float(k), scale_log2);  // the reference, in raw units, up by k log2 units
        max_grew = true;
      }
      row_sum[r] = row_sum[r] * correction[r] + block_sum[r];
    }
    return true;
  }

  // The bound on a thread's block sum (so on each weight) against a kept reference: P fits every
  // input dtype (fp16 up to 65504) at unchanged relative precision, O and the row sums stay far from
  // fp32's range, and it exceeds what exponentiate() leaves (at most 64 columns a thread, each
  // <= 2^kMaxSlack: 2^14), so the block after a fallback is kept unless the max climbs again.
  static constexpr float kReferenceLimit = 32768.f;  // 2^15

  // Counts a block exponentiate_against_references() kept: references unchanged, so rescale() skips
  // O (and does not read the corrections).
  __device__ void keep_block(const float (&block_sum)[kRows]) {
    max_grew = false;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) row_sum[r] += block_sum[r];
  }

  // The O half: O *= exp(m_old - m_new) per row, from the last exponentiate(). Skipped, as a
  // warp-uniform branch, when no row of the warp moved its reference (every correction is 1).
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
    float inv[kRows];
    finish_rows(out_scale, inv, lse);
    normalize(acc_o, inv);
  }
  // The part of finish() that does not read O, so it can run while the last P V GEMM does: per
  // row, the factor O is multiplied by, and lse.
  __device__ void finish_rows(float out_scale, float (&inv)[kRows], float (&lse)[kRows]) const {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float sum = row_sum[r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      inv[r] = sum == 0.f ? 0.f : out_scale / sum;
      lse[r] = sum == 0.f ? INFINITY : (row_max[r] * scale_log2 + log2f(sum)) * float(M_LN2);
    }
  }
  template <typename AccO>
  __device__ static void normalize(AccO& acc_o, const float (&inv)[kRows]) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      CUTE_UNROLL
      for (int c = 0; c < size<1>(acc_o); ++c) acc_o(r, c) *= inv[r];
    }
  }
};

}  // namespace flashattn::sm80
