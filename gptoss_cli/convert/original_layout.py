"""OpenAI's original gpt-oss layout (the `original/` folder of the release).

`config.json` with num_hidden_layers, num_experts, experts_per_token,
vocab_size, hidden_size, intermediate_size, head_dim, num_attention_heads,
num_key_value_heads, sliding_window, initial_context_length, rope_theta,
rope_scaling_factor, rope_ntk_alpha, rope_ntk_beta (and swiglu_limit);
`model.safetensors` (or several shards); the tokenizer is the parent folder's
tokenizer.json. Tensors:

    embedding.weight, unembedding.weight, norm.scale
    block.N.attn.{norm.scale, qkv.weight, qkv.bias, sinks, out.weight, out.bias}
    block.N.mlp.{norm.scale, gate.weight, gate.bias,
                 mlp1_weight.blocks, mlp1_weight.scales, mlp1_bias,
                 mlp2_weight.blocks, mlp2_weight.scales, mlp2_bias}

qkv is fused: rows [0, Q) are q, [Q, Q+KV) k, [Q+KV, Q+2KV) v. mlp1 rows
interleave gate (even) and up (odd), like HF's gate_up_proj. The context length
is initial_context_length * rope_scaling_factor; YaRN's beta_fast / beta_slow
are rope_ntk_beta / rope_ntk_alpha (as transformers' conversion maps them).
"""

from __future__ import annotations

from pathlib import Path

from ..config import ModelConfig
from .errors import ConvertError
from .hf_layout import Fetcher, Plan, _even, _get, _odd, check_common
from .recipes import FloatRecipe, MXFP4Recipe
from .safetensors_reader import Checkpoint

__all__ = ["is_original_config", "original_model_config", "plan_original"]

_ORIGINAL_KEYS = ("num_experts", "experts_per_token")


def is_original_config(config: dict) -> bool:
    return all(k in config for k in _ORIGINAL_KEYS) and "model_type" not in config


