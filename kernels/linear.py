"""Public entry points for weight products: matvec, expert_matvec, grouped_matvec, matvecs, matmul.

Each checks its arguments (the kernels do no bounds checks), normalizes the
arrays to one compiled signature per weight type, and dispatches on the ggml
type id. ``out`` arrays are written in place.

MXFP4, Q8_0 and BF16 have two implementations: the plain loops (matvec.py /
matmul.py, any CPU) and the explicit-vector kernels of mxfp4_fast.py,
q8_fast.py, gemm_t.py and mxfp4_few.py (x86 with AVX-512 or SSSE3). Each path's
kernels form one immutable :class:`kernel_sets.KernelSet`; the set of the path
chosen at import from the CPU's features (or forced with
``GPTOSS_KERNELS=portable|ssse3|avx512``, see simd.py) is the active one.
:func:`kernel_path` says which path that is and :func:`set_kernel_path` swaps
in another set (tests, benchmarks).

Every product takes ``precision`` ('exact', the default here, or 'fast': the MXFP4
and Q8_0 activations rounded to two 8-bit pieces per block, docs/design.md §2.8);
the active path's set of that precision computes it.
"""

from __future__ import annotations

import numpy as np

from . import kernel_sets, simd
from .kernel_sets import KernelSet
from .validate import as_input, as_weight, check_output, readonly

# Below this many tokens the decode kernels win over the token-lane kernels: the token lanes
# are padded to 8, so 2-4 tokens pay for 8 (measured with one matvec per token, whose second
# and later passes found the matrix in cache, on 20b shapes, 2 threads: MXFP4 expert 2 tokens
# 1.3 vs 3.6 ms, 4 tokens 2.0 vs 2.9 ms; Q8_0 4096x2880 2 tokens 2.3 vs 5.2 ms, 4 tokens 4.2 vs
# 4.1 ms). They now run as grouped_matvec, which reads each row once for all the tokens.
MATMUL_T_MIN_TOKENS = 5

# MXFP4 on the AVX-512 path: below this many tokens mxfp4_few.py (rows read once, each block
# decoded once for up to four tokens) beats both of the above (20b expert 2880 x 2880 from
# memory, 2 threads, alternating: 1.2-1.8x for 2-12 tokens, 1.1x for 13-15, equal at 16).
MATMUL_FEW_MAX_TOKENS = 16

_active: KernelSet = kernel_sets.for_path(simd.KERNEL_ISA)


def active_kernels(precision: str = "exact") -> KernelSet:
    """The kernel set in use for ``precision`` (see :func:`set_kernel_path`)."""
    return _active if precision == "exact" else kernel_sets.for_path(_active.path, precision)


def kernel_path() -> str:
    """The kernels in use for MXFP4, Q8_0 and BF16: 'avx512', 'ssse3' or 'portable'."""
    return _active.path


def set_kernel_path(path: str) -> str:
    """Use the kernels of ``path`` ('avx512', 'ssse3', 'portable' or 'auto'); returns the old path.

    Raises ``ValueError`` for a path this CPU cannot run.
    """
    global _active
    if path == "auto":
        path = simd.choose_isa(simd.target_features())
    old, _active = _active.path, kernel_sets.for_path(path)
    return old


_EXPERT0 = readonly(np.zeros(1, dtype=np.int64))


