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
tokens of a group use half-width vectors. Tasks run in parallel over tiles of
16 weight rows.

Layouts (all float32, C-contiguous): ``XT [cols, n]`` with ``n`` a multiple
of 8 (padding columns may hold anything; their outputs are ignored),
``outT [rows16, n]`` with ``rows16`` the rows rounded up to 16, accumulated
into, so the caller passes zeros. The summation per output is sequential
over ``k`` with fused multiply-adds; the weights are the exact dequantized
values (the same decoders as the other kernels).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import simd
from .decode import bf16_to_f32
from .mxfp4_fast import deq_row_mxfp4_avx512, deq_row_mxfp4_ssse3
from .q8_fast import _q8_scale

ROWS = 16  # weight rows per task and per register block
KC = 2944  # columns dequantized at a time (a multiple of 32): a whole 2880-wide row, 184 KiB per tile (L2)


@njit(cache=True)
def _block16(buf, kc, XT, k0, c0, outT, r0):
    """outT[r0:r0+16, c0:c0+16] += tile @ XT[k0:k0+kc, c0:c0+16]; row r of the tile is buf[r*KC : r*KC+kc].

    buf is flat so that every weight's address is k plus a constant offset
    (a 2-D buf's runtime stride made LLVM chain the 16 addresses).
    """
    n = XT.shape[1]
    o = r0 * n + c0
    a0 = simd.tload(outT, o + 0 * n)
    a1 = simd.tload(outT, o + 1 * n)
    a2 = simd.tload(outT, o + 2 * n)
    a3 = simd.tload(outT, o + 3 * n)
    a4 = simd.tload(outT, o + 4 * n)
    a5 = simd.tload(outT, o + 5 * n)
    a6 = simd.tload(outT, o + 6 * n)
    a7 = simd.tload(outT, o + 7 * n)
    a8 = simd.tload(outT, o + 8 * n)
    a9 = simd.tload(outT, o + 9 * n)
    a10 = simd.tload(outT, o + 10 * n)
    a11 = simd.tload(outT, o + 11 * n)
    a12 = simd.tload(outT, o + 12 * n)
    a13 = simd.tload(outT, o + 13 * n)
    a14 = simd.tload(outT, o + 14 * n)
    a15 = simd.tload(outT, o + 15 * n)
    for k in range(kc):
        x = simd.tload(XT, (k0 + k) * n + c0)
        a0 = simd.tfma(a0, x, buf[0 * KC + k])
        a1 = simd.tfma(a1, x, buf[1 * KC + k])
        a2 = simd.tfma(a2, x, buf[2 * KC + k])
        a3 = simd.tfma(a3, x, buf[3 * KC + k])
        a4 = simd.tfma(a4, x, buf[4 * KC + k])
        a5 = simd.tfma(a5, x, buf[5 * KC + k])
        a6 = simd.tfma(a6, x, buf[6 * KC + k])
        a7 = simd.tfma(a7, x, buf[7 * KC + k])
        a8 = simd.tfma(a8, x, buf[8 * KC + k])
        a9 = simd.tfma(a9, x, buf[9 * KC + k])
        a10 = simd.tfma(a10, x, buf[10 * KC + k])
        a11 = simd.tfma(a11, x, buf[11 * KC + k])
        a12 = simd.tfma(a12, x, buf[12 * KC + k])
        a13 = simd.tfma(a13, x, buf[13 * KC + k])
        a14 = simd.tfma(a14, x, buf[14 * KC + k])
        a15 = simd.tfma(a15, x, buf[15 * KC + k])
    simd.tstore(outT, o + 0 * n, a0)
    simd.tstore(outT, o + 1 * n, a1)
    simd.tstore(outT, o + 2 * n, a2)
    simd.tstore(outT, o + 3 * n, a3)
    simd.tstore(outT, o + 4 * n, a4)
    simd.tstore(outT, o + 5 * n, a5)
    simd.tstore(outT, o + 6 * n, a6)
    simd.tstore(outT, o + 7 * n, a7)
    simd.tstore(outT, o + 8 * n, a8)
    simd.tstore(outT, o + 9 * n, a9)
    simd.tstore(outT, o + 10 * n, a10)
    simd.tstore(outT, o + 11 * n, a11)
    simd.tstore(outT, o + 12 * n, a12)
    simd.tstore(outT, o + 13 * n, a13)
    simd.tstore(outT, o + 14 * n, a14)
    simd.tstore(outT, o + 15 * n, a15)


