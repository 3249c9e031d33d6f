/* flashattn C ABI: exact fused attention (FlashAttention-2 semantics).
 *
 * Every struct here is plain data with the same layout from C and C++; the C++ API in
 * flashattn.h derives from these structs, so both languages fill the same fields.
 *
 * Conventions (the same as the flash_attn package):
 *   q [batch, seqlen_q, nheads, head_dim], k/v [batch, seqlen_k, nheads_k, head_dim];
 *   varlen: q [total_q, nheads, head_dim], k/v [total_k, nheads_k, head_dim], cu_seqlens int32 [batch+1].
 *   The last dim is contiguous; every other stride is free (views of a packed qkv are fine).
 *   softmax_lse is fp32 [batch, nheads, seqlen_q] (varlen: [nheads, total_q]), natural log; a row that
 *   sees no key has out = 0 and lse = +inf.
 *   Causal is aligned bottom-right: query i sees keys j <= i + seqlen_k - seqlen_q.
 *   window (left, right), -1 = unbounded: keys in [i + sk - sq - left, i + sk - sq + right].
 *   ALiBi adds -slope * |i + sk - sq - j|; softcap c > 0 maps s to c * tanh(s / c) before masking.
 *
 * Errors: every entry point returns a flashattn_status; flashattn_last_error() gives the message of
 * the calling thread's last failure, naming the argument and the bad value. */
#ifndef FLASHATTN_FLASHATTN_C_H_
#define FLASHATTN_FLASHATTN_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLASHATTN_VERSION_MAJOR 0
#define FLASHATTN_VERSION_MINOR 1
#define FLASHATTN_VERSION_PATCH 0
#define FLASHATTN_MAX_RANK 4

typedef enum flashattn_dtype {
  FLASHATTN_FLOAT16 = 0,
  FLASHATTN_BFLOAT16 = 1,
  FLASHATTN_FLOAT32 = 2,
  FLASHATTN_FLOAT64 = 3, /* host reference only */
  FLASHATTN_INT32 = 4,
} flashattn_dtype;

typedef enum flashattn_status {
  FLASHATTN_OK = 0,
  FLASHATTN_INVALID_ARGUMENT = 1,
  FLASHATTN_NOT_SUPPORTED = 2,
  FLASHATTN_CUDA_ERROR = 3,
} flashattn_status;

/* Which implementation runs a call. AUTO picks the fastest kernel built for the device and
 * returns FLASHATTN_NOT_SUPPORTED (never a slow fallback) when none covers the call.
 * REFERENCE is the simple fp32 GPU attention: slow, exact to fp32, any feature. */
typedef enum flashattn_backend {
  FLASHATTN_BACKEND_AUTO = 0,
  FLASHATTN_BACKEND_REFERENCE = 1,
  FLASHATTN_BACKEND_SM80 = 2,
  FLASHATTN_BACKEND_SM90 = 3,
} flashattn_backend;

/* A strided view of device memory. rank == 0 means "absent" (for optional tensors). */
typedef struct flashattn_tensor {
  void* data;
  int32_t dtype; /* flashattn_dtype */
  int32_t rank;
  int64_t shape[FLASHATTN_MAX_RANK];
  int64_t stride[FLASHATTN_MAX_RANK]; /* in elements */
} flashattn_tensor;

/* What is being attended: shared by the forward and the backward of one call. */
typedef struct flashattn_attention {
  flashattn_tensor q, k, v;
  /* varlen only */
  flashattn_tensor cu_seqlens_q, cu_seqlens_k; /* int32 [batch + 1], device */
  flashattn_tensor seqused_k;                  /* optional int32 [batch], device: keys used per sequence */
  const int32_t* cu_seqlens_q_host;            /* optional host copies: validated when given */
  const int32_t* cu_seqlens_k_host;
  const int32_t* seqused_k_host;
  int32_t max_seqlen_q, max_seqlen_k;
  /* features */
  flashattn_tensor alibi_slopes; /* optional fp32 [nheads] or [batch, nheads] */
  float softmax_scale;           /* 0 selects 1 / sqrt(head_dim) */
  float softcap;                 /* 0 = off */
  float dropout_p;               /* probability of dropping, in [0, 1) */
  uint64_t philox_seed, philox_offset;
  /* optional device pointers read at run time instead of the two values above (graph capture);
   * the offset read is *philox_offset_ptr + philox_offset */
  const uint64_t* philox_seed_ptr;
  const uint64_t* philox_offset_ptr;
  int32_t is_causal;
  int32_t window_size_left, window_size_right; /* -1 = unbounded */
} flashattn_attention;

typedef struct flashattn_fwd_params {
  flashattn_attention attn;
  flashattn_tensor out;         /* like q */
  flashattn_tensor softmax_lse; /* fp32 */
  uint64_t* rng_state;          /* optional device uint64 [2]: the (seed, offset) used, when dropout > 0 */
  void* workspace;              /* caller-given; size from flashattn_fwd_workspace_size */
  size_t workspace_size;
  int32_t backend; /* flashattn_backend */
} flashattn_fwd_params;

typedef struct flashattn_bwd_params {
  flashattn_attention attn; /* as in the forward being differentiated (same seed and offset) */
  flashattn_tensor out, softmax_lse; /* from that forward */
  flashattn_tensor dout;             /* like q */
  flashattn_tensor dq, dk, dv;       /* like q, k, v */
  int32_t deterministic;             /* reruns are bitwise equal */
  void* workspace;                   /* caller-given, 16-byte aligned; size from flashattn_bwd_workspace_size */
  size_t workspace_size;
  int32_t backend;
} flashattn_bwd_params;

/* Defaults: every tensor absent, window (-1, -1), scale 0 (= 1/sqrt(d)), backend AUTO. */
void flashattn_fwd_params_init(flashattn_fwd_params* params);
void flashattn_bwd_params_init(flashattn_bwd_params* params);

/* stream is a cudaStream_t (NULL = the default stream). None of these synchronize. */
flashattn_status flashattn_fwd(const flashattn_fwd_params* params, void* stream);
flashattn_status flashattn_varlen_fwd(const flashattn_fwd_params* params, void* stream);
flashattn_status flashattn_bwd(const flashattn_bwd_params* params, void* stream);
flashattn_status flashattn_varlen_bwd(const flashattn_bwd_params* params, void* stream);

/* Bytes of workspace a call needs (validated like the call itself, except that pointers are not
 * asked where they live: the call does; varlen chosen by whether cu_seqlens_q is present). */
flashattn_status flashattn_fwd_workspace_size(const flashattn_fwd_params* params, size_t* bytes);
flashattn_status flashattn_bwd_workspace_size(const flashattn_bwd_params* params, size_t* bytes);

/* The message of this thread's last failed call ("" after a success). */
const char* flashattn_last_error(void);
const char* flashattn_status_name(flashattn_status status);

#ifdef __cplusplus
} /* extern "C" */
#endif
#endif /* FLASHATTN_FLASHATTN_C_H_ */