def _vectors_and_experts(ggml_type: int, x: np.ndarray, w3: np.ndarray, rows: str) -> tuple[np.ndarray, np.ndarray]:
    """x checked as float32 ``[rows, cols]`` and w3 as stacked expert weights of that width."""
    x = as_input(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be [{rows}, cols], got shape {x.shape}")
    return x, as_weight(ggml_type, w3, x.shape[1], min_ndim=3, max_ndim=3)


def _expert_ids(experts: np.ndarray, n_experts: int) -> np.ndarray:
    idx = readonly(np.ascontiguousarray(experts, dtype=np.int64).reshape(-1))
    if idx.shape[0] and (idx.min() < 0 or idx.max() >= n_experts):
        raise ValueError(f"expert id out of range 0..{n_experts - 1}")
    return idx


def expert_matvec(ggml_type: int, w3: np.ndarray, experts: np.ndarray, x: np.ndarray, out: np.ndarray,
                  precision: str = "exact") -> None:
    """out[i] = W[experts[i]] @ x[i] for every i, in one parallel launch.

    w3: stacked expert weights ``[n_experts, rows, width]`` in storage form;
    experts: ``k`` expert ids; x: float32 ``[k, cols]``; out: float32 ``[k, rows]``.
    """
    x, w3 = _vectors_and_experts(ggml_type, x, w3, "k")
    k = x.shape[0]
    idx = _expert_ids(experts, w3.shape[0])
    if idx.shape[0] != k:
        raise ValueError(f"{idx.shape[0]} expert ids for {k} input rows")
    check_output(out, "out", (k, w3.shape[1]))
    if k and w3.shape[1]:
        active_kernels(precision).expert_matvec[ggml_type](w3, idx, x, out)


def matvec(ggml_type: int, w: np.ndarray, x: np.ndarray, out: np.ndarray, precision: str = "exact") -> None:
    """out = W @ x for one vector (the decode step). w: ``[rows, width]``, x: ``[cols]``, out: ``[rows]``."""
    x = as_input(x, "x")
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    w = as_weight(ggml_type, w, x.shape[0])
    check_output(out, "out", (w.shape[0],))
    if w.shape[0]:
        active_kernels(precision).expert_matvec[ggml_type](w[None], _EXPERT0, x[None], out[None])


def grouped_matvec(ggml_type: int, w3: np.ndarray, experts: np.ndarray, starts: np.ndarray, x: np.ndarray,
                   out: np.ndarray, precision: str = "exact") -> None:
    """out[p] = W[experts[g]] @ x[p] for the rows p of each group g (``starts[g] <= p < starts[g + 1]``).

    Each product is the one :func:`expert_matvec` computes for that vector and matrix, bit
    for bit, so a vector's result does not depend on the vectors beside it (batch-invariant
    decode steps); each row of a matrix is read once per group, not once per vector.
    w3: ``[n_experts, rows, width]``; experts: ``G`` ids; starts: ``G + 1`` offsets from 0 to ``P``;
    x: float32 ``[P, cols]``; out: float32 ``[P, rows]``.
    """
    x, w3 = _vectors_and_experts(ggml_type, x, w3, "P")
    p = x.shape[0]
    idx = _expert_ids(experts, w3.shape[0])
    bounds = readonly(np.ascontiguousarray(starts, dtype=np.int64).reshape(-1))
    if bounds.shape[0] != idx.shape[0] + 1 or bounds[0] != 0 or bounds[-1] != p or np.any(np.diff(bounds) < 0):
        raise ValueError(f"starts must rise from 0 to {p} in {idx.shape[0] + 1} offsets")
    check_output(out, "out", (p, w3.shape[1]))
    if p and w3.shape[1]:
        active_kernels(precision).grouped_matvec[ggml_type](w3, idx, bounds, x, out)


def matvecs(ggml_type: int, w: np.ndarray, x: np.ndarray, out: np.ndarray, precision: str = "exact") -> None:
    """out[t] = W @ x[t] for each row of x, each exactly as :func:`matvec` computes it (the matrix read once).

    w: ``[rows, width]``, x: ``[T, cols]``, out: ``[T, rows]``.
    """
    x = as_input(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be [T, cols], got shape {x.shape}")
    grouped_matvec(ggml_type, w[None], _EXPERT0, np.array([0, x.shape[0]]), x, out, precision)


def matmul(ggml_type: int, w: np.ndarray, x: np.ndarray, out: np.ndarray, precision: str = "exact") -> None:
    """out = X @ W.T for a block of tokens (prefill). X: ``[T, cols]``, out: ``[T, rows]``.

    An expert's matrix is passed as the 2-D view ``w3[e]``.
    """
    x = as_input(x, "X")
    if x.ndim != 2:
        raise ValueError(f"X must be [T, cols], got shape {x.shape}")
    w = as_weight(ggml_type, w, x.shape[1])
    check_output(out, "out", (x.shape[0], w.shape[0]))
    t, rows = x.shape[0], w.shape[0]
    if not (t and rows):
        return
    kernels = active_kernels(precision)
    few = kernels.matmul_few.get(ggml_type)
    lanes = kernels.matmul_t.get(ggml_type)
    if few is not None and t < MATMUL_FEW_MAX_TOKENS:
        few(w, x, out)
    elif lanes is not None and t < MATMUL_T_MIN_TOKENS:  # the decode kernels, each row read once for the tokens
        kernels.grouped_matvec[ggml_type](w[None], _EXPERT0, readonly(np.array([0, t], dtype=np.int64)), x, out)
    elif lanes is not None:  # through matmul_t: X transposed and padded in, the result back
        xt = np.zeros((x.shape[1], token_columns(t)), dtype=np.float32)
        xt[:, :t] = x.T
        out_t = np.zeros((_round16(rows), xt.shape[1]), dtype=np.float32)
        matmul_t(ggml_type, w, xt, out_t, precision)
        out[...] = out_t[:rows, :t].T
    else:
        kernels.matmul[ggml_type](w, x, out)


def matmul_t(ggml_type: int, w: np.ndarray, xt: np.ndarray, out_t: np.ndarray, precision: str = "exact") -> None:
    """out_t[:rows] += W @ XT with the tokens in columns (the prefill layout of gemm_t.py).

    XT: float32 ``[cols, n]``, ``n`` a multiple of 8 (see :func:`token_columns`; padding columns are
    computed and ignored); out_t: float32 ``[rows rounded up to 16, n]``,
    accumulated into. Types without a token-lane kernel (or the portable
    path) go through the row-dot kernel and give the same contract.
    """
    xt = as_input(xt, "XT")
    if xt.ndim != 2 or xt.shape[1] % 8:
        raise ValueError(f"XT must be [cols, n] with n a multiple of 8, got shape {xt.shape}")
    w = as_weight(ggml_type, w, xt.shape[0])
    rows, n = w.shape[0], xt.shape[1]
    check_output(out_t, "out_t", (_round16(rows), n))
    if not (rows and n):
        return
    kernels = active_kernels(precision)
    lanes = kernels.matmul_t.get(ggml_type)
    if lanes is not None:
        lanes(w, xt, out_t)
    else:
        out = np.empty((n, rows), dtype=np.float32)
        kernels.matmul[ggml_type](w, np.ascontiguousarray(xt.T), out)
        out_t[:rows] += out.T


def token_columns(t: int) -> int:
    """Columns of XT for ``t`` tokens: the next multiple of 8 (the kernels' smallest token group)."""
    return (t + 7) // 8 * 8


def _round16(n: int) -> int:
    return (n + 15) // 16 * 16
