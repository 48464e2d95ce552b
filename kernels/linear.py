"""Public entry points for weight products: matvec, expert_matvec, matmul.

Each checks its arguments (the kernels do no bounds checks), normalizes the
arrays to one compiled signature per weight type, and dispatches on the ggml
type id. ``out`` arrays are written in place.

MXFP4, Q8_0 and BF16 have two implementations: the plain loops (matvec.py /
matmul.py, any CPU) and the explicit-vector kernels of mxfp4_fast.py and
q8_fast.py (x86 with AVX-512 or SSSE3). One path is chosen for all of them at
import from the CPU's features, or forced with
``GPTOSS_KERNELS=portable|ssse3|avx512`` (see simd.py); :func:`kernel_path`
says which one is in use and :func:`set_kernel_path` switches (tests,
benchmarks). ``mxfp4_path`` / ``set_mxfp4_path`` are the older names.
"""

from __future__ import annotations

import numpy as np

from . import ggml_types as gt
from . import matmul as _mm
from . import matvec as _mv
from . import simd
from .validate import as_input, as_weight, check_output, readonly

_EXPERT_MATVEC = {
    gt.F32: _mv.expert_matvec_f32,
    gt.F16: _mv.expert_matvec_f16,
    gt.BF16: _mv.expert_matvec_bf16,
    gt.Q8_0: _mv.expert_matvec_q8_0,
    gt.MXFP4: _mv.expert_matvec_mxfp4,
}

_MATMUL = {
    gt.F32: _mm.matmul_f32,
    gt.F16: _mm.matmul_f16,
    gt.BF16: _mm.matmul_bf16,
    gt.Q8_0: _mm.matmul_q8_0,
    gt.MXFP4: _mm.matmul_mxfp4,
}

# Token-lane prefill kernels (gemm_t.py), on the SIMD paths only; other types use _MATMUL.
_MATMUL_T: dict = {}
# Below this many tokens one matvec per token wins: the token lanes are padded to 8, so
# 2-4 tokens pay for 8, while a matvec's second and later passes find the matrix in cache
# (measured on 20b shapes, 2 threads: MXFP4 expert 2 tokens 1.3 vs 3.6 ms, 4 tokens 2.0 vs
# 2.9 ms; Q8_0 4096x2880 2 tokens 2.3 vs 5.2 ms, 4 tokens 4.2 vs 4.1 ms).
MATMUL_T_MIN_TOKENS = 5

# MXFP4 on the AVX-512 path: below this many tokens mxfp4_few.py (rows read once, each block
# decoded once for up to four tokens) beats both of the above (20b expert 2880 x 2880 from
# memory, 2 threads, alternating: 1.2-1.8x for 2-12 tokens, 1.1x for 13-15, equal at 16).
MATMUL_FEW_MAX_TOKENS = 16
_MATMUL_FEW: dict = {}

_PORTABLE_EXPERT_MATVEC = dict(_EXPERT_MATVEC)
_PORTABLE_MATMUL = dict(_MATMUL)
_PATH = "portable"


def kernel_path() -> str:
    """The kernels in use for MXFP4, Q8_0 and BF16: 'avx512', 'ssse3' or 'portable'."""
    return _PATH


def set_kernel_path(path: str) -> str:
    """Use the kernels of ``path`` ('avx512', 'ssse3', 'portable' or 'auto'); returns the old path.

    Raises ``ValueError`` for a path this CPU cannot run.
    """
    global _PATH
    if path == "auto":
        path = simd.choose_isa(simd.target_features())
    if path not in simd.supported_isas(simd.target_features()):
        raise ValueError(f"kernel path {path!r} is not available on this CPU "
                         f"(available: {', '.join(simd.supported_isas(simd.target_features()))})")
    _EXPERT_MATVEC.update(_PORTABLE_EXPERT_MATVEC)
    _MATMUL.update(_PORTABLE_MATMUL)
    _MATMUL_T.clear()
    _MATMUL_FEW.clear()
    if path == "avx512":
        from . import mxfp4_few

        _MATMUL_FEW[gt.MXFP4] = mxfp4_few.matmul_few_mxfp4_avx512
    if path != "portable":
        from . import gemm_t, mxfp4_fast, q8_fast

        _MATMUL_T[gt.MXFP4] = gemm_t.MATMUL_T_MXFP4[path]
        _MATMUL_T[gt.Q8_0] = gemm_t.matmul_t_q8_0
        _MATMUL_T[gt.BF16] = gemm_t.matmul_t_bf16

        _EXPERT_MATVEC[gt.MXFP4] = mxfp4_fast.EXPERT_MATVEC[path]
        _MATMUL[gt.MXFP4] = mxfp4_fast.MATMUL[path]
        _EXPERT_MATVEC[gt.Q8_0] = q8_fast.EXPERT_MATVEC_Q8_0[path]
        _EXPERT_MATVEC[gt.BF16] = q8_fast.EXPERT_MATVEC_BF16[path]
    old, _PATH = _PATH, path
    return old


