"""Where the Python benchmark's deterministic backward loses time against flashattn_bench's (bench/NOTES.md,
session 29, item 4): one point, our backward in both modes, timed two ways in alternation.

    python bench/det_gap.py --d 128 --seqlen 8192 [--causal] [--rounds 3]

- autograd: as `python -m flashattn.bench` times it (torch.autograd.grad of the forward's output; dq/dk/dv and
  the workspace allocated by torch's caching allocator in every call);
- direct: flashattn._C.bwd on buffers allocated once (the workspace sized for deterministic mode), as
  flashattn_bench calls the C++ API.
Prints the median time of each (way, mode) per round and det / default per way. If `direct` reads what
flashattn_bench reads and `autograd` lower, the cost is in the Python path; if both read lower, it is in the
process's state (what ran before, the clocks).
"""
import argparse
import statistics

import torch

import flashattn
from flashattn import _ops
from flashattn.bench import attention_flops, grid_shape, time_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=8192)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()

    d, s = args.d, args.seqlen
    b, h = grid_shape(d, s)
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    g = torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16)
    flops = attention_flops("bwd", b, h, s, d, args.causal)

    def autograd_call(det):
        o = flashattn.flash_attn_func(q, k, v, causal=args.causal, deterministic=det)
        return lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True)

    # The direct call: the forward's out and lse once, then _C.bwd on fixed buffers.
    with torch.no_grad():
        out, lse = _ops._fwd(q, k, v, None, None, None, s, s, None, None, 0.0, d**-0.5, args.causal, -1, -1, 0.0,
                             False)
    dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))

    def direct_call(det):
        attn = _ops._attn(q, k, v, None, None, None, s, s, None, None, 0.0, d**-0.5, args.causal, -1, -1, 0.0)
        bufs = (attn, _ops._desc(out, "out"), _ops._desc(lse, "softmax_lse"), _ops._desc(g, "dout"),
                _ops._desc(dq, "dq"), _ops._desc(dk, "dk"), _ops._desc(dv, "dv"), det)
        device = torch.cuda.current_device()
        held = []

        def workspace(nbytes):  # allocated by the first (warm-up) call, then the same buffer
            if not held:
                held.append(torch.empty(max(nbytes, 1), dtype=torch.uint8, device="cuda"))
            return held[0].data_ptr()

        stream = torch.cuda.current_stream().cuda_stream
        return lambda: _ops._C.bwd(*bufs, workspace, device, stream, _ops._backend)

    ways = {"autograd": autograd_call, "direct": direct_call}
    times = {(w, det): [] for w in ways for det in (False, True)}
    for r in range(args.rounds):
        for w, make in ways.items():
            for det in (False, True):
                ms = time_ms(make(det), args.reps)
                times[(w, det)].append(ms)
                print(f"round {r} {w:8} {'det' if det else 'default':7} {ms:8.4f} ms {flops / ms / 1e9:6.1f} TFLOP/s",
                      flush=True)
    print(f"{torch.cuda.get_device_name()}, d={d} seqlen={s} causal={args.causal}, medians over {args.rounds} rounds:")
    for w in ways:
        default, det = (statistics.median(times[(w, m)]) for m in (False, True))
        print(f"  {w:8} default {flops / default / 1e9:6.1f} det {flops / det / 1e9:6.1f} TFLOP/s, "
              f"det / default {default / det:.3f}")


if __name__ == "__main__":
    main()
