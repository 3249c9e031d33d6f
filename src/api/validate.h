// Argument validation: the one place where user input is checked. It turns the public params into
// a Problem plus the output views, or a Status naming the bad argument and its value.
#pragma once

#include <string>

#include "flashattn/flashattn.h"
#include "kernels/common/problem.h"

namespace flashattn {

enum class Target {
  kDevice,  // pointers must be device memory of the current device; fp16/bf16/fp32 inputs
  kHost,    // the CPU reference: host pointers, fp64 inputs allowed, no alignment rules
  kShapes,  // the workspace-size queries: kDevice's rules without its pointer queries (a
            // cudaPointerGetAttributes a tensor, ~3 us a backward; the call itself makes them)
};

struct FwdCall {
  Problem problem;
  void* out = nullptr;
  RowStrides out_stride;
  float* lse = nullptr;
  uint64_t* rng_state = nullptr;
  void* workspace = nullptr;
  size_t workspace_size = 0;
  Backend backend = Backend::kAuto;
};

struct BwdCall {
  Problem problem;
  const void* out = nullptr;
  const void* dout = nullptr;
  RowStrides out_stride, dout_stride;
  const float* lse = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  RowStrides dq_stride, dk_stride, dv_stride;
  bool deterministic = false;
  void* workspace = nullptr;
  size_t workspace_size = 0;
  Backend backend = Backend::kAuto;
};

Status invalid(const std::string& message);
Status not_supported(const std::string& what);

Status validate_attention(const flashattn_attention& attn, bool varlen, Target target, Problem* out);
// Checks a q-like tensor (same shape as q) such as dout, for the CPU reference.
Status validate_like_q(const flashattn_tensor& t, const char* name, const flashattn_attention& attn,
                       Target target, RowStrides* strides);
Status validate_fwd(const flashattn_fwd_params& params, bool varlen, Target target, FwdCall* call);
Status validate_bwd(const flashattn_bwd_params& params, bool varlen, Target target, BwdCall* call);

std::string shape_string(const flashattn_tensor& t);

}  // namespace flashattn
