"""Tiny random gpt-oss models: a GGUF file plus the transformers model that is
numerically the same network (the reference the runtime must reproduce).

    from tiny_models import TinySpec, build_tiny_model
    tm = build_tiny_model(TinySpec(dense="q8_0"), tmp_path)
    tm.gguf_path, tm.config, tm.torch_model, tm.reference_logits([1, 2, 3])

Weights have realistic spread (not transformers' 0.02 init): router logits
spread over several units so the top-k changes from token to token, expert
gate/up values large enough that the +-7 SwiGLU clamp is hit, sinks of order
one, norms around one, nonzero biases. The experts are MXFP4-quantized with
gguf-py and the torch model holds exactly the dequantized values; the dense
2-D weights hold exactly the file's values (bf16-rounded, Q8_0-dequantized,
f16-rounded or f32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gptoss_cli.config import ModelConfig
from gptoss_cli.convert.gguf_writer import (
    GGUFTensor,
    dequantize,
    encode_tensor,
    expected_tensor_shapes,
    tensor_type_for,
    write_gpt_oss_gguf,
)


@dataclass(frozen=True)
class TinySpec:
    n_layers: int = 3
    n_experts: int = 8
    top_k: int = 4
    hidden: int = 64
    expert_ffn: int = 64
    n_heads: int = 8
    n_kv_heads: int = 2
    head_dim: int = 64
    vocab: int = 1000
    sliding_window: int = 8
    context_length: int = 131072
    seed: int = 0
    dense: str = "bf16"  # "bf16" | "q8_0" | "f16" | "f32"

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            n_layers=self.n_layers,
            n_experts=self.n_experts,
            n_experts_used=self.top_k,
            hidden=self.hidden,
            expert_ffn=self.expert_ffn,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            vocab_size=self.vocab,
            context_length=self.context_length,
            sliding_window=self.sliding_window,
        )


@dataclass
class TinyModel:
    spec: TinySpec
    config: ModelConfig
    gguf_path: Path
    torch_model: Any  # transformers GptOssForCausalLM, float32, eval, eager attention
    # GGUF name -> float32 values exactly as stored in the file (dequantized),
    # in the GGUF logical layout ([E, out, in] for experts).
    weights: dict[str, np.ndarray] = field(repr=False)
    # GGUF name -> ggml type id written.
    types: dict[str, int] = field(repr=False)

    def reference_logits(self, ids: Sequence[int]) -> np.ndarray:
        """transformers' float32 logits [T, vocab] for one full pass, no cache."""
        import torch

        x = torch.tensor([list(ids)], dtype=torch.long)
        with torch.no_grad():
            out = self.torch_model(input_ids=x, use_cache=False)
        return out.logits[0].float().numpy().copy()

    def moe_stats(self, ids: Sequence[int]) -> dict[str, Any]:
        """Routing and clamp statistics over one forward pass (recomputed in NumPy
        from each layer's captured MoE input, with the file's weights).

        Returns per-layer lists: `clamp_frac` (fraction of routed gate/up values
        beyond the +-7 limits: gate > 7 or |up| > 7), `distinct_sets` (number
        of distinct top-k expert sets over the tokens), `experts_used`
        (distinct experts chosen at least once), `router_std` (std of router
        logits over experts, averaged over tokens).
        """
        import torch

        captured: list[np.ndarray] = []
        hooks = [
            layer.post_attention_layernorm.register_forward_hook(
                lambda _m, _i, out: captured.append(out[0].detach().float().numpy().copy())
            )
            for layer in self.torch_model.model.layers
        ]
        try:
            self.reference_logits(ids)
        finally:
            for h in hooks:
                h.remove()
        cfg = self.config
        stats: dict[str, list] = {"clamp_frac": [], "distinct_sets": [], "experts_used": [], "router_std": []}
        for i, g in enumerate(captured):
            p = f"blk.{i}."
            r = g @ self.weights[p + "ffn_gate_inp.weight"].T + self.weights[p + "ffn_gate_inp.bias"]
            top = np.argsort(-r, axis=-1, kind="stable")[:, : cfg.n_experts_used]
            over = total = 0
            for t in range(g.shape[0]):
                for e in top[t]:
                    gate = self.weights[p + "ffn_gate_exps.weight"][e] @ g[t] + self.weights[p + "ffn_gate_exps.bias"][e]
                    up = self.weights[p + "ffn_up_exps.weight"][e] @ g[t] + self.weights[p + "ffn_up_exps.bias"][e]
                    over += int(np.sum(gate > cfg.swiglu_limit)) + int(np.sum(np.abs(up) > cfg.swiglu_limit))
                    total += gate.size + up.size
            stats["clamp_frac"].append(over / total)
            stats["distinct_sets"].append(len({tuple(sorted(s)) for s in top.tolist()}))
            stats["experts_used"].append(len(set(top.ravel().tolist())))
            stats["router_std"].append(float(np.mean(np.std(r, axis=-1))))
        return stats


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def _float_weights(spec: TinySpec, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Unquantized float32 weights in GGUF names and layout, realistic spread."""
    rng = np.random.default_rng(spec.seed)
    H, F = cfg.hidden, cfg.expert_ffn

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    def norm_w(n):
        # around one with some spread, kept positive
        return np.abs(normal((n,), 0.25, 1.0)) + np.float32(0.05)

    w: dict[str, np.ndarray] = {}
    for name, shape in expected_tensor_shapes(cfg).items():
        if name == "token_embd.weight":
            x = normal(shape, 1.0)  # hidden rms ~ 1
        elif name == "output.weight":
            x = normal(shape, 2.0 / np.sqrt(H))  # logits spread of a couple of units
        elif name.endswith("_norm.weight"):
            x = norm_w(shape[0])
        elif name.endswith(("attn_q.weight", "attn_k.weight")):
            # q, k entries ~1.1: scores q.k/sqrt(d) * mscale^2 spread over a few units
            x = normal(shape, 1.1 / np.sqrt(H))
        elif name.endswith("attn_v.weight"):
            x = normal(shape, 1.0 / np.sqrt(H))
        elif name.endswith("attn_output.weight"):
            x = normal(shape, 0.7 / np.sqrt(shape[1]))
        elif name.endswith(("attn_q.bias", "attn_k.bias")):
            x = normal(shape, 0.5)
        elif name.endswith(("attn_v.bias", "attn_output.bias")):
            x = normal(shape, 0.2)
        elif name.endswith("attn_sinks.weight"):
            x = normal(shape, 1.0)
        elif name.endswith("ffn_gate_inp.weight"):
            x = normal(shape, 3.0 / np.sqrt(H))  # router logits std ~3
        elif name.endswith("ffn_gate_inp.bias"):
            x = normal(shape, 0.5)
        elif name.endswith(("ffn_gate_exps.weight", "ffn_up_exps.weight")):
            x = normal(shape, 4.0 / np.sqrt(H))  # gate/up std ~4: |x| > 7 often enough
        elif name.endswith(("ffn_gate_exps.bias", "ffn_up_exps.bias")):
            x = normal(shape, 1.0)
        elif name.endswith("ffn_down_exps.weight"):
            x = normal(shape, 0.1 / np.sqrt(F))  # SwiGLU output is O(10)
        elif name.endswith("ffn_down_exps.bias"):
            x = normal(shape, 0.2)
        else:  # pragma: no cover - every name is listed above
            raise AssertionError(name)
        w[name] = x
    return w


def _hf_config(cfg: ModelConfig):
    from transformers import GptOssConfig

    hf = GptOssConfig(
        num_hidden_layers=cfg.n_layers,
        num_local_experts=cfg.n_experts,
        num_experts_per_tok=cfg.n_experts_used,
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden,
        intermediate_size=cfg.expert_ffn,
        head_dim=cfg.head_dim,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        sliding_window=cfg.sliding_window,
        max_position_embeddings=cfg.context_length,
        rms_norm_eps=cfg.rms_eps,
        swiglu_limit=cfg.swiglu_limit,
        swiglu_alpha=cfg.swiglu_alpha,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": cfg.rope_base,
            "factor": cfg.rope_scaling_factor,
            "beta_fast": cfg.yarn_beta_fast,
            "beta_slow": cfg.yarn_beta_slow,
            "truncate": False,
            "original_max_position_embeddings": cfg.rope_original_context,
        },
        layer_types=["sliding_attention" if cfg.is_sliding(i) else "full_attention" for i in range(cfg.n_layers)],
        tie_word_embeddings=False,
        attention_bias=True,
    )
    hf._attn_implementation = "eager"
    if hasattr(hf, "_experts_implementation"):
        hf._experts_implementation = "eager"
    return hf


def _torch_state_dict(cfg: ModelConfig, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """GGUF-named float weights -> transformers GptOssForCausalLM state dict."""
    sd = {
        "model.embed_tokens.weight": w["token_embd.weight"],
        "model.norm.weight": w["output_norm.weight"],
        "lm_head.weight": w["output.weight"],
    }
    E, F, H = cfg.n_experts, cfg.expert_ffn, cfg.hidden
    for i in range(cfg.n_layers):
        p, q = f"blk.{i}.", f"model.layers.{i}."
        sd[q + "input_layernorm.weight"] = w[p + "attn_norm.weight"]
        sd[q + "post_attention_layernorm.weight"] = w[p + "post_attention_norm.weight"]
        for g, t in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"), ("attn_output", "o_proj")):
            sd[q + f"self_attn.{t}.weight"] = w[p + g + ".weight"]
            sd[q + f"self_attn.{t}.bias"] = w[p + g + ".bias"]
        sd[q + "self_attn.sinks"] = w[p + "attn_sinks.weight"]
        sd[q + "mlp.router.weight"] = w[p + "ffn_gate_inp.weight"]
        sd[q + "mlp.router.bias"] = w[p + "ffn_gate_inp.bias"]
        # transformers: gate_up_proj [E, H, 2F], gate at even and up at odd columns
        gate_up = np.empty((E, H, 2 * F), dtype=np.float32)
        gate_up[:, :, 0::2] = w[p + "ffn_gate_exps.weight"].transpose(0, 2, 1)
        gate_up[:, :, 1::2] = w[p + "ffn_up_exps.weight"].transpose(0, 2, 1)
        gate_up_bias = np.empty((E, 2 * F), dtype=np.float32)
        gate_up_bias[:, 0::2] = w[p + "ffn_gate_exps.bias"]
        gate_up_bias[:, 1::2] = w[p + "ffn_up_exps.bias"]
        sd[q + "mlp.experts.gate_up_proj"] = gate_up
        sd[q + "mlp.experts.gate_up_proj_bias"] = gate_up_bias
        # down_proj [E, F, H] is GGUF's ffn_down_exps [E, H, F] transposed
        sd[q + "mlp.experts.down_proj"] = np.ascontiguousarray(w[p + "ffn_down_exps.weight"].transpose(0, 2, 1))
        sd[q + "mlp.experts.down_proj_bias"] = w[p + "ffn_down_exps.bias"]
    return sd


def build_torch_model(cfg: ModelConfig, weights: dict[str, np.ndarray]):
    """A float32, eval-mode, eager-attention GptOssForCausalLM holding `weights`."""
    import torch
    from transformers import GptOssForCausalLM

    hf = _hf_config(cfg)
    with torch.device("meta"):
        model = GptOssForCausalLM(hf)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in _torch_state_dict(cfg, weights).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if unexpected or [m for m in missing if "rotary_emb" not in m]:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    # Non-persistent buffers (rope inverse frequencies) were made on the meta
    # device: recompute them on the CPU.
    rotary = type(model.model.rotary_emb)(config=hf)
    model.model.rotary_emb = rotary
    model = model.float().eval()
    return model


def build_tiny_model(spec: TinySpec, out_dir: str | Path, *, tokenizer: Any = None, name: str = "tiny-gpt-oss") -> TinyModel:
    """Make the weights, write `<out_dir>/tiny-<seed>-<dense>.gguf`, build the torch model."""
    cfg = spec.model_config()
    cfg.validate()
    for what, n in (("hidden", cfg.hidden), ("expert_ffn", cfg.expert_ffn), ("q width", cfg.q_dim)):
        if n % 32:
            raise ValueError(f"{what} ({n}) must be a multiple of 32 (MXFP4 / Q8_0 blocks)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    floats = _float_weights(spec, cfg)
    tensors: list[GGUFTensor] = []
    stored: dict[str, np.ndarray] = {}
    types: dict[str, int] = {}
    for tname, x in floats.items():
        qt = tensor_type_for(tname, x.ndim, spec.dense)
        raw = encode_tensor(x, qt)
        tensors.append(GGUFTensor(tname, raw, qt, x.shape))
        stored[tname] = dequantize(raw, qt, x.shape)
        types[tname] = int(qt)
    del floats

    path = out_dir / f"tiny-{spec.seed}-{spec.dense}.gguf"
    write_gpt_oss_gguf(path, cfg, tensors, tokenizer=tokenizer, name=name, fsync=False)
    model = build_torch_model(cfg, stored)
    return TinyModel(spec=spec, config=cfg, gguf_path=path, torch_model=model, weights=stored, types=types)


# ---------------------------------------------------------------------------
# An independent NumPy rendering of docs/design.md §2 (float64)
# ---------------------------------------------------------------------------


def yarn_inv_freq(cfg: ModelConfig) -> tuple[np.ndarray, float]:
    """YaRN inverse frequencies (low/high not rounded) and the cos/sin factor."""
    d = cfg.head_dim
    f = cfg.rope_base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    s = cfg.rope_scaling_factor

    def corr(rot: float) -> float:
        return d * np.log(cfg.rope_original_context / (rot * 2 * np.pi)) / (2 * np.log(cfg.rope_base))

    low, high = corr(cfg.yarn_beta_fast), corr(cfg.yarn_beta_slow)
    ramp = np.clip((np.arange(d // 2) - low) / (high - low), 0.0, 1.0)
    return f / s * ramp + f * (1 - ramp), cfg.rope_mscale


def numpy_reference_logits(
    cfg: ModelConfig,
    w: dict[str, np.ndarray],
    ids: Sequence[int],
    round_dense: Callable[[np.ndarray], np.ndarray] | None = None,
    round_experts: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """logits [T, vocab] from GGUF-named weights, following docs/design.md §2 literally.

    ``round_dense`` / ``round_experts``, when given, round the activations that enter the
    dense (attention and output) and expert products, to measure what a lower-precision
    activation path would cost (docs/bench/activation_rounding.py); None keeps them exact.
    """
    rd = round_dense or (lambda v: v)
    re_ = round_experts or (lambda v: v)
    ids = np.asarray(ids)
    T, d = len(ids), cfg.head_dim
    W = {k: v.astype(np.float64) for k, v in w.items()}
    x = W["token_embd.weight"][ids]

    def rms(v, g):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + cfg.rms_eps) * g

    inv, msc = yarn_inv_freq(cfg)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang) * msc, np.sin(ang) * msc

    def rope(t):  # t [T, n, d], half-split
        a, b = t[..., : d // 2], t[..., d // 2 :]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    pos = np.arange(T)
    group = cfg.n_heads // cfg.n_kv_heads
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        h = rd(rms(x, W[p + "attn_norm.weight"]))
        q = (h @ W[p + "attn_q.weight"].T + W[p + "attn_q.bias"]).reshape(T, cfg.n_heads, d)
        k = (h @ W[p + "attn_k.weight"].T + W[p + "attn_k.bias"]).reshape(T, cfg.n_kv_heads, d)
        v = (h @ W[p + "attn_v.weight"].T + W[p + "attn_v.bias"]).reshape(T, cfg.n_kv_heads, d)
        q, k = rope(q), rope(k)
        allowed = pos[None, :] <= pos[:, None]
        if cfg.is_sliding(i):
            allowed &= pos[None, :] > pos[:, None] - cfg.sliding_window
        out = np.empty((T, cfg.n_heads, d))
        for j in range(cfg.n_heads):
            kv = j // group
            sc = q[:, j] @ k[:, kv].T / np.sqrt(d)
            sc = np.where(allowed, sc, -np.inf)
            sink = W[p + "attn_sinks.weight"][j]
            m = np.maximum(sc.max(axis=-1, keepdims=True), sink)
            e = np.exp(sc - m)
            den = e.sum(axis=-1, keepdims=True) + np.exp(sink - m)
            out[:, j] = (e / den) @ v[:, kv]
        x = x + rd(out.reshape(T, -1)) @ W[p + "attn_output.weight"].T + W[p + "attn_output.bias"]
        g = rms(x, W[p + "post_attention_norm.weight"])
        r = g @ W[p + "ffn_gate_inp.weight"].T + W[p + "ffn_gate_inp.bias"]
        moe = np.zeros_like(x)
        for t in range(T):
            top = np.argsort(-r[t], kind="stable")[: cfg.n_experts_used]
            wt = np.exp(r[t, top] - r[t, top].max())
            wt /= wt.sum()
            for e_, we in zip(top, wt):
                gate = W[p + "ffn_gate_exps.weight"][e_] @ re_(g[t]) + W[p + "ffn_gate_exps.bias"][e_]
                up = W[p + "ffn_up_exps.weight"][e_] @ re_(g[t]) + W[p + "ffn_up_exps.bias"][e_]
                gate = np.minimum(gate, cfg.swiglu_limit)
                up = np.clip(up, -cfg.swiglu_limit, cfg.swiglu_limit)
                y = gate / (1 + np.exp(-cfg.swiglu_alpha * gate)) * (up + 1)
                moe[t] += we * (W[p + "ffn_down_exps.weight"][e_] @ re_(y) + W[p + "ffn_down_exps.bias"][e_])
        x = x + moe
    return (rd(rms(x, W["output_norm.weight"])) @ W["output.weight"].T).astype(np.float32)
