"""One attention point (or the bf16 GEMM 8192^3 the grid measures beside it) in a loop for a few
seconds, for scripts/clocks: the SM clock and board power that an implementation runs at on a
power-capped card (bench/NOTES.md, sessions 15 and 30).

    python3 bench/attn_loop.py --impl flashattn|cudnn|torch-fa2|gemm [--pass fwd|bwd] [--d 128]
                               [--seqlen 8192] [--causal] [--seconds 4] [--trace N] [--follow]

The shape is the standard grid's (batch * seqlen = 16384 tokens, nheads * d = 2048; shared/BENCH.md).
Prints the TFLOP/s over the whole loop (CUDA events around it), so it can be read beside the clock.
--trace N: after the loop, N calls under torch.profiler: every GPU operation of a call (kernels,
memsets, copies) with its mean duration, and the call's span on the GPU against the sum of its
operations (what the loop's time holds besides the main kernel). --follow: a one-element fill
kernel after each call, as the next kernel of a training step would come (session 37: removing
autograd's fill of lse's gradient, the kernel that came right after our backward, removed ~24 us of
idle a call; does any kernel after it wait that long?).
"""
import argparse
import json
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flashattn
from flashattn.bench import attention_flops, grid_shape

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "torch-fa2": SDPBackend.FLASH_ATTENTION}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", required=True, choices=["flashattn", *BACKENDS, "gemm"])
    ap.add_argument("--pass", dest="ps", default="fwd", choices=["fwd", "bwd"])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=8192)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--trace", type=int, default=0, metavar="N")
    ap.add_argument("--follow", action="store_true")
    args = ap.parse_args()

    d, s = args.d, args.seqlen
    if args.impl == "gemm":
        x, y = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        forward = lambda: x @ y
        label, flops = "gemm 8192^3 bf16", 2.0 * 8192**3
    else:
        b, h = grid_shape(d, s)
        q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        g = torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16)
        label = f"{args.impl} {args.ps} d={d} seqlen={s} causal={args.causal}"
        flops = attention_flops(args.ps, b, h, s, d, args.causal)
        if args.impl == "flashattn":
            forward = lambda: flashattn.flash_attn_func(q, k, v, causal=args.causal)
        else:
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))

            def forward():
                with sdpa_kernel([BACKENDS[args.impl]]):
                    return F.scaled_dot_product_attention(qt, kt, vt, is_causal=args.causal).transpose(1, 2)
    if args.ps == "fwd" or args.impl == "gemm":
        def call():
            with torch.no_grad():
                forward()
    else:
        o = forward()
        call = lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True)
    if args.follow:
        scratch, bare = torch.empty(1, device="cuda"), call
        call = lambda: (bare(), scratch.zero_())

    for _ in range(5):
        call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    calls, t0 = 0, time.time()
    start.record()
    while time.time() - t0 < args.seconds:
        for _ in range(10):
            call()
        calls += 10
        torch.cuda.synchronize()
    end.record()
    torch.cuda.synchronize()
    if calls:  # --seconds 0: the warm-up calls only (a profiler's launches)
        tflops = calls * flops / (start.elapsed_time(end) * 1e-3) / 1e12
        print(f"{label}: {tflops:.1f} TFLOP/s over {calls} calls")
    if args.trace:
        trace(call, args.trace, label)


def trace(call, n, label):
    """n calls under torch.profiler (queued, as the loop runs them): each GPU operation's mean
    duration a call, and the calls' span on the GPU against the operations' busy time."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            call()
        torch.cuda.synchronize()
    path = os.path.join(tempfile.mkdtemp(), "trace.json")
    prof.export_chrome_trace(path)
    ops = [e for e in json.load(open(path))["traceEvents"]
           if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")]
    ops.sort(key=lambda e: e["ts"])
    if not ops:
        print(f"{label}: trace: no GPU operations recorded")
        return
    span = ops[-1]["ts"] + ops[-1]["dur"] - ops[0]["ts"]
    by_name, alone, busy = {}, {}, 0.0
    for e in ops:
        by_name.setdefault(e["name"], []).append(e["dur"])
    # Between consecutive start/end times the same operations run: the GPU is busy where any does,
    # and an operation adds to the call the time it runs with no other beside it (a programmatic
    # dependent under its primary's tail overlaps it).
    edges = sorted({t for e in ops for t in (e["ts"], e["ts"] + e["dur"])})
    for t0, t1 in zip(edges, edges[1:]):
        running = [e["name"] for e in ops if e["ts"] <= t0 and e["ts"] + e["dur"] >= t1]
        busy += (t1 - t0) if running else 0.0
        if len(running) == 1:
            alone[running[0]] = alone.get(running[0], 0.0) + (t1 - t0)
    print(f"{label}: trace of {n} calls: {span / n:.1f} us a call on the GPU, busy {busy / n:.1f} us, "
          f"idle {(span - busy) / n:.1f} us")
    for name, durs in sorted(by_name.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {sum(durs) / n:9.1f} us a call ({alone.get(name, 0.0) / n:7.1f} alone)  {len(durs) / n:4.1f}x  "
              f"{name[:150]}")


if __name__ == "__main__":
    main()
