"""Small GGUF files as bytes, written here from the format so tests can also cut and corrupt them.

`sample_gguf()` is what the local download server serves: a valid GGUF of about
3 MB (so a download takes several chunks) whose layout (where the metadata,
the tensor table and the data start) is known, for cutting it at each part.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

F32, Q8_0 = 0, 8
_U32, _STRING, _ARRAY = 4, 8, 9


def _s(text: str) -> bytes:
    b = text.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(v: object) -> bytes:
    if isinstance(v, str):
        return struct.pack("<I", _STRING) + _s(v)
    if isinstance(v, int):
        return struct.pack("<II", _U32, v)
    if isinstance(v, list):
        return struct.pack("<IIQ", _ARRAY, _STRING, len(v)) + b"".join(_s(x) for x in v)
    raise TypeError(v)


@dataclass(frozen=True)
class Layout:
    """Where each part of a GGUF built by gguf_bytes starts (byte offsets)."""

    metadata: int  # first key/value
    tensor_table: int  # first tensor info
    data: int  # data section (aligned)
    tensors: dict[str, tuple[int, int]]  # name -> (absolute start, end)


def gguf_bytes(
    tensors: list[tuple[str, tuple[int, ...], int, bytes]],
    metadata: dict[str, object],
    *,
    alignment: int = 32,
    version: int = 3,
) -> tuple[bytes, Layout]:
    """A GGUF with `tensors` (name, ggml ne, ggml type, data) and `metadata`; and its layout."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata)))
    meta_at = len(out)
    for key, v in metadata.items():
        out += _s(key) + _value(v)
    table_at = len(out)
    offsets, rel = [], 0
    for _name, _ne, _t, data in tensors:
        offsets.append(rel)
        rel += -(-len(data) // alignment) * alignment
    for (name, ne, ttype, _data), off in zip(tensors, offsets):
        out += _s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", ttype, off)
    data_at = -(-len(out) // alignment) * alignment
    out += b"\0" * (data_at - len(out))
    spans = {}
    for (name, _ne, _t, data), off in zip(tensors, offsets):
        out += b"\0" * (data_at + off - len(out)) + data
        spans[name] = (data_at + off, data_at + off + len(data))
    return bytes(out), Layout(meta_at, table_at, data_at, spans)


def _pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7919 + (i >> 8) * 31 + seed) & 0xFF for i in range(n))


def sample_gguf(seed: int = 0) -> tuple[bytes, Layout]:
    """A 3 MB GGUF: some metadata (a string array too), an F32 and a Q8_0 tensor."""
    tokens = [f"tok{i}" for i in range(300)]
    meta = {"general.architecture": "gpt-oss", "general.alignment": 64, "tokenizer.ggml.tokens": tokens}
    tensors = [
        ("a.weight", (512, 1400), F32, _pattern(512 * 1400 * 4, seed)),
        ("b.weight", (64, 1000), Q8_0, _pattern(2 * 1000 * 34, seed + 1)),
    ]
    return gguf_bytes(tensors, meta, alignment=64)
