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

}  // namespace flashattn::test
