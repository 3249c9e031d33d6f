"""The torch operators flashattn::fwd and flashattn::bwd (torch.library.custom_op), with fake
implementations for torch.compile and autograd wired from one to the other; and `attention`, which
takes them under torch.compile (and for tensor subclasses) and otherwise a torch.autograd.Function
over the same implementations: custom_op's Python dispatch cost ~50 us a call in eager mode (65 us
against SDPA's 15-19 us on H100, bench/NOTES.md session 11 step 6), longer than short kernels run."""
from typing import Optional

import torch

from . import _C

_DTYPES = {torch.float16: _C.FLOAT16, torch.bfloat16: _C.BFLOAT16, torch.float32: _C.FLOAT32, torch.int32: _C.INT32}
_BACKENDS = {"auto": _C.BACKEND_AUTO, "reference": _C.BACKEND_REFERENCE, "sm80": _C.BACKEND_SM80, "sm90": _C.BACKEND_SM90}
_backend = _C.BACKEND_AUTO


def set_backend(name: str) -> None:
    """Forces an implementation: "auto" (default), "sm80", "sm90", or "reference" (fp32, slow; tests)."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"backend: {name!r} is not one of {sorted(_BACKENDS)}")
    _backend = _BACKENDS[name]


def _desc(t: Optional[torch.Tensor], name: str):
    if t is None:
        return None
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name}: dtype {t.dtype} is not supported (float16, bfloat16; int32 for index tensors)")
    return (t.data_ptr(), _DTYPES[t.dtype], t.shape, t.stride())


def _attn(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, philox,
          dropout_p, softmax_scale, causal, window_left, window_right, softcap):
    """The attention description _C takes: a tuple in the order of module.cpp's `Attn`. philox is int64
    [2] on the device, (seed, offset), read by the kernel (graph-safe); 0 without dropout."""
    return (_desc(q, "q"), _desc(k, "k"), _desc(v, "v"), _desc(cu_seqlens_q, "cu_seqlens_q"),
            _desc(cu_seqlens_k, "cu_seqlens_k"), _desc(seqused_k, "seqused_k"), max_seqlen_q, max_seqlen_k,
            _desc(alibi_slopes, "alibi_slopes"), 0 if philox is None else philox.data_ptr(), dropout_p,
            softmax_scale, softcap, causal, window_left, window_right)


def _lse_shape(q, cu_seqlens_q):
    return (q.shape[1], q.shape[0]) if cu_seqlens_q is not None else (q.shape[0], q.shape[2], q.shape[1])


# The current stream's handle by device index: torch's own fast path (inductor and Triton use it)
# in place of torch.cuda.current_stream(device).cuda_stream (bench/host_time.py times both).
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _stream(device_index: int) -> int:
    if _raw_stream is not None:
        return _raw_stream(device_index)
    return torch.cuda.current_stream(device_index).cuda_stream


# _C runs each call on the device it is given (q's), switching to it and back only where the
# current device differs: the work of `with torch.cuda.device(q.device)` without its ~2 us a call.
def _fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: Optional[torch.Tensor],
        cu_seqlens_k: Optional[torch.Tensor], seqused_k: Optional[torch.Tensor], max_seqlen_q: int, max_seqlen_k: int,
        alibi_slopes: Optional[torch.Tensor], philox: Optional[torch.Tensor], dropout_p: float, softmax_scale: float,
        causal: bool, window_left: int, window_right: int, softcap: float,
        deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    out = q.new_empty(q.shape)
    lse = q.new_empty(_lse_shape(q, cu_seqlens_q), dtype=torch.float32)
    device = q.get_device()
    attn = _attn(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, philox,
                 dropout_p, softmax_scale, causal, window_left, window_right, softcap)
    _C.fwd(attn, _desc(out, "out"), _desc(lse, "softmax_lse"), 0, device, _stream(device), _backend)
    return out, lse


fwd = torch.library.custom_op("flashattn::fwd", mutates_args=(), device_types="cuda")(_fwd)


@fwd.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, philox, dropout_p,
      softmax_scale, causal, window_left, window_right, softcap, deterministic):
    return (q.new_empty(q.shape), q.new_empty(_lse_shape(q, cu_seqlens_q), dtype=torch.float32))


def _bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
        cu_seqlens_q: Optional[torch.Tensor], cu_seqlens_k: Optional[torch.Tensor], seqused_k: Optional[torch.Tensor],
        max_seqlen_q: int, max_seqlen_k: int, alibi_slopes: Optional[torch.Tensor], philox: Optional[torch.Tensor],
        dropout_p: float, softmax_scale: float, causal: bool, window_left: int, window_right: int, softcap: float,
        deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
    device = q.get_device()
    attn = _attn(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, philox,
                 dropout_p, softmax_scale, causal, window_left, window_right, softcap)
    held = []  # the workspace, freed (stream-ordered) when this call returns

    def workspace(nbytes):
        held.append(q.new_empty(max(nbytes, 1), dtype=torch.uint8))
        return held[0].data_ptr()

    _C.bwd(attn, _desc(out, "out"), _desc(lse, "softmax_lse"), _desc(dout, "dout"), _desc(dq, "dq"), _desc(dk, "dk"),
           _desc(dv, "dv"), deterministic, workspace, device, _stream(device), _backend)
    return dq, dk, dv


bwd = torch.library.custom_op("flashattn::bwd", mutates_args=(), device_types="cuda")(_bwd)


@bwd.register_fake
def _(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, philox,
      dropout_p, softmax_scale, causal, window_left, window_right, softcap, deterministic):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    (q, k, v, cu_q, cu_k, used, max_q, max_k, alibi, philox, p, scale, causal, wl, wr, softcap, det) = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, used, alibi, philox)
    ctx.scalars = (max_q, max_k, p, scale, causal, wl, wr, softcap, det)


def _backward_by(bwd_fn, ctx, dout):
    q, k, v, out, lse, cu_q, cu_k, used, alibi, philox = ctx.saved_tensors
    max_q, max_k, p, scale, causal, wl, wr, softcap, det = ctx.scalars
    # None where only lse was used (_EagerAttention does not materialize gradients; lse's is ignored);
    # contiguous, e.g. the expanded gradient of out.sum().
    dout = torch.zeros_like(out) if dout is None else dout.contiguous()
    return bwd_fn(dout, q, k, v, out, lse, cu_q, cu_k, used, max_q, max_k, alibi, philox, p, scale, causal, wl, wr,
                  softcap, det)


def _backward(ctx, dout, dlse):
    return _backward_by(bwd, ctx, dout) + (None,) * 14


torch.library.register_autograd("flashattn::fwd", _backward, setup_context=_setup_context)


class _EagerAttention(torch.autograd.Function):
    """flashattn::fwd's autograd without the dispatcher: the same implementations, context and
    gradients (dlse is ignored, as there). The arguments after q, k, v come as one tuple: apply()
    walks each of its arguments in Python (bench/host_time.py times both)."""

    @staticmethod
    def forward(ctx, q, k, v, rest):
        inputs = (q, k, v) + rest
        out, lse = _fwd(*inputs)
        _setup_context(ctx, inputs, (out, lse))
        # lse's gradient is ignored: left as None, autograd launches no kernel to fill it with zeros.
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        return _backward_by(_bwd, ctx, dout) + (None,)


def attention(q, k, v, *rest):
    """flashattn::fwd with its autograd: through the dispatcher where torch.compile traces or a
    tensor subclass (e.g. a FakeTensor) needs it; otherwise directly, and where no gradient can flow
    (grad mode off, or no input requires one: inference) without autograd.Function's ~25 us a call."""
    if torch.compiler.is_compiling() or type(q) is not torch.Tensor or type(k) is not torch.Tensor or \
            type(v) is not torch.Tensor:
        return fwd(q, k, v, *rest)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _EagerAttention.apply(q, k, v, rest)
    return _fwd(q, k, v, *rest)
