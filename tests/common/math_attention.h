// "Standard attention in the same dtype", as torch's math backend computes it for fp16/bf16 inputs:
// S = round(round(Q Kᵀ) · scale), masks, P = round(softmax_fp32(S)), O = round(P V). Its error against
// the fp64 reference is the yardstick for a kernel's error (a kernel may be at most 2x worse).
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/common/score.h"
#include "reference/host_dtype.h"

namespace flashattn::test {

inline std::vector<double> math_attention_lowp(const Problem& p) {
  const int64_t rows_q = p.varlen ? p.total_q : int64_t(p.batch) * p.seqlen_q;
  std::vector<double> out(rows_q * p.nheads * p.head_dim, 0.0);
  const int group = p.nheads / p.nheads_k;
  auto rd = [&](double x) { return round_to(x, p.dtype); };
  for (int b = 0; b < p.batch; ++b) {
    const SeqInfo si = seq_info(p, b);
    for (int h = 0; h < p.nheads; ++h) {
      const int hk = h / group;
      for (int row = 0; row < si.seqlen_q; ++row) {
        const KeyRange keys = visible_keys(p, row, si.seqlen_q, si.seqlen_k);
        const int n = keys.hi - keys.lo;
        std::vector<double> s(n);
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < n; ++j) {
          const int col = keys.lo + j;
          double dot = 0;
          for (int d = 0; d < p.head_dim; ++d)
            dot += load_element(p.q, row_offset(p.q_stride, p.varlen, b, si.q_row0, row, h) + d, p.dtype) *
                   load_element(p.k, row_offset(p.k_stride, p.varlen, b, si.k_row0, col, hk) + d, p.dtype);
          double x = rd(rd(dot) * p.scale);
          if (p.softcap > 0) x = rd(p.softcap * std::tanh(x / p.softcap));
          x = rd(score<double>(x, 1.0, 0.0, alibi_slope(p, b, h), row, col, si.seqlen_q, si.seqlen_k));
          s[j] = x;
          m = std::max(m, x);
        }
        double l = 0;
        for (int j = 0; j < n; ++j) l += std::exp(s[j] - m);
        const uint64_t sub = dropout_subsequence(p.philox_offset, p, b, h);
        std::vector<double> acc(p.head_dim, 0.0);
        for (int j = 0; j < n; ++j) {
          const int col = keys.lo + j;
          double prob = rd(float(std::exp(s[j] - m) / l));
          if (p.dropout_p > 0)
            prob = dropout_keep(p.philox_seed, sub, row, col, p.dropout_threshold) ? rd(prob / (1.0 - p.dropout_p)) : 0.0;
          for (int d = 0; d < p.head_dim; ++d)
            acc[d] += prob * load_element(p.v, row_offset(p.v_stride, p.varlen, b, si.k_row0, col, hk) + d, p.dtype);
        }
        const int64_t r = p.varlen ? si.q_row0 + row : int64_t(b) * p.seqlen_q + row;
        for (int d = 0; d < p.head_dim; ++d) out[(r * p.nheads + h) * p.head_dim + d] = rd(acc[d]);
      }
    }
  }
  return out;
}

