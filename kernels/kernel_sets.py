"""Which kernel serves each weight type on each kernel path and precision: one immutable set each.

``linear`` holds the exact set of one path as the active one and swaps it in
``set_kernel_path``; a product of another precision takes that path's set of its
precision. Nothing rewrites a table in place. A path's SIMD modules are imported
only when its set is first built, so a CPU never compiles code it cannot run.

Precisions (docs/design.md §2.8): ``exact`` multiplies float32 activations;
``fast`` multiplies the MXFP4 and Q8_0 weights by activations rounded to two 8-bit
pieces per 32-value block (pieces.py), with integer kernels for decode where the CPU
has them (AVX-512 ``avx512vnni`` and ``avx512vbmi``: fast_vnni.py; AVX2 on the ``ssse3``
path: fast_avx2.py) and the exact float kernels fed the rounded values everywhere else. Other weight types are
multiplied exactly in both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import ggml_types as gt
from . import simd

Kernels = Mapping[int, Callable]  # ggml type id -> kernel


PRECISIONS = ("exact", "fast")
ROUNDED_TYPES = frozenset({gt.MXFP4, gt.Q8_0})  # the weight types whose activations `fast` rounds


@dataclass(frozen=True)
class KernelSet:
    """The kernels of one path and precision, by ggml type id (contracts in matvec.py, matmul.py, gemm_t.py,
    mxfp4_few.py)."""

    path: str
    expert_matvec: Kernels  # every type: out[i] = W[experts[i]] @ x[i]
    matmul: Kernels  # every type: row-dot prefill, out = X @ W.T
    matmul_t: Kernels  # types with a token-lane prefill kernel on this path: outT += W @ XT
    matmul_few: Kernels  # types with a few-token product on this path: out = X @ W.T
    grouped_matvec: Kernels  # every type: expert_matvec's products, each row read once per group of vectors
    precision: str = "exact"


def available_paths() -> list[str]:
    """The paths this CPU runs, fastest first ('portable' always)."""
    return simd.supported_isas(simd.target_features())


def has_avx2_int_kernels(path: str, features: dict[str, bool] | None = None) -> bool:
    """Whether ``fast`` decodes with the 16-bit integer kernels of fast_avx2.py on ``path`` on this CPU."""
    f = simd.target_features() if features is None else features
    return path == "ssse3" and bool(f.get("avx2"))


def has_vnni_kernels(path: str, features: dict[str, bool] | None = None) -> bool:
    """Whether ``fast`` decodes with the integer kernels of fast_vnni.py on ``path`` on this CPU."""
    f = simd.target_features() if features is None else features
    return path == "avx512" and all(f.get(n) for n in ("avx512bw", "avx512vnni", "avx512vbmi"))


@functools.cache
def for_path(path: str, precision: str = "exact") -> KernelSet:
    """The kernel set of ``path`` ('avx512', 'ssse3' or 'portable') and ``precision`` ('exact' or 'fast').

    ``ValueError`` if this CPU cannot run the path, or for an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "fast":
        return _fast(for_path(path))
    if path not in available_paths():
        raise ValueError(f"kernel path {path!r} is not available on this CPU "
                         f"(available: {', '.join(available_paths())})")
    # by name: the package attributes `matmul` and `matvec` are the public functions, not these modules
    from .matmul import matmul_bf16, matmul_f16, matmul_f32, matmul_mxfp4, matmul_q8_0
    from .matvec import (expert_matvec_bf16, expert_matvec_f16, expert_matvec_f32, expert_matvec_mxfp4,
                         expert_matvec_q8_0, grouped_kernel)

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
        matmul_t = {gt.MXFP4: gemm_t.MATMUL_T_MXFP4[path], gt.Q8_0: gemm_t.MATMUL_T_Q8_0[path],
                    gt.BF16: gemm_t.MATMUL_T_BF16[path]}
    if path == "avx512":
        from . import mxfp4_few

        matmul_few[gt.MXFP4] = mxfp4_few.matmul_few_mxfp4_avx512
    grouped = {t: grouped_kernel(k) for t, k in expert_matvec.items()}
    return KernelSet(path, *(MappingProxyType(t) for t in (expert_matvec, matmul, matmul_t, matmul_few, grouped)))


def _fast(exact: KernelSet) -> KernelSet:
    """``exact`` with its MXFP4 and Q8_0 products fed the rounded activations (integer decode kernels where there are)."""
    from . import pieces

    tables = []
    for table, columns in ((exact.expert_matvec, False), (exact.matmul, False), (exact.matmul_t, True),
                           (exact.matmul_few, False), (exact.grouped_matvec, False)):
        t = dict(table)
        for ggml_type in ROUNDED_TYPES & t.keys():
            t[ggml_type] = pieces.rounded(t[ggml_type], tokens_in_columns=columns)
        tables.append(t)
    integer = None
    if has_vnni_kernels(exact.path):
        from . import fast_vnni

        integer = {gt.MXFP4: fast_vnni.expert_matvec_mxfp4_vnni, gt.Q8_0: fast_vnni.expert_matvec_q8_0_vnni}
    elif has_avx2_int_kernels(exact.path):
        from . import fast_avx2

        integer = {gt.MXFP4: fast_avx2.expert_matvec_mxfp4_avx2, gt.Q8_0: fast_avx2.expert_matvec_q8_0_avx2}
    if integer is not None:
        from .matvec import grouped_kernel

        for ggml_type, kernel in integer.items():
            tables[0][ggml_type] = kernel
            tables[4][ggml_type] = grouped_kernel(kernel)
    return KernelSet(exact.path, *(MappingProxyType(t) for t in tables), precision="fast")
