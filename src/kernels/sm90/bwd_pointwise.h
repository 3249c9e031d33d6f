// The element-wise pass of the Hopper backwards (FA2 Alg. 2, lines 13-16) on one thread's values of
// a 64-key block of S^T and dP^T (row-column views: rows are keys, columns queries):
//   P = exp(s - lse),  dS = P (Z dP - D) g,  and P Z feeds dV,
// with Z the dropout mask (the forward's, common/philox.h) and g the softcap derivative. Shared by
// bwd_kernel.h (d <= 128) and bwd_split_d_kernel.h (d = 256); each keeps its own GEMM schedule.
#pragma once

#include <cstdint>
#include <type_traits>
#include <cute/tensor.hpp>

#include "kernels/common/block_range.h"
#include "kernels/common/fast_exp2.h"
#include "kernels/common/philox.h"
#include "kernels/common/problem.h"

namespace flashattn::sm90 {

// The keep bits of a thread's tile: one 32-bit register up to 32 values (64 x 64 blocks), two up
// to 64 (64 x 128).
template <int kValues>
using KeepBits = std::conditional_t<(kValues <= 32), uint32_t, uint64_t>;

// One keep bit per value of the thread's tile (bit r * cols + c). One Philox call covers queries
// {q, q + 8} x keys {k, k + 1}: a thread holding S transposed has them at (k, q) and (k, q + 8),
// columns c and c + 2 of its row-column view. m0, k0: the block's first query and key.
template <typename CoordRC>
__device__ __forceinline__ auto dropout_keep_bits(const Problem& p, const PhiloxState& rng, int b, int h,
                                                  const CoordRC& cS_rc, int m0, int k0) {
  constexpr int kRows = decltype(cute::size<0>(cS_rc))::value, kCols = decltype(cute::size<1>(cS_rc))::value;
  static_assert(kRows * kCols <= 64, "a keep bit per value in at most two registers");
  using Bits = KeepBits<kRows * kCols>;
  const uint64_t subsequence = dropout_subsequence(rng.offset, p, b, h);
  Bits keep_bits = 0;
  CUTE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    CUTE_UNROLL
    for (int c = 0; c < kCols; ++c) {
      if ((c / 2) % 2) continue;  // the partner of column c - 2
      const int q = m0 + cute::get<1>(cS_rc(r, c)), key = k0 + cute::get<0>(cS_rc(r, c));
      const Uint4 bits =
          philox4x32_10(dropout_counter(subsequence, q, key), uint32_t(rng.seed), uint32_t(rng.seed >> 32));
      CUTE_UNROLL
      for (int pair = 0; pair < 2; ++pair) {
        const int col = c + 2 * pair, which = dropout_word(q + 8 * pair, key);
        const uint32_t word = which == 0 ? bits.x : which == 1 ? bits.y : which == 2 ? bits.z : bits.w;
        keep_bits |= Bits(word >= p.dropout_threshold) << (r * kCols + col);
      }
    }
  }
  return keep_bits;
}

// Z x of Alg. 2 for one value of the thread's tile: x / (1 - p_drop) where the dropout mask keeps
// it, 0 where it drops it; x itself without dropout.
template <bool kDropout, int kCols, typename Bits>
struct DropoutScale {
  Bits keep_bits;
  float keep_scale;
  __device__ __forceinline__ bool kept(int r, int c) const { return !kDropout || ((keep_bits >> (r * kCols + c)) & 1); }
  __device__ __forceinline__ float operator()(int r, int c, float x) const { return kept(r, c) ? x * keep_scale : 0.f; }
};

// Z of a thread's tile (keep bits computed under the GEMMs) and its rescale 1 / (1 - p_drop).
template <bool kDropout, typename CoordRC>
__device__ __forceinline__ auto dropout_scale(const Problem& p, const PhiloxState& rng, int b, int h,
                                              const CoordRC& cS_rc, int m0, int k0, float keep_scale) {
  constexpr int kRows = decltype(cute::size<0>(cS_rc))::value, kCols = decltype(cute::size<1>(cS_rc))::value;
  using Bits = KeepBits<kRows * kCols>;
  return DropoutScale<kDropout, kCols, Bits>{kDropout ? Bits(dropout_keep_bits(p, rng, b, h, cS_rc, m0, k0)) : Bits(0),
                                             keep_scale};
}

// (P Z) in the GEMM's element type, the A operand of dV += (P Z)^T dO.
template <typename TensorP, typename TensorS, typename Z>
__device__ __forceinline__ void dropout_probabilities(TensorP& p_rc, const TensorS& s_rc, const Z& z) {
  using Element = typename TensorP::value_type;
  CUTE_UNROLL
  for (int r = 0; r < cute::size<0>(s_rc); ++r) {
    CUTE_UNROLL
    for (int c = 0; c < cute::size<1>(s_rc); ++c) p_rc(r, c) = Element(z(r, c, s_rc(r, c)));
  }
}

// Which keys of a kKeys x kBlockM block (keys from k0, queries from m0) see which queries. Key k sees
// query q iff k < seqlen_k and q + diag - window_left <= k <= q + diag + window_right (a negative
// window is unbounded); in block-local coordinates, key kr sees query qi iff kr < keys_left and
// kr - qi lies in [rel_lo, rel_hi]. `whole` says no element of the block is masked (a step-uniform
// test: the element loop stays branch-free there).
struct BlockVisibility {
  int keys_left, rel_lo, rel_hi;
  bool whole;
};
template <int kKeys, int kBlockM>
__device__ __forceinline__ BlockVisibility block_visibility(const Problem& p, const SeqInfo& si, int m0, int k0) {
  const int diag = si.seqlen_k - si.seqlen_q;
  BlockVisibility v;
  v.keys_left = si.seqlen_k - k0;
  v.rel_lo = p.window_left < 0 ? -(1 << 30) : diag - p.window_left + m0 - k0;
  v.rel_hi = p.window_right < 0 ? (1 << 30) : diag + p.window_right + m0 - k0;
  v.whole = kKeys <= v.keys_left && 0 - (kBlockM - 1) >= v.rel_lo && kKeys - 1 <= v.rel_hi;
  return v;
}

