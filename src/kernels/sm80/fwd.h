// Entry points of the FlashAttention-2 forward, one instantiation per (dtype, head-dim bucket).
// Host-only code includes this; the definitions live in fwd_launch.h (CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include "api/validate.h"

namespace flashattn::sm80 {

// kDtype is FLASHATTN_FLOAT16 or FLASHATTN_BFLOAT16; kHeadDim the bucket (head_dim <= kHeadDim).
template <int kDtype, int kHeadDim>
Status run_fwd(const FwdCall& call, cudaStream_t stream);

}  // namespace flashattn::sm80
