// flashattn._C: the library's C API for Python, without libtorch. Tensors cross as plain descriptors
// (data pointer, dtype code, shape, strides in elements) and the caller's CUDA stream as an integer,
// so one build serves every torch version (and anything else that can hand over device pointers).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <cuda_runtime_api.h>

#include "flashattn/flashattn_c.h"

namespace nb = nanobind;

namespace {

// (data_ptr, dtype, shape, strides)
using Desc = std::tuple<uintptr_t, int, std::vector<int64_t>, std::vector<int64_t>>;

flashattn_tensor tensor(const std::optional<Desc>& d, const char* name) {
  flashattn_tensor t{};
  if (!d) return t;
  const auto& [ptr, dtype, shape, stride] = *d;
  if (shape.size() > FLASHATTN_MAX_RANK || shape.size() != stride.size())
    throw nb::value_error((std::string(name) + ": rank " + std::to_string(shape.size()) +
                           " is not supported (at most 4 dims)").c_str());
  t.data = reinterpret_cast<void*>(ptr);
  t.dtype = dtype;
  t.rank = int32_t(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    t.shape[i] = shape[i];
    t.stride[i] = stride[i];
  }
  return t;
}

// Turns a failed status into the Python exception that fits it, carrying the library's message
// (which names the argument): bad dtype -> TypeError, other bad input -> ValueError, a call no
// kernel covers -> NotImplementedError, CUDA failures -> RuntimeError.
void check(flashattn_status s) {
  if (s == FLASHATTN_OK) return;
  const std::string msg = flashattn_last_error();
  switch (s) {
    case FLASHATTN_INVALID_ARGUMENT:
      if (msg.find("dtype") != std::string::npos) throw nb::type_error(msg.c_str());
      throw nb::value_error(msg.c_str());
    case FLASHATTN_NOT_SUPPORTED:
      PyErr_SetString(PyExc_NotImplementedError, msg.c_str());
      throw nb::python_error();
    default: throw std::runtime_error(msg);
  }
}

// The attention description, in the order _ops._attn builds it: q, k, v, cu_seqlens_q, cu_seqlens_k,
// seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, philox (the device address of int64 (seed,
// offset), or 0), dropout_p, softmax_scale, softcap, is_causal, window_size_left, window_size_right.
// A tuple converts field by field without the key lookups a dict takes.
using OptDesc = std::optional<Desc>;
using Attn = std::tuple<OptDesc, OptDesc, OptDesc, OptDesc, OptDesc, OptDesc, int32_t, int32_t, OptDesc, uintptr_t,
                        float, float, float, bool, int32_t, int32_t>;

flashattn_attention attention(const Attn& a) {
  const auto& [q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, philox,
               dropout_p, softmax_scale, softcap, is_causal, window_left, window_right] = a;
  flashattn_attention at{};
  at.q = tensor(q, "q");
  at.k = tensor(k, "k");
  at.v = tensor(v, "v");
  at.cu_seqlens_q = tensor(cu_seqlens_q, "cu_seqlens_q");
  at.cu_seqlens_k = tensor(cu_seqlens_k, "cu_seqlens_k");
  at.seqused_k = tensor(seqused_k, "seqused_k");
  at.max_seqlen_q = max_seqlen_q;
  at.max_seqlen_k = max_seqlen_k;
  at.alibi_slopes = tensor(alibi_slopes, "alibi_slopes");
  at.softmax_scale = softmax_scale;
  at.softcap = softcap;
  at.dropout_p = dropout_p;
  if (philox) {
    at.philox_seed_ptr = reinterpret_cast<const uint64_t*>(philox);
    at.philox_offset_ptr = reinterpret_cast<const uint64_t*>(philox + 8);
  }
  at.is_causal = is_causal;
  at.window_size_left = window_left;
  at.window_size_right = window_right;
  return at;
}

// Makes `device` current for one call and restores the caller's afterwards, where they differ (the
// C API runs on the current device). A negative device (a CPU tensor's) switches nothing: the
// library's pointer checks then name the argument.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (device >= 0 && cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) {
      if (cudaSetDevice(device) != cudaSuccess) {
        cudaGetLastError();
        throw std::runtime_error("flashattn: cannot make CUDA device " + std::to_string(device) + " current");
      }
      switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool switched_ = false;
};

bool is_varlen(const flashattn_attention& a) { return a.cu_seqlens_q.rank != 0; }

