#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <limits>

#include "kernels/common/score.h"
#include "reference/reference_gpu.h"

namespace flashattn {
namespace {

constexpr int kThreads = 256;  // >= the largest head dim: thread t owns dim t of the accumulators
constexpr int kChunk = kThreads;

template <typename T>
__device__ __forceinline__ float to_float(T x) {
  return float(x);
}
template <>
__device__ __forceinline__ float to_float(__half x) {
  return __half2float(x);
}
template <>
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <typename T>
__device__ __forceinline__ T from_float(float x) {
  return T(x);
}
template <>
__device__ __forceinline__ __half from_float(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float x) {
  return __float2bfloat16_rn(x);
}

__device__ float block_reduce(float x, bool is_max, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = is_max ? fmaxf(x, y) : x + y;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read from the previous reduction
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = scratch[0];
  for (int w = 1; w < kThreads / 32; ++w) x = is_max ? fmaxf(x, scratch[w]) : x + scratch[w];
  return x;
}

__device__ float dropout_factor(const Problem& p, const PhiloxState& rng, int b, int h, int row, int col) {
  if (p.dropout_p == 0.f) return 1.f;
  const bool keep = dropout_keep(rng.seed, dropout_subsequence(rng.offset, p, b, h), row, col, p.dropout_threshold);
  return keep ? 1.f / (1.f - p.dropout_p) : 0.f;
}

// grid (row, head, batch): online softmax over chunks of keys (FlashAttention-2, Alg. 1, one row).
template <typename T>
__global__ void __launch_bounds__(kThreads) reference_fwd_kernel(FwdCall call) {
  const Problem& p = call.problem;
  const int row = blockIdx.x, h = blockIdx.y, b = blockIdx.z, t = threadIdx.x;
  const PhiloxState rng = philox_state(p);
  if (call.rng_state && row == 0 && h == 0 && b == 0 && t == 0) {
    call.rng_state[0] = rng.seed;
    call.rng_state[1] = rng.offset;
  }
  if (b >= p.batch) return;
  const SeqInfo si = seq_info(p, b);
  if (row >= si.seqlen_q) return;
  const int hk = h / (p.nheads / p.nheads_k), d = p.head_dim;
  __shared__ float q_s[kThreads], p_s[kChunk], scratch[kThreads / 32];
  const T* q = static_cast<const T*>(p.q) + row_offset(p.q_stride, p.varlen, b, si.q_row0, row, h);
  if (t < d) q_s[t] = to_float(q[t]);
  __syncthreads();
  const KeyRange keys = visible_keys(p, row, si.seqlen_q, si.seqlen_k);
  const float slope = alibi_slope(p, b, h);
  float m = -INFINITY, l = 0.f, acc = 0.f;
  for (int base = keys.lo; base < keys.hi; base += kChunk) {
    const int col = base + t;
    float s = -INFINITY;
    if (col < keys.hi) {
      const T* k = static_cast<const T*>(p.k) + row_offset(p.k_stride, p.varlen, b, si.k_row0, col, hk);
      float dot = 0.f;
      for (int i = 0; i < d; ++i) dot += q_s[i] * to_float(k[i]);
      s = score<float>(dot, p.scale, p.softcap, slope, row, col, si.seqlen_q, si.seqlen_k);
    }
    const float m_new = fmaxf(m, block_reduce(s, true, scratch));
    const float prob = col < keys.hi ? expf(s - m_new) : 0.f;
    const float correction = expf(m - m_new);  // 0 on the first chunk (m = -inf)
    l = l * correction + block_reduce(prob, false, scratch);
    p_s[t] = prob * (col < keys.hi ? dropout_factor(p, rng, b, h, row, col) : 0.f);
    __syncthreads();
    acc *= correction;
    if (t < d) {
      const int n = min(kChunk, keys.hi - base);
      for (int j = 0; j < n; ++j) {
        if (p_s[j] == 0.f) continue;
        const T* v = static_cast<const T*>(p.v) + row_offset(p.v_stride, p.varlen, b, si.k_row0, base + j, hk);
        acc += p_s[j] * to_float(v[t]);
      }
    }
    m = m_new;
    __syncthreads();
  }
  T* out = static_cast<T*>(call.out) + row_offset(call.out_stride, p.varlen, b, si.q_row0, row, h);
  if (t < d) out[t] = from_float<T>(l > 0.f ? acc / l : 0.f);
  if (t == 0) call.lse[lse_offset(p, b, si.q_row0, row, h)] = l > 0.f ? m + logf(l) : INFINITY;
}

// Per-pair backward quantities: P (recomputed from lse), the dropout factor Z and
// dX = P * (Z * dO.v - D) * softcap'(s), D = rowsum(dO * O)   (FlashAttention-2, Alg. 2).
struct PairGrad {
  float pz, dx;
};
template <typename T>
__device__ PairGrad pair_grad(const BwdCall& c, const PhiloxState& rng, int b, const SeqInfo& si, int h, int row, int col,
                              const float* q_row, const float* k_row, const float* do_row, const float* v_row,
                              float lse, float D) {
  const Problem& p = c.problem;
  float dot = 0.f, dov = 0.f;
  for (int i = 0; i < p.head_dim; ++i) {
    dot += q_row[i] * k_row[i];
    dov += do_row[i] * v_row[i];
  }
  const float capped = score<float>(dot, p.scale, p.softcap, 0.f, row, col, si.seqlen_q, si.seqlen_k);
  const float s = score<float>(dot, p.scale, p.softcap, alibi_slope(p, b, h), row, col, si.seqlen_q, si.seqlen_k);
  const float prob = expf(s - lse);
  const float z = dropout_factor(p, rng, b, h, row, col);
  return PairGrad{prob * z, prob * (z * dov - D) * softcap_grad<float>(capped, p.softcap)};
}

template <typename T>
__device__ void load_row(float* dst, const void* base, int64_t offset, int d) {
  const T* src = static_cast<const T*>(base) + offset;
  for (int i = threadIdx.x; i < d; i += blockDim.x) dst[i] = to_float(src[i]);
}

// grid (row, head, batch): dq of one query row.
template <typename T>
__global__ void __launch_bounds__(kThreads) reference_dq_kernel(BwdCall c) {
  const Problem& p = c.problem;
  const int row = blockIdx.x, h = blockIdx.y, b = blockIdx.z, t = threadIdx.x;
  const SeqInfo si = seq_info(p, b);
  if (row >= si.seqlen_q) return;
  const PhiloxState rng = philox_state(p);
  const int hk = h / (p.nheads / p.nheads_k), d = p.head_dim;
  __shared__ float q_s[kThreads], do_s[kThreads], o_s[kThreads], dx_s[kChunk], scratch[kThreads / 32];
  load_row<T>(q_s, p.q, row_offset(p.q_stride, p.varlen, b, si.q_row0, row, h), d);
  load_row<T>(do_s, c.dout, row_offset(c.dout_stride, p.varlen, b, si.q_row0, row, h), d);
  load_row<T>(o_s, c.out, row_offset(c.out_stride, p.varlen, b, si.q_row0, row, h), d);
  __syncthreads();
  const float D = block_reduce(t < d ? do_s[t] * o_s[t] : 0.f, false, scratch);
  const float lse = c.lse[lse_offset(p, b, si.q_row0, row, h)];
  const KeyRange keys = visible_keys(p, row, si.seqlen_q, si.seqlen_k);
  float acc = 0.f;
  float k_row[256], v_row[256];
  for (int base = keys.lo; base < keys.hi; base += kChunk) {
    const int col = base + t;
    float dx = 0.f;
    if (col < keys.hi) {
      const T* k = static_cast<const T*>(p.k) + row_offset(p.k_stride, p.varlen, b, si.k_row0, col, hk);
      const T* v = static_cast<const T*>(p.v) + row_offset(p.v_stride, p.varlen, b, si.k_row0, col, hk);
      for (int i = 0; i < d; ++i) {
        k_row[i] = to_float(k[i]);
        v_row[i] = to_float(v[i]);
      }
      dx = pair_grad<T>(c, rng, b, si, h, row, col, q_s, k_row, do_s, v_row, lse, D).dx;
    }
    dx_s[t] = dx;
    __syncthreads();
    if (t < d) {
      const int n = min(kChunk, keys.hi - base);
      for (int j = 0; j < n; ++j) {
        const T* k = static_cast<const T*>(p.k) + row_offset(p.k_stride, p.varlen, b, si.k_row0, base + j, hk);
        acc += dx_s[j] * to_float(k[t]);
      }
    }
    __syncthreads();
  }
  T* dq = static_cast<T*>(c.dq) + row_offset(c.dq_stride, p.varlen, b, si.q_row0, row, h);
  if (t < d) dq[t] = from_float<T>(p.scale * acc);
}

// grid (key row, kv head, batch): dk and dv of one key row, summed over the query heads of its group.
template <typename T>
__global__ void __launch_bounds__(kThreads) reference_dkdv_kernel(BwdCall c) {
  const Problem& p = c.problem;
  const int col = blockIdx.x, hk = blockIdx.y, b = blockIdx.z, t = threadIdx.x;
  const SeqInfo si = seq_info(p, b);
  const int d = p.head_dim;
  if (col >= si.seqlen_k) {
    // Keys past seqused_k (but inside the sequence) do not reach the output: zero gradients.
    const int stored = p.varlen ? p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b] : p.seqlen_k;
    if (col < stored && t < d) {
      static_cast<T*>(c.dk)[row_offset(c.dk_stride, p.varlen, b, si.k_row0, col, hk) + t] = from_float<T>(0.f);
      static_cast<T*>(c.dv)[row_offset(c.dv_stride, p.varlen, b, si.k_row0, col, hk) + t] = from_float<T>(0.f);
    }
    return;
  }
  const PhiloxState rng = philox_state(p);
  const int group = p.nheads / p.nheads_k;
  __shared__ float k_s[kThreads], v_s[kThreads], dx_s[kChunk], pz_s[kChunk];
  load_row<T>(k_s, p.k, row_offset(p.k_stride, p.varlen, b, si.k_row0, col, hk), d);
  load_row<T>(v_s, p.v, row_offset(p.v_stride, p.varlen, b, si.k_row0, col, hk), d);
  __syncthreads();
  float dk = 0.f, dv = 0.f;
  float q_row[256], do_row[256];
  for (int h = hk * group; h < (hk + 1) * group; ++h) {
    for (int base = 0; base < si.seqlen_q; base += kChunk) {
      const int row = base + t;
      PairGrad g{0.f, 0.f};
      if (row < si.seqlen_q) {
        const KeyRange keys = visible_keys(p, row, si.seqlen_q, si.seqlen_k);
        if (col >= keys.lo && col < keys.hi) {
          const T* q = static_cast<const T*>(p.q) + row_offset(p.q_stride, p.varlen, b, si.q_row0, row, h);
          const T* dout = static_cast<const T*>(c.dout) + row_offset(c.dout_stride, p.varlen, b, si.q_row0, row, h);
          const T* out = static_cast<const T*>(c.out) + row_offset(c.out_stride, p.varlen, b, si.q_row0, row, h);
          float D = 0.f;
          for (int i = 0; i < d; ++i) {
            q_row[i] = to_float(q[i]);
            do_row[i] = to_float(dout[i]);
            D += do_row[i] * to_float(out[i]);
          }
          const float lse = c.lse[lse_offset(p, b, si.q_row0, row, h)];
          g = pair_grad<T>(c, rng, b, si, h, row, col, q_row, k_s, do_row, v_s, lse, D);
        }
      }
      dx_s[t] = g.dx;
      pz_s[t] = g.pz;
      __syncthreads();
      if (t < d) {
        const int n = min(kChunk, si.seqlen_q - base);
        for (int i = 0; i < n; ++i) {
          if (dx_s[i] == 0.f && pz_s[i] == 0.f) continue;
          const int64_t qo = row_offset(p.q_stride, p.varlen, b, si.q_row0, base + i, h);
          const int64_t go = row_offset(c.dout_stride, p.varlen, b, si.q_row0, base + i, h);
          dk += dx_s[i] * to_float(static_cast<const T*>(p.q)[qo + t]);
          dv += pz_s[i] * to_float(static_cast<const T*>(c.dout)[go + t]);
        }
      }
      __syncthreads();
    }
  }
  if (t < d) {
    static_cast<T*>(c.dk)[row_offset(c.dk_stride, p.varlen, b, si.k_row0, col, hk) + t] = from_float<T>(p.scale * dk);
    static_cast<T*>(c.dv)[row_offset(c.dv_stride, p.varlen, b, si.k_row0, col, hk) + t] = from_float<T>(dv);
  }
}

Status check_grid(const Problem& p) {
  if (p.nheads > 65535 || p.batch > 65535)
    return not_supported("BACKEND_REFERENCE with more than 65535 heads or sequences");
  return Status::Ok();
}

Status launched(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return Status{FLASHATTN_CUDA_ERROR, std::string("flashattn: launch of ") + what + " failed: " + cudaGetErrorString(err)};
  return Status::Ok();
}

template <typename T>
Status fwd_typed(const FwdCall& c, cudaStream_t stream) {
  const Problem& p = c.problem;
  // One block even when there are no rows, so rng_state is still written.
  const dim3 grid(std::max(p.seqlen_q, 1), p.nheads, std::max(p.batch, 1));
  if (p.batch == 0 && !c.rng_state) return Status::Ok();
  reference_fwd_kernel<T><<<grid, kThreads, 0, stream>>>(c);
  return launched("reference_fwd_kernel");
}

template <typename T>
Status bwd_typed(const BwdCall& c, cudaStream_t stream) {
  const Problem& p = c.problem;
  if (p.batch == 0) return Status::Ok();
  if (p.seqlen_q > 0) {
    reference_dq_kernel<T><<<dim3(p.seqlen_q, p.nheads, p.batch), kThreads, 0, stream>>>(c);
    if (Status s = launched("reference_dq_kernel"); !s.ok()) return s;
  }
  if (p.seqlen_k > 0) {
    reference_dkdv_kernel<T><<<dim3(p.seqlen_k, p.nheads_k, p.batch), kThreads, 0, stream>>>(c);
    if (Status s = launched("reference_dkdv_kernel"); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

Status reference_gpu_fwd(const FwdCall& call, cudaStream_t stream) {
  if (Status s = check_grid(call.problem); !s.ok()) return s;
  switch (call.problem.dtype) {
    case FLASHATTN_FLOAT16: return fwd_typed<__half>(call, stream);
    case FLASHATTN_BFLOAT16: return fwd_typed<__nv_bfloat16>(call, stream);
    default: return fwd_typed<float>(call, stream);
  }
}

Status reference_gpu_bwd(const BwdCall& call, cudaStream_t stream) {
  if (Status s = check_grid(call.problem); !s.ok()) return s;
  switch (call.problem.dtype) {
    case FLASHATTN_FLOAT16: return bwd_typed<__half>(call, stream);
    case FLASHATTN_BFLOAT16: return bwd_typed<__nv_bfloat16>(call, stream);
    default: return bwd_typed<float>(call, stream);
  }
}

}  // namespace flashattn
