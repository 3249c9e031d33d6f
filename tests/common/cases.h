// Test problems: a Case describes the features; HostProblem holds random host inputs for it and
// the flashattn_attention that views them.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/validate.h"
#include "common/host_tensor.h"

namespace flashattn::test {

struct Case {
  std::string name = "plain";
  int batch = 2, seqlen_q = 5, seqlen_k = 7, nheads = 2, nheads_k = 1, head_dim = 8;
  std::vector<int> seqlens_q, seqlens_k;  // non-empty: varlen
  std::vector<int> seqused_k;             // varlen only
  bool causal = false;
  int window_left = -1, window_right = -1;
  float softcap = 0.f, dropout = 0.f, scale = 0.f;
  // Key j of a sequence of n keys scaled by exp(key_growth (1 - (j + 1/2) / n)): scores that grow
  // toward the first key by up to e^key_growth in spread (not varlen).
  double key_growth = 0.0;
  bool alibi = false, alibi_per_batch = false;
  int32_t dtype = FLASHATTN_FLOAT64;
  uint64_t seed = 1234, offset = 77;
  bool varlen() const { return !seqlens_q.empty(); }
};

// A dtype as the test names and skip messages spell it.
inline const char* dtype_name(int32_t dtype) {
  return dtype == FLASHATTN_FLOAT16 ? "fp16" : dtype == FLASHATTN_BFLOAT16 ? "bf16" : "fp32";
}

inline std::vector<int32_t> cumulative(const std::vector<int>& lens) {
  std::vector<int32_t> cu(lens.size() + 1, 0);
  for (size_t i = 0; i < lens.size(); ++i) cu[i + 1] = cu[i] + lens[i];
  return cu;
}

struct HostProblem {
  Case c;
  HostTensor q, k, v, cu_q, cu_k, used, alibi;
  std::vector<int32_t> cu_q_host, cu_k_host;
  flashattn_attention attn{};

  HostProblem(const Case& cs, std::mt19937_64& rng) : c(cs) {
    if (c.varlen()) {
      c.batch = int(c.seqlens_q.size());
      cu_q_host = cumulative(c.seqlens_q);
      cu_k_host = cumulative(c.seqlens_k);
      q = random_tensor(c.dtype, {cu_q_host.back(), c.nheads, c.head_dim}, rng);
      k = random_tensor(c.dtype, {cu_k_host.back(), c.nheads_k, c.head_dim}, rng);
      v = random_tensor(c.dtype, {cu_k_host.back(), c.nheads_k, c.head_dim}, rng);
      cu_q = int_tensor(cu_q_host);
      cu_k = int_tensor(cu_k_host);
      if (!c.seqused_k.empty()) used = int_tensor(std::vector<int32_t>(c.seqused_k.begin(), c.seqused_k.end()));
    } else {
      q = random_tensor(c.dtype, {c.batch, c.seqlen_q, c.nheads, c.head_dim}, rng);
      k = random_tensor(c.dtype, {c.batch, c.seqlen_k, c.nheads_k, c.head_dim}, rng);
      v = random_tensor(c.dtype, {c.batch, c.seqlen_k, c.nheads_k, c.head_dim}, rng);
      if (c.key_growth != 0.0) {
        const int64_t row = int64_t(c.nheads_k) * c.head_dim;
        for (int64_t i = 0; i < k.numel(); ++i) {
          const int j = int(i / row % c.seqlen_k);
          k.set(i, k.get(i) * std::exp(c.key_growth * (1.0 - (j + 0.5) / c.seqlen_k)));
        }
      }
    }
    if (c.alibi) {
      std::vector<int64_t> shape = c.alibi_per_batch ? std::vector<int64_t>{c.batch, c.nheads} : std::vector<int64_t>{c.nheads};
      alibi = HostTensor(FLASHATTN_FLOAT32, shape);
      for (int64_t i = 0; i < alibi.numel(); ++i) alibi.set(i, 0.1 + 0.37 * double(i % 5));
    }
    rebind();
  }
  HostProblem(const HostProblem&) = delete;
  HostProblem& operator=(const HostProblem&) = delete;

