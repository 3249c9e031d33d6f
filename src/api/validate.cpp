#include "api/validate.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <limits>

namespace flashattn {

Status invalid(const std::string& message) {
  return Status{FLASHATTN_INVALID_ARGUMENT, "flashattn: invalid argument " + message};
}
Status not_supported(const std::string& what) {
  return Status{FLASHATTN_NOT_SUPPORTED, "flashattn: not supported yet: " + what};
}

#define FA_TRY(expr)               \
  do {                             \
    Status status_ = (expr);       \
    if (!status_.ok()) return status_; \
  } while (0)

std::string shape_string(const flashattn_tensor& t) {
  std::string s = "[";
  for (int i = 0; i < t.rank && i < FLASHATTN_MAX_RANK; ++i) {
    if (i) s += ", ";
    s += std::to_string(t.shape[i]);
  }
  return s + "]";
}

namespace {

std::string fmt(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

bool present(const flashattn_tensor& t) { return t.rank != 0; }

int64_t numel(const flashattn_tensor& t) {
  int64_t n = 1;
  for (int i = 0; i < t.rank; ++i) n *= t.shape[i];
  return n;
}

std::string expected_shape(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  int i = 0;
  for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
  return s + "]";
}

bool shape_is(const flashattn_tensor& t, std::initializer_list<int64_t> dims) {
  if (t.rank != int(dims.size())) return false;
  int i = 0;
  for (int64_t d : dims)
    if (t.shape[i++] != d) return false;
  return true;
}

// Rank, dims >= 0, strides >= 0, a non-null pointer when there are elements.
Status check_basic(const flashattn_tensor& t, const char* name) {
  if (t.rank < 1 || t.rank > FLASHATTN_MAX_RANK)
    return invalid(std::string(name) + ": rank " + std::to_string(t.rank) + " is out of range [1, 4]");
  for (int i = 0; i < t.rank; ++i) {
    if (t.shape[i] < 0)
      return invalid(std::string(name) + ": negative size " + std::to_string(t.shape[i]) + " in shape " +
                     shape_string(t));
    if (t.stride[i] < 0)
      return invalid(std::string(name) + ": negative stride " + std::to_string(t.stride[i]) + " in dim " +
                     std::to_string(i) + " (negative strides are not supported)");
  }
  if (t.data == nullptr && numel(t) > 0) return invalid(std::string(name) + ": data pointer is null");
  return Status::Ok();
}

Status check_dtype(const flashattn_tensor& t, const char* name, int32_t want) {
  if (t.dtype != want)
    return invalid(std::string(name) + ": dtype is " + dtype_name(t.dtype) + ", expected " + dtype_name(want));
  return Status::Ok();
}

Status check_contiguous(const flashattn_tensor& t, const char* name) {
  int64_t expect = 1;
  for (int i = t.rank - 1; i >= 0; --i) {
    if (t.shape[i] > 1 && t.stride[i] != expect)
      return invalid(std::string(name) + ": must be contiguous, but dim " + std::to_string(i) + " has stride " +
                     std::to_string(t.stride[i]) + " (expected " + std::to_string(expect) + ")");
    expect *= t.shape[i];
  }
  return Status::Ok();
}

// q/k/v-like: last dim contiguous; on the device, 16-byte aligned rows for the vectorized kernels.
Status check_row_layout(const flashattn_tensor& t, const char* name) {
  const int last = t.rank - 1;
  if (t.shape[last] > 1 && t.stride[last] != 1)
    return invalid(std::string(name) + ": the last dim must be contiguous (stride 1), got stride " +
                   std::to_string(t.stride[last]));
  if (t.dtype == FLASHATTN_FLOAT16 || t.dtype == FLASHATTN_BFLOAT16) {
    for (int i = 0; i < last; ++i)
      if (t.shape[i] > 1 && t.stride[i] % 8 != 0)
        return invalid(std::string(name) + ": stride " + std::to_string(t.stride[i]) + " of dim " +
                       std::to_string(i) + " is not a multiple of 8 elements (16 bytes)");
    if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0)
      return invalid(std::string(name) + ": data pointer is not 16-byte aligned");
  }
  return Status::Ok();
}

RowStrides row_strides(const flashattn_tensor& t, bool varlen) {
  RowStrides s;
  if (varlen) {
    s.row = t.stride[0];
    s.head = t.stride[1];
  } else {
    s.batch = t.stride[0];
    s.row = t.stride[1];
    s.head = t.stride[2];
  }
  return s;
}

Status check_device_pointer(const void* ptr, const char* name) {
  if (ptr == nullptr) return Status::Ok();
  int device = -1;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return Status{FLASHATTN_CUDA_ERROR, std::string("flashattn: cannot check ") + name +
                                            ": no usable CUDA device (" + cudaGetErrorString(err) + ")"};
  }
  cudaPointerAttributes attr{};
  err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return invalid(std::string(name) + ": not a CUDA pointer (" + cudaGetErrorString(err) + ")");
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    return invalid(std::string(name) + ": points to host memory; a device pointer is required");
  if (attr.device != device)
    return invalid(std::string(name) + ": lives on device " + std::to_string(attr.device) +
                   " but the current device is " + std::to_string(device));
  return Status::Ok();
}

Status check_device(const flashattn_tensor& t, const char* name, Target target) {
  if (target != Target::kDevice || !present(t) || numel(t) == 0) return Status::Ok();
  return check_device_pointer(t.data, name);
}

// A cu_seqlens given on the host: starts at 0, never decreases, ends at `total`, and no sequence is
// longer than `max_seqlen`.
Status check_cu_seqlens_host(const int32_t* cu, int batch, int64_t total, int max_seqlen, const char* name,
                             const char* max_name) {
  if (cu[0] != 0) return invalid(std::string(name) + ": must start at 0, got " + std::to_string(cu[0]));
  for (int b = 0; b < batch; ++b) {
    const int64_t len = int64_t(cu[b + 1]) - cu[b];
    if (len < 0)
      return invalid(std::string(name) + ": not monotone: entry " + std::to_string(b + 1) + " (" +
                     std::to_string(cu[b + 1]) + ") < entry " + std::to_string(b) + " (" + std::to_string(cu[b]) + ")");
    if (len > max_seqlen)
      return invalid(std::string(max_name) + ": " + std::to_string(max_seqlen) + " is less than the length " +
                     std::to_string(len) + " of sequence " + std::to_string(b) + " in " + name);
  }
  if (cu[batch] != total)
    return invalid(std::string(name) + ": ends at " + std::to_string(cu[batch]) + " but the packed tensor has " +
                   std::to_string(total) + " rows");
  return Status::Ok();
}

bool dtype_allowed(int32_t dtype, Target target) {
  return dtype == FLASHATTN_FLOAT16 || dtype == FLASHATTN_BFLOAT16 || dtype == FLASHATTN_FLOAT32 ||
         (target == Target::kHost && dtype == FLASHATTN_FLOAT64);
}

// Output tensors that must match an input's shape and dtype (out like q, dq like q, dk like k...).
Status check_like(const flashattn_tensor& t, const char* name, const flashattn_tensor& ref, const char* ref_name,
                  Target target) {
  if (!present(t)) return invalid(std::string(name) + ": is required");
  FA_TRY(check_basic(t, name));
  if (t.rank != ref.rank || !std::equal(t.shape, t.shape + t.rank, ref.shape))
    return invalid(std::string(name) + ": shape " + shape_string(t) + " must equal " + ref_name + "'s shape " +
                   shape_string(ref));
  FA_TRY(check_dtype(t, name, ref.dtype));
  FA_TRY(check_row_layout(t, name));
  return check_device(t, name, target);
}

Status check_lse(const flashattn_tensor& lse, const char* name, const Problem& p, Target target) {
  if (!present(lse)) return invalid(std::string(name) + ": is required (fp32)");
  FA_TRY(check_basic(lse, name));
  FA_TRY(check_dtype(lse, name, FLASHATTN_FLOAT32));
  const bool ok = p.varlen ? shape_is(lse, {p.nheads, p.total_q}) : shape_is(lse, {p.batch, p.nheads, p.seqlen_q});
  if (!ok)
    return invalid(std::string(name) + ": shape " + shape_string(lse) + ", expected " +
                   (p.varlen ? expected_shape({p.nheads, p.total_q}) + " [nheads, total_q]"
                             : expected_shape({p.batch, p.nheads, p.seqlen_q}) + " [batch, nheads, seqlen_q]"));
  FA_TRY(check_contiguous(lse, name));
  return check_device(lse, name, target);
}

}  // namespace