def original_model_config(config: dict, path: Path) -> ModelConfig:
    n_heads = _get(config, path, "num_attention_heads")
    hidden = _get(config, path, "hidden_size")
    initial = _get(config, path, "initial_context_length", default=4096)
    factor = _get(config, path, "rope_scaling_factor", default=1.0, kind=float)
    cfg = ModelConfig(
        n_layers=_get(config, path, "num_hidden_layers"),
        n_experts=_get(config, path, "num_experts"),
        n_experts_used=_get(config, path, "experts_per_token"),
        hidden=hidden,
        expert_ffn=_get(config, path, "intermediate_size"),
        n_heads=n_heads,
        n_kv_heads=_get(config, path, "num_key_value_heads"),
        head_dim=_get(config, path, "head_dim", default=hidden // max(n_heads, 1)),
        vocab_size=_get(config, path, "vocab_size"),
        context_length=int(initial * factor),
        sliding_window=_get(config, path, "sliding_window", default=128),
        rms_eps=_get(config, path, "rms_norm_eps", default=1e-5, kind=float),
        rope_base=_get(config, path, "rope_theta", default=150000.0, kind=float),
        rope_scaling_factor=factor,
        rope_original_context=initial,
        yarn_beta_fast=_get(config, path, "rope_ntk_beta", default=32.0, kind=float),
        yarn_beta_slow=_get(config, path, "rope_ntk_alpha", default=1.0, kind=float),
    )
    check_common(cfg, config, path)
    return cfg


def _tokenizer_dir(folder: Path) -> Path:
    for d in (folder, folder.resolve().parent):
        if (d / "tokenizer.json").is_file():
            return d
    raise ConvertError(
        f"{folder.resolve().parent / 'tokenizer.json'}: file not found (the original layout takes the "
        "tokenizer from the parent folder)"
    )


def plan_original(folder: Path, config: dict) -> Plan:
    cfg = original_model_config(config, folder / "config.json")
    tok_dir = _tokenizer_dir(folder)
    ckpt = Checkpoint(folder)
    f = Fetcher(ckpt, folder)
    H, E, F, V = cfg.hidden, cfg.n_experts, cfg.expert_ffn, cfg.vocab_size
    Q, KV = cfg.q_dim, cfg.kv_dim
    r: dict[str, FloatRecipe | MXFP4Recipe] = {}
    r["token_embd.weight"] = f.float("embedding.weight", (V, H))
    for i in range(cfg.n_layers):
        p, s = f"blk.{i}.", f"block.{i}."
        r[p + "attn_norm.weight"] = f.float(s + "attn.norm.scale", (H,))
        qkv_w, qkv_b = s + "attn.qkv.weight", s + "attn.qkv.bias"
        for g, a, b in (("attn_q", 0, Q), ("attn_k", Q, Q + KV), ("attn_v", Q + KV, Q + 2 * KV)):
            r[p + g + ".weight"] = f.float(qkv_w, (Q + 2 * KV, H), lambda x, a=a, b=b: x[a:b], (b - a, H))
            r[p + g + ".bias"] = f.float(qkv_b, (Q + 2 * KV,), lambda x, a=a, b=b: x[a:b], (b - a,))
        r[p + "attn_output.weight"] = f.float(s + "attn.out.weight", (H, Q))
        r[p + "attn_output.bias"] = f.float(s + "attn.out.bias", (H,))
        r[p + "attn_sinks.weight"] = f.float(s + "attn.sinks", (cfg.n_heads,))
        r[p + "post_attention_norm.weight"] = f.float(s + "mlp.norm.scale", (H,))
        r[p + "ffn_gate_inp.weight"] = f.float(s + "mlp.gate.weight", (E, H))
        r[p + "ffn_gate_inp.bias"] = f.float(s + "mlp.gate.bias", (E,))
        m = s + "mlp."
        b1, s1 = m + "mlp1_weight.blocks", m + "mlp1_weight.scales"
        b2, s2 = m + "mlp2_weight.blocks", m + "mlp2_weight.scales"
        r[p + "ffn_gate_exps.weight"] = f.mxfp4(p, b1, s1, E, 2 * F, H, 0, 2)
        r[p + "ffn_up_exps.weight"] = f.mxfp4(p, b1, s1, E, 2 * F, H, 1, 2)
        r[p + "ffn_down_exps.weight"] = f.mxfp4(p, b2, s2, E, H, F, 0, 1)
        r[p + "ffn_gate_exps.bias"] = f.float(m + "mlp1_bias", (E, 2 * F), _even, (E, F))
        r[p + "ffn_up_exps.bias"] = f.float(m + "mlp1_bias", (E, 2 * F), _odd, (E, F))
        r[p + "ffn_down_exps.bias"] = f.float(m + "mlp2_bias", (E, H))
    r["output_norm.weight"] = f.float("norm.scale", (H,))
    r["output.weight"] = f.float("unembedding.weight", (V, H))
    order = ["token_embd.weight", "output.weight"] + [f"blk.{i}.attn_q.weight" for i in range(cfg.n_layers)]
    dense = next((r[n].dtype for n in order if isinstance(r[n], FloatRecipe) and r[n].dtype in ("BF16", "F16")), "F32")
    # special token ids: the HF config.json beside the tokenizer, when there is one
    parent_cfg: dict = {}
    if (tok_dir / "config.json").is_file() and tok_dir.resolve() != folder.resolve():
        from .hf_layout import read_json_config

        try:
            parent_cfg = read_json_config(tok_dir / "config.json")
        except ConvertError:
            parent_cfg = {}
    name = folder.resolve().parent.name if folder.resolve().name == "original" else folder.resolve().name
    return Plan(
        layout="original",
        cfg=cfg,
        yarn_betas=True,
        recipes=r,
        experts="mxfp4",
        dense_dtype=dense,
        tokenizer_dir=tok_dir,
        tokenizer_config=parent_cfg,
        checkpoint=ckpt,
        name=name or "gpt-oss",
    )
