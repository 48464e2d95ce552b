"""MXFP4 matvec throughput benchmark (weight GB/s), every path side by side.

Run as ``python -m gptoss_kernels.bench [--mb 300] [--threads 1,2] [--paths ...]``.
Importing this module does nothing; it only allocates when run.

Weights are random nibbles with realistic block exponents (2^-12 .. 2^-3 after
the halving), large enough that they do not sit in the cache of a small CPU
(the weight set is rotated through; raise ``--mb`` on CPUs with a huge L3).
``matvec`` reads one [rows, 2880] matrix; ``expert_matvec`` runs the MoE
decode shape: k=4 of 32 experts of 2880x2880, cycling over several layers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

COLS = 2880
N_EXPERTS = 32
K = 4


def _mxfp4(rng: np.random.Generator, shape: tuple[int, ...], cols: int) -> np.ndarray:
    nb = cols // 32
    raw = rng.integers(0, 256, size=shape + (nb, 17), dtype=np.uint8)
    raw[..., 0] = rng.integers(115, 125, size=shape + (nb,), dtype=np.uint8)
    raw = raw.reshape(shape + (nb * 17,))
    raw.flags.writeable = False
    return raw


def _time(fn, min_time: float, min_reps: int = 3) -> float:
    """Best seconds per call."""
    fn()  # compile / warm
    best = float("inf")
    total = 0.0
    reps = 0
    while reps < min_reps or total < min_time:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best = min(best, dt)
        total += dt
        reps += 1
    return best


def kernels_for(path: str):
    """(expert_matvec kernel) of a path name: 'portable', 'avx512' or 'ssse3'."""
    from .matvec import expert_matvec_mxfp4
    from .mxfp4_fast import EXPERT_MATVEC

    return expert_matvec_mxfp4 if path == "portable" else EXPERT_MATVEC[path]


def run(mb: float, threads: list[int], paths: list[str], min_time: float = 1.0) -> list[tuple]:
    import numba

    rng = np.random.default_rng(0)
    row_bytes = COLS // 32 * 17
    rows = int(mb * 1e6 // row_bytes)
    w = _mxfp4(rng, (rows,), COLS)
    layer_bytes = N_EXPERTS * COLS * row_bytes
    layers = max(1, int(round(mb * 1e6 / layer_bytes)))
    w3s = [_mxfp4(rng, (N_EXPERTS, COLS), COLS) for _ in range(layers)]
    x1 = rng.standard_normal((1, COLS)).astype(np.float32)
    xk = rng.standard_normal((K, COLS)).astype(np.float32)
    x1.flags.writeable = False
    xk.flags.writeable = False
    e0 = np.zeros(1, np.int64)
    e0.flags.writeable = False
    picks = [np.sort(rng.choice(N_EXPERTS, K, replace=False)).astype(np.int64) for _ in range(64)]
    out1 = np.empty((1, rows), np.float32)
    outk = np.empty((K, COLS), np.float32)
    results = []
    print(f"matvec: {rows} x {COLS} ({w.nbytes / 1e6:.0f} MB); expert_matvec: k={K} of {N_EXPERTS} "
          f"experts {COLS}x{COLS}, {layers} layer(s) ({layers * layer_bytes / 1e6:.0f} MB), "
          f"{K * COLS * row_bytes / 1e6:.1f} MB per call")
    for path in paths:
        kern = kernels_for(path)
        for nt in threads:
            numba.set_num_threads(nt)
            t = _time(lambda: kern(w[None], e0, x1, out1), min_time)
            gbs_mv = w.nbytes / t / 1e9
            state = {"i": 0}

            def moe():
                i = state["i"]
                state["i"] = i + 1
                kern(w3s[i % layers], picks[i % len(picks)], xk, outk)

            reps = max(layers * 4, 16)

            def moe_many():
                for _ in range(reps):
                    moe()

            t = _time(moe_many, min_time) / reps
            gbs_moe = K * COLS * row_bytes / t / 1e9
            results.append((path, nt, gbs_mv, gbs_moe, t * 1e3))
            print(f"{path:9s} threads={nt}  matvec {gbs_mv:6.2f} GB/s   "
                  f"expert_matvec {gbs_moe:6.2f} GB/s ({t * 1e3:.2f} ms/call)", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    from . import simd

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=300.0, help="weight set size in MB (default 300)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--paths", default=None, help="comma-separated paths (default: all this CPU runs)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (default 1)")
    a = p.parse_args(argv)
    paths = a.paths.split(",") if a.paths else ["portable"] + [
        s for s in simd.supported_isas(simd.target_features()) if s != "portable"]
    print(f"selected path: {simd.MXFP4_ISA}")
    run(a.mb, [int(t) for t in a.threads.split(",")], paths, a.min_time)


if __name__ == "__main__":
    main()
