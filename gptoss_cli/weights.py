"""Read a gpt-oss model's config and weights out of an open GGUF file, validated.

Everything is checked before any kernel touches memory: the architecture, every
required key with its type and range, the tokenizer's token ids, every tensor's
presence, type and shape, and that the 1-D norms, biases and sinks are finite
(the matrices are never read). Matrices stay views of the file map; only small
vectors (norms, biases, sinks) of non-F32 types are converted to float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gptoss_kernels import ggml_types
from gptoss_kernels.dequant import dequantize

from .config import ARCH, REQUIRED_KEYS, ModelConfig
from .errors import ModelFileError, UnsupportedTensorType
from .gguf_file import GGUFFile, StringArray


@dataclass(frozen=True)
class Matrix:
    """A weight matrix (or a stack of expert matrices) in its file storage form."""

    data: np.ndarray  # [rows, storage cols] or [experts, rows, storage cols]
    ggml_type: int
    rows: int
    cols: int


@dataclass(frozen=True)
class LayerWeights:
    attn_norm: np.ndarray
    wq: Matrix
    bq: np.ndarray
    wk: Matrix
    bk: np.ndarray
    wv: Matrix
    bv: np.ndarray
    wo: Matrix
    bo: np.ndarray
    sinks: np.ndarray
    post_norm: np.ndarray
    router: Matrix
    router_b: np.ndarray
    gate: Matrix
    gate_b: np.ndarray
    up: Matrix
    up_b: np.ndarray
    down: Matrix
    down_b: np.ndarray


@dataclass(frozen=True)
class ModelWeights:
    token_embd: Matrix
    output_norm: np.ndarray
    output: Matrix
    layers: tuple[LayerWeights, ...]


def _key(md: dict[str, Any], path: str, name: str, default: int | float | None = None, *, integer: bool) -> Any:
    """A `gpt-oss.*` number, of the GGUF type its meaning needs (as llama.cpp checks):
    an integer key holding a float (NaN, 1e30) would crash int() or be truncated, a float
    key holding an integer is another field's bits, a string or array a foreign file."""
    full = f"{ARCH}.{name}"
    if full not in md:
        if default is None:
            raise ModelFileError(f"{path}: missing metadata key {full}")
        return default
    value = md[full]
    if isinstance(value, bool) or not isinstance(value, int if integer else float):
        raise ModelFileError(
            f"{path}: metadata key {full} must be {'an integer' if integer else 'a float'}, got {_describe(value)}"
        )
    return value


def _describe(value: Any) -> str:
    if isinstance(value, (np.ndarray, StringArray)):
        return f"an array of {len(value)}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{type(value).__name__} {value!r}"


# The token ids gptoss reads from the tokenizer keys (generation stops, padding).
TOKEN_ID_KEYS = ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id")


def _check_tokenizer_keys(md: dict[str, Any], path: str, vocab_size: int) -> None:
    """Token ids outside the embedding would index past it; a token list of another
    length belongs to another model."""
    tokens = md.get("tokenizer.ggml.tokens")
    if tokens is not None and (not isinstance(tokens, StringArray) or len(tokens) != vocab_size):
        raise ModelFileError(
            f"{path}: metadata key tokenizer.ggml.tokens must be {vocab_size} strings "
            f"(the rows of token_embd.weight), got {_describe(tokens)}"
        )
    for key in TOKEN_ID_KEYS:
        value = md.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
            raise ModelFileError(
                f"{path}: metadata key {key} must be a token id in 0..{vocab_size - 1}, got {_describe(value)}"
            )


