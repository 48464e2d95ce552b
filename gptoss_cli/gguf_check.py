"""Is a file a complete GGUF? Its header parses and every tensor's bytes lie inside the file.

`gptoss pull` runs this on each download before renaming it into the models
folder, so a connection that closed early (with or without a Content-Length)
never installs a truncated model. It reads only the header and the tensor infos
(a few MB of a multi-GB file) with the standard library, so `gptoss pull` stays
light; gguf_file.GGUFFile is the full reader the runtime uses.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from .errors import ModelFileError

__all__ = ["IncompleteGGUF", "check_complete_gguf"]

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4  # GGML_MAX_DIMS, as the runtime reader (gguf_file.MAX_DIMS) refuses more
_MAX_NESTING = 4  # arrays of arrays

# GGUF metadata value types
_STRING, _ARRAY = 8, 9
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INTEGER_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}

# GGML type id -> (values per block, bytes per block), as in ggml's type traits.
# A type missing here cannot be sized: only its start is checked.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}


class IncompleteGGUF(ModelFileError):
    """The file is not a complete GGUF.

    `truncated` is True when the file ends early (more bytes could complete it:
    a download worth resuming), False when it is not a GGUF or its header is corrupt.
    """

    def __init__(self, message: str, *, truncated: bool) -> None:
        super().__init__(message)
        self.truncated = truncated


class _Header:
    """Bounded little-endian reads over the file's bytes; reading past the end is a truncation."""

    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if start + n > len(self.buf):
            raise IncompleteGGUF(f"it ends inside the {what} (file is {len(self.buf)} bytes)", truncated=True)
        self.pos = start + n
        return start

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt), what))[0]

    def count(self, items: str, least_bytes: int, where: str) -> int:
        """A u64 count (read from `where`) of `items`, each at least `least_bytes` long: more than
        the rest of the file can hold means the file is cut short (or the count is corrupt)."""
        n = self.unpack("<Q", where)
        if n * least_bytes > len(self.buf) - self.pos:
            raise IncompleteGGUF(
                f"it is too short for the {n} {items} it announces (file is {len(self.buf)} bytes)", truncated=True
            )
        return n

    def string(self, what: str) -> bytes:
        n = self.unpack("<Q", what)
        return bytes(self.buf[self.take(n, what) : self.pos])

    def skip_strings(self, n: int, what: str) -> None:
        """Step over `n` strings (a tokenizer's 200,000 take a fraction of a second this way)."""
        buf, pos, end, unpack = self.buf, self.pos, len(self.buf), struct.Struct("<Q").unpack_from
        for _ in range(n):
            if pos + 8 > end:
                break
            pos += 8 + unpack(buf, pos)[0]
            if pos > end:
                break
        else:
            self.pos = pos
            return
        self.pos = end
        self.take(1, what)  # raises: the file ends inside the strings

    def skip_value(self, vtype: int, what: str, depth: int = 0) -> None:
        if vtype in _SCALAR_SIZES:
            self.take(_SCALAR_SIZES[vtype], what)
        elif vtype == _STRING:
            self.take(self.unpack("<Q", what), what)
        elif vtype == _ARRAY and depth < _MAX_NESTING:
            etype = self.unpack("<I", what)
            if etype in _SCALAR_SIZES:
                self.take(self.count("array values", _SCALAR_SIZES[etype], what) * _SCALAR_SIZES[etype], what)
            elif etype == _STRING:
                self.skip_strings(self.count("array values", 8, what), what)
            else:
                for _ in range(self.count("array values", 12, what)):
                    self.skip_value(etype, what, depth + 1)
        else:
            raise IncompleteGGUF(f"its {what} has an unknown or too deeply nested value type {vtype}", truncated=False)


def _tensor_bytes(ggml_type: int, ne: list[int], name: str) -> int | None:
    block = _GGML_BLOCKS.get(ggml_type)
    if block is None:
        return None
    per_block, nbytes = block
    rows = 1
    for d in ne[1:]:
        rows *= d
    cols = ne[0] if ne else 1
    if cols % per_block:
        raise IncompleteGGUF(f"tensor {name!r} has rows of {cols} values, not whole blocks", truncated=False)
    return rows * (cols // per_block) * nbytes


def _check(buf: mmap.mmap | bytes) -> None:
    h = _Header(buf)
    magic = bytes(buf[:4])
    if magic != _MAGIC[: len(magic)]:
        raise IncompleteGGUF(f"it is not a GGUF file (it starts with {magic!r})", truncated=False)
    h.take(4, "header")
    version = h.unpack("<I", "header")
    if version not in _VERSIONS:
        raise IncompleteGGUF(f"it has GGUF version {version}, which gptoss does not read", truncated=False)
    n_tensors = h.count("tensor infos", 24, "header")
    n_kv = h.count("metadata entries", 12, "header")
    alignment = _DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = h.string("metadata")
        vtype = h.unpack("<I", "metadata")
        if key == b"general.alignment" and vtype in _INTEGER_FORMATS:
            alignment = h.unpack(_INTEGER_FORMATS[vtype], "metadata")
        else:
            h.skip_value(vtype, "metadata")
    if alignment <= 0 or alignment & (alignment - 1):
        raise IncompleteGGUF(f"its general.alignment {alignment} is not a power of two", truncated=False)
    tensors = []
    for _ in range(n_tensors):
        name = h.string("tensor table").decode("utf-8", errors="replace")
        n_dims = h.unpack("<I", "tensor table")
        if n_dims > _MAX_DIMS:
            raise IncompleteGGUF(f"tensor {name!r} has {n_dims} dimensions", truncated=False)
        ne = [h.unpack("<Q", "tensor table") for _ in range(n_dims)]
        tensors.append((name, ne, h.unpack("<I", "tensor table"), h.unpack("<Q", "tensor table")))
    data_start = -(-h.pos // alignment) * alignment
    for name, ne, ggml_type, offset in tensors:
        start = data_start + offset
        end = start + (_tensor_bytes(ggml_type, ne, name) or 0)
        if end > len(buf):
            raise IncompleteGGUF(
                f"it ends inside tensor {name!r} (bytes {start}..{end}; file is {len(buf)} bytes)", truncated=True
            )


def check_complete_gguf(path: Path) -> None:
    """Raise IncompleteGGUF (the message says why, without the path) unless `path` is a complete GGUF."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            raise IncompleteGGUF("it is empty", truncated=True)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _check(buf)
