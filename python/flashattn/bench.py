"""The benchmark users run first: flashattn against every torch SDPA backend, in the same run.

    python -m flashattn.bench                      # the standard grid of shared/BENCH.md
    python -m flashattn.bench --headdim 128 --seqlen 8192 --causal false --pass fwd

For each point: TFLOP/s of flashattn and of torch's FLASH_ATTENTION (FlashAttention-2), CUDNN_ATTENTION,
EFFICIENT_ATTENTION and MATH (where it fits), timed alike (CUDA events, median); backward timed alone
with the forward graph retained; with --rounds N every implementation of a point is timed N times in
turn and the median round reported (one round moves a ratio by up to ±0.07). Prints a table with our
ratio to each peer; writes the results JSON (schema in BENCH.md) and a PNG chart.
"""
import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time

FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.5}


def grid_shape(d, seqlen, tokens=16384, model_dim=2048):
    """(batch, nheads) of a grid point: batch * seqlen = tokens, nheads * d = model_dim (BENCH.md)."""
    return max(1, tokens // seqlen), max(1, model_dim // d)


def attention_flops(ps, batch, nheads, seqlen, d, causal):
    """FLOPs of a pass by FlashAttention's convention (BENCH.md): 4 b h s^2 d forward, halved when
    causal; the backward 2.5 times that."""
    return FLOP_FACTOR[ps] * 4.0 * batch * nheads * seqlen * seqlen * d / (2 if causal else 1)

def auto_kernel(ps, major, d):
    """The kernel AUTO runs for a pass at head dim `d` on a device of compute capability `major`: on
    Hopper the sm90a forward, and the sm90a backward where its head-dim bucket (64, 128, 256) is
    FA2's (choose_bwd in src/api/dispatch.cpp)."""
    if major != 9:
        return "sm80"
    fa2_bucket = next(b for b in (32, 64, 96, 128, 192, 256) if b >= d)
    return "sm90" if ps == "fwd" or fa2_bucket in (64, 128, 256) else "sm80"

PEERS = {"torch-fa2": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "mem-eff": "EFFICIENT_ATTENTION", "math": "MATH"}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m flashattn.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--headdim", default="64,128,256", help="comma-separated head dims")
    p.add_argument("--seqlen", default="512,1024,2048,4096,8192,16384", help="comma-separated seqlens")
    p.add_argument("--causal", default="both", choices=["both", "true", "false"])
    p.add_argument("--pass", dest="passes", default="fwd,bwd", help="fwd, bwd or fwd,bwd")
    p.add_argument("--gqa", type=int, default=1, help="query heads per kv head (1 = MHA)")
    p.add_argument("--varlen", action="store_true", help="varlen layout (packed sequences of the same length)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--tokens", type=int, default=16384, help="batch * seqlen per point")
    p.add_argument("--model-dim", type=int, default=2048, help="nheads * headdim per point")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers (torch-fa2,cudnn,mem-eff,math)")
    p.add_argument("--backend", default="auto", choices=["auto", "sm80", "sm90"],
                   help="flashattn implementation (auto: what the dispatcher picks)")
    p.add_argument("--reps", type=int, default=30, help="timed repetitions (median)")
    p.add_argument("--rounds", type=int, default=1,
                   help="time every implementation of a point this many times in turn; report the median round")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/<card>-<date>.json)")
    p.add_argument("--deterministic", action="store_true",
                   help="also time our backward in deterministic mode (its row's deterministic_ms / _tflops)")
    p.add_argument("--no-plot", action="store_true")
    return p.parse_args(argv)


def progress(i, n, label):
    width = 30
    done = int(width * i / max(n, 1))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {label:<48}")
    sys.stderr.flush()
    if i == n:
        sys.stderr.write("\n")


