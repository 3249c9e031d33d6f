#!/usr/bin/env python3
"""One forward+backward of a torch SDPA backend on a standard-grid shape (bench/BENCH.md), for
Nsight Compute to profile a peer's kernel beside ours (scripts/profile compares like with like):
  ncu --kernel-name regex:flash_bwd --launch-skip 2 --launch-count 1 ... scripts/peer-step.py flash 256 8192 0
Runs three iterations so warm-up launches can be skipped."""
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[sys.argv[1]]
d, seqlen, causal = int(sys.argv[2]), int(sys.argv[3]), bool(int(sys.argv[4]))
batch, nheads = 16384 // seqlen, 2048 // d
q, k, v = (torch.randn(batch, nheads, seqlen, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
           for _ in range(3))
with sdpa_kernel(backend):
    for _ in range(3):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out.backward(torch.ones_like(out))
torch.cuda.synchronize()
