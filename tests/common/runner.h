// Runs one problem through the public API on the device: poisoned outputs in, host doubles out.
#pragma once

#include "common/device.h"

namespace flashattn::test {

struct DeviceRun {
  Status fwd_status, bwd_status;
  std::vector<double> out, lse, dq, dk, dv;
  HostTensor out_raw, lse_raw;
};

inline std::vector<int64_t> lse_shape(const HostProblem& hp) {
  return hp.c.varlen() ? std::vector<int64_t>{hp.c.nheads, hp.q.shape[0]}
                       : std::vector<int64_t>{hp.c.batch, hp.c.nheads, hp.c.seqlen_q};
}

// Forward, then (when dout is given) backward, with the given backend.
inline DeviceRun run_on_device(const HostProblem& hp, Backend backend, const HostTensor* dout = nullptr,
                               bool deterministic = false, cudaStream_t stream = nullptr) {
  DeviceRun r;
  DeviceProblem dp(hp);
  DeviceTensor out = DeviceTensor::poisoned(hp.q.dtype, hp.q.shape);
  DeviceTensor lse = DeviceTensor::poisoned(FLASHATTN_FLOAT32, lse_shape(hp));
  FwdParams f;
  f.attn = dp.attn;
  f.out = out.view();
  f.softmax_lse = lse.view();
  f.backend = int32_t(backend);
  const bool varlen = hp.c.varlen();
  r.fwd_status = varlen ? varlen_fwd(f, stream) : fwd(f, stream);
  if (!r.fwd_status.ok()) return r;
  cudaStreamSynchronize(stream);
  r.out_raw = out.download();
  r.lse_raw = lse.download();
  r.out = r.out_raw.to_double();
  r.lse = r.lse_raw.to_double();
  if (!dout) return r;
  DeviceTensor d_dout(*dout);
  DeviceTensor dq = DeviceTensor::poisoned(hp.q.dtype, hp.q.shape);
  DeviceTensor dk = DeviceTensor::poisoned(hp.k.dtype, hp.k.shape);
  DeviceTensor dv = DeviceTensor::poisoned(hp.v.dtype, hp.v.shape);
  BwdParams b;
  b.attn = dp.attn;
  b.out = out.view();
  b.softmax_lse = lse.view();
  b.dout = d_dout.view();
  b.dq = dq.view();
  b.dk = dk.view();
  b.dv = dv.view();
  b.deterministic = deterministic;
  b.backend = int32_t(backend);
  size_t ws_bytes = 0;
  r.bwd_status = bwd_workspace_size(b, &ws_bytes);
  if (!r.bwd_status.ok()) return r;
  DeviceBuffer ws(ws_bytes);
  b.workspace = ws.ptr;
  b.workspace_size = ws_bytes;
  r.bwd_status = varlen ? varlen_bwd(b, stream) : bwd(b, stream);
  if (!r.bwd_status.ok()) return r;
  cudaStreamSynchronize(stream);
  r.dq = dq.download().to_double();
  r.dk = dk.download().to_double();
  r.dv = dv.download().to_double();
  return r;
}

}  // namespace flashattn::test