Status validate_attention(const flashattn_attention& a, bool varlen, Target target, Problem* out) {
  Problem p;
  const int want_rank = varlen ? 3 : 4;
  const char* layout = varlen ? "[total, nheads, head_dim]" : "[batch, seqlen, nheads, head_dim]";
  const flashattn_tensor* qkv[3] = {&a.q, &a.k, &a.v};
  const char* names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    const flashattn_tensor& t = *qkv[i];
    if (!present(t)) return invalid(std::string(names[i]) + ": is required");
    if (t.rank != want_rank)
      return invalid(std::string(names[i]) + ": expected rank " + std::to_string(want_rank) + " " + layout +
                     ", got rank " + std::to_string(t.rank) + " " + shape_string(t));
    FA_TRY(check_basic(t, names[i]));
    if (!dtype_allowed(t.dtype, target))
      return invalid(std::string(names[i]) + ": dtype " + dtype_name(t.dtype) +
                     " is not supported (float16, bfloat16; float32 on BACKEND_REFERENCE)");
    if (i > 0) FA_TRY(check_dtype(t, names[i], a.q.dtype));
  }
  const int r = want_rank;
  const int64_t head_dim = a.q.shape[r - 1];
  if (head_dim <= 0 || head_dim > 256 || head_dim % 8 != 0)
    return invalid("q: head_dim " + std::to_string(head_dim) + " must be a multiple of 8 in [8, 256]");
  for (int i = 1; i < 3; ++i)
    if (qkv[i]->shape[r - 1] != head_dim)
      return invalid(std::string(names[i]) + ": head_dim " + std::to_string(qkv[i]->shape[r - 1]) +
                     " differs from q's " + std::to_string(head_dim));
  if (!std::equal(a.k.shape, a.k.shape + r, a.v.shape))
    return invalid("v: shape " + shape_string(a.v) + " must equal k's shape " + shape_string(a.k));
  const int64_t nheads = a.q.shape[r - 2], nheads_k = a.k.shape[r - 2];
  if (nheads < 1) return invalid("q: nheads must be >= 1, got " + std::to_string(nheads));
  if (nheads_k < 1) return invalid("k: nheads_k must be >= 1, got " + std::to_string(nheads_k));
  if (nheads % nheads_k != 0)
    return invalid("k: nheads " + std::to_string(nheads) + " of q is not a multiple of nheads_k " +
                   std::to_string(nheads_k) + " (GQA/MQA needs nheads % nheads_k == 0)");
  if (nheads > std::numeric_limits<int32_t>::max() / 2) return invalid("q: nheads too large");
  for (int i = 0; i < 3; ++i) FA_TRY(check_row_layout(*qkv[i], names[i]));

  p.varlen = varlen;
  p.dtype = a.q.dtype;
  p.nheads = int(nheads);
  p.nheads_k = int(nheads_k);
  p.head_dim = int(head_dim);
  p.q = a.q.data;
  p.k = a.k.data;
  p.v = a.v.data;
  p.q_stride = row_strides(a.q, varlen);
  p.k_stride = row_strides(a.k, varlen);
  p.v_stride = row_strides(a.v, varlen);
  constexpr int64_t kMaxLen = std::numeric_limits<int32_t>::max();

  if (varlen) {
    const flashattn_tensor* cus[2] = {&a.cu_seqlens_q, &a.cu_seqlens_k};
    const char* cu_names[2] = {"cu_seqlens_q", "cu_seqlens_k"};
    for (int i = 0; i < 2; ++i) {
      const flashattn_tensor& t = *cus[i];
      if (!present(t)) return invalid(std::string(cu_names[i]) + ": is required by the varlen entry points");
      FA_TRY(check_basic(t, cu_names[i]));
      FA_TRY(check_dtype(t, cu_names[i], FLASHATTN_INT32));
      if (t.rank != 1 || t.shape[0] < 1)
        return invalid(std::string(cu_names[i]) + ": expected shape [batch + 1], got " + shape_string(t));
      FA_TRY(check_contiguous(t, cu_names[i]));
      FA_TRY(check_device(t, cu_names[i], target));
    }
    if (a.cu_seqlens_k.shape[0] != a.cu_seqlens_q.shape[0])
      return invalid("cu_seqlens_k: shape " + shape_string(a.cu_seqlens_k) + " must equal cu_seqlens_q's " +
                     shape_string(a.cu_seqlens_q));
    p.batch = int(a.cu_seqlens_q.shape[0] - 1);
    p.total_q = a.q.shape[0];
    p.total_k = a.k.shape[0];
    if (a.max_seqlen_q < 0) return invalid("max_seqlen_q: must be >= 0, got " + std::to_string(a.max_seqlen_q));
    if (a.max_seqlen_k < 0) return invalid("max_seqlen_k: must be >= 0, got " + std::to_string(a.max_seqlen_k));
    p.seqlen_q = a.max_seqlen_q;
    p.seqlen_k = a.max_seqlen_k;
    p.cu_seqlens_q = static_cast<const int32_t*>(a.cu_seqlens_q.data);
    p.cu_seqlens_k = static_cast<const int32_t*>(a.cu_seqlens_k.data);
    if (present(a.seqused_k)) {
      FA_TRY(check_basic(a.seqused_k, "seqused_k"));
      FA_TRY(check_dtype(a.seqused_k, "seqused_k", FLASHATTN_INT32));
      if (!shape_is(a.seqused_k, {p.batch}))
        return invalid("seqused_k: expected shape [" + std::to_string(p.batch) + "] (batch), got " +
                       shape_string(a.seqused_k));
      FA_TRY(check_contiguous(a.seqused_k, "seqused_k"));
      FA_TRY(check_device(a.seqused_k, "seqused_k", target));
      p.seqused_k = static_cast<const int32_t*>(a.seqused_k.data);
    }
    if (a.cu_seqlens_q_host)
      FA_TRY(check_cu_seqlens_host(a.cu_seqlens_q_host, p.batch, p.total_q, p.seqlen_q, "cu_seqlens_q",
                                   "max_seqlen_q"));
    if (a.cu_seqlens_k_host)
      FA_TRY(check_cu_seqlens_host(a.cu_seqlens_k_host, p.batch, p.total_k, p.seqlen_k, "cu_seqlens_k",
                                   "max_seqlen_k"));
    if (a.seqused_k_host) {
      for (int b = 0; b < p.batch; ++b) {
        const int32_t used = a.seqused_k_host[b];
        const int64_t len = a.cu_seqlens_k_host ? a.cu_seqlens_k_host[b + 1] - a.cu_seqlens_k_host[b] : p.seqlen_k;
        if (used < 0 || used > len)
          return invalid("seqused_k: entry " + std::to_string(b) + " is " + std::to_string(used) +
                         ", outside [0, " + std::to_string(len) + "]");
      }
    }
  } else {
    if (present(a.cu_seqlens_q) || present(a.cu_seqlens_k) || a.cu_seqlens_q_host || a.cu_seqlens_k_host)
      return invalid("cu_seqlens_q: given to a fixed-length entry point; use the varlen entry points");
    if (present(a.seqused_k) || a.seqused_k_host)
      return invalid("seqused_k: only the varlen entry points take it");
    if (a.k.shape[0] != a.q.shape[0])
      return invalid("k: batch " + std::to_string(a.k.shape[0]) + " differs from q's batch " +
                     std::to_string(a.q.shape[0]));
    if (a.q.shape[0] > kMaxLen || a.q.shape[1] > kMaxLen || a.k.shape[1] > kMaxLen)
      return invalid("q: batch and sequence lengths must fit in int32, got " + shape_string(a.q));
    p.batch = int(a.q.shape[0]);
    p.seqlen_q = int(a.q.shape[1]);
    p.seqlen_k = int(a.k.shape[1]);
    p.total_q = int64_t(p.batch) * p.seqlen_q;
    p.total_k = int64_t(p.batch) * p.seqlen_k;
  }

  if (present(a.alibi_slopes)) {
    FA_TRY(check_basic(a.alibi_slopes, "alibi_slopes"));
    FA_TRY(check_dtype(a.alibi_slopes, "alibi_slopes", FLASHATTN_FLOAT32));
    const bool per_head = shape_is(a.alibi_slopes, {p.nheads});
    const bool per_batch = shape_is(a.alibi_slopes, {p.batch, p.nheads});
    if (!per_head && !per_batch)
      return invalid("alibi_slopes: shape " + shape_string(a.alibi_slopes) + ", expected [" +
                     std::to_string(p.nheads) + "] or [" + std::to_string(p.batch) + ", " + std::to_string(p.nheads) +
                     "] ([nheads] or [batch, nheads])");
    if (a.alibi_slopes.shape[a.alibi_slopes.rank - 1] > 1 && a.alibi_slopes.stride[a.alibi_slopes.rank - 1] != 1)
      return invalid("alibi_slopes: the last dim must be contiguous");
    FA_TRY(check_device(a.alibi_slopes, "alibi_slopes", target));
    p.alibi_slopes = static_cast<const float*>(a.alibi_slopes.data);
    p.alibi_batch_stride = per_batch ? a.alibi_slopes.stride[0] : 0;
  }

  if (!std::isfinite(a.softmax_scale) || a.softmax_scale < 0)
    return invalid("softmax_scale: must be finite and >= 0 (0 selects 1/sqrt(head_dim)), got " + fmt(a.softmax_scale));
  p.scale = a.softmax_scale == 0.f ? float(1.0 / std::sqrt(double(head_dim))) : a.softmax_scale;
  if (!std::isfinite(a.softcap) || a.softcap < 0)
    return invalid("softcap: must be finite and >= 0 (0 = off), got " + fmt(a.softcap));
  p.softcap = a.softcap;
  if (!(a.dropout_p >= 0.f && a.dropout_p < 1.f))
    return invalid("dropout_p: must be in [0, 1), got " + fmt(a.dropout_p));
  p.dropout_p = a.dropout_p;
  p.dropout_threshold = dropout_threshold(a.dropout_p);
  if ((a.philox_seed_ptr == nullptr) != (a.philox_offset_ptr == nullptr))
    return invalid(std::string(a.philox_seed_ptr ? "philox_offset_ptr" : "philox_seed_ptr") +
                   ": philox_seed_ptr and philox_offset_ptr go together");
  if (target == Target::kHost && a.philox_seed_ptr)
    return invalid("philox_seed_ptr: device pointers are not read by the CPU reference");
  if (target == Target::kDevice) {
    FA_TRY(check_device_pointer(a.philox_seed_ptr, "philox_seed_ptr"));
    FA_TRY(check_device_pointer(a.philox_offset_ptr, "philox_offset_ptr"));
  }
  for (int i = 0; i < 3; ++i) FA_TRY(check_device(*qkv[i], names[i], target));
  p.philox_seed = a.philox_seed;
  p.philox_offset = a.philox_offset;
  p.philox_seed_ptr = a.philox_seed_ptr;
  p.philox_offset_ptr = a.philox_offset_ptr;

  if (a.is_causal != 0 && a.is_causal != 1) return invalid("is_causal: must be 0 or 1, got " + std::to_string(a.is_causal));
  if (a.window_size_left < -1)
    return invalid("window_size_left: must be >= -1 (-1 = unbounded), got " + std::to_string(a.window_size_left));
  if (a.window_size_right < -1)
    return invalid("window_size_right: must be >= -1 (-1 = unbounded), got " + std::to_string(a.window_size_right));
  p.is_causal = a.is_causal == 1;
  p.window_left = a.window_size_left;
  p.window_right = p.is_causal ? 0 : a.window_size_right;
  // A window wider than any sequence is no window (as flash_attn does), so kernels skip masking.
  if (p.window_left >= p.seqlen_k && !varlen) p.window_left = -1;
  if (p.window_right >= p.seqlen_k && !varlen) p.window_right = -1;
  *out = p;
  return Status::Ok();
}

