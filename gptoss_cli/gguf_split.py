"""Split GGUF models (llama.cpp's gguf-split layout) opened as one model file.

The published gpt-oss-120b comes in shards named ``NAME-0000K-of-0000N.gguf``
(K counts from 1). Every shard is a GGUF of its own holding some of the
tensors and the keys ``split.no`` (K - 1), ``split.count`` (N) and
``split.tensors.count`` (the tensors of all shards); the model's metadata is
in the first. Given any shard, `open_model_file` opens and memory-maps every
shard (nothing is copied) and checks that they belong together: a missing,
renumbered, extra or foreign shard is one ModelFileError naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from .errors import ModelFileError
from .gguf_file import GGUFFile, TensorInfo

__all__ = ["SplitGGUF", "byte_maps", "home_of", "shards_of", "open_model_file", "split_name", "shard_path", "shard_paths", "shards_note"]

SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS = "split.no", "split.count", "split.tensors.count"
_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def split_name(path: str | os.PathLike[str]) -> tuple[str, int, int] | None:
    """(prefix, shard number from 1, shard count) of a shard's file name, or None."""
    m = _NAME.match(Path(path).name)
    if m is None:
        return None
    return m.group("prefix"), int(m.group("no")), int(m.group("count"))


def shard_path(directory: Path, prefix: str, no: int, count: int) -> Path:
    """The file name of shard `no` (from 1) of `count`, as llama.cpp names it."""
    return directory / f"{prefix}-{no:05d}-of-{count:05d}.gguf"


def shard_paths(path: str | os.PathLike[str]) -> list[Path]:
    """Every shard's path for a shard's path (the path alone when it is not named as a shard)."""
    p = Path(path)
    parts = split_name(p)
    if parts is None:
        return [p]
    prefix, _, count = parts
    return [shard_path(p.parent, prefix, k, count) for k in range(1, count + 1)]


def shards_note(first: Path) -> str:
    """The file written, or its first shard and how many more there are (for messages)."""
    n = len(shard_paths(first))
    return str(first) if n == 1 else f"{first} and {n - 1} more shard{'s' if n > 2 else ''}"


def _int_key(gf: GGUFFile, key: str) -> int | None:
    value = gf.metadata.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ModelFileError(f"{gf.path}: {key} must be an integer, not {value!r}")
    return int(value)


class SplitGGUF:
    """The shards of one model as one GGUF: the first shard's metadata, every shard's tensors."""

    def __init__(self, shards: list[GGUFFile]) -> None:
        self.shards = shards
        self.path = shards[0].path
        self.metadata: dict[str, Any] = shards[0].metadata
        self.tensors: dict[str, TensorInfo] = {}
        self._home: dict[str, GGUFFile] = {}
        for gf in shards:
            for name, info in gf.tensors.items():
                if name in self._home:
                    raise ModelFileError(
                        f"{gf.path}: tensor {name!r} is also in {self._home[name].path.name}: "
                        "these shards are not one model"
                    )
                self.tensors[name] = info
                self._home[name] = gf
        declared = _int_key(shards[0], SPLIT_TENSORS)
        if declared is not None and declared != len(self.tensors):
            raise ModelFileError(
                f"{self.path}: the shards hold {len(self.tensors)} tensors but {SPLIT_TENSORS} says {declared}"
            )

    @property
    def architecture(self) -> str | None:
        return self.shards[0].architecture

    @property
    def data_maps(self) -> list[np.ndarray]:
        """The byte maps of every shard (to page them in, or to check a view's origin)."""
        return [gf.data for gf in self.shards]

    @property
    def size(self) -> int:
        return sum(gf.path.stat().st_size for gf in self.shards)

    def shard_of(self, name: str) -> GGUFFile:
        """The shard that holds tensor `name`."""
        try:
            return self._home[name]
        except KeyError:
            raise ModelFileError(f"{self.path}: missing tensor {name!r}") from None

    def tensor(self, name: str) -> np.ndarray:
        return self.shard_of(name).tensor(name)

    def close(self) -> None:
        for gf in self.shards:
            gf.close()

    def __enter__(self) -> "SplitGGUF":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ModelFile = Union[GGUFFile, SplitGGUF]


def byte_maps(f: ModelFile) -> list[np.ndarray]:
    """The memory maps behind a model file: one, or one per shard."""
    return f.data_maps if isinstance(f, SplitGGUF) else [f.data]


def shards_of(f: ModelFile) -> list[GGUFFile]:
    """The files behind a model file: itself, or its shards (the first holds the metadata)."""
    return f.shards if isinstance(f, SplitGGUF) else [f]


def home_of(f: ModelFile, name: str) -> GGUFFile:
    """The one file that holds tensor `name`."""
    return f.shard_of(name) if isinstance(f, SplitGGUF) else f


def _open_shards(paths: list[Path], count: int, opener: Callable[[Path], GGUFFile]) -> list[GGUFFile]:
    shards: list[GGUFFile] = []
    try:
        for k, p in enumerate(paths, 1):
            if not p.exists():
                raise ModelFileError(f"{p}: shard {k} of {count} is missing")
            gf = opener(p)
            shards.append(gf)
            no, n = _int_key(gf, SPLIT_NO), _int_key(gf, SPLIT_COUNT)
            if n != count:
                raise ModelFileError(f"{p}: this shard says the model has {n} shards, its name says {count}")
            if no != k - 1:
                said = "no split.no key" if no is None else f"shard {no + 1}"
                raise ModelFileError(f"{p}: this file is named shard {k} of {count} but holds {said}")
    except BaseException:
        for gf in shards:
            gf.close()
        raise
    return shards


def open_model_file(path: str | os.PathLike[str], opener: Callable[[Path], GGUFFile] = GGUFFile) -> ModelFile:
    """A GGUF file, or all shards of a split model given any one of them, mapped and checked.

    A file without split keys is one file whatever its name; one with them must be
    named as llama.cpp names shards, so that the others can be found beside it.
    `opener` opens each file (a GGUFFile subclass that records more, for quantize).
    """
    p = Path(path)
    gf = opener(p)
    try:
        count, no = _int_key(gf, SPLIT_COUNT), _int_key(gf, SPLIT_NO)
    except BaseException:
        gf.close()
        raise
    if count is None or count == 1:
        return gf
    gf.close()
    parts = split_name(p)
    if parts is None or parts[2] != count:
        raise ModelFileError(
            f"{p}: this is shard {(no or 0) + 1} of a {count}-shard model, but its name does not end in "
            f"-0000K-of-{count:05d}.gguf, so the other shards cannot be found (name the files as llama.cpp does)"
        )
    prefix = parts[0]
    shards = _open_shards([shard_path(p.parent, prefix, k, count) for k in range(1, count + 1)], count, opener)
    try:
        return SplitGGUF(shards)
    except BaseException:
        for s in shards:
            s.close()
        raise
