// Picks the implementation of a validated call and launches it.
#pragma once

#include "api/validate.h"

namespace flashattn {

size_t fwd_workspace_bytes(const FwdCall& call);
size_t bwd_workspace_bytes(const BwdCall& call);
Status dispatch_fwd(const FwdCall& call, cudaStream_t stream);
Status dispatch_bwd(const BwdCall& call, cudaStream_t stream);

}  // namespace flashattn
