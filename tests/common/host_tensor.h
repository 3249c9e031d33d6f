// Host-side tensors for the tests: random fills, views as flashattn_tensor, comparisons.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "flashattn/flashattn.h"
#include "reference/host_dtype.h"

namespace flashattn::test {

// A contiguous host tensor of any dtype; element i is stored in its dtype's bytes.
struct HostTensor {
  int32_t dtype = FLASHATTN_FLOAT32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  HostTensor() = default;
  HostTensor(int32_t dt, std::vector<int64_t> s) : dtype(dt), shape(std::move(s)) {
    bytes.assign(size_t(numel() * element_size(DType(dtype))), 0);
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  double get(int64_t i) const { return load_element(bytes.data(), i, dtype); }
  void set(int64_t i, double x) { store_element(bytes.data(), i, dtype, x); }
  void* data() { return bytes.data(); }
  flashattn_tensor view() {
    flashattn_tensor t{};
    t.data = bytes.data();
    t.dtype = dtype;
    t.rank = int32_t(shape.size());
    int64_t stride = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      t.shape[d] = shape[d];
      t.stride[d] = stride;
      stride *= shape[d];
    }
    return t;
  }
  std::vector<double> to_double() const {
    std::vector<double> out(static_cast<size_t>(numel()));
    for (int64_t i = 0; i < numel(); ++i) out[size_t(i)] = get(i);
    return out;
  }
};

inline HostTensor random_tensor(int32_t dtype, std::vector<int64_t> shape, std::mt19937_64& rng, double stddev = 1.0) {
  HostTensor t(dtype, std::move(shape));
  std::normal_distribution<double> normal(0.0, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, normal(rng));
  return t;
}

inline HostTensor int_tensor(std::vector<int32_t> values) {
  HostTensor t(FLASHATTN_INT32, {int64_t(values.size())});
  std::memcpy(t.bytes.data(), values.data(), values.size() * 4);
  return t;
}

struct ErrorStats {
  double max_abs = 0, ref_max = 0;
  int64_t nonfinite = 0;
};
inline ErrorStats compare(const std::vector<double>& got, const std::vector<double>& ref) {
  ErrorStats e;
  for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
    if (std::isinf(ref[i]) && got[i] == ref[i]) continue;
    if (!std::isfinite(got[i])) {
      ++e.nonfinite;
      continue;
    }
    e.max_abs = std::max(e.max_abs, std::fabs(got[i] - ref[i]));
    e.ref_max = std::max(e.ref_max, std::fabs(ref[i]));
  }
  return e;
}

}  // namespace flashattn::test
