"""Write gpt-oss GGUF files the way llama.cpp's converter does.

What is written (verified against llama.cpp's `convert_hf_to_gguf.py`, class
`GptOssModel` and `TextModel.set_gguf_parameters` / `prepare_tensors`, and
gguf-py's `GGUFWriter`):

* architecture `gpt-oss`; `general.type` = "model", `general.name`,
  `general.size_label`, `general.file_type`, `general.quantization_version`;
* `gpt-oss.*` keys, all UINT32 except the FLOAT32 ones and the STRING
  `rope.scaling.type` (see `metadata_items`);
* tensors: `token_embd.weight`, `output_norm.weight`, `output.weight`, and
  per layer `blk.N.*` (see `expected_tensor_shapes`). Experts are MXFP4; 2-D
  dense `.weight` tensors other than the router take the dense type (BF16 as
  the converter writes, Q8_0 as ggml-org's published files, or F16 / F32);
  everything else (norms, biases, sinks, the router) is F32.

The file is streamed: tensor descriptions first, then each tensor's bytes,
produced one at a time (a `GGUFTensor` may hold a callable that makes its data
on demand), so a real-size model never sits in memory twice. The output goes
to a temporary file in the destination folder that is renamed over `path`
only when complete.
"""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

from gptoss_cli.atomic_write import atomic_path
from gptoss_cli.config import ARCH, ModelConfig

__all__ = [
    "GGUFTensor",
    "DENSE_TYPES",
    "FILE_TYPE_MXFP4_MOE",
    "write_gpt_oss_gguf",
    "write_gguf",
    "metadata_items",
    "expected_tensor_shapes",
    "tensor_type_for",
    "encode_tensor",
    "gguf_tensors_from_arrays",
    "quantize_q8_0",
    "quantize_mxfp4",
    "to_bf16_bits",
    "dequantize",
    "tensor_nbytes",
]

# Dense (2-D non-expert) weight variants -> ggml type.
DENSE_TYPES: dict[str, QT] = {
    "bf16": QT.BF16,
    "q8_0": QT.Q8_0,
    "f16": QT.F16,
    "f32": QT.F32,
}

# llama.cpp's converter turns an F32/F16/BF16 file type into MOSTLY_MXFP4_MOE
# when the checkpoint's experts are MXFP4 (always so for gpt-oss), and
# ggml-org's published (Q8_0 dense) files carry the same value.
FILE_TYPE_MXFP4_MOE = int(gguf.LlamaFileType.MOSTLY_MXFP4_MOE)  # 38

ArrayOrFactory = Union[np.ndarray, Callable[[], np.ndarray]]


# ---------------------------------------------------------------------------
# Tensor description
# ---------------------------------------------------------------------------


@dataclass
class GGUFTensor:
    """One tensor as it goes to disk.

    name:      GGUF tensor name.
    data:      the on-disk bytes as an array (float32 for F32, float16 for F16,
               uint16 bit patterns for BF16, uint8 bytes for Q8_0 / MXFP4), or a
               zero-argument callable returning that array (called once, at
               write time: this is how the writer streams), or returning an
               iterator of such arrays, consecutive pieces of the tensor in
               file order (so a large tensor never sits in memory whole).
    ggml_type: ggml type id.
    shape:     logical NumPy shape in elements (slowest axis first; the reverse
               of ggml's `ne`). Experts: [E, out, in]; expert biases [E, out].
    """

    name: str
    data: ArrayOrFactory
    ggml_type: int
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        self.ggml_type = int(self.ggml_type)
        self.shape = tuple(int(d) for d in self.shape)

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.ggml_type)

    def load(self) -> np.ndarray:
        """Return the on-disk array, checked against type and shape."""
        arr = self.data() if callable(self.data) else self.data
        if not isinstance(arr, np.ndarray) and hasattr(arr, "__next__"):
            arr = np.concatenate([np.asarray(c).reshape(-1) for c in arr])
        return _check_raw(self.name, np.asarray(arr), self.ggml_type, self.shape)

    def _source(self) -> "np.ndarray | _Chunked":
        """What the writer hands to gguf-py: a checked array, or the checked chunk stream."""
        arr = self.data() if callable(self.data) else self.data
        if not isinstance(arr, np.ndarray) and hasattr(arr, "__next__"):
            return _Chunked(self, arr)
        return _check_raw(self.name, np.asarray(arr), self.ggml_type, self.shape)


