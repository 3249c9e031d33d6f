// A vote across one warpgroup (128 threads), for decisions every warp of it must take alike (such
// as issuing a wgmma again).
#pragma once

#include <cstdint>

namespace flashattn::sm90 {

// Whether `flag` holds for any thread of the calling warpgroup. Synchronizes the warpgroup on
// hardware barrier `barrier` (bar.red.or over 128 threads; a raw id, not one of
// cutlass::arch::NamedBarrier's, which it offsets by 8), which nothing else may use at the same time.
__device__ __forceinline__ bool warpgroup_any(bool flag, uint32_t barrier) {
  uint32_t any;
  asm volatile(
      "{\n"
      ".reg .pred flag, any;\n"
      "setp.ne.u32 flag, %1, 0;\n"
      "barrier.cta.red.or.pred any, %2, 128, flag;\n"
      "selp.u32 %0, 1, 0, any;\n"
      "}\n"
      : "=r"(any)
      : "r"(uint32_t(flag)), "r"(barrier));
  return any != 0;
}

}  // namespace flashattn::sm90
