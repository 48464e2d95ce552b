"""Prefill products with the tokens in the vector lanes: ``outT = W @ XT``.

Why: the row-dot kernels of matmul.py reduce along the columns, so every
output needs a horizontal sum and LLVM runs out of registers blocking them;
they reach about a tenth of the FMA peak. Here a block of 16 tokens sits in
the 16 lanes of one vector (``XT`` is the activations transposed, tokens in
its columns), each weight is dequantized once per call into a small tile and
broadcast: ``acc[r] += XT[k, 16 tokens] * W[r, k]`` is one FMA with a
broadcast operand, 16 rows x 16 tokens are 16 accumulators that stay in
registers, and nothing is summed horizontally. Where 32 tokens are left,
8 rows x 32 tokens share each weight load between two vectors; the last 8
tokens of a group use half-width vectors (AVX-512: 32 registers). The ``ssse3``
path (AVX2 and older: 16 registers, where those blocks spill) uses 4 rows x 16
tokens in 8-lane vectors instead. Tasks run in parallel over tiles of 16 weight
rows.

Layouts (all float32, C-contiguous): ``XT [cols, n]`` with ``n`` a multiple
of 8 (padding columns may hold anything; their outputs are ignored),
``outT [rows16, n]`` with ``rows16`` the rows rounded up to 16, accumulated
into, so the caller passes zeros. The summation per output is sequential
over ``k`` with fused multiply-adds; the weights are the exact dequantized
values (the same decoders as the other kernels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from . import simd
from .decode import bf16_to_f32
from .dequant import block_row_decoder
from .mxfp4_fast import deq_row_mxfp4_avx512, deq_row_mxfp4_ssse3
from .q8_fast import _q8_scale
from .specialize import Hook, specialize

ROWS = 16  # weight rows per task and per register block
KC = 2944  # columns dequantized at a time (a multiple of 32): a whole 2880-wide row, 184 KiB per tile (L2)
KS = 256  # columns per slice of the narrow blocks (XT's slice of 16 tokens: 16 KiB, L1)

_load = Hook("token vector load: (array, flat index)")
_fma = Hook("acc + token vector * broadcast weight")
_store = Hook("token vector store: (array, flat index, vector)")


def _rows16(buf, kc, XT, k0, c0, outT, r0):
    """outT[r0:r0+16, c0:c0+v] += tile @ XT[k0:k0+kc, c0:c0+v] for v tokens per vector.

    Row r of the tile is buf[r*KC : r*KC+kc]: buf is flat so that every weight's
    address is k plus a constant offset (a 2-D buf's runtime stride made LLVM
    chain the 16 addresses).
    """
    n = XT.shape[1]
    o = r0 * n + c0
    a0 = _load(outT, o + 0 * n)
    a1 = _load(outT, o + 1 * n)
    a2 = _load(outT, o + 2 * n)
    a3 = _load(outT, o + 3 * n)
    a4 = _load(outT, o + 4 * n)
    a5 = _load(outT, o + 5 * n)
    a6 = _load(outT, o + 6 * n)
    a7 = _load(outT, o + 7 * n)
    a8 = _load(outT, o + 8 * n)
    a9 = _load(outT, o + 9 * n)
    a10 = _load(outT, o + 10 * n)
    a11 = _load(outT, o + 11 * n)
    a12 = _load(outT, o + 12 * n)
    a13 = _load(outT, o + 13 * n)
    a14 = _load(outT, o + 14 * n)
    a15 = _load(outT, o + 15 * n)
    for k in range(kc):
        x = _load(XT, (k0 + k) * n + c0)
        a0 = _fma(a0, x, buf[0 * KC + k])
        a1 = _fma(a1, x, buf[1 * KC + k])
        a2 = _fma(a2, x, buf[2 * KC + k])
        a3 = _fma(a3, x, buf[3 * KC + k])
        a4 = _fma(a4, x, buf[4 * KC + k])
        a5 = _fma(a5, x, buf[5 * KC + k])
        a6 = _fma(a6, x, buf[6 * KC + k])
        a7 = _fma(a7, x, buf[7 * KC + k])
        a8 = _fma(a8, x, buf[8 * KC + k])
        a9 = _fma(a9, x, buf[9 * KC + k])
        a10 = _fma(a10, x, buf[10 * KC + k])
        a11 = _fma(a11, x, buf[11 * KC + k])
        a12 = _fma(a12, x, buf[12 * KC + k])
        a13 = _fma(a13, x, buf[13 * KC + k])
        a14 = _fma(a14, x, buf[14 * KC + k])
        a15 = _fma(a15, x, buf[15 * KC + k])
    _store(outT, o + 0 * n, a0)
    _store(outT, o + 1 * n, a1)
    _store(outT, o + 2 * n, a2)
    _store(outT, o + 3 * n, a3)
    _store(outT, o + 4 * n, a4)
    _store(outT, o + 5 * n, a5)
    _store(outT, o + 6 * n, a6)
    _store(outT, o + 7 * n, a7)
    _store(outT, o + 8 * n, a8)
    _store(outT, o + 9 * n, a9)
    _store(outT, o + 10 * n, a10)
    _store(outT, o + 11 * n, a11)
    _store(outT, o + 12 * n, a12)
    _store(outT, o + 13 * n, a13)
    _store(outT, o + 14 * n, a14)
    _store(outT, o + 15 * n, a15)


# 16 tokens per vector, and half a vector for the last 8 tokens of a group (half the padding)
_block16 = specialize(_rows16, "_block16", {"_load": simd.tload, "_fma": simd.tfma, "_store": simd.tstore})
_block16x8 = specialize(_rows16, "_block16x8", {"_load": simd.tload8, "_fma": simd.tfma8, "_store": simd.tstore8})


@njit(cache=True)
def _block8x32(buf, kc, XT, k0, c0, outT, r0, rb):
    """outT[r0+rb : r0+rb+8, c0:c0+32] += tile rows rb..rb+7 @ XT[k0:k0+kc, c0:c0+32].

    Two token vectors per weight: 10 loads feed 16 FMAs (the 16x16 block needs 17).
    """
    n = XT.shape[1]
    o = (r0 + rb) * n + c0
    a00 = simd.tload(outT, o + 0 * n + 0)
    a01 = simd.tload(outT, o + 0 * n + 16)
    a10 = simd.tload(outT, o + 1 * n + 0)
    a11 = simd.tload(outT, o + 1 * n + 16)
    a20 = simd.tload(outT, o + 2 * n + 0)
    a21 = simd.tload(outT, o + 2 * n + 16)
    a30 = simd.tload(outT, o + 3 * n + 0)
    a31 = simd.tload(outT, o + 3 * n + 16)
    a40 = simd.tload(outT, o + 4 * n + 0)
    a41 = simd.tload(outT, o + 4 * n + 16)
    a50 = simd.tload(outT, o + 5 * n + 0)
    a51 = simd.tload(outT, o + 5 * n + 16)
    a60 = simd.tload(outT, o + 6 * n + 0)
    a61 = simd.tload(outT, o + 6 * n + 16)
    a70 = simd.tload(outT, o + 7 * n + 0)
    a71 = simd.tload(outT, o + 7 * n + 16)
    for k in range(kc):
        x0 = simd.tload(XT, (k0 + k) * n + c0)
        x1 = simd.tload(XT, (k0 + k) * n + c0 + 16)
        w = buf[(rb + 0) * KC + k]
        a00 = simd.tfma(a00, x0, w)
        a01 = simd.tfma(a01, x1, w)
        w = buf[(rb + 1) * KC + k]
        a10 = simd.tfma(a10, x0, w)
        a11 = simd.tfma(a11, x1, w)
        w = buf[(rb + 2) * KC + k]
        a20 = simd.tfma(a20, x0, w)
        a21 = simd.tfma(a21, x1, w)
        w = buf[(rb + 3) * KC + k]
        a30 = simd.tfma(a30, x0, w)
        a31 = simd.tfma(a31, x1, w)
        w = buf[(rb + 4) * KC + k]
        a40 = simd.tfma(a40, x0, w)
        a41 = simd.tfma(a41, x1, w)
        w = buf[(rb + 5) * KC + k]
        a50 = simd.tfma(a50, x0, w)
        a51 = simd.tfma(a51, x1, w)
        w = buf[(rb + 6) * KC + k]
        a60 = simd.tfma(a60, x0, w)
        a61 = simd.tfma(a61, x1, w)
        w = buf[(rb + 7) * KC + k]
        a70 = simd.tfma(a70, x0, w)
        a71 = simd.tfma(a71, x1, w)
    simd.tstore(outT, o + 0 * n + 0, a00)
    simd.tstore(outT, o + 0 * n + 16, a01)
    simd.tstore(outT, o + 1 * n + 0, a10)
    simd.tstore(outT, o + 1 * n + 16, a11)
    simd.tstore(outT, o + 2 * n + 0, a20)
    simd.tstore(outT, o + 2 * n + 16, a21)
    simd.tstore(outT, o + 3 * n + 0, a30)
    simd.tstore(outT, o + 3 * n + 16, a31)
    simd.tstore(outT, o + 4 * n + 0, a40)
    simd.tstore(outT, o + 4 * n + 16, a41)
    simd.tstore(outT, o + 5 * n + 0, a50)
    simd.tstore(outT, o + 5 * n + 16, a51)
    simd.tstore(outT, o + 6 * n + 0, a60)
    simd.tstore(outT, o + 6 * n + 16, a61)
    simd.tstore(outT, o + 7 * n + 0, a70)
    simd.tstore(outT, o + 7 * n + 16, a71)


@njit(cache=True)
def _tile_columns(buf, kc, XT, k0, outT, r0):
    """The AVX-512 blocks: 16-lane vectors, 32 registers."""
    n = XT.shape[1]
    c0 = 0
    while c0 + 32 <= n:
        _block8x32(buf, kc, XT, k0, c0, outT, r0, 0)
        _block8x32(buf, kc, XT, k0, c0, outT, r0, 8)
        c0 += 32
    if c0 + 16 <= n:
        _block16(buf, kc, XT, k0, c0, outT, r0)
        c0 += 16
    if c0 < n:
        _block16x8(buf, kc, XT, k0, c0, outT, r0)


@njit(cache=True)
def _block4x16(tile, kn, XT, k0, c0, outT, r0):
    """outT[r0 : r0+4, c0:c0+16] += tile[:4, :kn] @ XT[k0:k0+kn, c0:c0+16], row j of the tile at tile[j*KC:].

    For 16 vector registers (AVX2): 8 accumulators, two token vectors and the broadcast
    weight; the AVX-512 blocks above hold 32 ymm accumulators there and spill every FMA.
    """
    n = XT.shape[1]
    o = r0 * n + c0
    a00 = simd.tload8(outT, o + 0 * n + 0)
    a01 = simd.tload8(outT, o + 0 * n + 8)
    a10 = simd.tload8(outT, o + 1 * n + 0)
    a11 = simd.tload8(outT, o + 1 * n + 8)
    a20 = simd.tload8(outT, o + 2 * n + 0)
    a21 = simd.tload8(outT, o + 2 * n + 8)
    a30 = simd.tload8(outT, o + 3 * n + 0)
    a31 = simd.tload8(outT, o + 3 * n + 8)
    for k in range(kn):  # k >= 0 and constant row offsets: no index wraparound code
        x0 = simd.tload8(XT, (k0 + k) * n + c0)
        x1 = simd.tload8(XT, (k0 + k) * n + c0 + 8)
        w = tile[0 * KC + k]
        a00 = simd.tfma8(a00, x0, w)
        a01 = simd.tfma8(a01, x1, w)
        w = tile[1 * KC + k]
        a10 = simd.tfma8(a10, x0, w)
        a11 = simd.tfma8(a11, x1, w)
        w = tile[2 * KC + k]
        a20 = simd.tfma8(a20, x0, w)
        a21 = simd.tfma8(a21, x1, w)
        w = tile[3 * KC + k]
        a30 = simd.tfma8(a30, x0, w)
        a31 = simd.tfma8(a31, x1, w)
    simd.tstore8(outT, o + 0 * n + 0, a00)
    simd.tstore8(outT, o + 0 * n + 8, a01)
    simd.tstore8(outT, o + 1 * n + 0, a10)
    simd.tstore8(outT, o + 1 * n + 8, a11)
    simd.tstore8(outT, o + 2 * n + 0, a20)
    simd.tstore8(outT, o + 2 * n + 8, a21)
    simd.tstore8(outT, o + 3 * n + 0, a30)
    simd.tstore8(outT, o + 3 * n + 8, a31)


@njit(cache=True)
def _block8x8(tile, kn, XT, k0, c0, outT, r0):
    """outT[r0 : r0+8, c0:c0+8] += tile[:8, :kn] @ XT[k0:k0+kn, c0:c0+8], as _block4x16."""
    n = XT.shape[1]
    o = r0 * n + c0
    a0 = simd.tload8(outT, o + 0 * n)
    a1 = simd.tload8(outT, o + 1 * n)
    a2 = simd.tload8(outT, o + 2 * n)
    a3 = simd.tload8(outT, o + 3 * n)
    a4 = simd.tload8(outT, o + 4 * n)
    a5 = simd.tload8(outT, o + 5 * n)
    a6 = simd.tload8(outT, o + 6 * n)
    a7 = simd.tload8(outT, o + 7 * n)
    for k in range(kn):  # k >= 0 and constant row offsets: no index wraparound code
        x = simd.tload8(XT, (k0 + k) * n + c0)
        a0 = simd.tfma8(a0, x, tile[0 * KC + k])
        a1 = simd.tfma8(a1, x, tile[1 * KC + k])
        a2 = simd.tfma8(a2, x, tile[2 * KC + k])
        a3 = simd.tfma8(a3, x, tile[3 * KC + k])
        a4 = simd.tfma8(a4, x, tile[4 * KC + k])
        a5 = simd.tfma8(a5, x, tile[5 * KC + k])
        a6 = simd.tfma8(a6, x, tile[6 * KC + k])
        a7 = simd.tfma8(a7, x, tile[7 * KC + k])
    simd.tstore8(outT, o + 0 * n, a0)
    simd.tstore8(outT, o + 1 * n, a1)
    simd.tstore8(outT, o + 2 * n, a2)
    simd.tstore8(outT, o + 3 * n, a3)
    simd.tstore8(outT, o + 4 * n, a4)
    simd.tstore8(outT, o + 5 * n, a5)
    simd.tstore8(outT, o + 6 * n, a6)
    simd.tstore8(outT, o + 7 * n, a7)


@njit(cache=True)
def _tile_columns_narrow(buf, kc, XT, k0, outT, r0):
    """The ``ssse3`` path's blocks (AVX2 and older: 16 vector registers), 8-lane vectors.

    The columns go in slices of KS so that the 16 tokens' slice of XT (16 KiB) stays in L1
    for the four row blocks that read it.
    """
    n = XT.shape[1]
    c0 = 0
    while c0 + 16 <= n:
        for ka in range(0, kc, KS):
            kn = min(KS, kc - ka)
            for rb in range(0, ROWS, 4):
                _block4x16(buf[rb * KC + ka :], kn, XT, k0 + ka, c0, outT, r0 + rb)
        c0 += 16
    if c0 < n:
        for ka in range(0, kc, KS):
            kn = min(KS, kc - ka)
            _block8x8(buf[ka:], kn, XT, k0 + ka, c0, outT, r0)
            _block8x8(buf[8 * KC + ka :], kn, XT, k0 + ka, c0, outT, r0 + 8)


@njit(cache=True, inline="always")
def _q8_0_block(row, blk, dst, at):
    o = blk * 34
    simd.q8_block_store(row, o, _q8_scale(row, o), dst, at)


deq_row_q8_0_simd = block_row_decoder("deq_row_q8_0_simd", _q8_0_block)


@njit(cache=True)
def deq_row_bf16_simd(row, k0, kc, dst):
    for b in range(kc // 32):
        simd.bf16_store(row, k0 + b * 32, dst, b * 32)
    for j in range(kc - kc % 32, kc):  # widths that are not a multiple of 32
        dst[j] = bf16_to_f32(row[k0 + j])


# The driver, written once; each kernel binds its row-range decoder (compiled
# only when its path is used, and cached).

_deq_row = Hook("columns [k0, k0 + kc) of one stored row -> dst[:kc] as float32")
_tile = Hook("the register blocks of one tile: (buf, kc, XT, k0, outT, r0)")


def _token_lanes(w, XT, outT):
    rows, cols = w.shape[0], XT.shape[0]
    for tile in prange((rows + ROWS - 1) // ROWS):
        r0 = tile * ROWS
        buf = np.empty(ROWS * KC, np.float32)  # rows past the end: garbage in ignored outputs
        for k0 in range(0, cols, KC):
            kc = min(KC, cols - k0)
            for r in range(min(ROWS, rows - r0)):
                _deq_row(w[r0 + r], k0, kc, buf[r * KC : r * KC + KC])
            _tile(buf, kc, XT, k0, outT, r0)


TILES = {"avx512": _tile_columns, "ssse3": _tile_columns_narrow}


def matmul_t_kernel(name: str, deq_row: Callable, path: str) -> Callable:
    """The parallel ``outT += W @ XT`` of one row-range decoder, with ``path``'s register blocks."""
    return specialize(_token_lanes, name, {"_deq_row": deq_row, "_tile": TILES[path]}, parallel=True)


MATMUL_T_MXFP4 = {p: matmul_t_kernel(f"matmul_t_mxfp4_{p}", deq, p)
                  for p, deq in (("avx512", deq_row_mxfp4_avx512), ("ssse3", deq_row_mxfp4_ssse3))}
MATMUL_T_Q8_0 = {p: matmul_t_kernel(f"matmul_t_q8_0_{p}", deq_row_q8_0_simd, p) for p in TILES}
MATMUL_T_BF16 = {p: matmul_t_kernel(f"matmul_t_bf16_{p}", deq_row_bf16_simd, p) for p in TILES}