// Gradients of the same standard attention, as torch's autograd computes them in the input dtype:
// dP' = round(dO V^T), dV = round(P'^T dO), dP = round(dP' * Z), dS = round(P * (dP - rowsum(dP * P))),
// dX = round(dS * softcap'), dDot = round(dX * scale), dQ = round(dDot K), dK = round(dDot^T Q)
// (P' = P after dropout); GQA sums the per-head dK and dV of a group, then rounds.
struct MathGrads {
  std::vector<double> dq, dk, dv;
};
inline MathGrads math_attention_grad_lowp(const Problem& p, const void* dout, const RowStrides& dout_stride) {
  const int64_t rows_q = p.varlen ? p.total_q : int64_t(p.batch) * p.seqlen_q;
  const int64_t rows_k = p.varlen ? p.total_k : int64_t(p.batch) * p.seqlen_k;
  const int group = p.nheads / p.nheads_k, D = p.head_dim;
  MathGrads g;
  g.dq.assign(rows_q * p.nheads * D, 0.0);
  g.dk.assign(rows_k * p.nheads_k * D, 0.0);
  g.dv.assign(rows_k * p.nheads_k * D, 0.0);
  auto rd = [&](double x) { return round_to(x, p.dtype); };
  for (int b = 0; b < p.batch; ++b) {
    const SeqInfo si = seq_info(p, b);
    const int sq = si.seqlen_q, sk = si.seqlen_k;
    for (int hk = 0; hk < p.nheads_k; ++hk) {
      std::vector<double> dk_sum(size_t(sk) * D, 0.0), dv_sum(size_t(sk) * D, 0.0);
      for (int h = hk * group; h < (hk + 1) * group; ++h) {
        auto q = [&](int i, int d) { return load_element(p.q, row_offset(p.q_stride, p.varlen, b, si.q_row0, i, h) + d, p.dtype); };
        auto k = [&](int j, int d) { return load_element(p.k, row_offset(p.k_stride, p.varlen, b, si.k_row0, j, hk) + d, p.dtype); };
        auto v = [&](int j, int d) { return load_element(p.v, row_offset(p.v_stride, p.varlen, b, si.k_row0, j, hk) + d, p.dtype); };
        auto go = [&](int i, int d) { return load_element(dout, row_offset(dout_stride, p.varlen, b, si.q_row0, i, h) + d, p.dtype); };
        const uint64_t sub = dropout_subsequence(p.philox_offset, p, b, h);
        // Per (row, key): P, P' and dDot; zero where masked.
        std::vector<double> P(size_t(sq) * sk, 0.0), Pd(size_t(sq) * sk, 0.0), dDot(size_t(sq) * sk, 0.0);
        for (int i = 0; i < sq; ++i) {
          const KeyRange keys = visible_keys(p, i, sq, sk);
          std::vector<double> s(sk), t(sk, 0.0);
          double m = -std::numeric_limits<double>::infinity();
          for (int j = keys.lo; j < keys.hi; ++j) {
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += q(i, d) * k(j, d);
            double x = rd(rd(dot) * p.scale);
            if (p.softcap > 0) {
              t[j] = rd(std::tanh(x / p.softcap));
              x = rd(p.softcap * t[j]);
            }
            s[j] = rd(score<double>(x, 1.0, 0.0, alibi_slope(p, b, h), i, j, sq, sk));
            m = std::max(m, s[j]);
          }
          double l = 0;
          for (int j = keys.lo; j < keys.hi; ++j) l += std::exp(s[j] - m);
          std::vector<double> dP(sk, 0.0);
          double rowsum = 0;
          for (int j = keys.lo; j < keys.hi; ++j) {
            const size_t ij = size_t(i) * sk + j;
            P[ij] = rd(float(std::exp(s[j] - m) / l));
            const bool keep = p.dropout_p == 0 || dropout_keep(p.philox_seed, sub, i, j, p.dropout_threshold);
            const double z = p.dropout_p > 0 ? (keep ? 1.0 / (1.0 - p.dropout_p) : 0.0) : 1.0;
            Pd[ij] = p.dropout_p > 0 ? rd(P[ij] * z) : P[ij];
            double dpd = 0;
            for (int d = 0; d < D; ++d) dpd += go(i, d) * v(j, d);
            dpd = rd(dpd);
            dP[j] = p.dropout_p > 0 ? rd(dpd * z) : dpd;
            rowsum += dP[j] * P[ij];
          }
          for (int j = keys.lo; j < keys.hi; ++j) {
            const size_t ij = size_t(i) * sk + j;
            double dx = rd(P[ij] * (dP[j] - rowsum));
            if (p.softcap > 0) dx = rd(dx * (1.0 - t[j] * t[j]));
            dDot[ij] = rd(dx * p.scale);
          }
        }
        for (int i = 0; i < sq; ++i)
          for (int d = 0; d < D; ++d) {
            double acc = 0;
            for (int j = 0; j < sk; ++j) acc += dDot[size_t(i) * sk + j] * k(j, d);
            const int64_t r = p.varlen ? si.q_row0 + i : int64_t(b) * p.seqlen_q + i;
            g.dq[(r * p.nheads + h) * D + d] = rd(acc);
          }
        for (int j = 0; j < sk; ++j)
          for (int d = 0; d < D; ++d) {
            double ak = 0, av = 0;
            for (int i = 0; i < sq; ++i) {
              ak += dDot[size_t(i) * sk + j] * q(i, d);
              av += Pd[size_t(i) * sk + j] * go(i, d);
            }
            dk_sum[size_t(j) * D + d] += rd(ak);
            dv_sum[size_t(j) * D + d] += rd(av);
          }
      }
      // Keys past seqused_k stay zero (the loop above saw only sk of them).
      for (int j = 0; j < sk; ++j)
        for (int d = 0; d < D; ++d) {
          const int64_t r = p.varlen ? si.k_row0 + j : int64_t(b) * p.seqlen_k + j;
          g.dk[(r * p.nheads_k + hk) * D + d] = rd(dk_sum[size_t(j) * D + d]);
          g.dv[(r * p.nheads_k + hk) * D + d] = rd(dv_sum[size_t(j) * D + d]);
        }
    }
  }
  return g;
}

}  // namespace flashattn::test
