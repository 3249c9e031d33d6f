"""flash_attn 2.x's functions, names, signatures and semantics, on flashattn's kernels.

Layouts as in flash_attn: q [batch, seqlen_q, nheads, head_dim], k/v [batch, seqlen_k, nheads_k, head_dim];
varlen: q [total_q, nheads, head_dim] with cu_seqlens_q int32 [batch + 1]. Causal masks align to the
bottom-right corner. softmax_lse is [batch, nheads, seqlen_q] (varlen: [nheads, total_q]).
"""
import math
from typing import Optional, Tuple

import torch

from . import _ops


def _check_tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_cuda:
        raise ValueError(f"{name}: expected a CUDA tensor, got a tensor on {x.device}")
    if x.dtype not in (torch.float16, torch.bfloat16) and _ops._backend != _ops._C.BACKEND_REFERENCE:
        raise TypeError(f"{name}: dtype {x.dtype} is not supported (float16 or bfloat16)")


def _last_dim_contiguous(x):
    return x if x.stride(-1) == 1 else x.contiguous()


def _window(window_size):
    if window_size is None:
        return -1, -1
    if len(window_size) != 2:
        raise ValueError(f"window_size: expected (left, right), got {window_size!r}")
    return int(window_size[0]), int(window_size[1])


def _philox(dropout_p, device):
    # Seed and offset drawn from torch's CUDA generator: reproducible under torch.manual_seed, and
    # graph-safe (the kernel reads them from device memory; a replay draws new ones).
    if dropout_p <= 0.0:
        return None
    return torch.randint(-(2**63), 2**63 - 1, (2,), device=device, dtype=torch.int64)


def _attention(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
               causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs):
    for x, name in ((q, "q"), (k, "k"), (v, "v")):
        _check_tensor(x, name)
    for x, name in ((cu_seqlens_q, "cu_seqlens_q"), (cu_seqlens_k, "cu_seqlens_k"), (seqused_k, "seqused_k"),
                    (alibi_slopes, "alibi_slopes")):
        if x is not None and (not isinstance(x, torch.Tensor) or x.device.type != "cuda"):
            raise ValueError(f"{name}: expected a CUDA tensor")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: {dropout_p} is not in [0, 1)")
    q, k, v = (_last_dim_contiguous(x) for x in (q, k, v))
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    wl, wr = _window(window_size)
    out, lse = _ops.attention(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, int(max_seqlen_q), int(max_seqlen_k),
                              alibi_slopes, _philox(dropout_p, q.device), float(dropout_p), float(softmax_scale),
                              bool(causal), wl, wr, float(softcap), bool(deterministic))
    return (out, lse, None) if return_attn_probs else out


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """Attention over q [b, sq, h, d], k/v [b, sk, hk, d] (h % hk == 0: MQA/GQA). Returns out like q
    (and, with return_attn_probs, (out, softmax_lse, None))."""
    return _attention(q, k, v, None, None, None, 0, 0, dropout_p, softmax_scale, causal, window_size, softcap,
                      alibi_slopes, deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """As flash_attn_func with kv [b, sk, 2, hk, d]."""
    return flash_attn_func(q, kv[:, :, 0], kv[:, :, 1], dropout_p, softmax_scale, causal, window_size, softcap,
                           alibi_slopes, deterministic, return_attn_probs)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """As flash_attn_func with qkv [b, s, 3, h, d]."""
    return flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dropout_p, softmax_scale, causal, window_size,
                           softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None, seqused_k=None):
    """Variable-length batches: q [total_q, h, d], k/v [total_k, hk, d], cu_seqlens_* int32 [b + 1]."""
    if block_table is not None:
        raise NotImplementedError("block_table: paged KV is not supported yet")
    return _attention(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, dropout_p,
                      softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """As flash_attn_varlen_func with kv [total_k, 2, hk, d]."""
    return flash_attn_varlen_func(q, kv[:, 0], kv[:, 1], cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                  dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False):
    """As flash_attn_varlen_func with qkv [total, 3, h, d] and one cu_seqlens for q and k."""
    return flash_attn_varlen_func(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
                                  dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention's shape and semantics ([b, h, s, d]; causal aligned
    to the top-left corner), on flashattn's kernels. attn_mask is not supported (use causal, a window
    through flash_attn_func, or ALiBi)."""
    if attn_mask is not None:
        raise ValueError("attn_mask: arbitrary masks are not supported; use is_causal, or flash_attn_func's "
                         "window_size / alibi_slopes")
    for x, name in ((query, "query"), (key, "key"), (value, "value")):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"{name}: expected a [batch, heads, seqlen, head_dim] tensor")
    if key.shape[1] != query.shape[1] and not enable_gqa:
        raise ValueError(f"key: {key.shape[1]} heads differ from query's {query.shape[1]}; pass enable_gqa=True")
    sq, sk = query.shape[2], key.shape[2]
    window = (-1, -1)
    if is_causal and sq != sk:
        # SDPA's causal mask is top-left aligned: key j is visible to query i iff j <= i. flashattn's
        # windows are bottom-right aligned (j <= i + sk - sq + right), so right = sq - sk.
        if sq < sk:
            raise ValueError(f"is_causal with seqlen_q {sq} < seqlen_k {sk} (top-left aligned) is not supported; "
                             "flash_attn_func's causal aligns to the bottom-right")
        window, is_causal = (-1, sq - sk), False
    out = flash_attn_func(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), dropout_p=dropout_p,
                          softmax_scale=scale, causal=is_causal, window_size=window)
    return out.transpose(1, 2)
