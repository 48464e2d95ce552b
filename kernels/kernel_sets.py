"""Which kernel serves each weight type on each kernel path: one immutable set per path.

``linear`` holds one set as the active one and swaps it in ``set_kernel_path``;
nothing rewrites a table in place. A path's SIMD modules are imported only when
its set is first built, so a CPU never compiles code it cannot run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import ggml_types as gt
from . import simd

Kernels = Mapping[int, Callable]  # ggml type id -> kernel


@dataclass(frozen=True)
class KernelSet:
    """The kernels of one path, by ggml type id (contracts in matvec.py, matmul.py, gemm_t.py, mxfp4_few.py)."""

    path: str
    expert_matvec: Kernels  # every type: out[i] = W[experts[i]] @ x[i]
    matmul: Kernels  # every type: row-dot prefill, out = X @ W.T
    matmul_t: Kernels  # types with a token-lane prefill kernel on this path: outT += W @ XT
    matmul_few: Kernels  # types with a few-token product on this path: out = X @ W.T


def available_paths() -> list[str]:
    """The paths this CPU runs, fastest first ('portable' always)."""
    return simd.supported_isas(simd.target_features())


@functools.cache
def for_path(path: str) -> KernelSet:
    """The kernel set of ``path`` ('avx512', 'ssse3' or 'portable'); ``ValueError`` if this CPU cannot run it."""
    if path not in available_paths():
        raise ValueError(f"kernel path {path!r} is not available on this CPU "
                         f"(available: {', '.join(available_paths())})")
    # by name: the package attributes `matmul` and `matvec` are the public functions, not these modules
    from .matmul import matmul_bf16, matmul_f16, matmul_f32, matmul_mxfp4, matmul_q8_0
    from .matvec import (expert_matvec_bf16, expert_matvec_f16, expert_matvec_f32, expert_matvec_mxfp4,
                         expert_matvec_q8_0)

    expert_matvec = {gt.F32: expert_matvec_f32, gt.F16: expert_matvec_f16, gt.BF16: expert_matvec_bf16,
                     gt.Q8_0: expert_matvec_q8_0, gt.MXFP4: expert_matvec_mxfp4}
    matmul = {gt.F32: matmul_f32, gt.F16: matmul_f16, gt.BF16: matmul_bf16, gt.Q8_0: matmul_q8_0,
              gt.MXFP4: matmul_mxfp4}
    matmul_t: dict[int, Callable] = {}
    matmul_few: dict[int, Callable] = {}
    if path != "portable":
        from . import gemm_t, mxfp4_fast, q8_fast

        expert_matvec[gt.MXFP4] = mxfp4_fast.EXPERT_MATVEC[path]
        expert_matvec[gt.Q8_0] = q8_fast.EXPERT_MATVEC_Q8_0[path]
        expert_matvec[gt.BF16] = q8_fast.EXPERT_MATVEC_BF16[path]
        matmul[gt.MXFP4] = mxfp4_fast.MATMUL[path]
        matmul_t = {gt.MXFP4: gemm_t.MATMUL_T_MXFP4[path], gt.Q8_0: gemm_t.matmul_t_q8_0, gt.BF16: gemm_t.matmul_t_bf16}
    if path == "avx512":
        from . import mxfp4_few

        matmul_few[gt.MXFP4] = mxfp4_few.matmul_few_mxfp4_avx512
    return KernelSet(path, *(MappingProxyType(t) for t in (expert_matvec, matmul, matmul_t, matmul_few)))