@njit(cache=True)
def _block16x8(buf, kc, XT, k0, c0, outT, r0):
    """As _block16 for the last 8 tokens of a group (half a vector, half the padding)."""
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
    a8 = simd.tload8(outT, o + 8 * n)
    a9 = simd.tload8(outT, o + 9 * n)
    a10 = simd.tload8(outT, o + 10 * n)
    a11 = simd.tload8(outT, o + 11 * n)
    a12 = simd.tload8(outT, o + 12 * n)
    a13 = simd.tload8(outT, o + 13 * n)
    a14 = simd.tload8(outT, o + 14 * n)
    a15 = simd.tload8(outT, o + 15 * n)
    for k in range(kc):
        x = simd.tload8(XT, (k0 + k) * n + c0)
        a0 = simd.tfma8(a0, x, buf[0 * KC + k])
        a1 = simd.tfma8(a1, x, buf[1 * KC + k])
        a2 = simd.tfma8(a2, x, buf[2 * KC + k])
        a3 = simd.tfma8(a3, x, buf[3 * KC + k])
        a4 = simd.tfma8(a4, x, buf[4 * KC + k])
        a5 = simd.tfma8(a5, x, buf[5 * KC + k])
        a6 = simd.tfma8(a6, x, buf[6 * KC + k])
        a7 = simd.tfma8(a7, x, buf[7 * KC + k])
        a8 = simd.tfma8(a8, x, buf[8 * KC + k])
        a9 = simd.tfma8(a9, x, buf[9 * KC + k])
        a10 = simd.tfma8(a10, x, buf[10 * KC + k])
        a11 = simd.tfma8(a11, x, buf[11 * KC + k])
        a12 = simd.tfma8(a12, x, buf[12 * KC + k])
        a13 = simd.tfma8(a13, x, buf[13 * KC + k])
        a14 = simd.tfma8(a14, x, buf[14 * KC + k])
        a15 = simd.tfma8(a15, x, buf[15 * KC + k])
    simd.tstore8(outT, o + 0 * n, a0)
    simd.tstore8(outT, o + 1 * n, a1)
    simd.tstore8(outT, o + 2 * n, a2)
    simd.tstore8(outT, o + 3 * n, a3)
    simd.tstore8(outT, o + 4 * n, a4)
    simd.tstore8(outT, o + 5 * n, a5)
    simd.tstore8(outT, o + 6 * n, a6)
    simd.tstore8(outT, o + 7 * n, a7)
    simd.tstore8(outT, o + 8 * n, a8)
    simd.tstore8(outT, o + 9 * n, a9)
    simd.tstore8(outT, o + 10 * n, a10)
    simd.tstore8(outT, o + 11 * n, a11)
    simd.tstore8(outT, o + 12 * n, a12)
    simd.tstore8(outT, o + 13 * n, a13)
    simd.tstore8(outT, o + 14 * n, a14)
    simd.tstore8(outT, o + 15 * n, a15)


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
def deq_row_q8_0_simd(row, k0, kc, dst):
    b0 = k0 // 32
    for b in range(kc // 32):
        o = (b0 + b) * 34
        simd.q8_block_store(row, o, _q8_scale(row, o), dst, b * 32)


@njit(cache=True)
def deq_row_bf16_simd(row, k0, kc, dst):
    for b in range(kc // 32):
        simd.bf16_store(row, k0 + b * 32, dst, b * 32)
    for j in range(kc - kc % 32, kc):  # widths that are not a multiple of 32
        dst[j] = bf16_to_f32(row[k0 + j])


# One driver per decoder (each compiled only when its path is used, and cached).


@njit(parallel=True, cache=True)
def matmul_t_mxfp4_avx512(w, XT, outT):
    rows, cols = w.shape[0], XT.shape[0]
    for tile in prange((rows + ROWS - 1) // ROWS):
        r0 = tile * ROWS
        buf = np.empty(ROWS * KC, np.float32)  # rows past the end: garbage in ignored outputs
        for k0 in range(0, cols, KC):
            kc = min(KC, cols - k0)
            for r in range(min(ROWS, rows - r0)):
                deq_row_mxfp4_avx512(w[r0 + r], k0, kc, buf[r * KC : r * KC + KC])
            _tile_columns(buf, kc, XT, k0, outT, r0)


@njit(parallel=True, cache=True)
def matmul_t_mxfp4_ssse3(w, XT, outT):
    rows, cols = w.shape[0], XT.shape[0]
    for tile in prange((rows + ROWS - 1) // ROWS):
        r0 = tile * ROWS
        buf = np.empty(ROWS * KC, np.float32)
        for k0 in range(0, cols, KC):
            kc = min(KC, cols - k0)
            for r in range(min(ROWS, rows - r0)):
                deq_row_mxfp4_ssse3(w[r0 + r], k0, kc, buf[r * KC : r * KC + KC])
            _tile_columns(buf, kc, XT, k0, outT, r0)


@njit(parallel=True, cache=True)
def matmul_t_q8_0(w, XT, outT):
    rows, cols = w.shape[0], XT.shape[0]
    for tile in prange((rows + ROWS - 1) // ROWS):
        r0 = tile * ROWS
        buf = np.empty(ROWS * KC, np.float32)
        for k0 in range(0, cols, KC):
            kc = min(KC, cols - k0)
            for r in range(min(ROWS, rows - r0)):
                deq_row_q8_0_simd(w[r0 + r], k0, kc, buf[r * KC : r * KC + KC])
            _tile_columns(buf, kc, XT, k0, outT, r0)


@njit(parallel=True, cache=True)
def matmul_t_bf16(w, XT, outT):
    rows, cols = w.shape[0], XT.shape[0]
    for tile in prange((rows + ROWS - 1) // ROWS):
        r0 = tile * ROWS
        buf = np.empty(ROWS * KC, np.float32)
        for k0 in range(0, cols, KC):
            kc = min(KC, cols - k0)
            for r in range(min(ROWS, rows - r0)):
                deq_row_bf16_simd(w[r0 + r], k0, kc, buf[r * KC : r * KC + KC])
            _tile_columns(buf, kc, XT, k0, outT, r0)


MATMUL_T_MXFP4 = {"avx512": matmul_t_mxfp4_avx512, "ssse3": matmul_t_mxfp4_ssse3}
