#!/usr/bin/env python3
"""Prints the per-event timeline that bench/patches/probe-fwd-timeline.diff records.

The probe makes CTA 0 of the sixth launch of the Hopper forward record clock64() at events of its
producer thread and of warp 0 of each consumer warpgroup, and prints them as `TL role event n clock`
lines (role 0 the producer, 1 + c consumer c). The patch applies to d70f136's fwd_kernel.h (the
kernel before session 23's tail change); on a later tree, put that file in place first. Usage, on
the device (after `git apply` of the probe):
  flashattn_bench --backend sm90 --pass fwd --headdims 128 --seqlens 2048 --causal 0 > tl.txt
  python3 bench/timeline.py tl.txt [FROM_CYCLE [TO_CYCLE]]
Each line: cycles since the first event, the role, the event, its key block (or tile), and the
cycles since that role's previous event.
"""
import sys

EVENTS = {0: "tile", 1: "Q ready", 9: "K/V ready", 2: "turn", 3: "issued", 4: "S ready", 5: "softmax done",
          6: "O ready", 7: "finish done", 8: "tile end", 10: "K stage", 11: "V stage", 12: "Q buffer free"}
ROLES = ["producer", "  consumer 0", "              consumer 1", "                        consumer 2"]


def main():
    events = []
    for line in open(sys.argv[1]):
        if line.startswith("TL "):
            _, role, event, n, clock = line.split()
            events.append((int(clock), int(role), int(event), int(n)))
    events.sort()
    if not events:
        sys.exit("no TL lines (was the probe applied, and did the kernel run six times?)")
    lo = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    hi = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 62
    start, last = events[0][0], {}
    for clock, role, event, n in events:
        since = clock - last.get(role, clock)
        last[role] = clock
        if lo <= clock - start <= hi:
            print(f"{clock - start:9d} {ROLES[role]:28s} {EVENTS.get(event, event):14s} n={n:4d}  +{since}")


if __name__ == "__main__":
    main()
