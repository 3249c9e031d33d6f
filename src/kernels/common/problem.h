// The validated, normalized description of one attention call, as every kernel and both
// references read it. Built once by src/api/validate.cpp; nothing downstream re-validates.
#pragma once

#include <cstdint>

#include "kernels/common/philox.h"

namespace flashattn {

// Strides in elements of a [batch, row, head, dim] (or varlen [row, head, dim]) view; dim is unit.
struct RowStrides {
  int64_t batch = 0, row = 0, head = 0;
};

struct Problem {
  // shapes
  int batch = 0, nheads = 0, nheads_k = 0, head_dim = 0;
  int seqlen_q = 0, seqlen_k = 0;  // per sequence; varlen: the given maxima
  int64_t total_q = 0, total_k = 0;  // varlen: rows of q and of k/v
  bool varlen = false;
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;
  const int32_t* seqused_k = nullptr;

  int32_t dtype = 0;  // of q, k, v
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  RowStrides q_stride, k_stride, v_stride;

  const float* alibi_slopes = nullptr;
  int64_t alibi_batch_stride = 0;  // 0 for [nheads]

  float scale = 1.f;    // softmax scale
  float softcap = 0.f;  // 0 = off
  float dropout_p = 0.f;
  uint32_t dropout_threshold = 0;
  uint64_t philox_seed = 0, philox_offset = 0;
  const uint64_t* philox_seed_ptr = nullptr;
  const uint64_t* philox_offset_ptr = nullptr;

  bool is_causal = false;  // kept for dispatch; the window already encodes it
  int window_left = -1, window_right = -1;  // -1 = unbounded; causal folded in as right = 0
};

// Where sequence b lives and how long it is.
struct SeqInfo {
  int64_t q_row0 = 0, k_row0 = 0;  // varlen: first packed row; fixed: 0
  int seqlen_q = 0, seqlen_k = 0;
};

FA_HOST_DEVICE SeqInfo seq_info(const Problem& p, int b) {
  SeqInfo s;
  if (p.varlen) {
    s.q_row0 = p.cu_seqlens_q[b];
    s.k_row0 = p.cu_seqlens_k[b];
    s.seqlen_q = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
    s.seqlen_k = p.seqused_k ? p.seqused_k[b] : p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
  } else {
    s.seqlen_q = p.seqlen_q;
    s.seqlen_k = p.seqlen_k;
  }
  return s;
}

// Element offset of row `row` (within sequence b), head h, dim 0 of a q-like or k-like tensor.
FA_HOST_DEVICE int64_t row_offset(const RowStrides& st, bool varlen, int b, int64_t row0, int64_t row,
                                  int h) {
  return (varlen ? (row0 + row) * st.row : b * st.batch + row * st.row) + h * st.head;
}

// softmax_lse: fixed [batch, nheads, seqlen_q], varlen [nheads, total_q]; contiguous.
FA_HOST_DEVICE int64_t lse_offset(const Problem& p, int b, int64_t q_row0, int64_t row, int h) {
  return p.varlen ? h * p.total_q + q_row0 + row : (int64_t(b) * p.nheads + h) * p.seqlen_q + row;
}

// The keys query `row` may see: [lo, hi). Bottom-right alignment: the diagonal of a sequence pair
// passes through (seqlen_q - 1, seqlen_k - 1).
struct KeyRange {
  int lo, hi;
};
FA_HOST_DEVICE KeyRange visible_keys(const Problem& p, int row, int seqlen_q, int seqlen_k) {
  const int64_t diag = int64_t(row) + seqlen_k - seqlen_q;
  int64_t lo = p.window_left < 0 ? 0 : diag - p.window_left;
  int64_t hi = p.window_right < 0 ? seqlen_k : diag + p.window_right + 1;
  lo = lo < 0 ? 0 : lo;
  hi = hi > seqlen_k ? seqlen_k : hi;
  if (hi < lo) hi = lo;
  return KeyRange{int(lo), int(hi)};
}

FA_HOST_DEVICE float alibi_slope(const Problem& p, int b, int h) {
  return p.alibi_slopes ? p.alibi_slopes[b * p.alibi_batch_stride + h] : 0.f;
}

// The (seed, offset) a call draws with: the device pointers (graph capture) win when given, their
// offset plus philox_offset. Only device code may call this when the pointers are set.
struct PhiloxState {
  uint64_t seed, offset;
};
FA_HOST_DEVICE PhiloxState philox_state(const Problem& p) {
  if (p.philox_seed_ptr) return PhiloxState{*p.philox_seed_ptr, *p.philox_offset_ptr + p.philox_offset};
  return PhiloxState{p.philox_seed, p.philox_offset};
}

// Philox subsequence of (b, h): see philox.h. The seed/offset pointers win when given.
FA_HOST_DEVICE uint64_t dropout_subsequence(uint64_t offset, const Problem& p, int b, int h) {
  return offset + uint64_t(b) * uint64_t(p.nheads) + uint64_t(h);
}

}  // namespace flashattn
