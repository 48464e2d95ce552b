"""`gptoss quantize IN.gguf OUT.gguf TYPE`: re-encode a gpt-oss GGUF, like
llama-quantize does for gpt-oss.

TYPE is q8_0, bf16, f16, f32 or mxfp4:
  * q8_0 / bf16 / f16 / f32: 2-D dense weights (token embedding, output,
    attention) take TYPE; experts in MXFP4 stay MXFP4 (byte for byte: re-quantizing
    them gains nothing and would lose precision), experts in another type take
    TYPE;
  * mxfp4: experts not yet in MXFP4 are quantized to MXFP4; everything else is
    kept as it is;
  * norms, biases, sinks and the router are F32 in every case.
A tensor already in its target type is copied byte for byte. New encodings go
through float32 and are bit-identical to gguf.quants (Numba kernels). Every
key of the input is copied; `general.file_type` becomes MOSTLY_MXFP4_MOE (38)
when the experts end up MXFP4 (what ggml-org's Q8_0-dense files carry), else
the TYPE's (ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32).
The output is written to a temporary file and renamed; a progress bar runs on
stderr.
"""

from __future__ import annotations

import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

from ..errors import OptionError
from ..gguf_file import GGUFFile, StringArray
from ..gguf_split import home_of, open_model_file, shard_paths, shards_note, shards_of
from .convert import FILE_TYPES, check_output_path
from .errors import ConvertError
from .gguf_writer import DENSE_TYPES, FILE_TYPE_MXFP4_MOE, GGUFTensor, tensor_type_for, write_gguf
from .progress import ByteProgress, fmt_bytes
from .recipes import CHUNK_VALUES, encode_f32

__all__ = ["QUANT_TYPES", "QuantizeResult", "quantize_gguf", "quantize_command", "target_type"]

QUANT_TYPES = ("q8_0", "bf16", "f16", "f32", "mxfp4")

_NP_TO_VT = {
    np.dtype("<u1"): VT.UINT8, np.dtype("<i1"): VT.INT8, np.dtype("<u2"): VT.UINT16, np.dtype("<i2"): VT.INT16,
    np.dtype("<u4"): VT.UINT32, np.dtype("<i4"): VT.INT32, np.dtype("<f4"): VT.FLOAT32, np.dtype("?"): VT.BOOL,
    np.dtype("<u8"): VT.UINT64, np.dtype("<i8"): VT.INT64, np.dtype("<f8"): VT.FLOAT64,
}


class _TypedGGUF(GGUFFile):
    """GGUFFile that also remembers each key's value type (to copy keys unchanged)."""

    def _read_value(self, cur: Any, vtype: int, key: str) -> Any:
        value = super()._read_value(cur, vtype, key)
        types = self.__dict__.setdefault("value_types", {})
        sub = None
        if vtype == VT.ARRAY:
            sub = VT.STRING if isinstance(value, StringArray) else _NP_TO_VT[np.dtype(value.dtype)]
        types[key] = (VT(vtype), sub)
        return value

    def release(self, name: str) -> None:
        """Drop a tensor's pages from the resident set once written (they stay in the page cache)."""
        info = self.tensors.get(name)
        if info is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = info.offset // mmap.PAGESIZE * mmap.PAGESIZE
        try:
            self._mmap.madvise(mmap.MADV_DONTNEED, start, info.offset + info.nbytes - start)
        except (OSError, ValueError):  # pragma: no cover - advisory only
            pass


@dataclass
class QuantizeResult:
    path: Path
    n_tensors: int
    n_changed: int
    kept_mxfp4: int
    nbytes: int
    seconds: float
    file_type: int


def target_type(name: str, shape: tuple[int, ...], current: int, qtype: str, *,
                output_type: str | None = None, embedding_type: str | None = None) -> QT:
    """The type a tensor gets when quantizing to `qtype` (see the module doc).

    `output_type` / `embedding_type` override it for `output.weight` /
    `token_embd.weight` (llama-quantize's --output-tensor-type and
    --token-embedding-type); they may also be 'mxfp4'.
    """
    current = QT(current)
    override = {"output.weight": output_type, "token_embd.weight": embedding_type}.get(name)
    if override is not None:
        return QT.MXFP4 if override == "mxfp4" else DENSE_TYPES[override]
    if name.endswith("_exps.weight"):
        if current == QT.MXFP4:
            return current
        return QT.MXFP4 if qtype == "mxfp4" else DENSE_TYPES[qtype]
    if tensor_type_for(name, len(shape), "bf16") == QT.BF16:  # a 2-D dense weight
        return current if qtype == "mxfp4" else DENSE_TYPES[qtype]
    if name.endswith((".weight", ".bias")) and (len(shape) == 1 or ".ffn_gate_inp." in name or name.endswith(".bias")):
        return QT.F32
    return current


def _stored(gf: _TypedGGUF, name: str, ggml_type: int) -> Iterator[np.ndarray]:  # gf: the tensor's own file
    """The tensor's bytes as they are (one piece), then its pages released."""
    raw = gf.tensor(name)
    yield raw.view(np.float16) if ggml_type == QT.F16 else raw
    del raw
    gf.release(name)


