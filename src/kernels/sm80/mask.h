// Scores of one (kBlockM x kBlockN) tile in registers: softcap and ALiBi (when on), then -inf for
// every pair the window, causality or the sequence ends hide. Walks the accumulator and an identity
// tensor partitioned the same way, so each value knows its (row, col).
#pragma once

#include <cute/tensor.hpp>

#include "kernels/common/fast_exp2.h"
#include "kernels/common/score.h"

namespace flashattn::sm80 {

using namespace cute;

struct TileMask {
  int seqlen_q, seqlen_k;
  int window_left, window_right;  // -1 = unbounded
  float scale, softcap, slope;

  // Whether any pair of the tile [m0, m0+bm) x [n0, n0+bn) is hidden.
  FA_HOST_DEVICE bool tile_needs_mask(int m0, int bm, int n0, int bn) const {
    const int diag = seqlen_k - seqlen_q;
    const int m_last = cute::min(m0 + bm, seqlen_q) - 1;
    return n0 + bn > seqlen_k || (window_right >= 0 && n0 + bn - 1 > m0 + diag + window_right) ||
           (window_left >= 0 && n0 < m_last + diag - window_left);
  }

  // kTransform (softcap or ALiBi) turns the tile into natural-unit scores. The softcap alone and
  // ALiBi alone on a tile without a mask (the common cases) have loops of their own, chosen once a
  // tile: in one loop with per-element branches the compiler predicated every path, so each score
  // issued all of them (~25 instructions a score in the Hopper forward's softcap variant;
  // bench/NOTES.md, session 41). Everything else shares one branch-free loop (a copy for each
  // combination put the Hopper forward's d128 softcap accumulators in local memory, 368 B; three
  // copies did too while the shared loop still branched, session 41). Without a transform the mask
  // is one branch around its loop, so a tile that needs none runs straight-line code (a test per
  // element, each a branch, cost the Hopper forward a fifth of its issue slots). An element is
  // visible when row + left <= col < min(row + right + 1, seqlen_k): the bounds are per row, and
  // the test is written with & (not &&) so each element is two compares and a select; with && each
  // element took two branches (about 10 instructions, SASS of the d64 forward).
  // With the softcap alone, apply() leaves a score as tanh(scale q.k / softcap), and the softmax
  // takes softcap in its scale (softmax_scale_log2): one multiply a score fewer.
  FA_HOST_DEVICE bool tanh_units() const { return softcap > 0.f && slope == 0.f; }
  // The softmax's multiplier from apply()'s scores to log2 of a weight (kTransform: natural units,
  // or tanh units with the softcap alone; otherwise raw q.k).
  template <bool kTransform>
  FA_HOST_DEVICE float softmax_scale_log2() const {
    return float(M_LOG2E) * (kTransform ? (tanh_units() ? softcap : 1.f) : scale);
  }

  template <bool kTransform, typename Acc, typename Coord>
  FA_HOST_DEVICE void apply(Acc& acc, Coord const& coord, int m0, int n0, bool need_mask) const {
    if (!kTransform && !need_mask) return;
    const int diag = seqlen_k - seqlen_q;
    // An unbounded side, and the cap of a bounded one, so that row + left and row + right + 1 stay
    // in int for any window (varlen keeps windows wider than max_seqlen_k) and sequences < 2^30.
    constexpr int kFar = 1 << 30;
    const int left = window_left < 0 ? -kFar : diag - cute::min(window_left, kFar);
    const int right = window_right < 0 ? kFar : diag + cute::min(window_right, kFar);
    if constexpr (!kTransform) {
      each(acc, coord, m0, n0, left, right, [](float dot, int, int) { return dot; }, cute::true_type{});
    } else {
#ifdef __CUDA_ARCH__
      const FastSoftcap cap(scale, softcap);  // fast_exp2.h; the references keep score()
      if (tanh_units() && !need_mask) {
        each(acc, coord, m0, n0, left, right, [&](float dot, int, int) { return cap.tanh(dot); }, cute::false_type{});
      } else if (softcap == 0.f && !need_mask) {
        alibi_unmasked(acc, coord, m0 + diag - n0);
      } else {
        // Branch-free: softcap's tanh predicated, ALiBi's term 0 without it.
        const float pre = softcap > 0.f ? cap.x_mul : scale, post = softcap > 0.f && slope != 0.f ? softcap : 1.f;
        each(acc, coord, m0, n0, left, right,
             [&](float dot, int row, int col) {
               float s = dot * pre;
               if (softcap > 0.f) s = fast_tanh(s);
               return s * post - slope * float(abs(row + diag - col));
             },
             need_mask);
      }
#else
      each(acc, coord, m0, n0, left, right,
           [&](float dot, int row, int col) {
             const float s = score<float>(dot, scale, softcap, slope, row, col, seqlen_q, seqlen_k);
             return tanh_units() ? s / softcap : s;
           },
           need_mask);
#endif
    }
  }

  // ALiBi alone on a tile without a mask (AlibiFromFirst, fast_exp2.h). diag_offset = m0 + diag - n0.
  template <typename Acc, typename Coord>
  __device__ void alibi_unmasked(Acc& acc, Coord const& coord, int diag_offset) const {
    const AlibiFromFirst alibi(slope, get<0>(coord(0)), get<1>(coord(0)), diag_offset);
    CUTE_UNROLL
    for (int i = 0; i < size(acc); ++i) acc(i) = alibi.score(acc(i), scale, get<0>(coord(i)), get<1>(coord(i)));
  }

  // One pass over the tile: score_of(dot, row, col), then the mask where `masked` (a bool, or a
  // constant type).
  template <typename Acc, typename Coord, typename ScoreOf, typename Masked>
  CUTE_HOST_DEVICE void each(Acc& acc, Coord const& coord, int m0, int n0, int left, int right, ScoreOf const& score_of,
                             Masked masked) const {
    CUTE_UNROLL
    for (int i = 0; i < size(acc); ++i) {
      const int row = m0 + get<0>(coord(i)), col = n0 + get<1>(coord(i));
      float s = score_of(acc(i), row, col);
      if (masked) {
        const bool visible = (col >= row + left) & (col < cute::min(row + right + 1, seqlen_k));
        s = visible ? s : -INFINITY;
      }
      acc(i) = s;
    }
  }
};

}  // namespace flashattn::sm80
