#include "reference/reference_cpu.h"

#include <cmath>
#include <limits>

#include "kernels/common/score.h"
#include "reference/host_dtype.h"

namespace flashattn {
namespace {

// One (sequence, query head, row): scores and dropout factors of its visible keys.
struct RowScores {
  KeyRange keys{0, 0};
  std::vector<double> s;       // final score (softcap, ALiBi applied)
  std::vector<double> capped;  // score after softcap, before ALiBi (for the softcap gradient)
  std::vector<double> keep;    // dropout factor: 0 or 1 / (1 - p)
  double lse = std::numeric_limits<double>::infinity();
};

class Reader {
 public:
  explicit Reader(const Problem& p) : p_(p) {}
  double q(int b, const SeqInfo& si, int64_t row, int h, int d) const {
    return load_element(p_.q, row_offset(p_.q_stride, p_.varlen, b, si.q_row0, row, h) + d, p_.dtype);
  }
  double k(int b, const SeqInfo& si, int64_t row, int h, int d) const {
    return load_element(p_.k, row_offset(p_.k_stride, p_.varlen, b, si.k_row0, row, h) + d, p_.dtype);
  }
  double v(int b, const SeqInfo& si, int64_t row, int h, int d) const {
    return load_element(p_.v, row_offset(p_.v_stride, p_.varlen, b, si.k_row0, row, h) + d, p_.dtype);
  }

 private:
  const Problem& p_;
};

RowScores row_scores(const Problem& p, const Reader& in, int b, const SeqInfo& si, int h, int row) {
  RowScores r;
  const int hk = h / (p.nheads / p.nheads_k);
  r.keys = visible_keys(p, row, si.seqlen_q, si.seqlen_k);
  const int n = r.keys.hi - r.keys.lo;
  r.s.resize(n);
  r.capped.resize(n);
  r.keep.assign(n, 1.0);
  const double slope = alibi_slope(p, b, h);
  double m = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < n; ++j) {
    const int col = r.keys.lo + j;
    double dot = 0;
    for (int d = 0; d < p.head_dim; ++d) dot += in.q(b, si, row, h, d) * in.k(b, si, col, hk, d);
    r.capped[j] = score<double>(dot, p.scale, p.softcap, 0.0, row, col, si.seqlen_q, si.seqlen_k);
    r.s[j] = score<double>(dot, p.scale, p.softcap, slope, row, col, si.seqlen_q, si.seqlen_k);
    m = std::max(m, r.s[j]);
  }
  if (n > 0) {
    double l = 0;
    for (int j = 0; j < n; ++j) l += std::exp(r.s[j] - m);
    r.lse = m + std::log(l);
  }
  if (p.dropout_p > 0.f) {
    const uint64_t sub = dropout_subsequence(p.philox_offset, p, b, h);
    const double scale = 1.0 / (1.0 - double(p.dropout_p));
    for (int j = 0; j < n; ++j)
      r.keep[j] = dropout_keep(p.philox_seed, sub, row, r.keys.lo + j, p.dropout_threshold) ? scale : 0.0;
  }
  return r;
}

// Index into a contiguous q-like [.., row, head, d] (fixed: [b, sq, h, d]; varlen: [total, h, d]).
int64_t packed_index(const Problem& p, int b, int64_t row0, int64_t row, int seqlen, int heads, int h, int d) {
  const int64_t r = p.varlen ? row0 + row : int64_t(b) * seqlen + row;
  return (r * heads + h) * p.head_dim + d;
}

}  // namespace

