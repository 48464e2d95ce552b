"""The gpt-oss forward pass (DESIGN.md section 2) over a KV cache.

A block of tokens (a prompt chunk, or one token while decoding) runs through
every layer at once: dense weights are multiplied with the fused
dequantize-and-multiply kernels, and each token visits only its routed experts.
The model computes; it never prints.
"""

from __future__ import annotations

import math

import numpy as np

from gptoss_kernels.attention import attention
from gptoss_kernels.dequant import dequantize
from gptoss_kernels.linear import expert_matvec, matmul, matvec
from gptoss_kernels.moe import router_topk, swiglu
from gptoss_kernels.norms import rmsnorm
from gptoss_kernels.rope import apply_rope

from .config import ModelConfig
from .errors import InputError
from .kv_cache import KVCache
from .rope import RopeTables
from .weights import LayerWeights, Matrix, ModelWeights

# Prompts are processed in chunks of this many tokens, which bounds scratch memory.
PREFILL_CHUNK = 256


def linear(x: np.ndarray, w: Matrix, bias: np.ndarray | None = None) -> np.ndarray:
    """x [T, cols] times w.T plus bias -> [T, rows], float32."""
    t = x.shape[0]
    out = np.empty((t, w.rows), dtype=np.float32)
    if t == 1:
        matvec(w.ggml_type, w.data, x[0], out[0])
    else:
        matmul(w.ggml_type, w.data, x, out)
    if bias is not None:
        out += bias
    return out


class Transformer:
    """Weights, rope tables and a KV cache; feed tokens, get logits."""

    def __init__(self, cfg: ModelConfig, weights: ModelWeights, context: int) -> None:
        self.cfg = cfg
        self.w = weights
        self.context = context
        self.cache = KVCache(cfg, context)
        self.rope = RopeTables(cfg)
        self.attn_scale = 1.0 / math.sqrt(cfg.head_dim)

    @property
    def n_past(self) -> int:
        return self.cache.n_past

    def reset(self) -> None:
        self.cache.reset()

    def forward(self, tokens: np.ndarray, all_logits: bool = False) -> np.ndarray:
        """Append tokens to the cache; return logits for every token or only the last."""
        cfg = self.cfg
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise InputError("no tokens to process")
        if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
            raise InputError(f"token id out of range 0..{cfg.vocab_size - 1}")
        if self.cache.n_past + tokens.size > self.context:
            raise InputError(
                f"context full: {self.cache.n_past} + {tokens.size} tokens exceed the context size {self.context}"
            )
        outputs = []
        for s in range(0, tokens.size, PREFILL_CHUNK):
            chunk = tokens[s : s + PREFILL_CHUNK]
            last = s + PREFILL_CHUNK >= tokens.size
            hidden = self._run_block(chunk)
            if all_logits:
                outputs.append(self._logits(hidden))
            elif last:
                outputs.append(self._logits(hidden[-1:]))
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    # ---------------------------------------------------------------- internals
    def _run_block(self, tokens: np.ndarray) -> np.ndarray:
        cfg, w = self.cfg, self.w
        start = self.cache.n_past
        e = w.token_embd
        x = dequantize(e.ggml_type, np.ascontiguousarray(e.data[tokens]), cfg.hidden)
        cos, sin = self.rope(start, tokens.size)
        for i, layer in enumerate(w.layers):
            x += self._attention(i, layer, x, start, cos, sin)
            x += self._moe(layer, x)
        self.cache.n_past = start + tokens.size
        return x

    def _norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        rmsnorm(x, weight, self.cfg.rms_eps, out)
        return out

    def _attention(
        self, i: int, lw: LayerWeights, x: np.ndarray, start: int, cos: np.ndarray, sin: np.ndarray
    ) -> np.ndarray:
        cfg = self.cfg
        t = x.shape[0]
        h = self._norm(x, lw.attn_norm)
        q = linear(h, lw.wq, lw.bq).reshape(t, cfg.n_heads, cfg.head_dim)
        k = linear(h, lw.wk, lw.bk).reshape(t, cfg.n_kv_heads, cfg.head_dim)
        v = linear(h, lw.wv, lw.bv).reshape(t, cfg.n_kv_heads, cfg.head_dim)
        apply_rope(q, cos, sin)
        apply_rope(k, cos, sin)
        cache = self.cache
        out = np.empty_like(q)
        attention(
            q, k, v, cache.k[i], cache.v[i], start, cache.window[i], lw.sinks, self.attn_scale, out
        )
        cache.store(i, start, k, v)
        return linear(out.reshape(t, cfg.q_dim), lw.wo, lw.bo)

    def _moe(self, lw: LayerWeights, x: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        g = self._norm(x, lw.post_norm)
        router_logits = linear(g, lw.router, lw.router_b)
        experts, weights = router_topk(router_logits, cfg.n_experts_used)
        if x.shape[0] == 1:
            return self._moe_one(lw, g[0], experts[0], weights[0])[None, :]
        return self._moe_grouped(lw, g, experts, weights)

    def _activate(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        out = np.empty_like(gate)
        swiglu(gate, up, self.cfg.swiglu_limit, self.cfg.swiglu_alpha, out)
        return out

    def _moe_one(self, lw: LayerWeights, g: np.ndarray, experts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Decode path: the k routed experts of one token, each matrix in one kernel launch."""
        cfg = self.cfg
        k = experts.size
        xs = np.ascontiguousarray(np.broadcast_to(g, (k, cfg.hidden)))
        gate = np.empty((k, cfg.expert_ffn), dtype=np.float32)
        up = np.empty((k, cfg.expert_ffn), dtype=np.float32)
        expert_matvec(lw.gate.ggml_type, lw.gate.data, experts, xs, gate)
        expert_matvec(lw.up.ggml_type, lw.up.data, experts, xs, up)
        gate += lw.gate_b[experts]
        up += lw.up_b[experts]
        y = self._activate(gate, up)
        down = np.empty((k, cfg.hidden), dtype=np.float32)
        expert_matvec(lw.down.ggml_type, lw.down.data, experts, y, down)
        down += lw.down_b[experts]
        return weights.astype(np.float32) @ down

    def _moe_grouped(
        self, lw: LayerWeights, g: np.ndarray, experts: np.ndarray, weights: np.ndarray
    ) -> np.ndarray:
        """Prefill path: tokens grouped by expert, each expert's weights read once per block."""
        out = np.zeros_like(g)
        flat = experts.reshape(-1)
        order = np.argsort(flat, kind="stable")
        sorted_experts = flat[order]
        bounds = np.flatnonzero(np.diff(sorted_experts)) + 1
        k = experts.shape[1]
        for group in np.split(order, bounds):
            e = int(flat[group[0]])
            rows = group // k
            xe = np.ascontiguousarray(g[rows])
            gate = self._expert_linear(lw.gate, e, xe) + lw.gate_b[e]
            up = self._expert_linear(lw.up, e, xe) + lw.up_b[e]
            y = self._activate(gate, up)
            d = self._expert_linear(lw.down, e, y) + lw.down_b[e]
            d *= weights.reshape(-1)[group][:, None]
            out[rows] += d  # a token routes to each expert at most once
        return out

    @staticmethod
    def _expert_linear(w: Matrix, e: int, x: np.ndarray) -> np.ndarray:
        return linear(x, Matrix(w.data[e], w.ggml_type, w.rows, w.cols))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        h = self._norm(x, self.w.output_norm)
        return linear(h, self.w.output)
