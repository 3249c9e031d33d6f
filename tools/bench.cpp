// flashattn_bench: times our kernels on the standard grid of shared/BENCH.md (bf16,
// batch * seqlen = 16384, nheads * d = 2048) and writes the results JSON. The peers (torch SDPA
// backends) are measured in the same process by the Python benchmark; this tool covers the C++ side.
//   flashattn_bench [--out FILE] [--backend auto|reference|sm80|sm90] [--seqlens 512,1024,...]
//                   [--headdims 64,128,256] [--pass fwd|bwd|both] [--causal 0|1|both] [--reps N]
//                   [--deterministic 0|1] [--varlen 0|1] [--dropout P] [--softcap C] [--alibi 0|1] [--queued 0|1]
//                   [--batch N]
//   --varlen 1: the same shapes packed as varlen (batch sequences of seqlen each, cu_seqlens on the
//   device and on the host) through varlen_fwd / varlen_bwd.
//   --dropout P, --softcap C, --alibi 1: time the kernels' dropout, softcap or ALiBi variants (the JSON
//   rows say so; ALiBi with the usual slopes 2^(-8 i / nheads), i = 1..nheads).
//   --batch N: N sequences at every length instead of the grid's 16384 / seqlen (a batch too small to
//   fill the card, as in prefill of one sequence).
//   --queued 1: the timed calls are queued back to back, each between its own events, as the Python
//   benchmark times them (and as training runs them); by default the host waits for each call, so
//   each starts on an idle GPU.
// Each point is timed as the Python benchmark times it (flashattn.bench.time_ms): calls for at least
// 50 ms of GPU time first, so the clock has come down from the idle card's boost to where the 700 W
// cap holds it under load, then the median of at least --reps calls and at least 100 ms. Thirty calls
// with no settling (this tool before session 36) timed a d128 2k backward at the boost clock: 533-537
// TFLOP/s at ~1980 MHz against 487-489 at 1755 MHz over 400 calls, on one H200 (bench/NOTES.md).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "flashattn/flashattn.h"
#include "reference/host_dtype.h"  // float_to_bf16

namespace {

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

// bf16 bits of about-normal values (mean 0, variance 1: the sum of four uniforms, rescaled), a
// splitmix64 stream per seed. Random inputs like the Python benchmark's torch.randn: at the
// power-capped points the tensor cores draw more for random bits than for a regular pattern (a
// fixed pattern once timed the d256 forward above the same card's GEMM rate).
std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float sum = float(z & 0xffff) + float((z >> 16) & 0xffff) + float((z >> 32) & 0xffff) + float(z >> 48);
    v[i] = flashattn::float_to_bf16((sum / 65536.f - 2.f) * 1.7320508f);  // Irwin-Hall(4): variance 1/3, times sqrt(3)
  }
  return v;
}

struct Row {
  std::string pass, note;
  int d, batch, seqlen, nheads;
  bool causal;
  double ms = 0, tflops = 0;
};