void fwd(const Attn& attn, const Desc& out, const Desc& lse, uintptr_t rng_state, int device, uintptr_t stream,
         int backend) {
  flashattn_fwd_params p;
  flashattn_fwd_params_init(&p);
  p.attn = attention(attn);
  p.out = tensor(out, "out");
  p.softmax_lse = tensor(lse, "softmax_lse");
  p.rng_state = reinterpret_cast<uint64_t*>(rng_state);
  p.backend = backend;
  void* s = reinterpret_cast<void*>(stream);
  flashattn_status st;
  {
    nb::gil_scoped_release release;
    DeviceGuard guard(device);
    st = is_varlen(p.attn) ? flashattn_varlen_fwd(&p, s) : flashattn_fwd(&p, s);
  }
  check(st);
}

flashattn_bwd_params bwd_params(const Attn& attn, const Desc& out, const Desc& lse, const Desc& dout,
                                const Desc& dq, const Desc& dk, const Desc& dv, bool deterministic, int backend) {
  flashattn_bwd_params p;
  flashattn_bwd_params_init(&p);
  p.attn = attention(attn);
  p.out = tensor(out, "out");
  p.softmax_lse = tensor(lse, "softmax_lse");
  p.dout = tensor(dout, "dout");
  p.dq = tensor(dq, "dq");
  p.dk = tensor(dk, "dk");
  p.dv = tensor(dv, "dv");
  p.deterministic = deterministic;
  p.backend = backend;
  return p;
}

// One Python call for the backward: sizes the workspace (flashattn_bwd_workspace_size, which
// validates all but the pointers; the launch checks those), asks `workspace(bytes)` for the device
// address of at least that many bytes (the caller allocates it on q's device, stream-ordered, and
// keeps it until the kernels are done), then launches.
// The arguments convert once (session 40: a sizing call of its own converted them twice).
void bwd(const Attn& attn, const Desc& out, const Desc& lse, const Desc& dout, const Desc& dq, const Desc& dk,
         const Desc& dv, bool deterministic, const nb::callable& workspace, int device, uintptr_t stream,
         int backend) {
  flashattn_bwd_params p = bwd_params(attn, out, lse, dout, dq, dk, dv, deterministic, backend);
  DeviceGuard guard(device);  // the pointer checks compare with the current device
  check(flashattn_bwd_workspace_size(&p, &p.workspace_size));
  p.workspace = reinterpret_cast<void*>(nb::cast<uintptr_t>(workspace(p.workspace_size)));
  void* s = reinterpret_cast<void*>(stream);
  flashattn_status st;
  {
    nb::gil_scoped_release release;
    st = is_varlen(p.attn) ? flashattn_varlen_bwd(&p, s) : flashattn_bwd(&p, s);
  }
  check(st);
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "flashattn's C API (tensors as (data_ptr, dtype, shape, strides) descriptors; no libtorch)";
  m.attr("FLOAT16") = int(FLASHATTN_FLOAT16);
  m.attr("BFLOAT16") = int(FLASHATTN_BFLOAT16);
  m.attr("FLOAT32") = int(FLASHATTN_FLOAT32);
  m.attr("INT32") = int(FLASHATTN_INT32);
  m.attr("BACKEND_AUTO") = int(FLASHATTN_BACKEND_AUTO);
  m.attr("BACKEND_REFERENCE") = int(FLASHATTN_BACKEND_REFERENCE);
  m.attr("BACKEND_SM80") = int(FLASHATTN_BACKEND_SM80);
  m.attr("BACKEND_SM90") = int(FLASHATTN_BACKEND_SM90);
  m.attr("__version__") = std::to_string(FLASHATTN_VERSION_MAJOR) + "." + std::to_string(FLASHATTN_VERSION_MINOR) +
                          "." + std::to_string(FLASHATTN_VERSION_PATCH);
#ifdef FLASHATTN_GIT_COMMIT
  m.attr("__commit__") = FLASHATTN_GIT_COMMIT;
#else
  m.attr("__commit__") = "";
#endif
#ifdef FLASHATTN_SOURCE_SHA256
  m.attr("__source_sha256__") = FLASHATTN_SOURCE_SHA256;  // of src/ and include/ (CMakeLists.txt)
#else
  m.attr("__source_sha256__") = "";
#endif
  m.def("fwd", &fwd, nb::arg("attn"), nb::arg("out"), nb::arg("softmax_lse"), nb::arg("rng_state"),
        nb::arg("device"), nb::arg("stream"), nb::arg("backend"));
  m.def("bwd", &bwd, nb::arg("attn"), nb::arg("out"), nb::arg("softmax_lse"), nb::arg("dout"), nb::arg("dq"),
        nb::arg("dk"), nb::arg("dv"), nb::arg("deterministic"), nb::arg("workspace"), nb::arg("device"),
        nb::arg("stream"), nb::arg("backend"));
}