Status validate_like_q(const flashattn_tensor& t, const char* name, const flashattn_attention& attn, Target target,
                       RowStrides* strides) {
  FA_TRY(check_like(t, name, attn.q, "q", target));
  *strides = row_strides(t, t.rank == 3);
  return Status::Ok();
}

Status validate_fwd(const flashattn_fwd_params& params, bool varlen, Target target, FwdCall* call) {
  FwdCall c;
  FA_TRY(validate_attention(params.attn, varlen, target, &c.problem));
  FA_TRY(check_like(params.out, "out", params.attn.q, "q", target));
  FA_TRY(check_lse(params.softmax_lse, "softmax_lse", c.problem, target));
  if (params.backend < FLASHATTN_BACKEND_AUTO || params.backend > FLASHATTN_BACKEND_SM90)
    return invalid("backend: unknown value " + std::to_string(params.backend));
  if (params.workspace_size > 0 && params.workspace == nullptr)
    return invalid("workspace: null with workspace_size " + std::to_string(params.workspace_size));
  if (target == Target::kDevice) {
    FA_TRY(check_device_pointer(params.rng_state, "rng_state"));
    FA_TRY(check_device_pointer(params.workspace, "workspace"));
  }
  c.out = params.out.data;
  c.out_stride = row_strides(params.out, varlen);
  c.lse = static_cast<float*>(params.softmax_lse.data);
  c.rng_state = params.rng_state;
  c.workspace = params.workspace;
  c.workspace_size = params.workspace_size;
  c.backend = Backend(params.backend);
  *call = c;
  return Status::Ok();
}

