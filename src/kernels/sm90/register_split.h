// How the warp-specialized sm90 kernels split the register file between their producer warpgroup
// and their consumer warpgroups (setmaxnreg), checked at compile time.
#pragma once

#include <cutlass/arch/reg_reconfig.h>

namespace flashattn::sm90 {

// Registers a thread after the split: the producer only issues loads, the consumers hold the
// accumulators: 240 with two consumer warpgroups (384 threads), 160 with three (512 threads: what a
// 24-register producer leaves of 65536).
constexpr int kProducerRegisters = 24;
constexpr int consumer_registers_for(int threads) { return threads <= 384 ? 240 : 160; }

// setmaxnreg moves registers only inside the CTA's launch allocation: kThreads times the count a
// thread gets under __launch_bounds__(kThreads, 1) (65536 / kThreads, in granules of 8). If the
// consumers ask for more than the producer frees, their setmaxnreg.inc waits forever, and ptxas
// does not warn (a 32-register producer hung every launch of a 384-thread kernel: 17408 registers
// freed, 18432 asked).
template <int kThreads, int kConsumerThreads, int kProducer = kProducerRegisters,
          int kConsumer = consumer_registers_for(kThreads)>
constexpr bool register_split_fits() {
  constexpr int at_launch = 65536 / kThreads / 8 * 8;
  return (kThreads - kConsumerThreads) * kProducer + kConsumerThreads * kConsumer <= kThreads * at_launch;
}
static_assert(register_split_fits<384, 256, 24, 240>() && !register_split_fits<384, 256, 32, 240>(),
              "the split that runs, and the one that hung");
static_assert(register_split_fits<512, 384>() && !register_split_fits<512, 384, 24, 168>(),
              "three consumer warpgroups: 160 registers fit, the next granule does not");

template <typename Traits>
__device__ __forceinline__ void producer_registers() {
  static_assert(register_split_fits<Traits::kThreads, Traits::kConsumerThreads>(),
                "the consumers' setmaxnreg would wait forever: more registers asked than the producer frees");
  cutlass::arch::warpgroup_reg_dealloc<kProducerRegisters>();
}

template <typename Traits>
__device__ __forceinline__ void consumer_registers() {
  static_assert(register_split_fits<Traits::kThreads, Traits::kConsumerThreads>(),
                "the consumers' setmaxnreg would wait forever: more registers asked than the producer frees");
  cutlass::arch::warpgroup_reg_alloc<consumer_registers_for(Traits::kThreads)>();
}

}  // namespace flashattn::sm90
