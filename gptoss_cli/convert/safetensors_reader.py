"""Read safetensors checkpoints through a memory map, without torch.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": ...}`),
then the raw little-endian tensor bytes, offsets relative to the end of the
header. `SafetensorsFile` parses and checks the header and hands out read-only
NumPy views of the map: bfloat16 comes back as its uint16 bit patterns (NumPy
has no bfloat16), FP8 as uint8.

`Checkpoint` is a folder of such files: `model.safetensors.index.json` (its
`weight_map`) when present, otherwise every `*.safetensors` file in the folder.
Errors are `ConvertError`s naming the file and the problem, one line each.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import ConvertError

__all__ = ["SafetensorsFile", "Checkpoint", "TensorEntry", "INDEX_NAME"]

INDEX_NAME = "model.safetensors.index.json"
# Headers of real checkpoints are well under this; anything larger is corrupt.
_MAX_HEADER = 100 * 1024 * 1024

_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "F8_E5M2": np.dtype(np.uint8),
    "F8_E4M3": np.dtype(np.uint8),
    "F8_E8M0": np.dtype(np.uint8),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # safetensors dtype name: "BF16", "F32", "U8", ...
    shape: tuple[int, ...]
    begin: int  # absolute offset in the file
    end: int


class SafetensorsFile:
    """One .safetensors file: parsed header plus zero-copy views of its tensors."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConvertError(f"{self.path}: file not found")
        size = self.path.stat().st_size
        if size < 8:
            raise ConvertError(f"{self.path}: not a safetensors file (only {size} bytes)")
        try:
            with open(self.path, "rb") as fh:
                self._mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as err:
            raise ConvertError(f"{self.path}: cannot open ({err.strerror})") from None
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorEntry] = {}
        self._parse(size)

    def _parse(self, size: int) -> None:
        (n,) = struct.unpack_from("<Q", self._mmap, 0)
        if n > _MAX_HEADER or 8 + n > size:
            raise ConvertError(f"{self.path}: not a safetensors file (header length {n}, file is {size} bytes)")
        try:
            header = json.loads(bytes(self._mmap[8 : 8 + n]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConvertError(f"{self.path}: not a safetensors file (header is not JSON)") from None
        if not isinstance(header, dict):
            raise ConvertError(f"{self.path}: not a safetensors file (header is not a JSON object)")
        start = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                if isinstance(info, dict):
                    self.metadata = {str(k): str(v) for k, v in info.items()}
                continue
            try:
                dtype = info["dtype"]
                shape = tuple(int(d) for d in info["shape"])
                b, e = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise ConvertError(f"{self.path}: corrupt safetensors header (entry {name!r})") from None
            if dtype not in _DTYPES:
                raise ConvertError(f"{self.path}: tensor {name} has unknown dtype {dtype!r}")
            need = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize
            if b < 0 or e - b != need or start + e > size or any(d < 0 for d in shape):
                raise ConvertError(
                    f"{self.path}: truncated or corrupt safetensors file (tensor {name} needs "
                    f"{need} bytes at {start + b}, file is {size} bytes)"
                )
            self.tensors[name] = TensorEntry(name, dtype, shape, start + b, start + e)

    def array(self, name: str) -> np.ndarray:
        """Read-only view of one tensor in its storage dtype (BF16 as uint16 bits)."""
        t = self.tensors[name]
        dt = _DTYPES[t.dtype]
        count = t.end - t.begin
        arr = np.frombuffer(self._mmap, dtype=dt, count=count // dt.itemsize, offset=t.begin)
        return arr.reshape(t.shape)

    def release(self) -> None:
        """Drop this file's pages from the process's resident set (they stay in the page cache)."""
        if hasattr(mmap, "MADV_DONTNEED"):
            try:
                self._mmap.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # pragma: no cover - advisory only
                pass

    def close(self) -> None:
        try:
            self._mmap.close()
        except BufferError:
            pass  # views alive: the map closes with the last one


class Checkpoint:
    """Every tensor of a checkpoint folder, by name, across its shard files."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.files: dict[str, SafetensorsFile] = {}
        self._where: dict[str, str] = {}
        index = self.folder / INDEX_NAME
        if index.is_file():
            self._from_index(index)
        else:
            shards = sorted(p for p in self.folder.glob("*.safetensors") if p.is_file())
            if not shards:
                raise ConvertError(
                    f"{self.folder}: no model.safetensors (or {INDEX_NAME} with its shards) found"
                )
            for p in shards:
                f = self._open(p.name)
                for name in f.tensors:
                    if name in self._where:
                        raise ConvertError(f"{self.folder}: tensor {name} is in both {self._where[name]} and {p.name}")
                    self._where[name] = p.name

    def _from_index(self, index: Path) -> None:
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            weight_map = data["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            raise ConvertError(f"{index}: not a safetensors index (no weight_map)") from None
        for name, fname in weight_map.items():
            if not isinstance(fname, str) or os.path.basename(fname) != fname:
                raise ConvertError(f"{index}: bad file name {fname!r} for tensor {name}")
            if not (self.folder / fname).is_file():
                raise ConvertError(f"{self.folder / fname}: file not found (listed in {INDEX_NAME})")
            f = self._open(fname)
            if name not in f.tensors:
                raise ConvertError(f"{self.folder / fname}: missing tensor {name} (listed in {INDEX_NAME})")
            self._where[name] = fname

    def _open(self, fname: str) -> SafetensorsFile:
        f = self.files.get(fname)
        if f is None:
            f = self.files[fname] = SafetensorsFile(self.folder / fname)
        return f

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def names(self) -> Iterator[str]:
        return iter(self._where)

    def entry(self, name: str) -> TensorEntry:
        if name not in self._where:
            raise ConvertError(f"{self.folder}: missing tensor {name}")
        return self.files[self._where[name]].tensors[name]

    def file_of(self, name: str) -> SafetensorsFile:
        return self.files[self._where[name]]

    def array(self, name: str) -> np.ndarray:
        self.entry(name)
        return self.file_of(name).array(name)

    def release(self) -> None:
        for f in self.files.values():
            f.release()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files = {}
