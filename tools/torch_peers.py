"""Times torch SDPA's FLASH_ATTENTION and CUDNN_ATTENTION, forward and backward (backward alone, the
forward graph retained), on the standard grid (bf16), for a same-call comparison with flashattn_bench.
Prints JSON lines: {"d", "causal", "seqlen", "batch", "nheads", "pass", "torch-fa2", "cudnn"}."""
import json, sys
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from triton.testing import do_bench

headdims = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [64, 128, 256]
seqlens = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [512, 1024, 2048, 4096, 8192, 16384]
for d in headdims:
    h = 2048 // d
    for causal in (False, True):
        for s in seqlens:
            b = max(1, 16384 // s)
            q, k, v = [torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
            g = torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16)
            flops = 4 * b * h * s * s * d / (2 if causal else 1)
            rows = {p: dict(d=d, causal=causal, seqlen=s, batch=b, nheads=h, **{"pass": p}) for p in ("fwd", "bwd")}
            for name, be in (("torch-fa2", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
                with sdpa_kernel([be]):
                    fms = do_bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                   warmup=25, rep=100, return_mode="median")
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    bms = do_bench(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True),
                                   warmup=25, rep=100, return_mode="median")
                    del o
                rows["fwd"][name] = round(flops / fms / 1e9, 1)
                rows["bwd"][name] = round(2.5 * flops / bms / 1e9, 1)
            for r in rows.values():
                print(json.dumps(r), flush=True)
