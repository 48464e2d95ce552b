"""What rounding the activations would cost in faithfulness, on the parity test's models.

The only ways found to make decode faster on a CPU whose float32 MXFP4 product is
bound by its vector pipes (AMD Zen 4, docs/performance.md) round the activations
before the weight products: to 8 bits in 32-value blocks as llama.cpp does (ggml's
Q8_0 "vec_dot_type" for MXFP4 and Q8_0 weights: int8 codes, an fp16 scale of
max|x|/127), or to bfloat16. This measures the parity metrics such a path would
give (top-1 agreement and mean |error| / logit std against the exact reference,
which equals transformers to ~1e-6), with everything else exact (float64, no f16 KV
cache), so the rounding of x alone is measured. The bar (docs/design.md §7, issue 2) is
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

from gptoss_cli.convert.gguf_writer import dequantize, encode_tensor  # noqa: E402
from gptoss_kernels import ggml_types  # noqa: E402


def rounded_as(ggml_type: int):
    """x -> x stored as `ggml_type` and read back, by the converter's encoder (gguf-py's reference
    quantizer): Q8_0 is ggml's activation format for MXFP4 and Q8_0 products, BF16 for BF16 ones."""

    def rounded(v: np.ndarray) -> np.ndarray:
        return dequantize(encode_tensor(v, ggml_type), ggml_type, np.shape(v)).astype(np.float64)

    return rounded


def main() -> None:
    print(f"{'model':28s} {'activations rounded':44s} top-1   mean|err|/std")
    for name, spec in sorted(SPECS.items()):
        tm = build_tiny_model(spec, tempfile.mkdtemp())
        ids = np.random.default_rng(spec.seed + 100).integers(0, spec.vocab, SEQ_LEN)
        ref = numpy_reference_logits(tm.config, tm.weights, ids)
        q8, bf16 = rounded_as(ggml_types.Q8_0), rounded_as(ggml_types.BF16)
        dense_rule = q8 if spec.dense == "q8_0" else bf16  # ggml: BF16 weights take bf16 x
        cases = (
            ("expert inputs as bf16", None, bf16),
            ("expert inputs as 8-bit blocks", None, q8),
            ("llama.cpp's: experts and dense products", dense_rule, q8),
        )
        for label, dense, experts in cases:
            got = numpy_reference_logits(tm.config, tm.weights, ids, round_dense=dense, round_experts=experts)
            agree = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
            rel = float(np.mean(np.abs(got - ref)) / ref.std())
            print(f"{name:28s} {label:44s} {agree:.4f}  {rel:.2e}", flush=True)


if __name__ == "__main__":
    main()