def read_config(gf: GGUFFile) -> ModelConfig:
    """Build the ModelConfig from the file's `gpt-oss.*` keys and tensor shapes."""
    path = str(gf.path)
    md = gf.metadata
    if "general.architecture" not in md:
        raise ModelFileError(f"{path}: missing metadata key general.architecture")
    arch = gf.architecture
    if arch is None:
        raise ModelFileError(
            f"{path}: metadata key general.architecture must be a string, got {_describe(md['general.architecture'])}"
        )
    if arch != ARCH:
        raise ModelFileError(f"{path}: model architecture is {arch!r}, gptoss runs only {ARCH!r}")
    missing = [f"{ARCH}.{k}" for k in REQUIRED_KEYS if f"{ARCH}.{k}" not in md]
    if missing:
        raise ModelFileError(f"{path}: missing metadata key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if "token_embd.weight" not in gf.tensors:
        raise ModelFileError(f"{path}: missing tensor token_embd.weight")
    embd_shape = gf.tensors["token_embd.weight"].shape
    if len(embd_shape) != 2:
        raise ModelFileError(f"{path}: tensor token_embd.weight has shape {embd_shape}, expected 2 dims")
    scaling = md.get(f"{ARCH}.rope.scaling.type", "yarn")
    if not isinstance(scaling, str) or scaling not in ("yarn", "none"):
        raise ModelFileError(f"{path}: rope scaling {_describe(scaling)} is not supported (gpt-oss uses yarn)")

    def integer(name: str, default: int | None = None) -> int:
        return _key(md, path, name, default, integer=True)

    def number(name: str, default: float | None = None) -> float:
        return float(_key(md, path, name, default, integer=False))

    cfg = ModelConfig(
        n_layers=integer("block_count"),
        n_experts=integer("expert_count"),
        n_experts_used=integer("expert_used_count"),
        hidden=integer("embedding_length"),
        expert_ffn=integer("expert_feed_forward_length"),
        n_heads=integer("attention.head_count"),
        n_kv_heads=integer("attention.head_count_kv"),
        head_dim=integer("attention.key_length", 64),
        vocab_size=embd_shape[0],
        context_length=integer("context_length"),
        sliding_window=integer("attention.sliding_window"),
        rms_eps=number("attention.layer_norm_rms_epsilon"),
        rope_base=number("rope.freq_base"),
        rope_scaling_factor=number("rope.scaling.factor", 1.0) if scaling == "yarn" else 1.0,
        rope_original_context=integer("rope.scaling.original_context_length", 4096),
        yarn_beta_fast=number("rope.scaling.yarn_beta_fast", 32.0),
        yarn_beta_slow=number("rope.scaling.yarn_beta_slow", 1.0),
    )
    value_length = integer("attention.value_length", cfg.head_dim)
    if value_length != cfg.head_dim:
        raise ModelFileError(f"{path}: attention.value_length {value_length} differs from key_length {cfg.head_dim}")
    try:
        cfg.validate()
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from None
    _check_tokenizer_keys(md, path, cfg.vocab_size)
    return cfg


class _Loader:
    def __init__(self, gf: GGUFFile, cfg: ModelConfig) -> None:
        self.gf = gf
        self.cfg = cfg
        self.path = str(gf.path)

    def _info(self, name: str, shape: tuple[int, ...]):
        info = self.gf.tensors.get(name)
        if info is None:
            raise ModelFileError(f"{self.path}: missing tensor {name}")
        if info.shape != shape:
            raise ModelFileError(
                f"{self.path}: tensor {name} has shape {list(info.shape)}, expected {list(shape)}"
            )
        if info.ggml_type not in ggml_types.SUPPORTED:
            raise UnsupportedTensorType(
                f"{self.path}: tensor {name} has type {info.type_name}, which gptoss does not support "
                "(supported: F32, F16, BF16, Q8_0, MXFP4)"
            )
        return info

    def matrix(self, name: str, *shape: int) -> Matrix:
        info = self._info(name, tuple(shape))
        return Matrix(self.gf.tensor(name), info.ggml_type, shape[-2], shape[-1])

    def vector(self, name: str, *shape: int) -> np.ndarray:
        info = self._info(name, tuple(shape))
        data = self.gf.tensor(name)
        if info.ggml_type == ggml_types.F32:
            values = data
        else:
            flat = data.reshape(-1, data.shape[-1])
            values = dequantize(info.ggml_type, flat, shape[-1]).reshape(shape)
        # Norms, biases and sinks are a few KB even in the 120b: a NaN or infinity
        # there is cheap to find here, and would otherwise make every logit NaN.
        # (The [experts, ffn] biases are left to the forward pass's check: 100 MB in the 120b.)
        if len(shape) == 1 and not np.isfinite(values).all():
            raise ModelFileError(f"{self.path}: tensor {name} holds NaN or infinite values")
        return values

    def layer(self, i: int) -> LayerWeights:
        c = self.cfg
        p = f"blk.{i}."
        h, q, kv, e, f = c.hidden, c.q_dim, c.kv_dim, c.n_experts, c.expert_ffn
        return LayerWeights(
            attn_norm=self.vector(p + "attn_norm.weight", h),
            wq=self.matrix(p + "attn_q.weight", q, h),
            bq=self.vector(p + "attn_q.bias", q),
            wk=self.matrix(p + "attn_k.weight", kv, h),
            bk=self.vector(p + "attn_k.bias", kv),
            wv=self.matrix(p + "attn_v.weight", kv, h),
            bv=self.vector(p + "attn_v.bias", kv),
            wo=self.matrix(p + "attn_output.weight", h, q),
            bo=self.vector(p + "attn_output.bias", h),
            sinks=self.vector(p + "attn_sinks.weight", c.n_heads),
            post_norm=self.vector(p + "post_attention_norm.weight", h),
            router=self.matrix(p + "ffn_gate_inp.weight", e, h),
            router_b=self.vector(p + "ffn_gate_inp.bias", e),
            gate=self.matrix(p + "ffn_gate_exps.weight", e, f, h),
            gate_b=self.vector(p + "ffn_gate_exps.bias", e, f),
            up=self.matrix(p + "ffn_up_exps.weight", e, f, h),
            up_b=self.vector(p + "ffn_up_exps.bias", e, f),
            down=self.matrix(p + "ffn_down_exps.weight", e, h, f),
            down_b=self.vector(p + "ffn_down_exps.bias", e, h),
        )


def read_weights(gf: GGUFFile, cfg: ModelConfig) -> ModelWeights:
    """Validate and map every tensor the forward pass needs."""
    _check_layer_count(gf, cfg)
    ld = _Loader(gf, cfg)
    return ModelWeights(
        token_embd=ld.matrix("token_embd.weight", cfg.vocab_size, cfg.hidden),
        output_norm=ld.vector("output_norm.weight", cfg.hidden),
        output=ld.matrix("output.weight", cfg.vocab_size, cfg.hidden),
        layers=tuple(ld.layer(i) for i in range(cfg.n_layers)),
    )


def _check_layer_count(gf: GGUFFile, cfg: ModelConfig) -> None:
    """A block_count below the file's layers would run a truncated network without a word."""
    for name in gf.tensors:
        if name.startswith("blk."):
            layer = name.split(".", 2)[1]
            if layer.isdigit() and int(layer) >= cfg.n_layers:
                raise ModelFileError(
                    f"{gf.path}: tensor {name} belongs to layer {layer}, but {ARCH}.block_count is {cfg.n_layers}"
                )