class _Chunked:
    """A tensor given as consecutive pieces, written piece by piece.

    Duck-types the two things gguf-py's `GGUFWriter.write_tensor_data` uses
    (`nbytes`, `tofile`); each piece is checked for dtype and the total size
    must equal the tensor's.
    """

    def __init__(self, tensor: GGUFTensor, chunks: Any) -> None:
        self.tensor = tensor
        self.chunks = chunks
        self.nbytes = tensor.nbytes
        self.progress: Callable[[int], None] | None = None
        qt = QT(tensor.ggml_type)
        self.dtype = _RAW_DTYPES.get(qt, np.dtype(np.uint8))

    def tofile(self, fout: Any) -> None:
        done = 0
        for c in self.chunks:
            c = np.asarray(c)
            if c.dtype != self.dtype and not (self.dtype == np.uint16 and "bfloat16" in str(c.dtype)):
                raise TypeError(f"{self.tensor.name}: chunk dtype {c.dtype}, expected {self.dtype}")
            c = np.ascontiguousarray(c)
            done += c.nbytes
            if done > self.nbytes:
                raise ValueError(f"{self.tensor.name}: chunks exceed the tensor's {self.nbytes} bytes")
            c.tofile(fout)
            if self.progress is not None:
                self.progress(c.nbytes)
        if done != self.nbytes:
            raise ValueError(f"{self.tensor.name}: chunks hold {done} bytes, the tensor needs {self.nbytes}")


def tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    block, type_size = gguf.GGML_QUANT_SIZES[QT(ggml_type)]
    if not shape:
        raise ValueError("tensor shape must have at least one axis")
    if shape[-1] % block:
        raise ValueError(
            f"last axis {shape[-1]} is not a multiple of {QT(ggml_type).name}'s block size {block}"
        )
    return math.prod(shape[:-1]) * (shape[-1] // block) * type_size


_RAW_DTYPES = {QT.F32: np.dtype(np.float32), QT.F16: np.dtype(np.float16), QT.BF16: np.dtype(np.uint16)}


def _check_raw(name: str, arr: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    qt = QT(ggml_type)
    expected = tensor_nbytes(shape, qt)
    if qt in _RAW_DTYPES:
        want = _RAW_DTYPES[qt]
        if qt == QT.BF16 and arr.dtype != want and arr.dtype.itemsize == 2 and "bfloat16" in str(arr.dtype):
            arr = arr.view(np.uint16)
        if arr.dtype != want:
            raise TypeError(f"{name}: {qt.name} data must be {want}, got {arr.dtype}")
        if arr.size != math.prod(shape):
            raise ValueError(f"{name}: {arr.size} elements for shape {shape}")
    elif arr.dtype != np.uint8:
        raise TypeError(f"{name}: {qt.name} data must be uint8 bytes, got {arr.dtype}")
    if arr.nbytes != expected:
        raise ValueError(f"{name}: {arr.nbytes} bytes, {qt.name} {shape} needs {expected}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


# ---------------------------------------------------------------------------
# Encoders (all bit-exact with gguf-py / ggml)
# ---------------------------------------------------------------------------


def _as_f32(x: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def to_bf16_bits(x: Any) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even, NaN kept quiet.

    Same as ggml's `ggml_compute_fp32_to_bf16` and gguf-py's `quants.BF16`.
    """
    x = _as_f32(x)
    return gguf.quants.quantize(x, QT.BF16).view(np.uint16).reshape(x.shape)


def quantize_q8_0(x: Any) -> np.ndarray:
    """float32 [..., n] (n a multiple of 32) -> Q8_0 bytes uint8 [..., n/32*34]."""
    return gguf.quants.quantize(_as_f32(x), QT.Q8_0)


def quantize_mxfp4(x: Any) -> np.ndarray:
    """float32 [..., n] (n a multiple of 32) -> GGUF MXFP4 bytes uint8 [..., n/32*17].

    Byte layout per block: E8M0 exponent, then 16 bytes with element j in the
    low nibble and element j+16 in the high nibble.
    """
    return gguf.quants.quantize(_as_f32(x), QT.MXFP4)


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """On-disk array -> float32 with the logical shape (gguf-py reference)."""
    qt = QT(ggml_type)
    if qt == QT.BF16:
        raw = np.asarray(raw).view(np.uint16)
        out = (raw.astype(np.uint32) << 16).view(np.float32)
    elif qt == QT.F32:
        out = np.asarray(raw).view(np.float32)
    elif qt == QT.F16:
        out = np.asarray(raw).view(np.float16).astype(np.float32)
    else:
        out = gguf.quants.dequantize(np.asarray(raw, dtype=np.uint8), qt)
    out = np.asarray(out, dtype=np.float32)
    return out.reshape(shape) if shape is not None else out


def encode_tensor(x: Any, ggml_type: int) -> np.ndarray:
    """float32 values -> on-disk array for `ggml_type`."""
    qt = QT(ggml_type)
    if qt == QT.F32:
        return _as_f32(x)
    if qt == QT.F16:
        return _as_f32(x).astype(np.float16)
    if qt == QT.BF16:
        return to_bf16_bits(x)
    if qt in (QT.Q8_0, QT.MXFP4):
        return gguf.quants.quantize(_as_f32(x), qt)
    raise NotImplementedError(f"encoding to {qt.name} is not supported")


# ---------------------------------------------------------------------------
# Names, shapes, types
# ---------------------------------------------------------------------------


def expected_tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a gpt-oss GGUF with its logical NumPy shape, in file order."""
    H, E, F = cfg.hidden, cfg.n_experts, cfg.expert_ffn
    Q, KV = cfg.q_dim, cfg.kv_dim
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (cfg.vocab_size, H)}
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        shapes.update(
            {
                p + "attn_norm.weight": (H,),
                p + "attn_q.weight": (Q, H),
                p + "attn_q.bias": (Q,),
                p + "attn_k.weight": (KV, H),
                p + "attn_k.bias": (KV,),
                p + "attn_v.weight": (KV, H),
                p + "attn_v.bias": (KV,),
                p + "attn_output.weight": (H, Q),
                p + "attn_output.bias": (H,),
                p + "attn_sinks.weight": (cfg.n_heads,),
                p + "post_attention_norm.weight": (H,),
                p + "ffn_gate_inp.weight": (E, H),
                p + "ffn_gate_inp.bias": (E,),
                p + "ffn_gate_exps.weight": (E, F, H),
                p + "ffn_gate_exps.bias": (E, F),
                p + "ffn_up_exps.weight": (E, F, H),
                p + "ffn_up_exps.bias": (E, F),
                p + "ffn_down_exps.weight": (E, H, F),
                p + "ffn_down_exps.bias": (E, H),
            }
        )
    shapes["output_norm.weight"] = (H,)
    shapes["output.weight"] = (cfg.vocab_size, H)
    return shapes


def tensor_type_for(name: str, n_dims: int, dense: str = "bf16") -> QT:
    """The ggml type llama.cpp's converter picks for a gpt-oss tensor.

    Experts' weights: MXFP4. 2-D `.weight` tensors except the router
    (`ffn_gate_inp`, always F32 in llama.cpp) and norms: the dense type.
    Everything else (1-D tensors, norms, all biases, sinks): F32.
    """
    if dense not in DENSE_TYPES:
        raise ValueError(f"dense type must be one of {sorted(DENSE_TYPES)}, got {dense!r}")
    if name.endswith("_exps.weight"):
        return QT.MXFP4
    if (
        n_dims >= 2
        and name.endswith(".weight")
        and not name.endswith("_norm.weight")
        and ".ffn_gate_inp." not in name
    ):
        return DENSE_TYPES[dense]
    return QT.F32


def gguf_tensors_from_arrays(
    cfg: ModelConfig,
    arrays: Mapping[str, Any],
    dense: str = "bf16",
    *,
    strict: bool = True,
) -> list[GGUFTensor]:
    """Map GGUF-named tensors to the `GGUFTensor` list `write_gpt_oss_gguf` takes.

    `arrays[name]` is either
      * float values (any float array, or a zero-argument callable returning
        one) in the logical layout of `expected_tensor_shapes(cfg)`; it is
        encoded to the converter's type for that tensor lazily, at write time;
      * a ready `GGUFTensor` (e.g. MXFP4 expert bytes repacked from a
        checkpoint), passed through after its shape is checked.
    With `strict`, the names must be exactly those of `expected_tensor_shapes`.
    The list follows `expected_tensor_shapes` order (then any extra names).
    """
    shapes = expected_tensor_shapes(cfg)
    if strict:
        missing = [n for n in shapes if n not in arrays]
        extra = [n for n in arrays if n not in shapes]
        if missing or extra:
            raise ValueError(f"tensor names do not match the config: missing {missing[:5]}, extra {extra[:5]}")
    order = [n for n in shapes if n in arrays] + [n for n in arrays if n not in shapes]
    out: list[GGUFTensor] = []
    for name in order:
        value = arrays[name]
        want = shapes.get(name)
        if isinstance(value, GGUFTensor):
            if value.name != name:
                raise ValueError(f"tensor {name!r} carries the name {value.name!r}")
            if want is not None and value.shape != want:
                raise ValueError(f"{name}: shape {value.shape}, config expects {want}")
            out.append(value)
            continue
        if callable(value):
            if want is None:
                raise ValueError(f"{name}: a lazy tensor needs a known shape")
            shape = want
        else:
            shape = tuple(np.shape(value))
            if want is not None and shape != want:
                raise ValueError(f"{name}: shape {shape}, config expects {want}")
        qt = tensor_type_for(name, len(shape), dense)
        out.append(GGUFTensor(name, _lazy_encoder(value, qt, shape), qt, shape))
    return out


def _lazy_encoder(value: Any, qt: QT, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        x = value() if callable(value) else value
        x = np.asarray(x)
        if tuple(x.shape) != shape:
            raise ValueError(f"lazy tensor produced shape {x.shape}, expected {shape}")
        return encode_tensor(x, qt)

    return make


# ---------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------


def metadata_items(cfg: ModelConfig, *, yarn_betas: bool = True) -> list[tuple[str, Any, VT]]:
    """The `gpt-oss.*` key/value/type triples, in the converter's order.

    `yarn_betas`: current llama.cpp copies `beta_fast` / `beta_slow` from the
    HF config's rope scaling into `rope.scaling.yarn_beta_fast/slow`; the
    converter of August 2025 (the one that made ggml-org's published files)
    did not write them (readers then default to 32 / 1).
    """
    a = ARCH
    items: list[tuple[str, Any, VT]] = [
        (f"{a}.block_count", cfg.n_layers, VT.UINT32),
        (f"{a}.context_length", cfg.context_length, VT.UINT32),
        (f"{a}.embedding_length", cfg.hidden, VT.UINT32),
        # HF `intermediate_size` is the experts' width; the converter writes it
        # both as feed_forward_length and expert_feed_forward_length.
        (f"{a}.feed_forward_length", cfg.expert_ffn, VT.UINT32),
        (f"{a}.attention.head_count", cfg.n_heads, VT.UINT32),
        (f"{a}.attention.head_count_kv", cfg.n_kv_heads, VT.UINT32),
        (f"{a}.rope.scaling.type", gguf.RopeScalingType.YARN.value, VT.STRING),
        (f"{a}.rope.scaling.factor", float(cfg.rope_scaling_factor), VT.FLOAT32),
        (f"{a}.rope.scaling.original_context_length", cfg.rope_original_context, VT.UINT32),
    ]
    if yarn_betas:
        items += [
            (f"{a}.rope.scaling.yarn_beta_fast", float(cfg.yarn_beta_fast), VT.FLOAT32),
            (f"{a}.rope.scaling.yarn_beta_slow", float(cfg.yarn_beta_slow), VT.FLOAT32),
        ]
    items += [
        (f"{a}.rope.freq_base", float(cfg.rope_base), VT.FLOAT32),
        (f"{a}.attention.layer_norm_rms_epsilon", float(cfg.rms_eps), VT.FLOAT32),
        (f"{a}.expert_count", cfg.n_experts, VT.UINT32),
        (f"{a}.expert_used_count", cfg.n_experts_used, VT.UINT32),
        (f"{a}.attention.key_length", cfg.head_dim, VT.UINT32),
        (f"{a}.attention.value_length", cfg.head_dim, VT.UINT32),
        (f"{a}.attention.sliding_window", cfg.sliding_window, VT.UINT32),
        (f"{a}.expert_feed_forward_length", cfg.expert_ffn, VT.UINT32),
    ]
    return items


def _seq(x: Any) -> list:
    if isinstance(x, np.ndarray):
        return x.tolist()
    return list(x)


def _add_tokenizer(w: gguf.GGUFWriter, tok: Any, vocab_size: int) -> None:
    K = gguf.Keys.Tokenizer
    w.add_string(K.MODEL, getattr(tok, "model", None) or "gpt2")
    pre = getattr(tok, "pre", None) or "gpt-4o"
    w.add_string(K.PRE, pre)
    tokens = _seq(tok.tokens)
    if len(tokens) != vocab_size:
        # llama.cpp takes n_vocab from the token list and then rejects a
        # token_embd / output whose rows differ.
        raise ValueError(f"tokenizer has {len(tokens)} tokens, the model's vocabulary is {vocab_size}")
    token_types = [int(t) for t in _seq(tok.token_types)]
    if len(tokens) != len(token_types):
        raise ValueError(f"{len(tokens)} tokens but {len(token_types)} token types")
    w.add_key_value(K.LIST, tokens, VT.ARRAY, sub_type=VT.STRING)
    w.add_key_value(K.TOKEN_TYPE, token_types, VT.ARRAY, sub_type=VT.INT32)
    merges = _seq(getattr(tok, "merges", None) or [])
    if merges:
        w.add_key_value(K.MERGES, merges, VT.ARRAY, sub_type=VT.STRING)
    for key, attr in (
        (K.BOS_ID, "bos_id"),
        (K.EOS_ID, "eos_id"),
        (K.UNK_ID, "unk_id"),
        (K.SEP_ID, "sep_id"),
        (K.PAD_ID, "padding_id"),
        (K.MASK_ID, "mask_id"),
    ):
        value = getattr(tok, attr, None)
        if value is not None:
            w.add_uint32(key, int(value))
    for key, attr in ((K.ADD_BOS, "add_bos"), (K.ADD_EOS, "add_eos")):
        value = getattr(tok, attr, None)
        if value is not None:
            w.add_bool(key, bool(value))
    template = getattr(tok, "chat_template", None)
    if template:
        w.add_string(K.CHAT_TEMPLATE, template)


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------

ProgressFn = Callable[[str, int], None]
"""progress(tensor_name, n_bytes): called as each piece of tensor data is written."""


def _check_items(tensors: Iterable[GGUFTensor]) -> list[GGUFTensor]:
    items = list(tensors)
    seen: set[str] = set()
    for t in items:
        if not isinstance(t, GGUFTensor):
            raise TypeError(f"expected GGUFTensor, got {type(t).__name__}")
        if t.name in seen:
            raise ValueError(f"duplicate tensor name {t.name!r}")
        seen.add(t.name)
        t.nbytes  # validates shape against the type's block size
    return items


def _add_tensor_infos(w: gguf.GGUFWriter, items: list[GGUFTensor]) -> None:
    for t in items:
        qt = QT(t.ggml_type)
        if qt in _RAW_DTYPES:
            w.add_tensor_info(t.name, t.shape, _RAW_DTYPES[qt], t.nbytes, raw_dtype=qt)
        else:
            block, type_size = gguf.GGML_QUANT_SIZES[qt]
            byte_shape = (*t.shape[:-1], t.shape[-1] // block * type_size)
            w.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), t.nbytes, raw_dtype=qt)


def _write_file(
    w: gguf.GGUFWriter,
    path: Path,
    items: list[GGUFTensor],
    progress: ProgressFn | None,
    fsync: bool,
) -> Path:
    """Header, key/values, tensor table, then each tensor's data, into a temporary
    file beside `path` (one per shard when the writer splits, named as llama.cpp
    names them) that is renamed over it only when every shard is complete
    (atomic_path: also removed on SIGTERM, and ones that killed runs left are swept).
    Returns the first shard's path (`path` itself when not split)."""
    names = w.format_shard_names(path)
    with ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(n)) for n in names]
        # opened again with "wb", so the umask sets their mode as usual; the writer finds them open
        w.fout = [open(t, "wb") for t in tmps]
        w.state = gguf.gguf_writer.WriterState.EMPTY
        try:
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for t in items:
                src = t._source()
                if isinstance(src, _Chunked):
                    if progress is not None:
                        src.progress = lambda n, _name=t.name: progress(_name, n)
                    w.write_tensor_data(src)  # type: ignore[arg-type]
                else:
                    w.write_tensor_data(src)
                    if progress is not None:
                        progress(t.name, t.nbytes)
                del src
            assert w.fout is not None
            for f in w.fout:
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            w.close()
        except BaseException:
            w.close()
            raise
    return names[0]


def write_gpt_oss_gguf(
    path: str | os.PathLike[str],
    cfg: ModelConfig,
    tensors: Iterable[GGUFTensor],
    tokenizer: Any = None,
    name: str = "gpt-oss",
    file_type: int | None = None,
    *,
    yarn_betas: bool = True,
    extra_metadata: Iterable[tuple[str, Any, VT]] = (),
    fsync: bool = True,
    progress: ProgressFn | None = None,
    split_max_size: int = 0,
) -> Path:
    """Write a gpt-oss GGUF to `path`, atomically; return the path (of the first shard).

    `tensors` is consumed once to learn names, types and shapes (keep the data
    lazy, as callables, for large models); each tensor's data is then made and
    written in turn. A failure anywhere leaves no file at `path` (an existing
    file there stays untouched) and no temporary file behind.
    `tokenizer`: any object with tokens, token_types, merges, bos_id, eos_id,
    padding_id, model, pre (and optionally unk_id, sep_id, mask_id, add_bos,
    add_eos, chat_template); None writes no tokenizer keys. `file_type`
    defaults to MOSTLY_MXFP4_MOE (38). `progress(name, n_bytes)` is called as
    tensor data is written. `split_max_size` > 0 splits the file into shards of at
    most that many bytes of tensor data (a larger tensor gets a shard of its own),
    named and keyed as llama.cpp's converter writes them (NAME-0000K-of-0000N.gguf).
    """
    cfg.validate()
    path = Path(path)
    items = _check_items(tensors)

    w = gguf.GGUFWriter(path=None, arch=ARCH, split_max_size=split_max_size)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    _add_tensor_infos(w, items)
    total, shared, expert, n_exp = w.get_total_parameter_count()
    if total > 0:
        w.add_string(gguf.Keys.General.SIZE_LABEL, gguf.size_label(total, shared, expert, n_exp))
    for key, value, vtype in metadata_items(cfg, yarn_betas=yarn_betas):
        w.add_key_value(key, value, vtype)
    w.add_file_type(FILE_TYPE_MXFP4_MOE if file_type is None else int(file_type))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if tokenizer is not None:
        _add_tokenizer(w, tokenizer, cfg.vocab_size)
    for key, value, vtype in extra_metadata:
        w.add_key_value(key, value, vtype)
    return _write_file(w, path, items, progress, fsync)


def write_gguf(
    path: str | os.PathLike[str],
    arch: str,
    metadata: Iterable[tuple],
    tensors: Iterable[GGUFTensor],
    *,
    alignment: int | None = None,
    fsync: bool = True,
    progress: ProgressFn | None = None,
    split_max_size: int = 0,
) -> Path:
    """Write any GGUF atomically: `metadata` is (key, value, GGUFValueType[, array
    element type]) in file order, without `general.architecture` (written from
    `arch`) and `general.alignment` (pass `alignment`). Used by `quantize` to copy
    a file's keys unchanged but for `general.file_type`. `split_max_size`: as in
    write_gpt_oss_gguf (the split.* keys of a split input are not copied).
    """
    path = Path(path)
    items = _check_items(tensors)
    w = gguf.GGUFWriter(path=None, arch=arch, split_max_size=split_max_size)
    if alignment is not None and int(alignment) != w.data_alignment:
        w.add_custom_alignment(int(alignment))
    for entry in metadata:
        key, value, vtype = entry[0], entry[1], entry[2]
        sub = entry[3] if len(entry) > 3 else None
        if key in ("general.architecture", "general.alignment") or key.startswith("split."):
            continue
        w.add_key_value(key, value, vtype, sub_type=sub)
    _add_tensor_infos(w, items)
    return _write_file(w, path, items, progress, fsync)
