#include <string>

#include "kernels/sm90/fwd.h"

namespace flashattn::sm90 {

std::string fwd_unsupported(const FwdCall& call) {
  const Problem& p = call.problem;
  if (p.varlen) return "varlen (not in the first Hopper version)";
  if (p.seqlen_k == 0) return "seqlen_k 0 (no TMA descriptor for an empty tensor)";
  if (p.batch > 65535 || p.nheads > 65535) return "more than 65535 sequences or heads";
  // TMA: every stride but the innermost a multiple of 16 bytes (8 elements).
  for (const RowStrides* s : {&p.q_stride, &p.k_stride, &p.v_stride})
    if (s->row % 8 || s->head % 8 || s->batch % 8) return "strides that are not multiples of 8 elements (TMA)";
  return "";
}

}  // namespace flashattn::sm90
