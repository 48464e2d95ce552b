"""Argument checks shared by the public kernel wrappers.

Kernels index raw memory without bounds checks, so every wrapper verifies
dtypes and shapes first and raises ``ValueError`` with a plain message. The
wrappers also normalize arrays so each Numba kernel compiles for one type
signature only: weights become read-only C-contiguous views (file maps are
read-only; tests pass writable arrays), activations float32 C-contiguous.
"""

from __future__ import annotations

import numpy as np

from . import ggml_types as gt


def storage(ggml_type: int, cols: int) -> tuple[np.dtype, int]:
    """(dtype, last-axis length) a kernel expects for one row of ``cols`` weights."""
    if ggml_type not in gt.SUPPORTED:
        raise ValueError(
            f"unsupported weight type {gt.type_name(ggml_type)} "
            f"(supported: {', '.join(gt.type_name(t) for t in sorted(gt.SUPPORTED))})"
        )
    block = gt.block_size(ggml_type)
    if cols <= 0 or cols % block:
        raise ValueError(f"{gt.type_name(ggml_type)} rows need a positive multiple of {block} columns, got {cols}")
    return gt.storage_layout(ggml_type, cols)


def as_weight(ggml_type: int, w: np.ndarray, cols: int, min_ndim: int = 2, max_ndim: int = 2) -> np.ndarray:
    """Check a weight array and return a read-only view in kernel storage form.

    Accepts the storage dtype itself or any dtype of the same item size (for
    example float16 for F16, int8 for Q8_0). Never copies: a non-contiguous
    weight is an error, because copying a memory-mapped matrix per call would
    defeat the point of the fused kernels.
    """
    dtype, width = storage(ggml_type, cols)
    w = np.asarray(w)
    if not (min_ndim <= w.ndim <= max_ndim):
        raise ValueError(f"weight must have {min_ndim}..{max_ndim} dims, got shape {w.shape}")
    if w.dtype == np.uint8 and dtype.itemsize > 1 and w.ndim and w.shape[-1] == width * dtype.itemsize:
        if not w.flags.c_contiguous:
            raise ValueError("weight must be C-contiguous (a view into the file, not a strided slice)")
        w = w.view(dtype)  # raw file bytes of a float type
    if w.dtype != dtype:
        if w.dtype.itemsize != dtype.itemsize or w.dtype.kind not in "uif":
            raise ValueError(f"{gt.type_name(ggml_type)} weight must be {dtype}, got {w.dtype}")
        w = w.view(dtype)
    if w.shape[-1] != width:
        raise ValueError(
            f"{gt.type_name(ggml_type)} weight rows of {cols} values need {width} {dtype} elements, "
            f"got shape {w.shape}"
        )
    if not w.flags.c_contiguous:
        raise ValueError("weight must be C-contiguous (a view into the file, not a strided slice)")
    return readonly(w)


def as_input(x: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read-only float32 C-contiguous view of an input (copies only when it must).

    Read-only always, so that a norm weight from the file map and one made in a
    test reach the same compiled kernel.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
    return readonly(x)


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view (the same array if it already is read-only)."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def check_output(out: np.ndarray, name: str, shape: tuple[int, ...]) -> None:
    """Outputs are written in place, so they must already be float32 C-contiguous and writable."""
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise ValueError(f"{name} must be a float32 array")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writable")
