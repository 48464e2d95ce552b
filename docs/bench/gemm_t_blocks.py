"""The ssse3 path's token-lane products with the AVX-512 register blocks (the code before 2026-12-07)
against its own narrow blocks, alternating, on 20b-shaped 2880 x 2880 matrices.

    python docs/bench/gemm_t_blocks.py [TOKENS ...]     # default 8 16 32 64

Both kernels sum each output in the same order, so they must agree exactly (checked first).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

from gptoss_kernels import gemm_t
from gptoss_kernels.mxfp4_fast import deq_row_mxfp4_ssse3
from gptoss_kernels.specialize import specialize


def main(token_counts: list[int]) -> None:
    wide = {name: specialize(gemm_t._token_lanes, f"bench_wide_{name}", {"_deq_row": deq, "_tile": gemm_t.TILES["avx512"]},
                             parallel=True)
            for name, deq in (("mxfp4", deq_row_mxfp4_ssse3), ("q8_0", gemm_t.deq_row_q8_0_simd))}
    narrow = {"mxfp4": gemm_t.MATMUL_T_MXFP4["ssse3"], "q8_0": gemm_t.MATMUL_T_Q8_0["ssse3"]}
    rng = np.random.default_rng(0)
    rows = cols = 2880
    f = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.05)
    w = {"mxfp4": gq.quantize(f, QT.MXFP4), "q8_0": gq.quantize(f, QT.Q8_0)}
    for n in token_counts:
        xt = rng.standard_normal((cols, n)).astype(np.float32)
        for name in ("mxfp4", "q8_0"):
            kernels = (wide[name], narrow[name])
            outs = [np.zeros((rows, n), np.float32) for _ in kernels]
            for k, out in zip(kernels, outs):
                k(w[name], xt, out)
            assert np.array_equal(*outs), name
            times: list[list[float]] = [[], []]
            for r in range(6):
                for i in (0, 1) if r % 2 == 0 else (1, 0):
                    out = np.zeros((rows, n), np.float32)
                    t = time.perf_counter()
                    kernels[i](w[name], xt, out)
                    times[i].append(time.perf_counter() - t)
            a, b = (float(np.median(t)) * 1e3 for t in times)
            print(f"{name} {n:4d} tokens: AVX-512 blocks {a:6.2f} ms, narrow {b:6.2f} ms, {a / b:.2f}x, "
                  f"{rows * cols * n / b / 1e6:.1f} GMAC/s", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [8, 16, 32, 64])
