"""What importing the kernels does, and where and how their compiled code is cached.

* ``import gptoss_kernels.ggml_types`` (the GGUF reader's table) loads no Numba.
* Numba's cache goes to the user cache directory, never into the package.
* Kernels made from one template by ``specialize`` each get their own cache
  entry, load from it in the next process, and are compiled again when the
  file of a decoder bound into them changes.

Each check runs in a fresh interpreter (a subprocess), since what it tests is
what a first import or a first process does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gptoss_kernels
import gptoss_kernels as gk
from gptoss_kernels import cache_dir, linear

PACKAGE = Path(gptoss_kernels.__file__).parent


def run_python(code: str, env: dict[str, str], cwd: Path | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_ggml_types_imports_without_numba():
    run_python("import gptoss_kernels.ggml_types, sys; assert 'numba' not in sys.modules", dict(os.environ))


def test_package_functions_survive_their_modules_loading():
    """``attention``, ``matmul`` and ``matvec`` name both a function and a module; the package keeps the functions."""
    import gptoss_kernels.attention  # noqa: F401 - the submodules, loaded
    import gptoss_kernels.matmul  # noqa: F401
    import gptoss_kernels.matvec  # noqa: F401

    assert gk.matmul is linear.matmul and gk.matvec is linear.matvec
    assert gk.attention is sys.modules["gptoss_kernels.attention"].attention
    assert not hasattr(gk, "mxfp4_path") and not hasattr(gk, "set_mxfp4_path")


def test_numba_cache_dir_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir.numba_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir.numba_cache_dir() == tmp_path / "gptoss" / "numba"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    assert cache_dir.numba_cache_dir() == Path.home() / ".cache" / "gptoss" / "numba"


def _cache_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")}


def test_kernels_cache_in_the_user_cache_dir_not_the_package(tmp_path):
    """With NUMBA_CACHE_DIR unset the cache lands under $XDG_CACHE_HOME/gptoss/numba, also when
    Numba was imported before the kernels; nothing is written beside the package's sources."""
    code = """
        import numpy as np
        {first}
        import gptoss_kernels as gk
        from gptoss_kernels import ggml_types as gt
        w = np.arange(64, dtype=np.float32).reshape(2, 32)
        assert gk.dequantize(gt.F32, w, 32).tolist() == w.tolist()
    """
    before = _cache_files(PACKAGE)
    for case, first in (("numba-first", "import numba"), ("kernels-first", "")):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env["XDG_CACHE_HOME"] = str(tmp_path / case)
        run_python(code.format(first=first), env, cwd=tmp_path)
        assert _cache_files(tmp_path / case / "gptoss" / "numba"), case
    assert _cache_files(PACKAGE) == before


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
