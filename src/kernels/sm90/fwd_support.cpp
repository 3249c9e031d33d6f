#include <cstdint>
#include <string>

#include "kernels/sm90/fwd.h"

namespace flashattn::sm90 {

std::string fwd_unsupported(const FwdCall& call) {
  const Problem& p = call.problem;
  if (p.varlen && (p.total_q > INT32_MAX || p.total_k > INT32_MAX)) return "more than 2^31 packed rows";
  if ((p.varlen ? p.total_k : p.seqlen_k) == 0 || (p.varlen ? p.total_q : p.seqlen_q) == 0)
    return "no keys or no queries at all (no TMA descriptor for an empty tensor)";
  if (int64_t((p.seqlen_q + 255) / 256 * 2) * p.nheads * p.batch > INT32_MAX / 2) return "more than 2^30 query tiles";
  // TMA: every stride but the innermost a multiple of 16 bytes (8 elements).
  for (const RowStrides* s : {&p.q_stride, &p.k_stride, &p.v_stride})
    if (s->row % 8 || s->head % 8 || s->batch % 8) return "strides that are not multiples of 8 elements (TMA)";
  return "";
}

std::string bwd_unsupported(const BwdCall& call) {
  const Problem& p = call.problem;
  if (p.varlen && (p.total_q > INT32_MAX || p.total_k > INT32_MAX)) return "more than 2^31 packed rows";
  if ((p.varlen ? p.total_k : p.seqlen_k) == 0 || (p.varlen ? p.total_q : p.seqlen_q) == 0)
    return "no keys or no queries at all (no TMA descriptor for an empty tensor)";
  if (p.batch > 65535 || p.nheads_k > 65535) return "more than 65535 sequences or kv heads";
  for (const RowStrides* s : {&p.q_stride, &p.k_stride, &p.v_stride, &call.dout_stride})
    if (s->row % 8 || s->head % 8 || s->batch % 8) return "strides that are not multiples of 8 elements (TMA)";
  return "";
}

}  // namespace flashattn::sm90
