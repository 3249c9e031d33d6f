#!/usr/bin/env python3
"""Mean TFLOP/s per point, argument set and variant from a scripts/ab-bench log, each variant also
as a ratio to A, and every round's value (the spread is the evidence):
    scripts/abtab.py LOG [--json OUT]
Lines are `A1 s0 sm90 fwd d=128 causal=0 seqlen= 8192  650.1 TFLOP/s` (logs before the set field
was added read as set 0). --json writes the same per point: each variant's rounds and their ratios
to A's rounds, the argument sets, and which patch each variant is (the log's `B = X.diff` lines),
for a bench/results file."""
import collections
import json
import re
import sys

line = re.compile(r'([A-G])(\d+) (?:s(\d+) )?(\w+) (\w+) d=\s*(\d+) causal=(\d) seqlen=\s*(\d+)\s+([\d.]+) TFLOP')
values = collections.defaultdict(list)
sets, patches = {}, {}
for text in open(sys.argv[1]):
    named = re.match(r"([B-G]) = (\S+\.diff)$", text.strip())
    if named:
        patches[named[1]] = named[2]
    if text.startswith("set ") and ":" in text:
        index, args = text[4:].split(":", 1)
        sets[int(index)] = args.strip()
    m = line.match(text)
    if m:
        key = (int(m[3] or 0), m[4], m[5], int(m[6]), int(m[7]), int(m[8]))
        values[key + (m[1],)].append(float(m[9]))
for s, args in sorted(sets.items()):
    print(f"set {s}: {args}")
mean = lambda xs: sum(xs) / len(xs)
rows = []  # per point: its fields, each variant's rounds and their ratios to A's
for key in sorted(set(k[:-1] for k in values)):
    row = {"set": sets.get(key[0], ""), "backend": key[1], "pass": key[2], "d": key[3], "causal": bool(key[4]),
           "seqlen": key[5]}
    base = values.get(key + ("A",))
    text = [f"s{key[0]} {key[1]} {key[2]} d{key[3]} {'causal' if key[4] else 'full'} {key[5]:>5}"]
    for v in "ABCDEFG":
        xs = values.get(key + (v,))
        if not xs:
            continue
        row[f"{v}_tflops_rounds"] = xs
        ratio = ""
        if base and v != "A":
            row[f"{v}_over_A_rounds"] = [round(x / a, 4) for x, a in zip(xs, base)]
            ratio = f" ({mean(xs) / mean(base):.3f})"
        text.append(f"{v}={mean(xs):.0f}{ratio} [{' '.join(f'{x:.0f}' for x in xs)}]")
    print("  ".join(text))
    rows.append(row)
if "--json" in sys.argv:
    with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
        json.dump(dict(patches=patches, sets=sets, rows=rows), f, indent=1)
