// fp16 / bf16 <-> float on the host, round-to-nearest-even, without CUDA headers.
#pragma once

#include <cstdint>
#include <cstring>

#include "flashattn/flashattn_c.h"

namespace flashattn {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }
inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    int e = -1;
    do {  // normalize the subnormal
      mant <<= 1;
      ++e;
    } while ((mant & 0x400u) == 0);
    return bits_to_float(sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13);
  }
  return bits_to_float(sign | (exp + 112) << 23 | mant << 13);
}

inline uint16_t float_to_fp16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {                                  // subnormal or zero in fp16
    const float scaled = bits_to_float(abs) * 16777216.0f;  // * 2^24: units of the smallest subnormal
    uint32_t q = uint32_t(scaled);
    const float rem = scaled - float(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  uint32_t v = abs - (112u << 23);  // rebias
  v += 0xfffu + ((v >> 13) & 1u);
  return uint16_t(sign | (v >> 13));
}

// Rounds x to the precision of dtype (identity for fp32/fp64 beyond float rounding of fp32).
inline double round_to(double x, int32_t dtype) {
  switch (dtype) {
    case FLASHATTN_FLOAT16: return fp16_to_float(float_to_fp16(float(x)));
    case FLASHATTN_BFLOAT16: return bf16_to_float(float_to_bf16(float(x)));
    case FLASHATTN_FLOAT32: return float(x);
    default: return x;
  }
}

inline double load_element(const void* base, int64_t offset, int32_t dtype) {
  switch (dtype) {
    case FLASHATTN_FLOAT16: return fp16_to_float(static_cast<const uint16_t*>(base)[offset]);
    case FLASHATTN_BFLOAT16: return bf16_to_float(static_cast<const uint16_t*>(base)[offset]);
    case FLASHATTN_FLOAT32: return static_cast<const float*>(base)[offset];
    case FLASHATTN_FLOAT64: return static_cast<const double*>(base)[offset];
    default: return 0.0;
  }
}

inline void store_element(void* base, int64_t offset, int32_t dtype, double x) {
  switch (dtype) {
    case FLASHATTN_FLOAT16: static_cast<uint16_t*>(base)[offset] = float_to_fp16(float(x)); break;
    case FLASHATTN_BFLOAT16: static_cast<uint16_t*>(base)[offset] = float_to_bf16(float(x)); break;
    case FLASHATTN_FLOAT32: static_cast<float*>(base)[offset] = float(x); break;
    case FLASHATTN_FLOAT64: static_cast<double*>(base)[offset] = x; break;
    default: break;
  }
}

}  // namespace flashattn
