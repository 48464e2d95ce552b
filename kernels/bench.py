"""Kernel throughput benchmark, every path side by side.

Run as ``python -m gptoss_kernels.bench [--types mxfp4,q8_0,bf16] [--mb 300]
[--threads 1,2] [--paths ...] [--matmul | --prefill [--tokens 16,64,128,512]]``.
Importing this module does nothing; it only allocates when run.

Decode (default): weight GB/s of ``matvec`` over one [rows, 2880] matrix of
``--mb`` MB, and of ``expert_matvec`` in the MoE decode shape (k=4 of 32
experts of 2880x2880, cycling over enough layers to fill ``--mb``). Weights are
random codes with realistic scales (MXFP4 block exponents 2^-12 .. 2^-3, Q8_0
half scales 1e-4 .. 3e-3), large enough not to sit in the cache of a small CPU.

Prefill: GFLOP/s (2 * T * rows * cols per call) on a 2880x2880 and a 4096x2880
matrix for each token count, of the row-dot kernels of matmul.py / mxfp4_fast.py
(``--matmul``), or of the public ``matmul`` (``--prefill``: the few-token,
token-lane or row-dot kernel that the path and T select, with its transposes).
``--prefill`` uses only the package's public functions, so this file also
measures an older copy of the package (docs/bench/kernel_refactor_bench.sh).

On a machine shared with other work, a trial during which other processes used
the CPU (Linux /proc/stat) is repeated, so the numbers are the kernel's own.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

COLS = 2880
N_EXPERTS = 32
K = 4
TYPES = ("mxfp4", "q8_0", "bf16")


def random_weights(rng: np.random.Generator, type_name: str, shape: tuple[int, ...], cols: int) -> np.ndarray:
    """Read-only stored weights of shape ``shape + (row width,)`` with realistic scales."""
    nb = cols // 32
    if type_name == "mxfp4":
        raw = rng.integers(0, 256, size=shape + (nb, 17), dtype=np.uint8)
        raw[..., 0] = rng.integers(115, 125, size=shape + (nb,), dtype=np.uint8)
        raw = raw.reshape(shape + (nb * 17,))
    elif type_name == "q8_0":
        raw = np.empty(shape + (nb, 34), np.uint8)
        raw[..., 2:] = rng.integers(0, 256, size=shape + (nb, 32), dtype=np.uint8)
        d = rng.uniform(1e-4, 3e-3, size=shape + (nb,)).astype(np.float16)
        raw[..., :2] = d.view(np.uint8).reshape(shape + (nb, 2))
        raw = raw.reshape(shape + (nb * 34,))
    elif type_name == "bf16":
        f = (rng.standard_normal(shape + (cols,), dtype=np.float32) * np.float32(0.02))
        raw = (f.view(np.uint32) >> 16).astype(np.uint16)
    else:
        raise ValueError(f"unknown type {type_name!r}")
    raw.flags.writeable = False
    return raw


def _ggml_type(type_name: str) -> int:
    from . import ggml_types as gt

    return {"mxfp4": gt.MXFP4, "q8_0": gt.Q8_0, "bf16": gt.BF16}[type_name]


# ------------------------------------------------------------------ timing

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU seconds used by the whole system so far (None where /proc/stat is missing)."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
    except OSError:
        return None
    return (sum(v) - v[3] - v[4]) / _HZ


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _time(fn, min_time: float, min_reps: int = 3, max_tries: int = 200) -> float:
    """Best seconds per call over trials in which no other process used the CPU noticeably."""
    fn()  # compile / warm
    ncpu = os.cpu_count() or 1
    best = float("inf")
    total = 0.0
    good = 0
    tries = 0
    while (good < min_reps or total < min_time) and tries < max_tries:
        tries += 1
        b0, o0 = _busy_seconds(), _own_seconds()
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        b1, o1 = _busy_seconds(), _own_seconds()
        total += dt
        if b0 is not None and (b1 - b0) - (o1 - o0) > 0.05 * max(dt, 0.02) * ncpu + 0.011:
            time.sleep(0.2)  # someone else was running: retry
            continue
        best = min(best, dt)
        good += 1
    return best


# ------------------------------------------------------------------ kernels by path


def kernels_for(path: str, type_name: str):
    """(expert_matvec, row-dot matmul) kernels of a path ('portable', 'avx512', 'ssse3') for a type."""
    from .kernel_sets import for_path

    kernels, t = for_path(path), _ggml_type(type_name)
    return kernels.expert_matvec[t], kernels.matmul[t]


# ------------------------------------------------------------------ decode


def run(mb: float, threads: list[int], paths: list[str], min_time: float = 1.0,
        type_name: str = "mxfp4") -> list[tuple]:
    import numba

    rng = np.random.default_rng(0)
    w = random_weights(rng, type_name, (1,), COLS)
    row_bytes = w.nbytes
    rows = int(mb * 1e6 // row_bytes)
    w = random_weights(rng, type_name, (rows,), COLS)
    layer_bytes = N_EXPERTS * COLS * row_bytes
    layers = max(1, int(round(mb * 1e6 / layer_bytes)))
    w3s = [random_weights(rng, type_name, (N_EXPERTS, COLS), COLS) for _ in range(layers)]
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
    print(f"[{type_name}] matvec: {rows} x {COLS} ({w.nbytes / 1e6:.0f} MB); expert_matvec: k={K} of "
          f"{N_EXPERTS} experts {COLS}x{COLS}, {layers} layer(s) ({layers * layer_bytes / 1e6:.0f} MB), "
          f"{K * COLS * row_bytes / 1e6:.1f} MB per call")
    for path in paths:
        kern = kernels_for(path, type_name)[0]
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
            results.append((type_name, path, nt, gbs_mv, gbs_moe, t * 1e3))
            print(f"{type_name:6s} {path:9s} threads={nt}  matvec {gbs_mv:6.2f} GB/s   "
                  f"expert_matvec {gbs_moe:6.2f} GB/s ({t * 1e3:.2f} ms/call)", flush=True)
    return results


# ------------------------------------------------------------------ prefill


def run_matmul(tokens: list[int], threads: list[int], paths: list[str], min_time: float = 0.5,
               type_name: str = "q8_0", shapes: tuple[tuple[int, int], ...] = ((2880, 2880), (4096, 2880)),
               public: bool = False) -> list[tuple]:
    """GFLOP/s of the row-dot prefill kernel of each path, or with ``public`` of ``linear.matmul``."""
    import numba

    from . import linear

    rng = np.random.default_rng(1)
    ggml_type = _ggml_type(type_name)
    results = []
    for rows, cols in shapes:
        w = random_weights(rng, type_name, (rows,), cols)
        for T in tokens:
            X = rng.standard_normal((T, cols)).astype(np.float32)
            X.flags.writeable = False
            out = np.empty((T, rows), np.float32)
            flops = 2.0 * T * rows * cols
            for path in paths:
                old = linear.set_kernel_path(path)
                try:
                    kern = (lambda w, X, out: linear.matmul(ggml_type, w, X, out)) if public else \
                        kernels_for(path, type_name)[1]
                    for nt in threads:
                        numba.set_num_threads(nt)
                        t = _time(lambda: kern(w, X, out), min_time)
                        results.append((type_name, rows, cols, T, path, nt, flops / t / 1e9))
                        print(f"{type_name:6s} {rows}x{cols} T={T:4d} {path:9s} threads={nt}  "
                              f"{flops / t / 1e9:7.1f} GFLOP/s ({t * 1e3:.2f} ms)", flush=True)
                finally:
                    linear.set_kernel_path(old)
    return results


def main(argv: list[str] | None = None) -> None:
    from . import simd

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--types", default="mxfp4,q8_0,bf16", help="comma-separated weight types (default all)")
    p.add_argument("--mb", type=float, default=300.0, help="decode weight set size in MB (default 300)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--paths", default=None, help="comma-separated paths (default: all this CPU runs)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (default 1)")
    p.add_argument("--matmul", action="store_true", help="measure the row-dot prefill kernels' GFLOP/s instead")
    p.add_argument("--prefill", action="store_true",
                   help="measure the GFLOP/s of the public matmul instead (the kernel prefill runs for each T)")
    p.add_argument("--tokens", default="16,64,128,512", help="token counts for --matmul / --prefill")
    a = p.parse_args(argv)
    paths = a.paths.split(",") if a.paths else ["portable"] + [
        s for s in simd.supported_isas(simd.target_features()) if s != "portable"]
    threads = [int(t) for t in a.threads.split(",")]
    print(f"selected path: {simd.KERNEL_ISA}")
    for type_name in a.types.split(","):
        if a.matmul or a.prefill:
            run_matmul([int(t) for t in a.tokens.split(",")], threads, paths, a.min_time / 2, type_name,
                       public=a.prefill)
        else:
            run(a.mb, threads, paths, a.min_time, type_name)


if __name__ == "__main__":
    main()
