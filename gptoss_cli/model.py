"""The gpt-oss forward pass (docs/design.md §2): a stateless model, the KV cache passed in.

`Transformer` holds the weights and the rope tables and nothing that changes
while it runs; every call names the cache (gptoss_cli.kv_cache.KVCache) it
advances. So one loaded model serves any number of conversations:

    t = Transformer(cfg, weights)                 # precision="fast" (default) or "exact"
    cache = t.new_cache(context=8192)
    last = t.forward(prompt_ids, cache)           # logits of the last token [vocab]
    outs = t.forward_batch([(ids_a, cache_a),     # several sequences in one pass:
                            (ids_b, cache_b)])    # a prompt beside decode steps

In a batch the dense weight products and the experts run once over the tokens
of every sequence; attention runs per sequence over its own cache and
positions. One sequence alone follows exactly the single-sequence path. A
decode step (one token per sequence) multiplies each token with the one-token
kernels, so each sequence's logits are the same bits alone or batched
(batch-invariant, as a server's seeded requests need).
The precision (docs/design.md §2.8) picks the weight products' kernels and
nothing else: "exact" multiplies float32 activations, "fast" the MXFP4 and Q8_0
ones rounded to two 8-bit pieces per block. The model computes; it never prints.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from gptoss_kernels.attention import attention
from gptoss_kernels.dequant import dequantize
from gptoss_kernels.kernel_sets import PRECISIONS
from gptoss_kernels.linear import expert_matvec, grouped_matvec, matmul, matvec, matvecs
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

#: Told, in each layer, which experts the block's tokens were routed to, before they are read:
#: (layer index, sorted unique expert ids, the normalized hidden states the router saw).
ExpertHook = Callable[[int, np.ndarray, np.ndarray], None]


def linear(
    x: np.ndarray, w: Matrix, bias: np.ndarray | None = None, precision: str = "fast", per_token: bool = False
) -> np.ndarray:
    """x [T, cols] times w.T plus bias -> [T, rows], float32, in `precision`'s kernels.

    With per_token every row is multiplied exactly as a one-token call would (the
    decode kernels), so a token's result does not depend on the tokens beside it.
    """
    t = x.shape[0]
    out = np.empty((t, w.rows), dtype=np.float32)
    if t == 1:
        matvec(w.ggml_type, w.data, x[0], out[0], precision)
    elif per_token:
        matvecs(w.ggml_type, w.data, x, out, precision)
    else:
        matmul(w.ggml_type, w.data, x, out, precision)
    if bias is not None:
        out += bias
    return out


class Transformer:
    """The weights and the forward pass; the KV cache of each sequence is passed in."""

    def __init__(
        self, cfg: ModelConfig, weights: ModelWeights, expert_hook: ExpertHook | None = None, precision: str = "fast"
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        self.cfg = cfg
        self.w = weights
        self.rope = RopeTables(cfg)
        self.attn_scale = 1.0 / math.sqrt(cfg.head_dim)
        # memory management of the mapped expert weights (paging them in ahead of use); never arithmetic
        self.expert_hook = expert_hook
        self.precision = precision  # which kernels multiply the weights (docs/design.md §2.8)

    def new_cache(self, context: int) -> KVCache:
        """An empty KV cache for one sequence of up to `context` tokens."""
        return KVCache(self.cfg, context)

    def forward(self, tokens: Sequence[int] | np.ndarray, cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """Append tokens to `cache`: the last token's logits [vocab], or every token's [n, vocab]."""
        return self.forward_batch([(tokens, cache)], all_logits=all_logits)[0]

    def forward_batch(
        self, seqs: Sequence[tuple[Sequence[int] | np.ndarray, KVCache]], all_logits: bool = False
    ) -> list[np.ndarray]:
        """Advance several sequences, each over its own cache, in one pass per chunk.

        Returns, per sequence, the last token's logits [vocab] (or with
        all_logits every fed token's [n, vocab]). Each sequence's tokens are
        taken PREFILL_CHUNK at a time; a block holds the next chunk of every
        sequence that has tokens left.
        """
        parts = [(self._checked(tokens, cache), cache) for tokens, cache in seqs]
        if len({id(c) for _, c in parts}) != len(parts):
            raise InputError("a batch holds the same cache twice")
        outputs: list[list[np.ndarray]] = [[] for _ in parts]
        offset = 0
        while True:
            live = [i for i, (t, _) in enumerate(parts) if offset < t.size]
            if not live:
                break
            block = [(parts[i][0][offset : offset + PREFILL_CHUNK], parts[i][1]) for i in live]
            hidden = self._run_block(block)
            ends = np.cumsum([chunk.size for chunk, _ in block])
            if all_logits:
                for i, h in zip(live, np.split(hidden, ends[:-1])):
                    outputs[i].append(self._logits(h))
            else:  # the last token of each sequence that ends in this block, all in one product
                done = [(i, end - 1) for i, end in zip(live, ends) if offset + PREFILL_CHUNK >= parts[i][0].size]
                if done:
                    logits = self._logits(hidden[[row for _, row in done]], per_token=True)
                    for (i, _), row in zip(done, logits):
                        outputs[i].append(row)
            offset += PREFILL_CHUNK
        return [np.concatenate(o) if all_logits and len(o) > 1 else o[0] for o in outputs]

    # ---------------------------------------------------------------- internals
    def _checked(self, tokens: Sequence[int] | np.ndarray, cache: KVCache) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise InputError("no tokens to process")
        if tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size:
            raise InputError(f"token id out of range 0..{self.cfg.vocab_size - 1}")
        if cache.n_past + tokens.size > cache.context:
            raise InputError(
                f"context full: {cache.n_past} + {tokens.size} tokens exceed the context size {cache.context}"
            )
        return tokens

    def _run_block(self, block: list[tuple[np.ndarray, KVCache]]) -> np.ndarray:
        """The hidden states after every layer of the block's tokens (sequences one after another)."""
        cfg, w = self.cfg, self.w
        tokens = block[0][0] if len(block) == 1 else np.concatenate([t for t, _ in block])
        e = w.token_embd
        x = dequantize(e.ggml_type, np.ascontiguousarray(e.data[tokens]), cfg.hidden)
        spans = []  # (first row, rows, cache, start position) per sequence
        tables = []
        at = 0
        for t, cache in block:
            spans.append((at, t.size, cache, cache.n_past))
            tables.append(self.rope(cache.n_past, t.size))
            at += t.size
        if len(tables) == 1:
            cos, sin = tables[0]
        else:
            cos = np.concatenate([c for c, _ in tables])
            sin = np.concatenate([s for _, s in tables])
        per_token = all(t.size == 1 for t, _ in block)  # a decode step: batch-invariant products
        for i, layer in enumerate(w.layers):
            x += self._attention(i, layer, x, spans, cos, sin, per_token)
            x += self._moe(i, layer, x, per_token)
        for _, n, cache, start in spans:
            cache.n_past = start + n
        return x

    def _norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        rmsnorm(x, weight, self.cfg.rms_eps, out)
        return out

    def _attention(
        self, i: int, lw: LayerWeights, x: np.ndarray, spans: list, cos: np.ndarray, sin: np.ndarray,
        per_token: bool,
    ) -> np.ndarray:
        cfg = self.cfg
        t = x.shape[0]
        h = self._norm(x, lw.attn_norm)
        q = self._linear(h, lw.wq, lw.bq, per_token).reshape(t, cfg.n_heads, cfg.head_dim)
        k = self._linear(h, lw.wk, lw.bk, per_token).reshape(t, cfg.n_kv_heads, cfg.head_dim)
        v = self._linear(h, lw.wv, lw.bv, per_token).reshape(t, cfg.n_kv_heads, cfg.head_dim)
        apply_rope(q, cos, sin)
        apply_rope(k, cos, sin)
        out = np.empty_like(q)
        for first, n, cache, start in spans:
            rows = slice(first, first + n)
            attention(
                q[rows], k[rows], v[rows], cache.k[i], cache.v[i], start, cache.window[i],
                lw.sinks, self.attn_scale, out[rows],
            )
            cache.store(i, start, k[rows], v[rows])
        return self._linear(out.reshape(t, cfg.q_dim), lw.wo, lw.bo, per_token)

    def _moe(self, i: int, lw: LayerWeights, x: np.ndarray, per_token: bool) -> np.ndarray:
        cfg = self.cfg
        g = self._norm(x, lw.post_norm)
        router_logits = self._linear(g, lw.router, lw.router_b, per_token)
        experts, weights = router_topk(router_logits, cfg.n_experts_used)
        if self.expert_hook is not None:
            self.expert_hook(i, np.unique(experts), g)
        if per_token:
            return self._moe_tokens(lw, g, experts, weights)
        return self._moe_grouped(lw, g, experts, weights)

    def _activate(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        out = np.empty_like(gate)
        swiglu(gate, up, self.cfg.swiglu_limit, self.cfg.swiglu_alpha, out)
        return out

    def _moe_tokens(self, lw: LayerWeights, g: np.ndarray, experts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Decode path: the k routed experts of each token, every (token, expert) product as for the
        token alone; with several tokens each expert's rows are read once for all tokens routed to it."""
        cfg = self.cfg
        n, k = experts.shape
        flat = experts.reshape(-1)  # pair t * k + j: token t's j-th expert
        if n == 1:
            order, ids, xs = None, flat, np.ascontiguousarray(np.broadcast_to(g, (k, cfg.hidden)))
        else:  # the pairs grouped by expert
            order = np.argsort(flat, kind="stable")
            ids = flat[order]
            starts = np.concatenate(([0], np.flatnonzero(np.diff(ids)) + 1, [ids.size]))
            xs = g[order // k]

        def product(w: Matrix, x: np.ndarray, out: np.ndarray) -> None:
            if order is None:
                expert_matvec(w.ggml_type, w.data, ids, x, out, self.precision)
            else:
                grouped_matvec(w.ggml_type, w.data, ids[starts[:-1]], starts, x, out, self.precision)

        gate = np.empty((n * k, cfg.expert_ffn), dtype=np.float32)
        up = np.empty((n * k, cfg.expert_ffn), dtype=np.float32)
        product(lw.gate, xs, gate)
        product(lw.up, xs, up)
        gate += lw.gate_b[ids]
        up += lw.up_b[ids]
        y = self._activate(gate, up)
        down = np.empty((n * k, cfg.hidden), dtype=np.float32)
        product(lw.down, y, down)
        down += lw.down_b[ids]
        if order is not None:  # back to routing order
            routed = np.empty_like(down)
            routed[order] = down
            down = routed
        down = down.reshape(n, k, cfg.hidden)
        w = weights.astype(np.float32)
        out = down[:, 0] * w[:, :1]  # elementwise in routing order: no summation order left to a library
        for j in range(1, k):
            out += down[:, j] * w[:, j : j + 1]
        return out

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

    def _linear(self, x: np.ndarray, w: Matrix, bias: np.ndarray | None = None, per_token: bool = False) -> np.ndarray:
        return linear(x, w, bias, self.precision, per_token)

    def _expert_linear(self, w: Matrix, e: int, x: np.ndarray) -> np.ndarray:
        return self._linear(x, Matrix(w.data[e], w.ggml_type, w.rows, w.cols))

    def _logits(self, x: np.ndarray, per_token: bool = False) -> np.ndarray:
        h = self._norm(x, self.w.output_norm)
        return self._linear(h, self.w.output, per_token=per_token)
