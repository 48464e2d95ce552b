"""The first-run kernel compile: when to do it, how to tell the user, how to remember it.

Numba compiles a kernel the first time it runs and keeps the machine code in
its on-disk cache. gptoss runs every kernel once right after loading (a
2-token prompt and one decode step), so that the compile happens before the
user's prompt, with a notice, instead of in the middle of the first answer.
A marker file keyed by `kernel_fingerprint` records that the warm-up was done.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["compile_marker_dir", "kernel_fingerprint", "ensure_compiled", "warm_up"]


def _kernel_sources() -> list[Path]:
    import gptoss_kernels

    return sorted(Path(gptoss_kernels.__file__).parent.glob("*.py"))


def compile_marker_dir() -> Path:
    """Where the "kernels compiled" markers live: in Numba's cache directory of our kernels."""
    from gptoss_kernels.cache_dir import numba_cache_dir

    return numba_cache_dir()


def kernel_fingerprint(weight_types: Sequence[int] = (), precision: str = "fast") -> str:
    """Changes whenever Numba would have to compile again or the float32 rounding could differ:
    Python, Numba, kernel sources, weight types, the CPU Numba compiles for, the kernel path
    in use (each path sums in its own order, so a prompt-cache snapshot from another one would
    not be this machine's arithmetic) and the precision ("fast" rounds the activations, "exact"
    does not: their snapshots and compile markers never mix)."""
    import numba

    from gptoss_kernels.linear import kernel_path
    from gptoss_kernels.simd import host_cpu_name

    h = hashlib.sha256()
    h.update(f"{sys.version}|{numba.__version__}|{platform.machine()}|{sorted(set(weight_types))}".encode())
    cfg = numba.config
    h.update(f"|{host_cpu_name()}|{cfg.CPU_NAME}|{cfg.CPU_FEATURES}|{kernel_path()}|precision={precision}".encode())
    for p in _kernel_sources():
        st = p.stat()
        h.update(f"|{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def warm_up(model: Any, batched: bool = False) -> None:
    """Run the kernels once on a throw-away cache: a 2-token prompt, then one decode step.

    batched: instead, a decode step of two sequences (the grouped kernels a server's batch runs).
    """
    if batched:
        caches = [model.new_cache(8), model.new_cache(8)]
        model.forward_batch([([0, 1], caches[0]), ([2, 3], caches[1])])
        model.forward_batch([([4], caches[0]), ([5], caches[1])])
        return
    cache = model.new_cache(8)
    model.forward([0, 1], cache)
    model.forward([2], cache)


def ensure_compiled(
    model: Any,
    weight_types: Sequence[int],
    notice: Callable[[str], None] | None = None,
    marker_dir: str | Path | None = None,
    notice_delay: float = 0.5,
    batched: bool = False,
) -> float | None:
    """Compile the kernels now if they never ran here; returns the compile's seconds (None: no compile).

    batched: the kernels of a decode step of several sequences (`gptoss serve` with 2+ slots), which a
    single conversation never runs; they have a marker of their own.

    When the marker is missing the kernels run once (Numba compiles them, or
    loads them from its cache). If that takes longer than notice_delay,
    notice() is told "compiling kernels, first run only ..." while it runs and
    how long it took when it is done.
    """
    mdir = Path(marker_dir) if marker_dir is not None else compile_marker_dir()
    fingerprint = kernel_fingerprint(weight_types, getattr(model, "precision", "fast"))
    marker = mdir / f"gptoss-compiled-{fingerprint}{'-batched' if batched else ''}"
    if marker.exists():
        return None
    told = threading.Event()

    def tell() -> None:
        told.set()
        if notice is not None:
            notice("compiling kernels, first run only ...")

    # Numba may find everything in its cache already: then the warm-up takes a
    # moment and nothing is said. Only a real compile outlasts the delay.
    timer = threading.Timer(notice_delay, tell)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        warm_up(model, batched)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - t0
    if told.is_set() and notice is not None:
        notice(f"kernels compiled in {seconds:.1f} s")
    try:
        mdir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"seconds": round(seconds, 2), "time": time.time()}) + "\n")
    except OSError:
        pass  # read-only location: the warm-up runs again next time, which is harmless
    return seconds if told.is_set() else None