mxfp4_path = kernel_path
set_mxfp4_path = set_kernel_path

set_kernel_path(simd.MXFP4_ISA)

_EXPERT0 = readonly(np.zeros(1, dtype=np.int64))


def expert_matvec(ggml_type: int, w3: np.ndarray, experts: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[i] = W[experts[i]] @ x[i] for every i, in one parallel launch.

    w3: stacked expert weights ``[n_experts, rows, width]`` in storage form;
    experts: ``k`` expert ids; x: float32 ``[k, cols]``; out: float32 ``[k, rows]``.
    """
    x = as_input(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be [k, cols], got shape {x.shape}")
    k, cols = x.shape
    w3 = as_weight(ggml_type, w3, cols, min_ndim=3, max_ndim=3)
    idx = readonly(np.ascontiguousarray(experts, dtype=np.int64).reshape(-1))
    if idx.shape[0] != k:
        raise ValueError(f"{idx.shape[0]} expert ids for {k} input rows")
    if k and (idx.min() < 0 or idx.max() >= w3.shape[0]):
        raise ValueError(f"expert id out of range 0..{w3.shape[0] - 1}")
    check_output(out, "out", (k, w3.shape[1]))
    if k and w3.shape[1]:
        _EXPERT_MATVEC[ggml_type](w3, idx, x, out)


def matvec(ggml_type: int, w: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out = W @ x for one vector (the decode step). w: ``[rows, width]``, x: ``[cols]``, out: ``[rows]``."""
    x = as_input(x, "x")
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    w = as_weight(ggml_type, w, x.shape[0])
    check_output(out, "out", (w.shape[0],))
    if w.shape[0]:
        _EXPERT_MATVEC[ggml_type](w[None], _EXPERT0, x[None], out[None])


def matmul(ggml_type: int, w: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
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
    if ggml_type in _MATMUL_FEW and t < MATMUL_FEW_MAX_TOKENS:
        _MATMUL_FEW[ggml_type](w, x, out)
    elif ggml_type in _MATMUL_T and t < MATMUL_T_MIN_TOKENS:
        _EXPERT_MATVEC[ggml_type](w[None], readonly(np.zeros(t, dtype=np.int64)), x, out)
    elif ggml_type in _MATMUL_T:
        xt = np.zeros((x.shape[1], token_columns(t)), dtype=np.float32)
        xt[:, :t] = x.T
        out_t = np.zeros((_round16(rows), xt.shape[1]), dtype=np.float32)
        _MATMUL_T[ggml_type](w, readonly(xt), out_t)
        out[...] = out_t[:rows, :t].T
    else:
        _MATMUL[ggml_type](w, x, out)


def matmul_t(ggml_type: int, w: np.ndarray, xt: np.ndarray, out_t: np.ndarray) -> None:
    """out_t[:rows] += W @ XT with the tokens in columns (the prefill layout of gemm_t.py).

    XT: float32 ``[cols, n]``, ``n`` a multiple of 8 (see :func:`token_columns`; padding columns are
    computed and ignored); out_t: float32 ``[rows rounded up to 16, n]``,
    accumulated into. Types without a token-lane kernel (or the portable
    path) go through :func:`matmul` and give the same contract.
    """
    xt = as_input(xt, "XT")
    if xt.ndim != 2 or xt.shape[1] % 8:
        raise ValueError(f"XT must be [cols, n] with n a multiple of 8, got shape {xt.shape}")
    w = as_weight(ggml_type, w, xt.shape[0])
    rows, n = w.shape[0], xt.shape[1]
    check_output(out_t, "out_t", (_round16(rows), n))
    if not (rows and n):
        return
    if ggml_type in _MATMUL_T:
        _MATMUL_T[ggml_type](w, xt, out_t)
    else:
        out = np.empty((n, rows), dtype=np.float32)
        _MATMUL[ggml_type](w, np.ascontiguousarray(xt.T), out)
        out_t[:rows] += out.T


def token_columns(t: int) -> int:
    """Columns of XT for ``t`` tokens: the next multiple of 8 (the kernels' smallest token group)."""
    return (t + 7) // 8 * 8


def _round16(n: int) -> int:
    return (n + 15) // 16 * 16
