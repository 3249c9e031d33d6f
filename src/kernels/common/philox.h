// Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11) and the
// dropout mask drawn from it. Host and device share this code, so the CPU reference, the GPU
// reference and every kernel drop exactly the same elements, and backward regenerates them.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FA_HOST_DEVICE inline
#endif

namespace flashattn {

struct Uint4 {
  uint32_t x, y, z, w;
};

FA_HOST_DEVICE void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t product = uint64_t(a) * uint64_t(b);
  hi = uint32_t(product >> 32);
  lo = uint32_t(product);
#endif
}

// Ten rounds; the key is bumped by the Weyl constants between rounds.
FA_HOST_DEVICE Uint4 philox4x32_10(Uint4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kM0, ctr.x, hi0, lo0);
    mulhilo32(kM1, ctr.z, hi1, lo1);
    ctr = Uint4{hi1 ^ ctr.y ^ key0, lo1, hi0 ^ ctr.w ^ key1, lo0};
    key0 += kW0;
    key1 += kW1;
  }
  return ctr;
}

// The dropout stream of one (batch, head) pair is the Philox subsequence offset + batch*nheads+head.
// One Philox call yields four words for a 2x2 group of elements, rows {r, r+8} x cols {c, c+1}
// with r % 16 < 8 and c even: exactly the elements one thread holds in an mma.sync m16n8 (and a
// wgmma) accumulator fragment, so a kernel draws each word it uses once.
//   counter = (col / 2, (row / 16) * 8 + row % 8, lo32(sub), hi32(sub)), key = (lo32(seed), hi32(seed))
//   word    = ((row / 8) % 2) * 2 + col % 2
FA_HOST_DEVICE Uint4 dropout_counter(uint64_t subsequence, int64_t row, int64_t col) {
  return Uint4{uint32_t(col >> 1), uint32_t(((row >> 4) << 3) | (row & 7)), uint32_t(subsequence),
               uint32_t(subsequence >> 32)};
}
FA_HOST_DEVICE int dropout_word(int64_t row, int64_t col) {
  return int(((row >> 3) & 1) << 1 | (col & 1));
}

// An element is kept when its word >= threshold, threshold = round(p * 2^32) (p < 1).
FA_HOST_DEVICE uint32_t dropout_threshold(float p) {
  const double t = double(p) * 4294967296.0 + 0.5;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : uint32_t(t);
}

FA_HOST_DEVICE bool dropout_keep(uint64_t seed, uint64_t subsequence, int64_t row, int64_t col,
                                 uint32_t threshold) {
  const Uint4 r = philox4x32_10(dropout_counter(subsequence, row, col), uint32_t(seed),
                                uint32_t(seed >> 32));
  const int w = dropout_word(row, col);
  const uint32_t word = w == 0 ? r.x : w == 1 ? r.y : w == 2 ? r.z : r.w;
  return word >= threshold;
}

}  // namespace flashattn
