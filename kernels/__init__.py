"""Numba kernels for gptoss (installed as `gptoss_kernels`).

Kernels take NumPy arrays and scalars only: no I/O, no model objects, no CLI.

Modules, one job each:
    ggml_types  type ids, block geometry, storage layout of a row
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
    kernel_sets which kernel serves each type on each path (one immutable set per path)
    quantize    float32 rows -> Q8_0 / MXFP4 / BF16 bytes, bit-identical with gguf.quants
    linear      public matvec / expert_matvec / matmul / matmul_t with checks and dispatch
    norms       rmsnorm
    rope        half-split rotary embedding
    attention   causal GQA attention with sinks, sliding window, ring cache
    head_lanes  f32x8 vector ops for attention (one lane per query head), vector exp
    moe         router top-k, clamped SwiGLU
    exp64       branch-free float64 exp that LLVM vectorizes (SwiGLU)
    validate    argument checks shared by the public functions
    bench       MXFP4 matvec benchmark (``python -m gptoss_kernels.bench``)
"""

from .attention import attention
from .dequant import dequantize
from .linear import expert_matvec, kernel_path, matmul, matvec, set_kernel_path
from .moe import router_topk, swiglu
from .norms import rmsnorm
from .rope import apply_rope

__all__ = [
    "apply_rope",
    "attention",
    "dequantize",
    "expert_matvec",
    "matmul",
    "kernel_path",
    "matvec",
    "rmsnorm",
    "router_topk",
    "set_kernel_path",
    "swiglu",
]