// Median milliseconds of `call`, timed as the header says.
template <typename Call>
float time_ms(Call&& call, int reps, bool queued) {
  constexpr float kSettleMs = 50.f, kMinTotalMs = 100.f;
  cudaEvent_t begin, end;
  cudaEventCreate(&begin);
  cudaEventCreate(&end);
  float elapsed = 0.f, per_call = 1.f;
  for (int calls = 1; elapsed < kSettleMs; calls *= 2) {
    cudaEventRecord(begin);
    for (int i = 0; i < calls; ++i) call();
    cudaEventRecord(end);
    cudaEventSynchronize(end);
    cudaEventElapsedTime(&elapsed, begin, end);
    per_call = elapsed / calls;
  }
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  reps = std::max(reps, std::min(2000, int(kMinTotalMs / std::max(per_call, 1e-3f))));
  std::vector<float> times(reps);
  std::vector<cudaEvent_t> starts(reps), stops(reps);
  for (int i = 0; i < reps; ++i) {
    cudaEventCreate(&starts[i]);
    cudaEventCreate(&stops[i]);
  }
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(starts[i]);
    call();
    cudaEventRecord(stops[i]);
    if (!queued) cudaEventSynchronize(stops[i]);
  }
  for (int i = 0; i < reps; ++i) {
    cudaEventSynchronize(stops[i]);
    cudaEventElapsedTime(&times[i], starts[i], stops[i]);
    cudaEventDestroy(starts[i]);
    cudaEventDestroy(stops[i]);
  }
  std::nth_element(times.begin(), times.begin() + reps / 2, times.end());
  return times[reps / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "bench.json", backend_name = "auto";
  std::vector<int> seqlens = {512, 1024, 2048, 4096, 8192, 16384}, headdims = {64, 128, 256};
  std::string passes = "both";
  std::vector<int> causals = {0, 1};  // --causal 0, 1, "0,1" or both
  int reps = 30, deterministic = 0, varlen = 0, queued = 0, batch_override = 0;
  float dropout = 0.f, softcap = 0.f;
  int alibi = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--out")) out_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--backend")) backend_name = argv[i + 1];
    else if (!std::strcmp(argv[i], "--seqlens")) seqlens = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--headdims")) headdims = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--pass")) passes = argv[i + 1];
    else if (!std::strcmp(argv[i], "--causal"))
      causals = std::strcmp(argv[i + 1], "both") ? parse_list(argv[i + 1]) : std::vector<int>{0, 1};
    else if (!std::strcmp(argv[i], "--deterministic")) deterministic = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--varlen")) varlen = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--queued")) queued = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dropout")) dropout = float(std::atof(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--softcap")) softcap = float(std::atof(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--alibi")) alibi = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch_override = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "flashattn_bench: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (passes != "fwd" && passes != "bwd" && passes != "both") {
    // An unknown pass timed nothing and said nothing (session 41's "--pass fwd,bwd").
    std::fprintf(stderr, "flashattn_bench: --pass must be fwd, bwd or both, not %s\n", passes.c_str());
    return 2;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "flashattn_bench: no CUDA device here; the benchmark needs a GPU (H100 for the "
                         "published numbers). Nothing was measured.\n");
    return 2;
  }
  const flashattn_backend backend = backend_name == "reference" ? FLASHATTN_BACKEND_REFERENCE
                                    : backend_name == "sm80"    ? FLASHATTN_BACKEND_SM80
                                    : backend_name == "sm90"    ? FLASHATTN_BACKEND_SM90
                                                                : FLASHATTN_BACKEND_AUTO;
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::vector<Row> rows;
  std::vector<uint16_t> inputs[4];  // host copies of q, k, v, dout, made once (n is the same for every shape)
  for (int d : headdims)
    for (int causal = 0; causal < 2; ++causal)
      for (int s : seqlens) {
        if (std::find(causals.begin(), causals.end(), causal) == causals.end()) continue;
        const int batch = batch_override > 0 ? batch_override : std::max(1, 16384 / s), h = 2048 / d;
        const size_t n = size_t(batch) * s * h * d;
        void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *lse;
        cudaMalloc(&q, n * 2), cudaMalloc(&k, n * 2), cudaMalloc(&v, n * 2), cudaMalloc(&o, n * 2);
        cudaMalloc(&dout, n * 2), cudaMalloc(&dq, n * 2), cudaMalloc(&dk, n * 2), cudaMalloc(&dv, n * 2);
        cudaMalloc(&lse, size_t(batch) * h * s * 4);
        // Inputs: random, a different stream for q, k, v and dout.
        void* const buffers[4] = {q, k, v, dout};
        for (int t = 0; t < 4; ++t) {
          if (inputs[t].size() != n) inputs[t] = random_bf16(n, t + 1);
          cudaMemcpy(buffers[t], inputs[t].data(), n * 2, cudaMemcpyHostToDevice);
        }
        // A (batch, seqlen, heads, d) tensor, or its packed (batch * seqlen, heads, d) view for varlen.
        auto bshd = [&](void* data) {
          return varlen ? flashattn::make_tensor(data, flashattn::DType::kBFloat16, {int64_t(batch) * s, h, d})
                        : flashattn::make_tensor(data, flashattn::DType::kBFloat16, {batch, s, h, d});
        };
        std::vector<int32_t> cu_host;  // varlen: sequence i starts at row i * s (read by every call)
        void* cu = nullptr;
        void* slopes = nullptr;
        flashattn::FwdParams f;
        f.attn.q = bshd(q);
        f.attn.k = bshd(k);
        f.attn.v = bshd(v);
        f.attn.is_causal = causal;
        f.attn.dropout_p = dropout;
        f.attn.softcap = softcap;
        if (alibi) {
          std::vector<float> slopes_host(h);
          for (int i = 0; i < h; ++i) slopes_host[i] = std::exp2(-8.f * float(i + 1) / float(h));
          cudaMalloc(&slopes, h * 4);
          cudaMemcpy(slopes, slopes_host.data(), h * 4, cudaMemcpyHostToDevice);
          f.attn.alibi_slopes = flashattn::make_tensor(slopes, flashattn::DType::kFloat32, {h});
        }
        f.out = bshd(o);
        f.softmax_lse = varlen ? flashattn::make_tensor(lse, flashattn::DType::kFloat32, {h, int64_t(batch) * s})
                               : flashattn::make_tensor(lse, flashattn::DType::kFloat32, {batch, h, s});
        if (varlen) {
          for (int i = 0; i <= batch; ++i) cu_host.push_back(i * s);
          cudaMalloc(&cu, cu_host.size() * 4);
          cudaMemcpy(cu, cu_host.data(), cu_host.size() * 4, cudaMemcpyHostToDevice);
          f.attn.cu_seqlens_q = f.attn.cu_seqlens_k = flashattn::make_tensor(cu, flashattn::DType::kInt32, {batch + 1});
          f.attn.cu_seqlens_q_host = f.attn.cu_seqlens_k_host = cu_host.data();
          f.attn.max_seqlen_q = f.attn.max_seqlen_k = s;
        }
        f.backend = backend;
        flashattn::BwdParams b;
        b.attn = f.attn;
        b.out = f.out;
        b.softmax_lse = f.softmax_lse;
        b.dout = bshd(dout);
        b.dq = bshd(dq);
        b.dk = bshd(dk);
        b.dv = bshd(dv);
        b.backend = backend;
        b.deterministic = deterministic;
        size_t ws = 0;
        void* workspace = nullptr;
        if (flashattn::bwd_workspace_size(b, &ws).ok() && ws) cudaMalloc(&workspace, ws);
        b.workspace = workspace;
        b.workspace_size = ws;
        const double flops = 4.0 * batch * h * double(s) * s * d / (causal ? 2 : 1);
        // The backward reads the forward's out and lse: run it once when only the backward is timed
        // (the buffers held whatever the allocator left there before).
        auto run_fwd = [&] { return varlen ? flashattn::varlen_fwd(f, nullptr) : flashattn::fwd(f, nullptr); };
        auto run_bwd = [&] { return varlen ? flashattn::varlen_bwd(b, nullptr) : flashattn::bwd(b, nullptr); };
        if (passes == "bwd" && !run_fwd().ok()) std::printf("bwd d=%3d: the forward failed\n", d);
        for (int pass = 0; pass < 2; ++pass) {
          if (passes != "both" && passes != (pass ? "bwd" : "fwd")) continue;
          Row r{pass ? "bwd" : "fwd", "", d, batch, s, h, bool(causal)};
          auto call = [&] { return pass ? run_bwd() : run_fwd(); };
          flashattn::Status st = call();
          if (!st.ok()) {
            r.note = st.message;
          } else {
            r.ms = time_ms(call, reps, queued);
            r.tflops = (pass ? 2.5 : 1.0) * flops / (r.ms * 1e9);
          }
          rows.push_back(r);
          std::printf("%s d=%3d causal=%d seqlen=%5d  %s\n", r.pass.c_str(), d, causal, s,
                      r.note.empty() ? (std::to_string(r.tflops) + " TFLOP/s").c_str() : r.note.c_str());
          std::fflush(stdout);
        }
        for (void* p : {q, k, v, o, dout, dq, dk, dv, lse, workspace, cu, slopes}) cudaFree(p);
      }
  FILE* fp = std::fopen(out_path.c_str(), "w");
  if (!fp) return 1;
  std::fprintf(fp, "{\"card\": \"%s\", \"rows\": [\n", prop.name);
  std::string variant;  // the feature variant timed, in every row
  if (dropout > 0.f) variant += ", \"dropout\": " + std::to_string(dropout);
  if (softcap > 0.f) variant += ", \"softcap\": " + std::to_string(softcap);
  if (alibi) variant += ", \"alibi\": true";
  if (queued) variant += ", \"queued\": true";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(fp,
                 "  {\"impl\": \"flashattn\", \"kernel\": \"%s\", \"pass\": \"%s\", \"dtype\": \"bf16\", \"d\": %d, "
                 "\"causal\": %s, \"batch\": %d, \"seqlen\": %d, \"nheads\": %d, \"nheads_k\": %d, \"ms\": %.4f, "
                 "\"tflops\": %.1f%s%s%s%s%s}%s\n",
                 backend_name.c_str(), r.pass.c_str(), r.d, r.causal ? "true" : "false", r.batch, r.seqlen, r.nheads,
                 r.nheads, r.ms, r.tflops, varlen ? ", \"varlen\": true" : "", variant.c_str(),
                 r.note.empty() ? "" : ", \"note\": \"", r.note.empty() ? "" : "not supported",
                 r.note.empty() ? "" : "\"", i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(fp, "]}\n");
  std::fclose(fp);
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}
