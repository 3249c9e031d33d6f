// The simple GPU attention in fp32 (one thread block per query row, one per key row in backward):
// slow and exact to fp32, every feature; the reference for shapes too large for the CPU.
#pragma once

#include <cuda_runtime_api.h>

#include "api/validate.h"

namespace flashattn {

Status reference_gpu_fwd(const FwdCall& call, cudaStream_t stream);
Status reference_gpu_bwd(const BwdCall& call, cudaStream_t stream);

}  // namespace flashattn