def time_ms(fn, reps, settle_ms=50.0, min_total_ms=100.0):
    """Median of per-call CUDA event times (no cache flush). Before timing, calls run for at least
    settle_ms of GPU time, so the clocks have left the idle state a pause on the host drops them
    to; then at least `reps` calls, more where a call is short (about min_total_ms in all)."""
    import torch
    fn()
    torch.cuda.synchronize()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    calls, elapsed = 1, 0.0
    while elapsed < settle_ms:
        begin.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        elapsed = begin.elapsed_time(end)
        per_call = elapsed / calls
        calls *= 2
    reps = max(reps, min(2000, int(min_total_ms / max(per_call, 1e-3))))
    start = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    stop = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        start[i].record()
        fn()
        stop[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(start, stop))
    return times[len(times) // 2]


def gemm_and_copy(reps):
    import torch
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    gemm = 2 * 8192**3 / time_ms(lambda: a @ b, reps) / 1e9
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    copy = 2 * x.numel() / time_ms(lambda: y.copy_(x), reps) / 1e9  # bytes read + written, TB/s
    del a, b, x, y
    return round(gemm, 1), round(copy, 2)


def host_us(fn, calls):
    """Mean microseconds a call of fn over `calls` calls between two synchronizations, after 50
    unmeasured ones: the host's time where the GPU work of a call is shorter."""
    import torch

    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / calls * 1e6


def host_us_per_call(peers, calls=2000):
    """Host time of one forward call on a tiny shape (the GPU waits on the host): where it exceeds a
    kernel's run time, CUDA events around that call time the host. Ours, and each SDPA peer's, on
    inputs that require grad (training) and under torch.no_grad() (inference: "... no grad")."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import flashattn

    q, k, v = (torch.randn(1, 128, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))

    def per_call(fn):
        return round(host_us(fn, calls), 1)

    out = {}

    def both(name, fn):
        out[name] = per_call(fn)
        with torch.no_grad():
            out[name + " no grad"] = per_call(fn)

    both("flashattn", lambda: flashattn.flash_attn_func(q, k, v, causal=True))
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    for name in peers:
        if name in ("torch-fa2", "cudnn"):
            try:
                with sdpa_kernel(getattr(SDPBackend, PEERS[name])):
                    both(name, lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True))
            except RuntimeError:  # the backend does not take this shape here
                pass
    return out


def run_point(args, d, causal, s, passes, peers):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import flashattn

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    b, h = grid_shape(d, s, args.tokens, args.model_dim)
    hk = max(1, h // args.gqa)
    q = torch.randn(b, s, h, d, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(b, s, hk, d, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(b, s, hk, d, device="cuda", dtype=dtype, requires_grad=True)
    g = torch.randn(b, s, h, d, device="cuda", dtype=dtype)
    base = dict(dtype=args.dtype, d=d, causal=causal, batch=b, seqlen=s, nheads=h, nheads_k=hk)
    if args.varlen:
        base["varlen"] = True  # flashattn through flash_attn_varlen_func; the peers take the padded layout
    rows = []

    if args.varlen:
        cu = torch.arange(0, (b + 1) * s, s, device="cuda", dtype=torch.int32)
        qv, kv_, vv = (x.detach().reshape(b * s, x.shape[2], d).requires_grad_() for x in (q, k, v))
        ours = lambda det=False: flashattn.flash_attn_varlen_func(qv, kv_, vv, cu, cu, s, s, causal=causal,
                                                                  deterministic=det)
        ours_inputs, ours_grad = (qv, kv_, vv), g.reshape(b * s, h, d)
    else:
        ours = lambda det=False: flashattn.flash_attn_func(q, k, v, causal=causal, deterministic=det)
        ours_inputs, ours_grad = (q, k, v), g
    impls = [("flashattn", ours, ours_inputs, ours_grad)]
    qt, kt, vt, gt = (x.transpose(1, 2) for x in (q, k, v, g))
    for name in peers:
        backend = getattr(SDPBackend, PEERS[name])
        if name == "math" and b * h * s * s * 4 > (8 << 30):
            continue  # the score matrix alone would not fit

        def peer(backend=backend):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, enable_gqa=hk != h)
        impls.append((name, peer, (q, k, v), gt))

    def bwd_ms(forward, inputs, grad):
        """The backward alone, the forward's graph retained."""
        o = forward()
        return time_ms(lambda: torch.autograd.grad(o, inputs, grad, retain_graph=True), args.reps)

    def note(e):
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"

    # Every implementation in turn, `rounds` times over (interleaved: a slow spell of the card, e.g. a
    # clock dip at the power cap, lands in one round of each rather than in one implementation).
    def with_deterministic(impl, ps):
        """Our backward is also timed in deterministic mode (dQ's adds in a fixed order)."""
        return impl == "flashattn" and ps == "bwd" and args.deterministic

    timings, errors = {}, {}
    for _ in range(args.rounds):
        for impl, fn, inputs, grad in impls:
            for ps in passes:
                for det in (False, True) if with_deterministic(impl, ps) else (False,):
                    if (impl, ps, det) in errors:
                        continue
                    try:
                        if ps == "fwd":
                            with torch.no_grad():
                                ms = time_ms(fn, args.reps)
                        else:
                            ms = bwd_ms((lambda fn=fn: fn(det=True)) if det else fn, inputs, grad)
                        timings.setdefault((impl, ps, det), []).append(ms)
                    except Exception as e:  # a peer that cannot run this point (e.g. cuDNN on an old card)
                        errors[(impl, ps, det)] = note(e)
    for impl, *_ in impls:
        for ps in passes:
            kernel = auto_kernel(ps, torch.cuda.get_device_capability()[0], d) if args.backend == "auto" else args.backend
            row = dict(impl=impl, **({"kernel": kernel} if impl == "flashattn" else {}), **{"pass": ps}, **base)
            rows.append(timed_row(row, attention_flops(ps, b, h, s, d, causal), timings, errors,
                                  deterministic=with_deterministic(impl, ps)))
    del q, k, v, g
    torch.cuda.empty_cache()
    return rows


def timed_row(row, flop, timings, errors, deterministic=False):
    """`row` with its time: the median over rounds of each round's median (`ms`, `tflops`; with more than
    one round, every round's in `ms_rounds`), or the error of the round that failed (`note`); with
    `deterministic`, our deterministic backward's beside it (`deterministic_ms`, ...)."""
    key = (row["impl"], row["pass"])
    for det, prefix in ((False, ""), (True, "deterministic_")) if deterministic else ((False, ""),):
        if (*key, det) in errors:
            row[prefix + "note"] = errors[(*key, det)]
            if not det:
                row.update(ms=None, tflops=None)
            continue
        times = timings[(*key, det)]
        ms = statistics.median(times)
        row[prefix + "ms"] = round(ms, 4)
        row[prefix + "tflops"] = round(flop / ms / 1e9, 1)
        if len(times) > 1:
            row[prefix + "ms_rounds"] = [round(t, 4) for t in times]
    return row


def table(rows, peers):
    keys = sorted({(r["pass"], r["d"], r["causal"], r["seqlen"]) for r in rows})
    by = {(r["impl"], r["pass"], r["d"], r["causal"], r["seqlen"]): r.get("tflops") for r in rows}
    det = {(r["pass"], r["d"], r["causal"], r["seqlen"]): r["deterministic_tflops"] for r in rows
           if r["impl"] == "flashattn" and r.get("deterministic_tflops")}
    head = f"{'pass':4} {'d':>4} {'causal':6} {'seqlen':>6} {'flashattn':>9} " + " ".join(
        f"{p:>9} {'ratio':>6}" for p in peers) + (f" {'det':>9} {'/ours':>6}" if det else "")
    lines = ["TFLOP/s (ratio = flashattn / peer" + ("; det = our deterministic backward" if det else "") + ")", head,
             "-" * len(head)]
    for key in keys:
        ours = by.get(("flashattn",) + key)
        cells = []
        for p in peers:
            t = by.get((p,) + key)
            ratio = f"{ours / t:6.2f}" if ours and t else f"{'-':>6}"
            cells.append(f"{t if t else '-':>9} {ratio}")
        if det:  # our deterministic backward, and its ratio to our default one
            t = det.get(key)
            cells.append(f"{t if t else '-':>9} " + (f"{t / ours:6.2f}" if t and ours else f"{'-':>6}"))
        lines.append(f"{key[0]:4} {key[1]:4d} {str(key[2]):6} {key[3]:6d} {ours if ours else '-':>9} " + " ".join(cells))
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r.get("tflops")]
    # Our deterministic backward as an implementation of its own in the chart.
    rows += [dict(r, impl="flashattn det", tflops=r["deterministic_tflops"]) for r in rows
             if r["impl"] == "flashattn" and r.get("deterministic_tflops")]
    panels = sorted({(r["d"], r["causal"], r["pass"]) for r in rows}, key=lambda x: (x[2], x[0], x[1]))
    impls = [i for i in ["flashattn", "flashattn det", "torch-fa2", "cudnn", "mem-eff", "math"]
             if any(r["impl"] == i for r in rows)]
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 3.6 * nrows), squeeze=False)
    for ax, (d, causal, ps) in zip(axes.flat, panels):
        seqlens = sorted({r["seqlen"] for r in rows if (r["d"], r["causal"], r["pass"]) == (d, causal, ps)})
        width = 0.8 / len(impls)
        for j, impl in enumerate(impls):
            vals = [next((r["tflops"] for r in rows if (r["impl"], r["d"], r["causal"], r["pass"], r["seqlen"]) ==
                          (impl, d, causal, ps, s)), 0) for s in seqlens]
            bars = ax.bar([i + j * width for i in range(len(seqlens))], vals, width, label=impl)
            ax.bar_label(bars, labels=[f"{v:.0f}" if v else "" for v in vals], fontsize=6)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(seqlens))])
        ax.set_xticklabels([f"{s // 1024}k" if s >= 1024 else str(s) for s in seqlens])
        ax.set_title(f"{ps} d={d} {'causal' if causal else 'non-causal'}", fontsize=10)
        ax.set_ylabel("TFLOP/s")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{results['card']}, {results.get('dtype', 'bf16')}, torch {results['torch']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import torch
    except ImportError:
        print("flashattn.bench: torch is not installed; the benchmark compares against torch's SDPA backends",
              file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("flashattn.bench: no CUDA GPU on this machine; the benchmark needs one", file=sys.stderr)
        return 2
    headdims = [int(x) for x in args.headdim.split(",")]
    seqlens = [int(x) for x in args.seqlen.split(",")]
    causals = {"both": [False, True], "true": [True], "false": [False]}[args.causal]
    passes = [p for p in args.passes.split(",") if p]
    peers = [p for p in args.peers.split(",") if p]
    for p in passes:
        if p not in FLOP_FACTOR:
            raise SystemExit(f"--pass: {p!r} is not fwd or bwd")
    for p in peers:
        if p not in PEERS:
            raise SystemExit(f"--peers: {p!r} is not one of {','.join(PEERS)}")
    if args.rounds < 1:
        raise SystemExit(f"--rounds: {args.rounds} is not a positive count")

    import flashattn

    card = torch.cuda.get_device_name()
    commit = flashattn._C.__commit__  # the commit the installed extension was built from
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = ""
    from flashattn import _ops

    _ops.set_backend(args.backend)
    gemm, copy = gemm_and_copy(args.reps)
    # The commit can be stale where the checkout's .git is (the GPU machine's copy); the sources'
    # hash is not: scripts/which-commit maps it to the commit with the same src/ and include/.
    source_sha256 = flashattn._C.__source_sha256__
    results = dict(card=card, torch=torch.__version__, cudnn=torch.backends.cudnn.version(), commit=commit,
                   source_sha256=source_sha256,
                   dtype=args.dtype, rounds=args.rounds, gemm_bf16_tflops=gemm, copy_tbs=copy,
                   host_us_per_call=host_us_per_call(peers), rows=[])
    points = [(d, c, s) for d in headdims for c in causals for s in seqlens]
    t0 = time.time()
    for i, (d, c, s) in enumerate(points):
        progress(i, len(points), f"d={d} causal={c} seqlen={s}")
        results["rows"] += run_point(args, d, c, s, passes, peers)
    progress(len(points), len(points), f"done in {time.time() - t0:.0f} s")

    slug = card.lower().replace("nvidia ", "").replace(" ", "-")
    out = args.out or os.path.join("bench", "results", f"{slug}-{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"{card}, torch {torch.__version__}, cuDNN {results['cudnn']}; bf16 GEMM 8192^3 {gemm} TFLOP/s, "
          f"copy {copy} TB/s (same run); host time a call (tiny shape; inputs with grad, and under no_grad): "
          + ", ".join(f"{k} {v} us" for k, v in results["host_us_per_call"].items()))
    print(table(results["rows"], peers))
    print(f"wrote {out}")
    if not args.no_plot:
        try:
            png = os.path.splitext(out)[0] + ".png"
            plot(results, png)
            print(f"wrote {png}")
        except ImportError:
            print("matplotlib is not installed: no chart", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
