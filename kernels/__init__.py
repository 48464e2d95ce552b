"""Numba kernels for gptoss (installed as `gptoss_kernels`).

Kernels take NumPy arrays and scalars only: no I/O, no model objects, no CLI.
Importing the package loads nothing but :mod:`cache_dir` (so the GGUF reader's
``ggml_types`` comes without Numba); the functions below load their module on
first use.

Modules, one job each:
    ggml_types  type ids, block geometry, storage layout of a row
    cache_dir   where Numba caches the compiled kernels (the user cache, never the package)
    specialize  one loop, many kernels: a template jitted per decoder, each cached on its own
    decode      scalar decoders (f16, bf16, E8M0 scale, E2M1 nibble) for use in kernels
    dequant     stored rows -> float32, bit-exact with gguf.quants (the row and block loops)
    matvec      decode-time fused dequantize x vector kernels (the expert task loop, plain row dots)
    matmul      prefill-time tiled dequantize x matrix kernels (the tiled loop, one per type)
    simd        register-resident vector type and intrinsics (MXFP4 shuffles, Q8_0 / BF16
                widening); picks the kernel path from the CPU
    vector_dots row dot loops on those registers (two or four accumulators), shared by the SIMD kernels
    mxfp4_fast  MXFP4 matvec / matmul kernels on those intrinsics (AVX-512, SSSE3)
    q8_fast     Q8_0 and BF16 matvec kernels on those intrinsics
    gemm_t      prefill kernels with 16 tokens per vector (MXFP4, Q8_0, BF16; SIMD paths)
    mxfp4_few   MXFP4 products for 2-15 tokens, each block decoded once per four tokens (AVX-512)
    pieces      the `fast` precision's activations: two 8-bit pieces per 32-value block (and their float form)
    simd_vnni   the `fast` precision's integer group products (AVX-512 VNNI / VBMI intrinsics)
    fast_vnni   the `fast` precision's MXFP4 / Q8_0 decode kernels on those products
    simd_i16    the `fast` precision's integer block products on AVX2 (16-bit activations, vpmaddwd)
    fast_avx2   the `fast` precision's MXFP4 / Q8_0 decode kernels on AVX2
    kernel_sets which kernel serves each type on each path and precision (one immutable set each)
    quantize    float32 rows -> Q8_0 / MXFP4 / BF16 bytes, bit-identical with gguf.quants
    linear      public matvec / matvecs / expert_matvec / grouped_matvec / matmul / matmul_t with checks and dispatch
    norms       rmsnorm
    rope        half-split rotary embedding
    attention   causal GQA attention with sinks, sliding window, ring cache
    head_lanes  f32x8 vector ops for attention (one lane per query head), vector exp
    moe         router top-k, clamped SwiGLU
    exp64       branch-free float64 exp that LLVM vectorizes (SwiGLU)
    validate    argument checks shared by the public functions
    bench       matvec / expert_matvec / matmul benchmark (``python -m gptoss_kernels.bench``)
"""

from __future__ import annotations

import importlib
import sys
import types

from .cache_dir import use_user_cache_dir

use_user_cache_dir()  # before any kernel module is decorated

_FUNCTIONS = {
    "apply_rope": "rope",
    "attention": "attention",
    "dequantize": "dequant",
    "expert_matvec": "linear",
    "grouped_matvec": "linear",
    "kernel_path": "linear",
    "matmul": "linear",
    "matvec": "linear",
    "matvecs": "linear",
    "rmsnorm": "norms",
    "router_topk": "moe",
    "set_kernel_path": "linear",
    "swiglu": "moe",
}

__all__ = sorted(_FUNCTIONS)


def __getattr__(name: str):
    if name not in _FUNCTIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FUNCTIONS))


class _Package(types.ModuleType):
    """Keeps ``attention``, ``matmul`` and ``matvec`` the functions when their modules load.

    Importing a submodule sets it as an attribute of the package, which would hide
    the function of the same name; these stay reachable as submodules all the same.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if not (name in _FUNCTIONS and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
