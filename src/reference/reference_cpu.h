// The CPU reference in double precision: the executable specification of every feature.
// Inputs are host tensors described by a Problem built with validate_attention(..., Target::kHost).
#pragma once

#include <vector>

#include "kernels/common/problem.h"

namespace flashattn {

struct ReferenceFwd {
  std::vector<double> out;  // contiguous like q: [batch, seqlen_q, nheads, d] or [total_q, nheads, d]
  std::vector<double> lse;  // like softmax_lse: [batch, nheads, seqlen_q] or [nheads, total_q]; +inf: no key
};

struct ReferenceBwd {
  std::vector<double> dq, dk, dv;  // contiguous like q, k, v
};

ReferenceFwd reference_fwd(const Problem& p);
// Gradients of sum(out * dout), dout a host tensor shaped like q.
ReferenceBwd reference_bwd(const Problem& p, const void* dout, const RowStrides& dout_stride, int32_t dout_dtype);

}  // namespace flashattn