  // Points attn at this object's buffers (host memory).
  void rebind() {
    attn = flashattn_attention{};
    attn.q = q.view();
    attn.k = k.view();
    attn.v = v.view();
    if (c.varlen()) {
      attn.cu_seqlens_q = cu_q.view();
      attn.cu_seqlens_k = cu_k.view();
      attn.cu_seqlens_q_host = cu_q_host.data();
      attn.cu_seqlens_k_host = cu_k_host.data();
      attn.max_seqlen_q = c.seqlens_q.empty() ? 0 : *std::max_element(c.seqlens_q.begin(), c.seqlens_q.end());
      attn.max_seqlen_k = c.seqlens_k.empty() ? 0 : *std::max_element(c.seqlens_k.begin(), c.seqlens_k.end());
      if (!c.seqused_k.empty()) {
        attn.seqused_k = used.view();
        attn.seqused_k_host = reinterpret_cast<const int32_t*>(used.bytes.data());
      }
    }
    if (c.alibi) attn.alibi_slopes = alibi.view();
    attn.softmax_scale = c.scale;
    attn.softcap = c.softcap;
    attn.dropout_p = c.dropout;
    attn.philox_seed = c.seed;
    attn.philox_offset = c.offset;
    attn.is_causal = c.causal;
    attn.window_size_left = c.window_left;
    attn.window_size_right = c.window_right;
  }

  Problem problem() const {
    Problem p;
    const Status s = validate_attention(attn, c.varlen(), Target::kHost, &p);
    if (!s.ok()) throw std::runtime_error(s.message);
    return p;
  }
};

// The feature matrix every implementation is checked on (small enough for the fp64 reference).
inline std::vector<Case> feature_cases() {
  std::vector<Case> cases;
  Case base;
  cases.push_back(base);
  Case c = base;
  c.name = "causal";
  c.causal = true;
  cases.push_back(c);
  c = base;
  c.name = "causal_sq_gt_sk";  // top rows see no key
  c.causal = true;
  c.seqlen_q = 9;
  c.seqlen_k = 4;
  cases.push_back(c);
  c = base;
  c.name = "window";
  c.window_left = 2;
  c.window_right = 1;
  cases.push_back(c);
  c = base;
  c.name = "window_causal";
  c.window_left = 1;
  c.causal = true;
  cases.push_back(c);
  c = base;
  c.name = "alibi";
  c.alibi = true;
  cases.push_back(c);
  c = base;
  c.name = "alibi_per_batch_causal";
  c.alibi = true;
  c.alibi_per_batch = true;
  c.causal = true;
  cases.push_back(c);
  c = base;
  c.name = "softcap";
  c.softcap = 1.5f;
  cases.push_back(c);
  c = base;
  c.name = "dropout";
  c.dropout = 0.3f;
  cases.push_back(c);
  c = base;
  c.name = "gqa";
  c.nheads = 4;
  c.nheads_k = 2;
  cases.push_back(c);
  c = base;
  c.name = "mqa_scale";
  c.nheads = 3;
  c.nheads_k = 1;
  c.scale = 0.7f;
  cases.push_back(c);
  c = base;
  // Row maxima that climb by far more than 2^15 in weight from one key block to the next (the
  // Hopper forward walks the blocks from the last): its fast softmax must fall back.
  c.name = "scores_grow_toward_first_key";
  c.key_growth = 3.0;
  cases.push_back(c);
  c = base;
  // The same by far more: a weight against the last block's reference overflows fp32 (a row's max
  // climbs by more than 128 log2 units), so the Hopper forward's fast softmax must compute the
  // block's scores again.
  c.name = "scores_leap_toward_first_key";
  c.key_growth = 5.0;
  cases.push_back(c);
  c = base;
  c.name = "varlen";  // includes an empty query sequence and an empty key sequence
  c.seqlens_q = {3, 0, 6, 2};
  c.seqlens_k = {5, 4, 2, 0};
  cases.push_back(c);
  c = base;
  c.name = "varlen_causal_seqused";
  c.seqlens_q = {4, 3, 5};
  c.seqlens_k = {6, 4, 5};
  c.seqused_k = {3, 4, 1};
  c.causal = true;
  cases.push_back(c);
  // The combinations users hit.
  c = base;
  c.name = "causal_gqa_varlen";
  c.seqlens_q = {6, 2, 5};
  c.seqlens_k = {6, 7, 3};
  c.nheads = 4;
  c.nheads_k = 2;
  c.causal = true;
  cases.push_back(c);
  c = base;
  c.name = "window_alibi_dropout";
  c.window_left = 2;
  c.window_right = 3;
  c.alibi = true;
  c.dropout = 0.25f;
  cases.push_back(c);
  c = base;
  c.name = "softcap_causal";
  c.softcap = 1.2f;
  c.causal = true;
  cases.push_back(c);
  c = base;
  c.name = "everything";
  c.seqlens_q = {4, 6};
  c.seqlens_k = {7, 3};
  c.nheads = 4;
  c.nheads_k = 2;
  c.window_left = 3;
  c.window_right = 2;
  c.alibi = true;
  c.softcap = 2.f;
  c.dropout = 0.2f;
  cases.push_back(c);
  return cases;
}

}  // namespace flashattn::test

namespace flashattn::test {
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }
}  // namespace flashattn::test
