#!/usr/bin/env python3
# Mean TFLOP/s per point and variant from a scripts/ab-bench log: scripts/abtab.py LOG
import re,collections,sys
d=collections.defaultdict(list)
for l in open(sys.argv[1]):
    m=re.match(r'([A-F])\d+ (\w+) (\w+) d=\s*(\d+) causal=(\d) seqlen=\s*(\d+)\s+([\d.]+) TFLOP',l)
    if m: d[(m[2],m[3],int(m[4]),int(m[5]),int(m[6]))+(m[1],)].append(float(m[7]))
keys=sorted(set(k[:-1] for k in d))
for k in keys:
    print(k, ' '.join(f"{v}={sum(d[k+(v,)])/len(d[k+(v,)]):.0f}" for v in 'ABCDEF' if d.get(k+(v,))))
