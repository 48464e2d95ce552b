"""Kernels made from one template by ``specialize`` each get their own cache entry, load from it in
the next process, and are compiled again when the file of a decoder bound into them changes.

Each check runs in a fresh interpreter (a subprocess), since what it tests is what a first process does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def run_python(code: str, env: dict[str, str], cwd: Path | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


TEMPLATE = '''
from gptoss_kernels.specialize import Hook, specialize

_decode = Hook("value -> float64")


def _total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += _decode(x[i])
    return s
'''

DECODERS = '''
from numba import njit

from loops import _total, specialize


@njit(cache=True, inline="always")
def double(v):
    return v * {double}


@njit(cache=True, inline="always")
def triple(v):
    return v * 3.0


total_double = specialize(_total, "total_double", {{"_decode": double}})
total_triple = specialize(_total, "total_triple", {{"_decode": triple}})
'''

USE = """
    import numpy as np
    import decoders
    x = np.ones(4)
    kernels = (decoders.total_double, decoders.total_triple)
    print(*[k(x) for k in kernels], sum(sum(k.stats.cache_hits.values()) for k in kernels),
          sum(sum(k.stats.cache_misses.values()) for k in kernels))
"""


def test_specialized_kernels_are_cached_apart_and_follow_their_decoders(tmp_path):
    """Two kernels from one template do not share a cache entry, the next process loads both, and
    editing the decoders' file (not the template's) compiles them again instead of loading stale code."""
    (tmp_path / "loops.py").write_text(TEMPLATE)
    (tmp_path / "decoders.py").write_text(DECODERS.format(double="2.0"))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))

    def run() -> list[float]:
        return [float(v) for v in run_python(USE, env, cwd=tmp_path).split()]

    assert run() == [8.0, 12.0, 0, 2]  # compiled
    assert run() == [8.0, 12.0, 2, 0]  # loaded, each its own
    indexes = sorted(p.name for p in (tmp_path / "cache").rglob("*.nbi"))
    assert [n.split("-")[0] for n in indexes] == ["loops.total_double", "loops.total_triple"]
    (tmp_path / "decoders.py").write_text(DECODERS.format(double="2.5"))
    assert run() == [10.0, 12.0, 0, 2]  # the decoders' file changed: compiled again
