"""One attention point in a loop for a few seconds, for scripts/clocks: the SM clock and board power
that an implementation runs at on a power-capped card (bench/NOTES.md, session 30).

    python3 bench/attn_loop.py --impl flashattn|cudnn|torch-fa2 [--pass fwd|bwd] [--d 128] [--seqlen 8192]
                               [--causal] [--seconds 4]

The shape is the standard grid's (batch * seqlen = 16384 tokens, nheads * d = 2048; shared/BENCH.md).
Prints the TFLOP/s over the whole loop (CUDA events around it), so it can be read beside the clock.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flashattn

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "torch-fa2": SDPBackend.FLASH_ATTENTION}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", required=True, choices=["flashattn", *BACKENDS])
    ap.add_argument("--pass", dest="ps", default="fwd", choices=["fwd", "bwd"])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=8192)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()

    d, s = args.d, args.seqlen
    h, b = max(1, 2048 // d), max(1, 16384 // s)
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    g = torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16)
    if args.impl == "flashattn":
        forward = lambda: flashattn.flash_attn_func(q, k, v, causal=args.causal)
    else:
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))

        def forward():
            with sdpa_kernel([BACKENDS[args.impl]]):
                return F.scaled_dot_product_attention(qt, kt, vt, is_causal=args.causal).transpose(1, 2)
    if args.ps == "fwd":
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
    flops = (2.5 if args.ps == "bwd" else 1.0) * 4.0 * b * h * s * s * d / (2 if args.causal else 1)
    tflops = calls * flops / (start.elapsed_time(end) * 1e-3) / 1e12
    print(f"{args.impl} {args.ps} d={d} seqlen={s} causal={args.causal}: {tflops:.1f} TFLOP/s over {calls} calls")


if __name__ == "__main__":
    main()