ReferenceFwd reference_fwd(const Problem& p) {
  ReferenceFwd res;
  const int64_t rows_q = p.varlen ? p.total_q : int64_t(p.batch) * p.seqlen_q;
  res.out.assign(rows_q * p.nheads * p.head_dim, 0.0);
  res.lse.assign(rows_q * p.nheads, std::numeric_limits<double>::infinity());
  const Reader in(p);
  const int group = p.nheads / p.nheads_k;
  for (int b = 0; b < p.batch; ++b) {
    const SeqInfo si = seq_info(p, b);
    for (int h = 0; h < p.nheads; ++h) {
      for (int row = 0; row < si.seqlen_q; ++row) {
        const RowScores r = row_scores(p, in, b, si, h, row);
        res.lse[lse_offset(p, b, si.q_row0, row, h)] = r.lse;
        for (int j = 0; j < int(r.s.size()); ++j) {
          const double prob = std::exp(r.s[j] - r.lse) * r.keep[j];
          if (prob == 0) continue;
          for (int d = 0; d < p.head_dim; ++d)
            res.out[packed_index(p, b, si.q_row0, row, p.seqlen_q, p.nheads, h, d)] +=
                prob * in.v(b, si, r.keys.lo + j, h / group, d);
        }
      }
    }
  }
  return res;
}

ReferenceBwd reference_bwd(const Problem& p, const void* dout, const RowStrides& dout_stride, int32_t dout_dtype) {
  ReferenceBwd g;
  const int64_t rows_q = p.varlen ? p.total_q : int64_t(p.batch) * p.seqlen_q;
  const int64_t rows_k = p.varlen ? p.total_k : int64_t(p.batch) * p.seqlen_k;
  g.dq.assign(rows_q * p.nheads * p.head_dim, 0.0);
  g.dk.assign(rows_k * p.nheads_k * p.head_dim, 0.0);
  g.dv.assign(rows_k * p.nheads_k * p.head_dim, 0.0);
  const Reader in(p);
  const int group = p.nheads / p.nheads_k;
  std::vector<double> dO(p.head_dim);
  for (int b = 0; b < p.batch; ++b) {
    const SeqInfo si = seq_info(p, b);
    for (int h = 0; h < p.nheads; ++h) {
      const int hk = h / group;
      for (int row = 0; row < si.seqlen_q; ++row) {
        const RowScores r = row_scores(p, in, b, si, h, row);
        const int n = int(r.s.size());
        if (n == 0) continue;
        for (int d = 0; d < p.head_dim; ++d)
          dO[d] = load_element(dout, row_offset(dout_stride, p.varlen, b, si.q_row0, row, h) + d, dout_dtype);
        // P = exp(S - lse); O = (P * Z) V with Z the dropout factors. With dP = Z * (dO V^T):
        // D = rowsum(dO * O) = sum_j P_j dP_j and dS = P * (dP - D)   (FlashAttention-2, Alg. 2).
        std::vector<double> prob(n), dP(n);
        double D = 0;
        for (int j = 0; j < n; ++j) {
          prob[j] = std::exp(r.s[j] - r.lse);
          double dot = 0;
          for (int d = 0; d < p.head_dim; ++d) dot += dO[d] * in.v(b, si, r.keys.lo + j, hk, d);
          dP[j] = r.keep[j] * dot;
          D += prob[j] * dP[j];
        }
        for (int j = 0; j < n; ++j) {
          const int col = r.keys.lo + j;
          // d/d(scale q.k) through the softcap: dX = dS * (1 - tanh^2)
          const double dX = prob[j] * (dP[j] - D) * softcap_grad<double>(r.capped[j], p.softcap);
          const double pz = prob[j] * r.keep[j];
          for (int d = 0; d < p.head_dim; ++d) {
            g.dq[packed_index(p, b, si.q_row0, row, p.seqlen_q, p.nheads, h, d)] +=
                p.scale * dX * in.k(b, si, col, hk, d);
            g.dk[packed_index(p, b, si.k_row0, col, p.seqlen_k, p.nheads_k, hk, d)] +=
                p.scale * dX * in.q(b, si, row, h, d);
            g.dv[packed_index(p, b, si.k_row0, col, p.seqlen_k, p.nheads_k, hk, d)] += pz * dO[d];
          }
        }
      }
    }
  }
  return g;
}

}  // namespace flashattn
