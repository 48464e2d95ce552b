"""Where a decode step's time goes: each kernel entry point of the model timed inside real steps.

    python docs/bench/decode_profile.py MODEL.gguf [TOKENS [PRECISION]]     # e.g. the cached synthetic 20b

The file is paged in first, then TOKENS (default 30) tokens are decoded one at a time
after an 8-token prompt; the time of every call from gptoss_cli/model.py into the kernels
is summed by weight matrix (wq, wk, wv, wo, router, gate, up, down, output) or kernel
(attention, rope, norms, ...). "glue" is what is left: the model's own numpy work.
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np

import gptoss_cli.model as model_module
from gptoss_cli import load_model


def main(path: str, tokens: int, precision: str = "fast") -> None:
    m = load_model(path, threads=2, context=4096, precision=precision)
    spent: dict[str, float] = collections.defaultdict(float)

    def timed(name: str, label) -> None:
        inner = getattr(model_module, name)

        def call(*args, **kwargs):
            t = time.perf_counter()
            result = inner(*args, **kwargs)
            spent[label(args)] += time.perf_counter() - t
            return result

        setattr(model_module, name, call)

    weights = m.model.w
    names = {id(weights.output.data): "output"}
    for layer in weights.layers:
        for n in ("wq", "wk", "wv", "wo", "router", "gate", "up", "down"):
            names[id(getattr(layer, n).data)] = n
    for name in ("matvec", "expert_matvec"):
        timed(name, lambda args: names.get(id(args[1]), "other products"))
    for name in ("attention", "apply_rope", "rmsnorm", "router_topk", "swiglu", "dequantize"):
        timed(name, lambda args, name=name: name)

    int(m.gguf.data[::4096].sum(dtype=np.int64))  # page the file in
    rng = np.random.default_rng(0)
    cache = m.new_cache()
    m.forward(rng.integers(0, 1000, 8), cache)
    m.forward(rng.integers(0, 1000, 1), cache)
    spent.clear()
    t0 = time.perf_counter()
    for tok in rng.integers(0, 1000, tokens):
        m.forward(tok[None], cache)
    total = (time.perf_counter() - t0) / tokens * 1e3
    print(f"total {total:.1f} ms/token ({precision})")
    for label, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {label:14s} {s / tokens * 1e3:7.2f} ms")
    print(f"  {'glue':14s} {total - sum(spent.values()) / tokens * 1e3:7.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30, sys.argv[3] if len(sys.argv) > 3 else "fast")
