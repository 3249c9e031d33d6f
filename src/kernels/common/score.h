// The score of one (query, key) pair, shared by the references and the kernels' masking code:
//   s = scale * q.k;  s = softcap * tanh(s / softcap) when softcap > 0;  s -= slope * |i + sk - sq - j|.
// Masked pairs are not scored at all (see visible_keys in problem.h).
#pragma once

#include <cmath>

#include "kernels/common/problem.h"

namespace flashattn {

FA_HOST_DEVICE float fa_tanh(float x) { return tanhf(x); }
FA_HOST_DEVICE double fa_tanh(double x) { return tanh(x); }

template <typename T>
FA_HOST_DEVICE T score(T dot, T scale, T softcap, T slope, int row, int col, int seqlen_q, int seqlen_k) {
  T s = scale * dot;
  if (softcap > T(0)) s = softcap * fa_tanh(s / softcap);
  if (slope != T(0)) {
    const long long dist = (long long)row + seqlen_k - seqlen_q - col;
    s -= slope * T(dist < 0 ? -dist : dist);
  }
  return s;
}

// d score / d (scale * q.k): 1 without softcap; 1 - tanh^2 = 1 - (s_capped / softcap)^2 with it.
// `capped` is the softcapped score before ALiBi was added.
template <typename T>
FA_HOST_DEVICE T softcap_grad(T capped, T softcap) {
  if (softcap <= T(0)) return T(1);
  const T t = capped / softcap;
  return T(1) - t * t;
}

}  // namespace flashattn
