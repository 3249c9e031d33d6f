// How the warp-specialized sm90 kernels split the register file between their producer warpgroup
// and their consumer warpgroups (setmaxnreg), checked at compile time.
#pragma once

#include <cutlass/arch/reg_reconfig.h>

namespace flashattn::sm90 {

// Registers a thread after the split: the producer only issues loads, the consumers hold the
// accumulators: 240 with two consumer warpgroups (384 threads), 160 with three (512 threads: what a
// 24-register producer leaves of 65536), 104 with two where two CTAs share an SM.
constexpr int kProducerRegisters = 24;
// A thread's registers at launch under __launch_bounds__(threads, ctas): 65536 / (ctas x threads),
// in granules of 8. The consumers take what the producer frees, in granules of 8, at most 240.
constexpr int registers_at_launch(int threads, int ctas = 1) { return 65536 / (threads * ctas) / 8 * 8; }
constexpr int consumer_registers_for(int threads, int ctas = 1) {
  const int free = (registers_at_launch(threads, ctas) * threads - 128 * kProducerRegisters) / (threads - 128) / 8 * 8;
  return free < 240 ? free : 240;
}
static_assert(consumer_registers_for(384) == 240 && consumer_registers_for(512) == 160 &&
              consumer_registers_for(384, 2) == 104, "two, three consumer warpgroups; two CTAs of two");

// setmaxnreg moves registers only inside the CTA's launch allocation: kThreads times the count a
// thread gets at launch (registers_at_launch). If the consumers ask for more than the producer
// frees, their setmaxnreg.inc waits forever, and ptxas does not warn (a 32-register producer hung
// every launch of a 384-thread kernel: 17408 registers freed, 18432 asked).
template <int kThreads, int kConsumerThreads, int kProducer = kProducerRegisters,
          int kConsumer = consumer_registers_for(kThreads), int kCtas = 1>
constexpr bool register_split_fits() {
  constexpr int at_launch = registers_at_launch(kThreads, kCtas);
  return (kThreads - kConsumerThreads) * kProducer + kConsumerThreads * kConsumer <= kThreads * at_launch;
}
static_assert(register_split_fits<384, 256, 24, 240>() && !register_split_fits<384, 256, 32, 240>(),
              "the split that runs, and the one that hung");
static_assert(register_split_fits<512, 384>() && !register_split_fits<512, 384, 24, 168>(),
              "three consumer warpgroups: 160 registers fit, the next granule does not");

// A kernel's split, from its traits (kThreads, kConsumerThreads, kCtasPerSm).
template <typename Traits>
constexpr int kConsumerRegisters = consumer_registers_for(Traits::kThreads, Traits::kCtasPerSm);
template <typename Traits>
constexpr bool kSplitFits = register_split_fits<Traits::kThreads, Traits::kConsumerThreads, kProducerRegisters,
                                                kConsumerRegisters<Traits>, Traits::kCtasPerSm>();

template <typename Traits>
__device__ __forceinline__ void producer_registers() {
  static_assert(kSplitFits<Traits>,
                "the consumers' setmaxnreg would wait forever: more registers asked than the producer frees");
  cutlass::arch::warpgroup_reg_dealloc<kProducerRegisters>();
}

template <typename Traits>
__device__ __forceinline__ void consumer_registers() {
  static_assert(kSplitFits<Traits>,
                "the consumers' setmaxnreg would wait forever: more registers asked than the producer frees");
  cutlass::arch::warpgroup_reg_alloc<kConsumerRegisters<Traits>>();
}

}  // namespace flashattn::sm90
