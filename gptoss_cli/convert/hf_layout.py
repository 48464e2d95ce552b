"""The Hugging Face layout of a gpt-oss checkpoint (`openai/gpt-oss-20b` root).

`config.json` (model_type "gpt_oss" / GptOssForCausalLM), `model.safetensors` or
shards with `model.safetensors.index.json`, `tokenizer.json`. Tensor names:

    model.embed_tokens.weight, model.norm.weight, lm_head.weight
    model.layers.N.input_layernorm.weight, .post_attention_layernorm.weight
    model.layers.N.self_attn.{q,k,v,o}_proj.{weight,bias}, .self_attn.sinks
    model.layers.N.mlp.router.{weight,bias}
    model.layers.N.mlp.experts.gate_up_proj_{blocks,scales,bias}   (MXFP4)
    model.layers.N.mlp.experts.down_proj_{blocks,scales,bias}
    or, in bf16 fine-tunes, mlp.experts.gate_up_proj [E, H, 2F] and
    mlp.experts.down_proj [E, F, H] (transformers' [in, out] order).

gate_up rows (or columns of the float form) interleave gate (even) and up (odd).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import ModelConfig
from .errors import ConvertError
from .recipes import FLOAT_DTYPES, FloatRecipe, MXFP4Recipe
from .safetensors_reader import Checkpoint

__all__ = ["Plan", "Fetcher", "read_json_config", "hf_model_config", "plan_hf", "is_hf_config"]


@dataclass
class Plan:
    """Everything `convert` needs from a checkpoint, nothing read yet but headers."""

    layout: str  # "hf" | "original"
    cfg: ModelConfig
    yarn_betas: bool
    recipes: dict[str, FloatRecipe | MXFP4Recipe]  # GGUF name -> recipe, in file order
    experts: str  # "mxfp4" (repacked) | "float"
    dense_dtype: str  # checkpoint dtype of the dense 2-D weights: BF16 / F16 / F32
    tokenizer_dir: Path
    tokenizer_config: dict = field(default_factory=dict)  # config.json consulted for *_token_id
    name: str = "gpt-oss"
    checkpoint: Checkpoint | None = None


def read_json_config(path: Path) -> dict:
    if not path.is_file():
        raise ConvertError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConvertError(f"{path}: cannot read ({err})") from None
    except json.JSONDecodeError as err:
        raise ConvertError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{path}: not a JSON object")
    return data


def is_hf_config(config: dict) -> bool:
    archs = config.get("architectures") or []
    return config.get("model_type") == "gpt_oss" or "GptOssForCausalLM" in archs


def _get(config: dict, path: Path, *keys: str, default: Any = None, kind: type = int) -> Any:
    for k in keys:
        if k in config and config[k] is not None:
            v = config[k]
            if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
                if isinstance(v, float) and v.is_integer():
                    return int(v)
                raise ConvertError(f"{path}: {k} must be an integer, got {v!r}")
            if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConvertError(f"{path}: {k} must be a number, got {v!r}")
            return kind(v)
    if default is None:
        raise ConvertError(f"{path}: missing key {keys[0]}")
    return default


def check_common(cfg: ModelConfig, config: dict, path: Path) -> None:
    try:
        cfg.validate()
    except ValueError as err:
        raise ConvertError(f"{path}: {err}") from None
    limit = config.get("swiglu_limit", 7.0)
    if limit is not None and float(limit) != cfg.swiglu_limit:
        raise ConvertError(f"{path}: swiglu_limit {limit} is not supported (gpt-oss and GGUF use {cfg.swiglu_limit})")
    for what, n in (("hidden_size", cfg.hidden), ("intermediate_size", cfg.expert_ffn)):
        if n % 32:
            raise ConvertError(f"{path}: {what} {n} is not a multiple of 32 (MXFP4 blocks)")


def hf_model_config(config: dict, path: Path) -> tuple[ModelConfig, bool]:
    """HF config.json -> (ModelConfig, whether the YaRN betas were given)."""
    if not is_hf_config(config):
        what = config.get("model_type") or (config.get("architectures") or ["?"])[0]
        raise ConvertError(f"{path}: not a gpt-oss config (model_type {what!r}); gptoss converts only gpt-oss")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise ConvertError(f"{path}: rope_scaling must be an object")
    if "full_attention" in rope and isinstance(rope["full_attention"], dict):
        rope = rope["full_attention"]
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type not in (None, "yarn"):
        raise ConvertError(f"{path}: rope type {rope_type!r} is not supported (gpt-oss uses yarn)")
    theta = rope.get("rope_theta", config.get("rope_theta", 150000.0))
    n_heads = _get(config, path, "num_attention_heads")
    hidden = _get(config, path, "hidden_size")
    betas = "beta_fast" in rope or "beta_slow" in rope
    cfg = ModelConfig(
        n_layers=_get(config, path, "num_hidden_layers"),
        n_experts=_get(config, path, "num_local_experts", "num_experts"),
        n_experts_used=_get(config, path, "num_experts_per_tok", "experts_per_token"),
        hidden=hidden,
        expert_ffn=_get(config, path, "intermediate_size"),
        n_heads=n_heads,
        n_kv_heads=_get(config, path, "num_key_value_heads"),
        head_dim=_get(config, path, "head_dim", default=hidden // max(n_heads, 1)),
        vocab_size=_get(config, path, "vocab_size"),
        context_length=_get(config, path, "max_position_embeddings", default=131072),
        sliding_window=_get(config, path, "sliding_window", default=128),
        rms_eps=_get(config, path, "rms_norm_eps", default=1e-5, kind=float),
        rope_base=float(theta),
        rope_scaling_factor=float(rope.get("factor", 1.0)) if rope_type == "yarn" else 1.0,
        rope_original_context=int(rope.get("original_max_position_embeddings", 4096)),
        yarn_beta_fast=float(rope.get("beta_fast", 32.0)),
        yarn_beta_slow=float(rope.get("beta_slow", 1.0)),
    )
    check_common(cfg, config, path)
    layer_types = config.get("layer_types")
    if layer_types is not None:
        want = ["sliding_attention" if cfg.is_sliding(i) else "full_attention" for i in range(cfg.n_layers)]
        if list(layer_types) != want:
            raise ConvertError(
                f"{path}: layer_types must alternate sliding_attention / full_attention starting with "
                "sliding (as gpt-oss and GGUF's gpt-oss architecture do)"
            )
    return cfg, betas


class Fetcher:
    """Checked access to checkpoint tensors: presence, dtype and shape, with one-line errors."""

    def __init__(self, ckpt: Checkpoint, where: Path) -> None:
        self.ckpt = ckpt
        self.where = where

    def has(self, name: str) -> bool:
        return name in self.ckpt

    def entry(self, name: str, shape: tuple[int, ...], dtypes: tuple[str, ...]):
        if name not in self.ckpt:
            raise ConvertError(f"{self.where}: missing tensor {name}")
        e = self.ckpt.entry(name)
        if e.dtype not in dtypes:
            raise ConvertError(f"{self.where}: tensor {name} has dtype {e.dtype}, expected {' or '.join(dtypes)}")
        if tuple(e.shape) != tuple(shape):
            raise ConvertError(f"{self.where}: tensor {name} has shape {list(e.shape)}, expected {list(shape)}")
        return e

    def _release(self, name: str) -> Callable[[], None]:
        return lambda: self.ckpt.file_of(name).release()

    def float(self, name: str, shape: tuple[int, ...],
              transform: Callable[[np.ndarray], np.ndarray] | None = None,
              out_shape: tuple[int, ...] | None = None) -> FloatRecipe:
        e = self.entry(name, shape, FLOAT_DTYPES)
        ckpt = self.ckpt

        def view() -> np.ndarray:
            a = ckpt.array(name)
            return transform(a) if transform is not None else a

        return FloatRecipe(tuple(out_shape or shape), e.dtype, view, (name,), self._release(name))

    def mxfp4(self, prefix: str, blocks: str, scales: str, n_experts: int, src_rows: int, cols: int,
              row0: int, step: int) -> MXFP4Recipe:
        nb = cols // 32
        self.entry(blocks, (n_experts, src_rows, nb, 16), ("U8",))
        self.entry(scales, (n_experts, src_rows, nb), ("U8",))
        ckpt = self.ckpt
        rows = (src_rows - row0 + step - 1) // step
        rel_b, rel_s = self._release(blocks), self._release(scales)

        def release() -> None:
            rel_b()
            rel_s()

        return MXFP4Recipe(
            (n_experts, rows, cols),
            lambda: ckpt.array(blocks),
            lambda: ckpt.array(scales),
            row0,
            step,
            (blocks, scales),
            release,
        )


def _even(a: np.ndarray) -> np.ndarray:
    return a[..., 0::2]


def _odd(a: np.ndarray) -> np.ndarray:
    return a[..., 1::2]


def plan_hf(folder: Path, config: dict) -> Plan:
    cfg, betas = hf_model_config(config, folder / "config.json")
    ckpt = Checkpoint(folder)
    f = Fetcher(ckpt, folder)
    H, E, F, V = cfg.hidden, cfg.n_experts, cfg.expert_ffn, cfg.vocab_size
    Q, KV = cfg.q_dim, cfg.kv_dim
    r: dict[str, FloatRecipe | MXFP4Recipe] = {}
    r["token_embd.weight"] = f.float("model.embed_tokens.weight", (V, H))
    experts = None
    for i in range(cfg.n_layers):
        p, s = f"blk.{i}.", f"model.layers.{i}."
        r[p + "attn_norm.weight"] = f.float(s + "input_layernorm.weight", (H,))
        for g, t, rows, cols in (("attn_q", "q_proj", Q, H), ("attn_k", "k_proj", KV, H), ("attn_v", "v_proj", KV, H)):
            r[p + g + ".weight"] = f.float(s + f"self_attn.{t}.weight", (rows, cols))
            r[p + g + ".bias"] = f.float(s + f"self_attn.{t}.bias", (rows,))
        r[p + "attn_output.weight"] = f.float(s + "self_attn.o_proj.weight", (H, Q))
        r[p + "attn_output.bias"] = f.float(s + "self_attn.o_proj.bias", (H,))
        r[p + "attn_sinks.weight"] = f.float(s + "self_attn.sinks", (cfg.n_heads,))
        r[p + "post_attention_norm.weight"] = f.float(s + "post_attention_layernorm.weight", (H,))
        r[p + "ffn_gate_inp.weight"] = f.float(s + "mlp.router.weight", (E, H))
        r[p + "ffn_gate_inp.bias"] = f.float(s + "mlp.router.bias", (E,))

        x = s + "mlp.experts."
        kind = "mxfp4" if f.has(x + "gate_up_proj_blocks") or not f.has(x + "gate_up_proj") else "float"
        if experts is not None and kind != experts:
            raise ConvertError(f"{folder}: layer {i} stores its experts as {kind}, earlier layers as {experts}")
        experts = kind
        if kind == "mxfp4":
            gb, gs = x + "gate_up_proj_blocks", x + "gate_up_proj_scales"
            db, ds = x + "down_proj_blocks", x + "down_proj_scales"
            r[p + "ffn_gate_exps.weight"] = f.mxfp4(p, gb, gs, E, 2 * F, H, 0, 2)
            r[p + "ffn_up_exps.weight"] = f.mxfp4(p, gb, gs, E, 2 * F, H, 1, 2)
            r[p + "ffn_down_exps.weight"] = f.mxfp4(p, db, ds, E, H, F, 0, 1)
        else:
            gu = f.ckpt.entry(x + "gate_up_proj") if f.has(x + "gate_up_proj") else None
            if gu is not None and tuple(gu.shape) == (E, 2 * F, H) and H != 2 * F:
                # already [out, in]: rows interleave gate / up
                r[p + "ffn_gate_exps.weight"] = f.float(x + "gate_up_proj", (E, 2 * F, H), lambda a: a[:, 0::2, :], (E, F, H))
                r[p + "ffn_up_exps.weight"] = f.float(x + "gate_up_proj", (E, 2 * F, H), lambda a: a[:, 1::2, :], (E, F, H))
            else:  # transformers' [E, in, out]: columns interleave gate / up
                r[p + "ffn_gate_exps.weight"] = f.float(
                    x + "gate_up_proj", (E, H, 2 * F), lambda a: a.transpose(0, 2, 1)[:, 0::2, :], (E, F, H))
                r[p + "ffn_up_exps.weight"] = f.float(
                    x + "gate_up_proj", (E, H, 2 * F), lambda a: a.transpose(0, 2, 1)[:, 1::2, :], (E, F, H))
            r[p + "ffn_down_exps.weight"] = f.float(
                x + "down_proj", (E, F, H), lambda a: a.transpose(0, 2, 1), (E, H, F))
        r[p + "ffn_gate_exps.bias"] = f.float(x + "gate_up_proj_bias", (E, 2 * F), _even, (E, F))
        r[p + "ffn_up_exps.bias"] = f.float(x + "gate_up_proj_bias", (E, 2 * F), _odd, (E, F))
        r[p + "ffn_down_exps.bias"] = f.float(x + "down_proj_bias", (E, H))
    r["output_norm.weight"] = f.float("model.norm.weight", (H,))
    r["output.weight"] = f.float("lm_head.weight", (V, H))
    order = ["token_embd.weight", "output.weight"] + [f"blk.{i}.attn_q.weight" for i in range(cfg.n_layers)]
    dense = next((r[n].dtype for n in order if isinstance(r[n], FloatRecipe) and r[n].dtype in ("BF16", "F16")), "F32")
    return Plan(
        layout="hf",
        cfg=cfg,
        yarn_betas=betas,
        recipes=r,
        experts=experts or "mxfp4",
        dense_dtype=dense,
        tokenizer_dir=folder,
        tokenizer_config=config,
        checkpoint=ckpt,
        name=str(config.get("_name_or_path") or folder.resolve().name).rstrip("/").split("/")[-1] or "gpt-oss",
    )
