"""One attention point (or the bf16 GEMM 8192^3 the grid measures beside it) in a loop for a few
seconds, for scripts/clocks: the SM clock and board power that an implementation runs at on a
power-capped card (bench/NOTES.md, sessions 15 and 30).

    python3 bench/attn_loop.py --impl flashattn|cudnn|torch-fa2|gemm [--pass fwd|bwd] [--d 128]
                               [--seqlen 8192] [--causal] [--seconds 4]

The shape is the standard grid's (batch * seqlen = 16384 tokens, nheads * d = 2048; shared/BENCH.md).
Prints the TFLOP/s over the whole loop (CUDA events around it), so it can be read beside the clock.
"""
import argparse
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
    if calls == 0:  # --seconds 0: the warm-up calls only (a profiler's launches)
        return
    tflops = calls * flops / (start.elapsed_time(end) * 1e-3) / 1e12
    print(f"{label}: {tflops:.1f} TFLOP/s over {calls} calls")


if __name__ == "__main__":
    main()
