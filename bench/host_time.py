"""Where the host time of one small attention call goes: the Python layers of flashattn's forward and
backward, each timed alone on a tiny shape (the GPU waits on the host there), beside SDPA's cuDNN
and FlashAttention-2 calls on the same tensors.

    python3 bench/host_time.py [--calls 2000] [--json OUT]

Session 38's grid read 102 us a forward call with autograd inputs (64.7 under no_grad) against
cuDNN's 37.3 (28.3): this splits ours into the public wrapper, autograd.Function, the output
allocations, the device guard, the current-stream lookup, the argument dict, and the C++ call
(validation, tensor maps and launch) on prebuilt arguments. Each row is the mean of `calls` calls
between two synchronizations, after 50 unmeasured ones.
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flashattn
from flashattn import _ops
from flashattn.bench import host_us


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    q, k, v = (torch.randn(1, 128, 2, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dev = q.device
    scale = 1.0 / math.sqrt(q.shape[-1])
    # _fwd's arguments after q, k, v: no varlen, no ALiBi, no dropout, causal, no window or softcap.
    rest = (None, None, None, 0, 0, None, None, 0.0, scale, True, -1, -1, 0.0, False)
    out, lse = _ops._fwd(q.detach(), k.detach(), v.detach(), *rest)
    attn = _ops._attn(q, k, v, None, None, None, 0, 0, None, None, 0.0, scale, True, -1, -1, 0.0)
    out_desc, lse_desc = _ops._desc(out, "out"), _ops._desc(lse, "softmax_lse")
    stream = _ops._stream(dev)
    dout = torch.randn_like(out)
    dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))
    bwd_args = (attn, out_desc, lse_desc, _ops._desc(dout, "dout"), _ops._desc(dq, "dq"), _ops._desc(dk, "dk"),
                _ops._desc(dv, "dv"), False)
    nbytes = _ops._C.bwd_workspace_size(*bwd_args, _ops._backend)
    workspace = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=dev)

    rows = {}

    def row(name, fn):
        rows[name] = round(host_us(fn, args.calls), 2)
        print(f"{rows[name]:9.2f} us  {name}", flush=True)

    row("flash_attn_func, inputs with grad", lambda: flashattn.flash_attn_func(q, k, v, causal=True))
    with torch.no_grad():
        row("flash_attn_func, no grad", lambda: flashattn.flash_attn_func(q, k, v, causal=True))
    row("_ops.attention (autograd.Function), inputs with grad", lambda: _ops.attention(q, k, v, *rest))
    row("_ops._fwd (no autograd)", lambda: _ops._fwd(q, k, v, *rest))
    row("_C.fwd on prebuilt arguments (validation, tensor maps, launch)",
        lambda: _ops._C.fwd(attn, out_desc, lse_desc, 0, stream, _ops._backend))
    row("torch.empty x 2 (out, lse)", lambda: (torch.empty(q.shape, dtype=q.dtype, device=dev),
                                              torch.empty(_ops._lse_shape(q, None), dtype=torch.float32, device=dev)))

    def device_guard():
        with torch.cuda.device(dev):
            pass

    row("with torch.cuda.device(q.device)", device_guard)
    row("current stream handle", lambda: _ops._stream(dev))
    row("argument dict (_attn, 5 tensor descriptors)",
        lambda: _ops._attn(q, k, v, None, None, None, 0, 0, None, None, 0.0, scale, True, -1, -1, 0.0))
    row("_bwd (workspace size, allocations, launch)", lambda: _ops._bwd(dout, q, k, v, out, lse, *rest))
    row("_C.bwd on prebuilt arguments", lambda: _ops._C.bwd(*bwd_args, workspace.data_ptr(), nbytes, stream,
                                                            _ops._backend))
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("torch-fa2", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel([backend]):
                row(f"SDPA {name}, inputs with grad", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True))
                with torch.no_grad():
                    row(f"SDPA {name}, no grad", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True))
        except RuntimeError as e:  # the backend does not take this shape here
            print(f"SDPA {name}: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": torch.cuda.get_device_name(), "torch": torch.__version__, "calls": args.calls,
                       "shape": [1, 128, 2, 128], "us_per_call": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
