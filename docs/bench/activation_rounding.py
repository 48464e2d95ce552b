"""What rounding the activations would cost in faithfulness, on the parity test's models.

The only ways found to make decode faster on a CPU whose float32 MXFP4 product is
bound by its vector pipes (AMD Zen 4, docs/performance.md) round the activations
before the weight products: to 8 bits in 32-value blocks as llama.cpp does (ggml's
Q8_0 "vec_dot_type" for MXFP4 and Q8_0 weights: int8 codes, an fp16 scale of
max|x|/127), or to bfloat16. This measures the parity metrics such a path would
give (top-1 agreement and mean |error| / logit std against the exact reference,
which equals transformers to ~1e-6), with everything else exact (float64, no f16 KV
cache), so the rounding of x alone is measured. The bar (DESIGN.md, issue 2) is
top-1 >= 0.995 and mean |error| / std <= 2e-3.

    python docs/bench/activation_rounding.py      # from the repository root, test extras installed
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from test_model_parity import SEQ_LEN, SPECS  # noqa: E402
from tiny_models import build_tiny_model, numpy_reference_logits  # noqa: E402


def round_q8_blocks(v: np.ndarray) -> np.ndarray:
    """x as ggml's Q8_0 activation blocks: per 32 values d = fp16(max|x| / 127), codes round(x / d)."""
    v = np.asarray(v, np.float64)
    b = v.reshape(-1, 32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = (amax / 127.0).astype(np.float16).astype(np.float64)
    inv = np.divide(127.0, amax, out=np.zeros_like(amax), where=amax > 0)
    q = np.clip(np.sign(b) * np.floor(np.abs(b * inv) + 0.5), -127, 127)
    return (q * d).reshape(v.shape)


def round_bf16(v: np.ndarray) -> np.ndarray:
    """x rounded to bfloat16 (nearest, ties to even)."""
    u = np.asarray(v, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def main() -> None:
    print(f"{'model':28s} {'activations rounded':44s} top-1   mean|err|/std")
    for name, spec in sorted(SPECS.items()):
        tm = build_tiny_model(spec, tempfile.mkdtemp())
        ids = np.random.default_rng(spec.seed + 100).integers(0, spec.vocab, SEQ_LEN)
        ref = numpy_reference_logits(tm.config, tm.weights, ids)
        dense_rule = round_q8_blocks if spec.dense == "q8_0" else round_bf16  # ggml: BF16 weights take bf16 x
        cases = (
            ("expert inputs as bf16", None, round_bf16),
            ("expert inputs as 8-bit blocks", None, round_q8_blocks),
            ("llama.cpp's: experts and dense products", dense_rule, round_q8_blocks),
        )
        for label, dense, experts in cases:
            got = numpy_reference_logits(tm.config, tm.weights, ids, round_dense=dense, round_experts=experts)
            agree = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
            rel = float(np.mean(np.abs(got - ref)) / ref.std())
            print(f"{name:28s} {label:44s} {agree:.4f}  {rel:.2e}", flush=True)


if __name__ == "__main__":
    main()
