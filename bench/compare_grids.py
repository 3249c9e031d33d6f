"""Two results files of `python -m flashattn.bench`, point by point: each implementation's TFLOP/s in the
second over the first, and our ratio to a peer in each (bench/NOTES.md, session 30, compared an H200 grid
with an H100 grid this way).

    python3 bench/compare_grids.py A.json B.json [--peer cudnn] [--impls flashattn,cudnn]

Prints one line a point both files have: pass, d, causal, seqlen; then per implementation A, B and B / A;
then ours / peer in A and in B. Needs neither torch nor a GPU.
"""
import argparse
import json


def by_point(results):
    """{(impl, pass, d, causal, seqlen): tflops} of a results file's rows that have a time."""
    return {(r["impl"], r["pass"], r["d"], r["causal"], r["seqlen"]): r["tflops"] for r in results["rows"]
            if r.get("tflops")}


def compare(a, b, impls, peer):
    """Lines of the comparison of results `a` and `b` (dicts as the bench writes them)."""
    ta, tb = by_point(a), by_point(b)
    points = sorted({k[1:] for k in ta} & {k[1:] for k in tb})
    head = f"{'pass':4} {'d':>4} {'causal':6} {'seqlen':>6} " + " ".join(
        f"{i + ' A':>12} {'B':>7} {'B/A':>5}" for i in impls) + f"  ours/{peer} A     B"
    lines = [f"A: {a.get('card')} ({a.get('commit', '')[:12]}), B: {b.get('card')} ({b.get('commit', '')[:12]})",
             head, "-" * len(head)]
    for pt in points:
        cells = []
        for impl in impls:
            x, y = ta.get((impl, *pt)), tb.get((impl, *pt))
            cells.append(f"{x if x else '-':>12} {y if y else '-':>7} " + (f"{y / x:5.2f}" if x and y else f"{'-':>5}"))

        def ratio(t):
            ours, other = t.get(("flashattn", *pt)), t.get((peer, *pt))
            return f"{ours / other:5.2f}" if ours and other else f"{'-':>5}"
        lines.append(f"{pt[0]:4} {pt[1]:4d} {str(pt[2]):6} {pt[3]:6d} " + " ".join(cells) +
                     f"  {' ' * len(peer)}{ratio(ta)} {ratio(tb)}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--peer", default="cudnn")
    ap.add_argument("--impls", default="flashattn,cudnn")
    args = ap.parse_args()
    with open(args.a) as fa, open(args.b) as fb:
        a, b = json.load(fa), json.load(fb)
    print("\n".join(compare(a, b, [i for i in args.impls.split(",") if i], args.peer)))


if __name__ == "__main__":
    main()
