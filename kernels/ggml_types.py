"""GGML tensor type ids and their storage layout (block size, bytes per block).

Shared by the kernels and the GGUF reader so that both agree on how many bytes a
row of each type occupies and in which NumPy dtype it is handed to a kernel.
"""

from __future__ import annotations

import numpy as np

F32 = 0
F16 = 1
Q8_0 = 8
BF16 = 30
MXFP4 = 39

SUPPORTED = frozenset({F32, F16, Q8_0, BF16, MXFP4})

# type id -> (weights per block, bytes per block)
_BLOCKS: dict[int, tuple[int, int]] = {
    F32: (1, 4),
    F16: (1, 2),
    BF16: (1, 2),
    Q8_0: (32, 34),
    MXFP4: (32, 17),
}

# Names of every GGML type, so that an unsupported one is refused by name.
_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4",
}


def type_name(ggml_type: int) -> str:
    return _NAMES.get(ggml_type, f"unknown type {ggml_type}")


def block_size(ggml_type: int) -> int:
    return _BLOCKS[ggml_type][0]


def row_bytes(ggml_type: int, cols: int) -> int:
    """Bytes used by one row of `cols` values (cols must be a multiple of the block)."""
    per_block, nbytes = _BLOCKS[ggml_type]
    return cols // per_block * nbytes


def storage_layout(ggml_type: int, cols: int) -> tuple[np.dtype, int]:
    """(dtype, last-axis length) of the array a kernel receives for one row of `cols` values."""
    if ggml_type == F32:
        return np.dtype("<f4"), cols
    if ggml_type in (F16, BF16):
        return np.dtype("<u2"), cols
    return np.dtype(np.uint8), row_bytes(ggml_type, cols)