Status validate_bwd(const flashattn_bwd_params& params, bool varlen, Target target, BwdCall* call) {
  BwdCall c;
  FA_TRY(validate_attention(params.attn, varlen, target, &c.problem));
  const flashattn_attention& a = params.attn;
  FA_TRY(check_like(params.out, "out", a.q, "q", target));
  FA_TRY(check_like(params.dout, "dout", a.q, "q", target));
  FA_TRY(check_lse(params.softmax_lse, "softmax_lse", c.problem, target));
  FA_TRY(check_like(params.dq, "dq", a.q, "q", target));
  FA_TRY(check_like(params.dk, "dk", a.k, "k", target));
  FA_TRY(check_like(params.dv, "dv", a.v, "v", target));
  if (params.deterministic != 0 && params.deterministic != 1)
    return invalid("deterministic: must be 0 or 1, got " + std::to_string(params.deterministic));
  if (params.backend < FLASHATTN_BACKEND_AUTO || params.backend > FLASHATTN_BACKEND_SM90)
    return invalid("backend: unknown value " + std::to_string(params.backend));
  if (params.workspace_size > 0 && params.workspace == nullptr)
    return invalid("workspace: null with workspace_size " + std::to_string(params.workspace_size));
  // dq_accum is added to and cleared 16 bytes at a time (bulk reductions, vector stores).
  if (reinterpret_cast<uintptr_t>(params.workspace) % 16 != 0)
    return invalid("workspace: must be 16-byte aligned (cudaMalloc's pointers are)");
  if (target == Target::kDevice) FA_TRY(check_device_pointer(params.workspace, "workspace"));
  c.out = params.out.data;
  c.dout = params.dout.data;
  c.out_stride = row_strides(params.out, varlen);
  c.dout_stride = row_strides(params.dout, varlen);
  c.lse = static_cast<const float*>(params.softmax_lse.data);
  c.dq = params.dq.data;
  c.dk = params.dk.data;
  c.dv = params.dv.data;
  c.dq_stride = row_strides(params.dq, varlen);
  c.dk_stride = row_strides(params.dk, varlen);
  c.dv_stride = row_strides(params.dv, varlen);
  c.deterministic = params.deterministic == 1;
  c.workspace = params.workspace;
  c.workspace_size = params.workspace_size;
  c.backend = Backend(params.backend);
  *call = c;
  return Status::Ok();
}

}  // namespace flashattn