def _pieces(gf: _TypedGGUF, name: str, src_type: int, dst_type: QT, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """Re-encoded in row blocks: dequantize (exact) to float32, encode as gguf.quants does."""
    from gptoss_kernels import dequantize

    raw = gf.tensor(name)
    cols = shape[-1]
    rows = raw.reshape(-1, raw.shape[-1])
    step = max(1, CHUNK_VALUES // max(cols, 1))
    for r in range(0, rows.shape[0], step):
        block = rows[r : r + step]
        yield encode_f32(dequantize(src_type, block, cols), dst_type)
    del raw, rows
    gf.release(name)


def quantize_gguf(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    qtype: str,
    *,
    output_type: str | None = None,
    embedding_type: str | None = None,
    force: bool = False,
    progress: bool = True,
    fsync: bool = True,
    split_max_size: int = 0,
) -> QuantizeResult:
    qtype = qtype.lower()
    if qtype not in QUANT_TYPES:
        raise OptionError(f"TYPE must be one of {', '.join(QUANT_TYPES)}, got {qtype!r}")
    for opt, value in (("--output-tensor-type", output_type), ("--token-embedding-type", embedding_type)):
        if value is not None and value not in QUANT_TYPES:
            raise OptionError(f"{opt} must be one of {', '.join(QUANT_TYPES)}, got {value!r}")
    src, out = Path(src), Path(out)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise ConvertError(f"{out}: the output must be a different file from the input")
    check_output_path(out, force)
    gf = open_model_file(src, opener=_TypedGGUF)  # a split input: every shard, its tensors in shard order
    try:
        from ..weights import read_config

        read_config(gf)  # refuses anything that is not a usable gpt-oss GGUF
        types = shards_of(gf)[0].__dict__.get("value_types", {})
        tensors: list[GGUFTensor] = []
        changed = kept = 0
        experts_mxfp4 = True
        for name, info in gf.tensors.items():
            qt = target_type(name, info.shape, info.ggml_type, qtype,
                             output_type=output_type, embedding_type=embedding_type)
            if qt == QT.MXFP4 and info.shape[-1] % 32:
                raise OptionError(f"{name}: rows of {info.shape[-1]} values cannot be MXFP4 (blocks of 32)")
            if name.endswith("_exps.weight"):
                if info.ggml_type == QT.MXFP4:
                    kept += 1
                experts_mxfp4 &= qt == QT.MXFP4
            home = home_of(gf, name)
            if qt == info.ggml_type:
                data: Any = (lambda h=home, n=name, i=info: _stored(h, n, i.ggml_type))
            else:
                changed += 1
                data = (lambda h=home, n=name, i=info, q=qt: _pieces(h, n, i.ggml_type, q, i.shape))
            tensors.append(GGUFTensor(name, data, qt, info.shape))
        file_type = FILE_TYPE_MXFP4_MOE if experts_mxfp4 else FILE_TYPES.get(qtype, FILE_TYPE_MXFP4_MOE)

        kv = []
        for key, value in gf.metadata.items():
            if key in ("general.architecture", "general.alignment") or key.startswith("split."):
                continue
            vtype, sub = types[key]
            if key == "general.file_type":
                value = file_type
            elif isinstance(value, (StringArray, np.ndarray)):
                value = value.tolist()
            kv.append((key, value, vtype, sub))
        if "general.file_type" not in gf.metadata:
            kv.append(("general.file_type", file_type, VT.UINT32, None))

        total = sum(t.nbytes for t in tensors)
        bar = ByteProgress(f"quantize {out.name}", total, enabled=progress)
        with bar:
            if kept:
                bar.note(
                    f"gptoss: note: {kept} expert tensors are already MXFP4 and stay MXFP4 "
                    "(re-quantizing them gains nothing)"
                )
            try:
                first = write_gguf(out, gf.architecture or "gpt-oss", kv, tensors,
                                   alignment=gf.metadata.get("general.alignment"), fsync=fsync, progress=bar.advance,
                                   split_max_size=split_max_size)
            except OSError as err:
                raise ConvertError(f"{out}: cannot write ({err.strerror or err})") from None
        size = sum(p.stat().st_size for p in shard_paths(first))
        return QuantizeResult(first, len(tensors), changed, kept, size, bar.seconds, file_type)
    finally:
        gf.close()


def quantize_command(src: str, out: str, qtype: str, force: bool = False,
                     output_type: str | None = None, embedding_type: str | None = None,
                     split_max_size: int = 0) -> Path:
    r = quantize_gguf(src, out, qtype, output_type=output_type, embedding_type=embedding_type,
                      force=force, progress=True, split_max_size=split_max_size)
    sys.stderr.write(
        f"gptoss: wrote {shards_note(r.path)} ({r.n_tensors} tensors, {r.n_changed} re-encoded, {fmt_bytes(r.nbytes)}) "
        f"in {r.seconds:.1f} s\n"
    )
    return r.path
