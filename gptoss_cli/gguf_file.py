"""Open a GGUF file over one read-only memory map, with every read bounds-checked.

gguf-py's GGUFReader builds a NumPy view for each of the ~650,000 tokenizer
strings, which takes seconds on a real gpt-oss file. This reader keeps string
arrays as offsets into the map and decodes them on demand, so opening is fast,
and tensors are typed NumPy views of the same map: weights are never copied.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptoss_kernels import ggml_types

from .errors import ModelFileError, UnsupportedTensorType

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS: ggml tensors have at most four dimensions

# GGUF metadata value types.
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL = range(8)
_STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = 8, 9, 10, 11, 12

_SCALAR_FORMATS: dict[int, str] = {
    _UINT8: "<B",
    _INT8: "<b",
    _UINT16: "<H",
    _INT16: "<h",
    _UINT32: "<I",
    _INT32: "<i",
    _FLOAT32: "<f",
    _BOOL: "<?",
    _UINT64: "<Q",
    _INT64: "<q",
    _FLOAT64: "<d",
}
_SCALAR_DTYPES: dict[int, str] = {
    _UINT8: "<u1",
    _INT8: "<i1",
    _UINT16: "<u2",
    _INT16: "<i2",
    _UINT32: "<u4",
    _INT32: "<i4",
    _FLOAT32: "<f4",
    _BOOL: "?",
    _UINT64: "<u8",
    _INT64: "<i8",
    _FLOAT64: "<f8",
}


class StringArray:
    """A GGUF array of strings kept as byte offsets into the map; decoded on demand."""

    def __init__(self, buf: memoryview, starts: np.ndarray, lengths: np.ndarray) -> None:
        self._buf = buf
        self._starts = starts
        self._lengths = lengths

    def __len__(self) -> int:
        return len(self._starts)

    def raw(self, i: int) -> bytes:
        s = int(self._starts[i])
        return bytes(self._buf[s : s + int(self._lengths[i])])

    def __getitem__(self, i: int) -> str:
        return self.raw(i).decode("utf-8", errors="surrogateescape")

    def tolist(self) -> list[str]:
        """Every string, decoded. Strings stored back to back (as GGUF writes them) are
        decoded in one go, ten times faster than one by one for a 200k-token vocabulary."""
        fast = self._tolist_joined()
        if fast is not None:
            return fast
        buf = self._buf
        return [
            bytes(buf[s : s + n]).decode("utf-8", errors="surrogateescape")
            for s, n in zip(self._starts.tolist(), self._lengths.tolist())
        ]

    def _tolist_joined(self) -> list[str] | None:
        starts, lengths = self._starts.astype(np.int64), self._lengths.astype(np.int64)
        n = len(starts)
        if n < 2 or not np.array_equal(starts[1:], starts[:-1] + lengths[:-1] + 8):
            return None
        first = int(starts[0])
        region = np.frombuffer(self._buf, dtype=np.uint8, count=int(starts[-1] + lengths[-1]) - first, offset=first)
        # each later string's 8-byte length prefix becomes one b"\n" separator
        keep = np.ones(region.size, dtype=bool)
        prefix = starts[1:] - first - 8
        keep[(prefix[:, None] + np.arange(7)).ravel()] = False
        joined = region.copy()
        joined[prefix + 7] = 10
        parts = joined[keep].tobytes().decode("utf-8", errors="surrogateescape").split("\n")
        return parts if len(parts) == n else None  # a string holding a newline: decode one by one


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's header entry; `shape` is NumPy order (the reverse of ggml's ne)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return ggml_types.type_name(self.ggml_type)


class _Cursor:
    """Sequential little-endian reads over the map that fail with a clear error past the end."""

    def __init__(self, buf: memoryview, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def need(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise ModelFileError(
                f"{self.path}: truncated GGUF file (ends inside the {what}; "
                f"file is {len(self.buf)} bytes)"
            )
        self.pos = start + n
        return start

    def scalar(self, fmt: str, what: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, self.buf, self.need(size, what))[0]

    def u32(self, what: str) -> int:
        return self.scalar("<I", what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", what)

    def string(self, what: str) -> str:
        n = self.u64(what)
        start = self.need(n, what)
        try:
            return bytes(self.buf[start : start + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{self.path}: corrupt GGUF file ({what} is not UTF-8)") from None


class GGUFFile:
    """A parsed GGUF header plus typed, zero-copy views of its tensors.

    Keep the object alive while any tensor view is in use; `close()` releases the map.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ModelFileError(f"{self.path}: file not found")
        if self.path.is_dir():
            raise ModelFileError(f"{self.path}: is a directory, not a GGUF file")
        size = self.path.stat().st_size
        if size < 4:
            raise ModelFileError(f"{self.path}: not a GGUF file (only {size} bytes)")
        try:
            with open(self.path, "rb") as fh:
                self._mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as err:
            raise ModelFileError(f"{self.path}: cannot open ({err.strerror})") from None
        self._buf = memoryview(self._mmap)
        self.data = np.frombuffer(self._mmap, dtype=np.uint8)
        self.metadata: dict[str, Any] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self._parse()

    # ----------------------------------------------------------------- parsing
    def _parse(self) -> None:
        cur = _Cursor(self._buf, self.path)
        magic = bytes(self._buf[:4])
        if magic != GGUF_MAGIC:
            raise ModelFileError(f"{self.path}: not a GGUF file (magic bytes {magic!r})")
        cur.pos = 4
        version = cur.u32("header")
        if version not in SUPPORTED_VERSIONS:
            if version in (0x03000000, 0x02000000):
                raise ModelFileError(f"{self.path}: big-endian GGUF files are not supported")
            raise ModelFileError(f"{self.path}: unsupported GGUF version {version}")
        self.version = version
        n_tensors = cur.u64("header")
        n_kv = cur.u64("header")
        # Each entry needs at least 8 bytes; a huge count means a corrupt header.
        if n_tensors > len(self._buf) // 8 or n_kv > len(self._buf) // 8:
            raise ModelFileError(f"{self.path}: corrupt GGUF header (impossible counts)")
        for _ in range(n_kv):
            key = cur.string("metadata")
            vtype = cur.u32("metadata")
            if key in self.metadata:
                raise ModelFileError(f"{self.path}: corrupt GGUF metadata (key {key!r} appears twice)")
            self.metadata[key] = self._read_value(cur, vtype, key)
        infos = []
        for _ in range(n_tensors):
            name = cur.string("tensor table")
            n_dims = cur.u32("tensor table")
            if n_dims > MAX_DIMS:
                raise ModelFileError(f"{self.path}: corrupt tensor table ({name!r} has {n_dims} dims)")
            ne = [cur.u64("tensor table") for _ in range(n_dims)]
            ttype = cur.u32("tensor table")
            offset = cur.u64("tensor table")
            infos.append((name, ne, ttype, offset))
        alignment = self._alignment()
        self.data_offset = -(-cur.pos // alignment) * alignment
        for name, ne, ttype, offset in infos:
            if name in self.tensors:
                raise ModelFileError(f"{self.path}: corrupt tensor table (tensor {name!r} appears twice)")
            self.tensors[name] = self._tensor_info(name, ne, ttype, offset, alignment)
        self._check_layout(alignment)

    def _alignment(self) -> int:
        """general.alignment: a power of two, or the GGUF default when absent."""
        value = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
            raise ModelFileError(f"{self.path}: invalid general.alignment {value!r} (must be a power of two)")
        return value

    def _tensor_info(self, name: str, ne: list[int], ttype: int, offset: int, alignment: int) -> TensorInfo:
        """One tensor-table entry, refused when its bytes cannot lie inside the file at an aligned offset."""
        try:
            nbytes = _tensor_nbytes(ttype, ne)
        except ValueError as err:
            raise ModelFileError(f"{self.path}: tensor {name!r}: {err}") from None
        if offset % alignment:
            raise ModelFileError(
                f"{self.path}: corrupt tensor table (tensor {name!r} has offset {offset}, "
                f"not a multiple of general.alignment {alignment})"
            )
        size = len(self._buf)
        if nbytes is not None and nbytes > size:  # a cut download, or dims such as 2**64-1
            raise ModelFileError(
                f"{self.path}: truncated or corrupt GGUF file (tensor {name!r} with dims {ne} needs "
                f"{nbytes} bytes, the whole file has {size})"
            )
        start = self.data_offset + offset
        if nbytes is not None and start + nbytes > size:
            raise ModelFileError(
                f"{self.path}: truncated GGUF file (tensor {name!r} needs bytes "
                f"{start}..{start + nbytes}, file is {size} bytes)"
            )
        shape = tuple(reversed(ne))
        return TensorInfo(name, shape, ttype, start, nbytes or 0)

    def _check_layout(self, alignment: int) -> None:
        """Tensors lie one after another in table order, each padded to the alignment, as
        gguf-py and llama.cpp write them (llama.cpp refuses any other layout). A shifted
        offset, or a type or dim that changed a tensor's size, breaks the chain."""
        expected, previous = 0, None  # expected: None after a tensor of a type we cannot size
        for t in self.tensors.values():
            start = t.offset - self.data_offset
            if expected is not None and start != expected:
                where = f"where {previous!r} ends" if previous else "the start of the tensor data"
                raise ModelFileError(
                    f"{self.path}: corrupt tensor table (tensor {t.name!r} starts at data offset {start}, "
                    f"expected {expected}: {where}, padded to general.alignment {alignment})"
                )
            sized = t.ggml_type in ggml_types.SUPPORTED
            expected = -(-(start + t.nbytes) // alignment) * alignment if sized else None
            previous = t.name

    def _read_value(self, cur: _Cursor, vtype: int, key: str) -> Any:
        what = f"value of {key!r}"
        if vtype == _STRING:
            return cur.string(what)
        if vtype in _SCALAR_FORMATS:
            return cur.scalar(_SCALAR_FORMATS[vtype], what)
        if vtype == _ARRAY:
            etype = cur.u32(what)
            count = cur.u64(what)
            if etype == _STRING:
                return self._read_string_array(cur, count, what)
            if etype in _SCALAR_DTYPES:
                dtype = np.dtype(_SCALAR_DTYPES[etype])
                start = cur.need(count * dtype.itemsize, what)
                return np.frombuffer(self._mmap, dtype=dtype, count=count, offset=start)
            raise ModelFileError(f"{self.path}: corrupt GGUF metadata ({key!r} has array type {etype})")
        raise ModelFileError(f"{self.path}: corrupt GGUF metadata ({key!r} has type {vtype})")

    def _read_string_array(self, cur: _Cursor, count: int, what: str) -> StringArray:
        if count > len(self._buf) // 8:
            raise ModelFileError(f"{self.path}: corrupt GGUF metadata ({what} has {count} strings)")
        starts = np.empty(count, dtype=np.int64)
        lengths = np.empty(count, dtype=np.int64)
        buf = self._buf
        pos = cur.pos
        end = len(buf)
        unpack = struct.Struct("<Q").unpack_from
        for i in range(count):
            if pos + 8 > end:
                cur.pos = pos
                cur.need(8, what)
            n = unpack(buf, pos)[0]
            pos += 8
            if n > end - pos:  # before the store: a length >= 2**63 does not fit int64
                cur.pos = pos
                cur.need(n, what)
            starts[i] = pos
            lengths[i] = n
            pos += n
        cur.pos = pos
        return StringArray(buf, starts, lengths)

    # ----------------------------------------------------------------- access
    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def tensor(self, name: str) -> np.ndarray:
        """A read-only view of the tensor's bytes in its storage dtype.

        F32 -> float32, F16/BF16 -> uint16 bits (NumPy shape as in the file);
        Q8_0/MXFP4 -> uint8 with the last axis in bytes per row.
        """
        info = self.tensors[name]
        t = info.ggml_type
        if t not in ggml_types.SUPPORTED:
            raise UnsupportedTensorType(
                f"{self.path}: tensor {name!r} has type {info.type_name}, which gptoss does not "
                f"support (supported: {', '.join(ggml_types.type_name(s) for s in sorted(ggml_types.SUPPORTED))})"
            )
        *outer, cols = info.shape or (1,)
        dtype, last = ggml_types.storage_layout(t, cols)
        count = int(np.prod(outer, dtype=np.int64)) * last
        arr = np.frombuffer(self._mmap, dtype=dtype, count=count, offset=info.offset)
        return arr.reshape(*outer, last)

    def close(self) -> None:
        self.tensors = {}
        self.data = None  # type: ignore[assignment]
        self._buf.release()
        try:
            self._mmap.close()
        except BufferError:
            # Views are still alive; the map closes when the last one goes.
            pass

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tensor_nbytes(ggml_type: int, ne: list[int]) -> int | None:
    """Bytes a tensor occupies, or None for a type we cannot size (refused on use)."""
    if ggml_type not in ggml_types.SUPPORTED:
        return None
    if not ne:
        return ggml_types.row_bytes(ggml_type, 1)
    cols = ne[0]
    block = ggml_types.block_size(ggml_type)
    if cols % block:
        raise ValueError(
            f"a row of {cols} values is not a multiple of the {ggml_types.type_name(ggml_type)} block ({block})"
        )
    # Python ints: dims up to 2**64-1 must not wrap around (or warn) in int64
    return math.prod(ne[1:]) * ggml_types.row_bytes(ggml_type, cols)
