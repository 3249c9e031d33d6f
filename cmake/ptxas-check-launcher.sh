#!/usr/bin/env bash
# Compiler launcher of the sm90a objects: runs the compile, shows its output, and fails it (deleting
# the object) when ptxas reports serialized wgmma (C7510, C7512, C7514, C7515, C7519, C7520: each says
# "wgmma.mma_async instructions are serialized"), waits it had to inject (C7517) or an
# ignored setmaxnreg (C7508, C7509): each is a silent slowdown, not an error, to ptxas. It fails on
# register spills or local memory too, except in the backward's dropout and softcap/ALiBi variants
# (template flags Lb1E), where a few hundred bytes of spills remain at d = 128 (warnings in the log),
# and in the forward's three-consumer tile without dropout or transform (Li3ELi1EEELb0ELb0E: 8 B with
# the fast softmax, which still measured 5-8% faster at d64, bench/NOTES.md, session 19; since session
# 41's warp-by-warp fallback 20 B in its TMA-store variant and 36 B in the one that stores O from
# registers, one spill load a key block left in the loop, and +0.3-2.7% measured), and in d256's
# 80-key tile with O from registers (Li256ELi80E...Lb0ELb0ELb0E: 4 B, one value stored at the kernel's
# start and loaded once a tile, before the tile's first S GEMM: SASS, bench/NOTES.md, session 32).
out=$("$@" 2>&1)
rc=$?
[ -n "$out" ] && printf '%s\n' "$out" >&2
[ $rc -ne 0 ] && exit $rc
fail() {
  prev=
  for arg in "$@"; do
    [ "$prev" = "-o" ] && rm -f "$arg"
    prev=$arg
  done
}
if printf '%s' "$out" | grep -qE '\(C75(08|09|10|12|14|15|17|19|20)\)'; then
  fail "$@"
  echo "ptxas-check: the messages above (C7508/C7509/C7510/C7512/C7514/C7515/C7517/C7519/C7520) fail this Hopper object" >&2
  exit 1
fi
if printf '%s\n' "$out" | grep -E 'Registers are spilled|Local memory used' | grep -vqE 'bwd_kernel.*Lb1E|fwd_kernel.*Li3ELi1EEELb0ELb0E|fwd_kernel.*Li256ELi80ELi2ELi1ELb1ELi2ELi1EEELb0ELb0ELb0E'; then
  fail "$@"
  echo "ptxas-check: spills or local memory above fail this Hopper object" >&2
  exit 1
fi
