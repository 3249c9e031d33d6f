// Entry points of the Hopper forward (sm90a), one instantiation per (dtype, head-dim bucket).
// Host-only code includes this; the kernel lives in fwd_kernel.h (CUDA, sm_90a only).
#pragma once

#include <cuda_runtime_api.h>

#include "api/validate.h"

namespace flashattn::sm90 {

// What the Hopper forward covers; the dispatcher falls back to FlashAttention-2 for the rest.
// Returns "" when the call is covered, else what is missing.
std::string fwd_unsupported(const FwdCall& call);

// kDtype is FLASHATTN_FLOAT16 or FLASHATTN_BFLOAT16; kHeadDim the bucket (64, 96, 128, 192 or 256).
template <int kDtype, int kHeadDim>
Status run_fwd(const FwdCall& call, cudaStream_t stream);

// The Hopper backward (bwd_kernel.h): "" when it covers the call, else what is missing.
std::string bwd_unsupported(const BwdCall& call);

// kHeadDim 64, 128 or 256.
template <int kDtype, int kHeadDim>
Status run_bwd(const BwdCall& call, cudaStream_t stream);

}  // namespace flashattn::sm90