// What probabilities() does to a raw score before the exponential: nothing (the softmax scale is
// folded into scale_log2), the softcap alone, ALiBi alone (blocks without a mask), or either
// transform as the call's values say. The first three have loops of their own: with the branches
// per element the compiler predicated every path, and every score issued all of them (the
// forward's TileMask, bench/NOTES.md, session 41).
enum class ScoreTransform { kNone, kSoftcap, kAlibi, kAny };

// s_rc: raw q.k (without a transform the softmax scale is folded into scale_log2; with softcap or
// ALiBi the scores are taken to natural units first) -> P, masked per element when kMasked. slope:
// the ALiBi slope of the head (0: none); cap: the softcap (fast_exp2.h), built once by the caller.
// Calls on_prob(r, c, prob, g) with each probability and its softcap derivative before storing it
// (the caller computes dS there when dP is already done).
template <ScoreTransform kScore, bool kMasked, typename TensorS, typename CoordRC, typename OnProb>
__device__ __forceinline__ void probabilities(TensorS& s_rc, const CoordRC& cS_rc, const Problem& p, const SeqInfo& si,
                                              int m0, int k0, const BlockVisibility& vis, float slope,
                                              const FastSoftcap& cap, float scale_log2, const float* lse_log2,
                                              OnProb&& on_prob) {
  const int diag = si.seqlen_k - si.seqlen_q;
  // kAlibi (AlibiFromFirst, fast_exp2.h): rows are queries, columns keys.
  [[maybe_unused]] const AlibiFromFirst alibi(slope, cute::get<1>(cS_rc(0, 0)), cute::get<0>(cS_rc(0, 0)),
                                              m0 + diag - k0);
  CUTE_UNROLL
  for (int r = 0; r < cute::size<0>(s_rc); ++r) {
    CUTE_UNROLL
    for (int c = 0; c < cute::size<1>(s_rc); ++c) {
      const int qi = cute::get<1>(cS_rc(r, c)), kr = cute::get<0>(cS_rc(r, c));
      float score = s_rc(r, c);
      [[maybe_unused]] float grad = 1.f;
      if constexpr (kScore == ScoreTransform::kAlibi) {
        score = alibi.score(score, p.scale, qi, kr);
      } else if constexpr (kScore != ScoreTransform::kNone) {
        if (kScore == ScoreTransform::kSoftcap || p.softcap > 0.f) {
          const float t = cap.tanh(score);
          score = cap.capped(t);
          grad = FastSoftcap::grad(t);
        } else {
          score *= p.scale;
        }
        if (kScore == ScoreTransform::kAny && slope != 0.f) score -= slope * float(abs(m0 + qi + diag - (k0 + kr)));
      }
      float prob = fast_exp2(score * scale_log2 - lse_log2[qi]);
      if constexpr (kMasked) {
        const int rel = kr - qi;
        prob = kr < vis.keys_left && rel >= vis.rel_lo && rel <= vis.rel_hi ? prob : 0.f;
      }
      on_prob(r, c, prob, grad);
      s_rc(r, c) = prob;
    }
  }
}

// probabilities() with the per-element mask only where the block needs one (vis.whole: none), so
// the common, whole block runs branch-free; with kTransform, the softcap alone in loops of its own,
// ALiBi alone in one for whole blocks, and everything else in one masked loop.
template <bool kTransform, typename TensorS, typename CoordRC, typename OnProb>
__device__ __forceinline__ void block_probabilities(TensorS& s_rc, const CoordRC& cS_rc, const Problem& p,
                                                    const SeqInfo& si, int m0, int k0, const BlockVisibility& vis,
                                                    float slope, const FastSoftcap& cap, float scale_log2,
                                                    const float* lse_log2, OnProb&& on_prob) {
  auto with = [&](auto score) {
    constexpr ScoreTransform kScore = decltype(score)::value;
    if (vis.whole)
      probabilities<kScore, false>(s_rc, cS_rc, p, si, m0, k0, vis, slope, cap, scale_log2, lse_log2, on_prob);
    else
      probabilities<kScore, true>(s_rc, cS_rc, p, si, m0, k0, vis, slope, cap, scale_log2, lse_log2, on_prob);
  };
  if constexpr (!kTransform) {
    with(std::integral_constant<ScoreTransform, ScoreTransform::kNone>{});
  } else if (p.softcap > 0.f && slope == 0.f) {
    with(std::integral_constant<ScoreTransform, ScoreTransform::kSoftcap>{});
  } else if (p.softcap == 0.f && vis.whole) {
    probabilities<ScoreTransform::kAlibi, false>(s_rc, cS_rc, p, si, m0, k0, vis, slope, cap, scale_log2, lse_log2,
                                                 on_prob);
  } else {
    // The rest (a masked block with ALiBi, or softcap and ALiBi together) in one loop, masked: a
    // whole block passes the mask.
    probabilities<ScoreTransform::kAny, true>(s_rc, cS_rc, p, si, m0, k0, vis, slope, cap, scale_log2, lse_log2,
                                              on_prob);
  }
}

}  // namespace flashattn::sm90
