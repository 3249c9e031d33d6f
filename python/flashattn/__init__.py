"""flashattn: exact fused attention (FlashAttention-2 on sm80+, Hopper kernels on sm90).

A drop-in for the ``flash_attn`` package: ``from flashattn import flash_attn_func`` instead of
``from flash_attn import flash_attn_func``. The compiled part (``flashattn._C``) links no libtorch, so
one build works with every torch version.
"""
import os

try:
    # torch first: loading flashattn._C before torch made torch's own import crash (seen with
    # torch 2.11), and the extension only needs torch to be importable, never linked.
    import torch as _torch  # noqa: F401
except ImportError:  # the C API below still works without torch
    _torch = None

from . import _C  # noqa: E402

__version__ = _C.__version__

# The installed C++ package: cmake -DCMAKE_PREFIX_PATH=$(python -c "import flashattn; print(flashattn.cmake_prefix_path)")
cmake_prefix_path = os.path.dirname(os.path.abspath(__file__))

if _torch is not None:
    from .interface import (  # noqa: F401
        flash_attn_func,
        flash_attn_kvpacked_func,
        flash_attn_qkvpacked_func,
        flash_attn_varlen_func,
        flash_attn_varlen_kvpacked_func,
        flash_attn_varlen_qkvpacked_func,
        scaled_dot_product_attention,
    )

__all__ = [
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
    "scaled_dot_product_attention",
    "cmake_prefix_path",
]
