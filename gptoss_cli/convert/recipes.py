"""How each GGUF tensor is made from checkpoint tensors, and how it is encoded.

A recipe knows the GGUF tensor's logical shape and where its values live in the
checkpoint (a view of a memory-mapped safetensors tensor, possibly sliced or
transposed), but reads nothing until the writer asks. `encode(recipe, type)`
returns the lazy data for a `GGUFTensor`: a callable yielding the on-disk bytes
in pieces (one expert, or a few million values, at a time), so converting a
20b checkpoint needs a few hundred MB of memory beyond the file maps.

Encodings (bit-identical to llama.cpp's converter, which goes through float32
and gguf-py):
  F32   the float32 values (bf16 / f16 widened exactly);
  F16   float32 -> float16, round to nearest even (NumPy);
  BF16  from bf16 the bits pass through (a NaN made quiet, as ggml does); from
        float32 round to nearest even;
  Q8_0 / MXFP4  the Numba kernels in gptoss_kernels.quantize.
MXFP4 checkpoint experts are repacked byte for byte (`MXFP4Recipe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from gguf import GGMLQuantizationType as QT

__all__ = ["FloatRecipe", "MXFP4Recipe", "encode", "f32_from_storage", "encode_f32", "CHUNK_VALUES"]

# Values per piece handed to the encoders: 4M float32 = 16 MB.
CHUNK_VALUES = 1 << 22

FLOAT_DTYPES = ("BF16", "F16", "F32")


@dataclass
class FloatRecipe:
    """A float tensor: `view()` returns the source values (storage dtype, any strides)
    in the GGUF logical shape."""

    shape: tuple[int, ...]
    dtype: str  # "BF16" | "F16" | "F32"
    view: Callable[[], np.ndarray]
    sources: tuple[str, ...]
    release: Callable[[], None] = lambda: None


@dataclass
class MXFP4Recipe:
    """Experts already in MXFP4: checkpoint blocks uint8 [E, R, nb, 16] and scales
    [E, R, nb]; GGUF rows are source rows row0, row0+step, ... of each expert."""

    shape: tuple[int, int, int]  # [E, rows, cols] logical
    blocks: Callable[[], np.ndarray]
    scales: Callable[[], np.ndarray]
    row0: int
    step: int
    sources: tuple[str, ...]
    release: Callable[[], None] = lambda: None


def f32_from_storage(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Storage values (bf16 bits as uint16, float16, float32) -> float32, exactly."""
    if dtype == "BF16":
        return (np.ascontiguousarray(raw).astype(np.uint32) << 16).view(np.float32)
    if dtype == "F16":
        return np.asarray(raw, dtype=np.float32)
    if dtype == "F32":
        return np.ascontiguousarray(raw, dtype=np.float32)
    raise TypeError(f"not a float storage dtype: {dtype}")


def encode_f32(x: np.ndarray, qt: int) -> np.ndarray:
    """float32 values [..., n] -> on-disk array of type `qt` (gguf.quants-exact)."""
    from gptoss_kernels import quantize as kq

    qt = QT(qt)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if qt == QT.F32:
        return x
    if qt == QT.F16:
        return x.astype(np.float16)
    if qt == QT.BF16:
        return kq.f32_to_bf16(x)
    if qt == QT.Q8_0:
        return kq.quantize_q8_0(x)
    if qt == QT.MXFP4:
        return kq.quantize_mxfp4(x)
    raise NotImplementedError(f"encoding to {qt.name} is not supported")


def _bf16_quiet(bits: np.ndarray) -> np.ndarray:
    """bf16 bits -> the bits ggml's float32 -> bf16 gives for the widened value (NaN made quiet)."""
    out = np.array(bits, dtype=np.uint16, copy=True)
    nan = (out & 0x7FFF) > 0x7F80
    if nan.any():
        out[nan] |= 0x0040
    return out


def _pieces(arr: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive pieces of `arr` in C order: per leading index for 3-D, row blocks for 2-D."""
    if arr.ndim <= 1:
        yield arr.reshape(1, -1) if arr.ndim == 1 else arr.reshape(1, 1)
        return
    if arr.ndim > 2:
        for i in range(arr.shape[0]):
            yield from _pieces(arr[i])
        return
    rows, cols = arr.shape
    step = max(1, CHUNK_VALUES // max(cols, 1))
    for r in range(0, rows, step):
        yield arr[r : r + step]


def encode(recipe: FloatRecipe | MXFP4Recipe, qt: int) -> Callable[[], Iterator[np.ndarray]]:
    """Lazy data for a GGUFTensor of type `qt` made from `recipe`."""
    qt = QT(qt)
    if isinstance(recipe, MXFP4Recipe):
        if qt != QT.MXFP4:
            raise ValueError(f"MXFP4 experts are repacked as MXFP4, not {qt.name}")
        return lambda: _repack_chunks(recipe)
    return lambda: _float_chunks(recipe, qt)


def _float_chunks(recipe: FloatRecipe, qt: QT) -> Iterator[np.ndarray]:
    src = recipe.view()
    if tuple(src.shape) != tuple(recipe.shape):  # pragma: no cover - the layouts check shapes
        raise ValueError(f"{recipe.sources}: view has shape {src.shape}, expected {recipe.shape}")
    try:
        for piece in _pieces(src):
            if recipe.dtype == "BF16" and qt == QT.BF16:
                yield _bf16_quiet(piece)
            else:
                yield encode_f32(f32_from_storage(piece, recipe.dtype), qt)
    finally:
        del src
        recipe.release()


def _repack_chunks(recipe: MXFP4Recipe) -> Iterator[np.ndarray]:
    from gptoss_kernels import quantize as kq

    blocks, scales = recipe.blocks(), recipe.scales()
    try:
        for e in range(blocks.shape[0]):
            yield kq.repack_mxfp4(blocks[e], scales[e], recipe.row0, recipe.step)
    finally:
        del blocks, scales
        recipe.release()
