// Keeping work between a wgmma's issue and the wait for it, where the source puts it.
//
// ptxas schedules WARPGROUP.DEPBAR (wgmma.wait_group) as early in its basic block as its
// dependences allow, and plain register arithmetic does not depend on it: a softmax written between
// the issue of O += P V and `warpgroup_wait<0>()` ran *after* the wait in the SASS, so the
// warpgroup sat idle while its P V GEMM ran and FlashAttention-3's intra-warpgroup overlap was lost
// (bench/NOTES.md, session 16). ptxas does keep shared-memory stores in order with the wait, so a
// store whose value depends on the work holds that work ahead of the wait. The store is predicated
// on a condition that never holds, so it costs a compare and an issue slot and never writes.
#pragma once

#include <cstdint>

namespace flashattn::sm90 {

// Call between the work and the wait. `value` must depend on every result that should be computed
// before the wait (for a softmax: the sum of the thread's row sums, which every exponential feeds)
// and must not be negative (a sum of probabilities: never below zero, NaN included); `anchor` is a
// shared-memory word that is never read.
__device__ __forceinline__ void keep_before_wait(float value, float* anchor) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(anchor));
  asm volatile(
      "{\n"
      ".reg .pred negative;\n"
      "setp.lt.f32 negative, %0, 0f00000000;\n"
      "@negative st.shared.f32 [%1], %0;\n"
      "}\n" ::"f"(value),
      "r"(address));
}

}  // namespace flashattn::sm90
