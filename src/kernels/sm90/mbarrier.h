// One thread's arrival on an mbarrier that counts for `count` threads (mbarrier.arrive with a count,
// sm90): a warpgroup hands a buffer back through the one thread that knows it is free, e.g. the
// thread whose TMA store has read it, without holding the other 127 until then.
#pragma once

#include <cstdint>

namespace flashattn::sm90 {

// `barrier`: an mbarrier in shared memory (a cutlass::arch::ClusterBarrier, or its 64-bit word).
template <typename Barrier>
__device__ __forceinline__ void mbarrier_arrive(Barrier* barrier, uint32_t count) {
  static_assert(sizeof(Barrier) == 8, "an mbarrier is one 64-bit word");
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(barrier));
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0], %1;" ::"r"(address), "r"(count) : "memory");
}

}  // namespace flashattn::sm90
