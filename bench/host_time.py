"""Where the host time of one small attention call goes: flashattn's public calls and each Python
layer under them, on a tiny shape, beside SDPA's cuDNN and FlashAttention-2 calls on the same tensors.

    python3 bench/host_time.py [--calls 100] [--json OUT] [--trace DIR]

Two columns a row, microseconds a call:
- host: the mean of `calls` calls queued behind a ~100 ms sleep kernel, so the GPU runs none of them
  while the clock runs (the host's own time; the median of 5 rounds);
- queued: the mean of 2000 calls between two synchronizations (flashattn.bench.host_us, the grid's
  "host_us_per_call"), which is the GPU's time instead wherever the GPU is the slower.
--trace DIR: instead of the rows, 20 forward + backward steps of ours and of SDPA's cuDNN under
torch.profiler (CPU and CUDA), each written as a Chrome trace into DIR, with the ops of most self CPU
time printed.
Rows on flashattn's internals (`_ops`, `_C`) print "n/a" where the installed package's internals
differ (an older build, for an A/B in one run).
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

import flashattn
from flashattn import _ops
from flashattn.bench import host_us

_SLEEP_CYCLES = 200_000_000  # ~100 ms at the H100/H200 boost clock


def host_only_us(fn, calls, rounds=5):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    means = []
    for _ in range(rounds):
        torch.cuda._sleep(_SLEEP_CYCLES)
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - t) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(means)


# autograd.Functions that do nothing but allocate their output (and pass the gradient through): what
# apply() and the autograd engine cost a Python Function, by how its arguments come.
class _Apply17(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, *rest):
        return q.new_empty(q.shape)

    @staticmethod
    def backward(ctx, g):
        return (g, g, g) + (None,) * 14


class _Apply4(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, rest):
        return q.new_empty(q.shape)

    @staticmethod
    def backward(ctx, g):
        return g, g, g, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--json", default=None)
    ap.add_argument("--trace", default=None)
    args = ap.parse_args()

    b, s, h, d = 1, 128, 2, 128
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dev = q.device
    g = torch.randn_like(q)
    scale = 1.0 / math.sqrt(d)
    # _fwd's arguments after q, k, v: no varlen, no ALiBi, no dropout, causal, no window or softcap.
    rest = (None, None, None, 0, 0, None, None, 0.0, scale, True, -1, -1, 0.0, False)
    rows = {}

    def row(name, fn):
        try:
            fn()
        except (AttributeError, TypeError) as e:  # another build's internals
            print(f"      n/a             {name} ({type(e).__name__})", flush=True)
            return
        rows[name] = {"host": round(host_only_us(fn, args.calls), 2), "queued": round(host_us(fn, 2000), 2)}
        print(f"{rows[name]['host']:9.2f} {rows[name]['queued']:9.2f} us  {name}", flush=True)

    def train_step(f):
        def step():
            f().backward(g)
        return step

    if args.trace:
        os.makedirs(args.trace, exist_ok=True)

        def trace(name, step):
            # Host time a step by how many steps queue behind the sleep: it grows with the count
            # where the launch queue fills before the sleep ends (the GPU then paces the host).
            print(f"== {name}: host us a step, 10 / 30 / 100 steps behind the sleep: " +
                  " / ".join(f"{host_only_us(step, n):.1f}" for n in (10, 30, 100)), flush=True)
            for _ in range(20):
                step()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    step()
                torch.cuda.synchronize()
            prof.export_chrome_trace(os.path.join(args.trace, f"{name}-fwd-bwd.json"))
            print(f"== {name}: 20 forward + backward steps")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))

        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        trace("flashattn", train_step(lambda: flashattn.flash_attn_func(q, k, v, causal=True)))
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            trace("cudnn", train_step(lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)))
        trace("no-op Function", train_step(lambda: _Apply4.apply(q, k, v, rest)))
        return 0
    print("     host    queued")
    row("flash_attn_func, inputs with grad", lambda: flashattn.flash_attn_func(q, k, v, causal=True))
    with torch.no_grad():
        row("flash_attn_func, no grad", lambda: flashattn.flash_attn_func(q, k, v, causal=True))
    row("flash_attn_func forward + backward", train_step(lambda: flashattn.flash_attn_func(q, k, v, causal=True)))
    row("_ops.attention (autograd.Function), inputs with grad", lambda: _ops.attention(q, k, v, *rest))
    with torch.no_grad():
        row("_ops._fwd (no autograd)", lambda: _ops._fwd(q, k, v, *rest))
        out, lse = _ops._fwd(q, k, v, *rest)
        row("_ops._bwd (workspace size, allocations, launches)", lambda: _ops._bwd(g, q, k, v, out, lse, *rest))
    row("autograd.Function.apply, 17 arguments (forward: one empty tensor)",
        lambda: _Apply17.apply(q, k, v, *rest))
    row("autograd.Function.apply, 4 arguments (forward: one empty tensor)", lambda: _Apply4.apply(q, k, v, rest))
    row("the same, forward + backward (backward: the gradient passed on)",
        train_step(lambda: _Apply4.apply(q, k, v, rest)))
    row("torch.empty x 2 (out, lse)", lambda: (torch.empty(q.shape, dtype=q.dtype, device=dev),
                                              torch.empty((b, h, s), dtype=torch.float32, device=dev)))
    row("q.new_empty x 2 (out, lse)", lambda: (q.new_empty(q.shape), q.new_empty((b, h, s), dtype=torch.float32)))

    def device_guard():
        with torch.cuda.device(dev):
            pass

    row("with torch.cuda.device(q.device)", device_guard)
    row("torch.cuda.current_stream(device).cuda_stream", lambda: torch.cuda.current_stream(dev).cuda_stream)
    row("torch._C._cuda_getCurrentRawStream(index)", lambda: torch._C._cuda_getCurrentRawStream(0))
    row("_ops._attn (the argument tuple)",
        lambda: _ops._attn(q, k, v, None, None, None, 0, 0, None, None, 0.0, scale, True, -1, -1, 0.0))
    # The C++ call alone, on arguments built once (this build's _C signature).
    with torch.no_grad():
        attn = _ops._attn(q, k, v, None, None, None, 0, 0, None, None, 0.0, scale, True, -1, -1, 0.0)
        out_desc, lse_desc = _ops._desc(out, "out"), _ops._desc(lse, "softmax_lse")
        stream = torch.cuda.current_stream(dev).cuda_stream
        row("_C.fwd on prebuilt arguments (validation, tensor maps, launch)",
            lambda: _ops._C.fwd(attn, out_desc, lse_desc, 0, 0, stream, _ops._backend))
        dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))
        bwd_args = (attn, out_desc, lse_desc, _ops._desc(g, "dout"), _ops._desc(dq, "dq"), _ops._desc(dk, "dk"),
                    _ops._desc(dv, "dv"), False)
        held = []

        def workspace(nbytes):  # allocated by the first call, then the same buffer
            if not held:
                held.append(torch.empty(max(nbytes, 1), dtype=torch.uint8, device=dev))
            return held[0].data_ptr()

        try:  # _C.bwd since session 40: a callable gives the workspace
            _ops._C.bwd(*bwd_args, workspace, 0, stream, _ops._backend)
            row("_C.bwd on prebuilt arguments", lambda: _ops._C.bwd(*bwd_args, workspace, 0, stream, _ops._backend))
        except TypeError:  # an older build (an A/B in one run) sizes the workspace in a call of its own
            try:
                nbytes = _ops._C.bwd_workspace_size(*bwd_args, 0, _ops._backend)
                buf = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=dev)
                row("_C.bwd on prebuilt arguments", lambda: _ops._C.bwd(*bwd_args, buf.data_ptr(), nbytes, 0, stream,
                                                                        _ops._backend))
            except TypeError as e:
                print(f"      n/a             _C.bwd on prebuilt arguments ({type(e).__name__})")
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("torch-fa2", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel([backend]):
                row(f"SDPA {name}, inputs with grad", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True))
                with torch.no_grad():
                    row(f"SDPA {name}, no grad", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True))
                row(f"SDPA {name} forward + backward",
                    train_step(lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)))
        except RuntimeError as e:  # the backend does not take this shape here
            print(f"SDPA {name}: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "flashattn_commit": getattr(_ops._C, "__commit__", ""), "calls": args.calls,
                       "shape": [b, s, h, d], "us_per_call": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
