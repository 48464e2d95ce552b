"""Where Numba keeps the compiled kernels: the user's cache directory, never the installed package.

Why: Numba's default is a ``__pycache__`` beside the source. In site-packages
that folder outlives a reinstall, and a kernels folder left holding only
``__pycache__`` makes ``gptoss_kernels`` import as an empty namespace package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "NUMBA_CACHE_DIR"


def numba_cache_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/gptoss/numba`` (default ``~/.cache/gptoss/numba``)."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return Path(chosen)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG spec ignores relative paths
    return base / "gptoss" / "numba"


def use_user_cache_dir() -> Path:
    """Have Numba cache every function decorated from now on in :func:`numba_cache_dir`; returns it.

    Numba picks a function's cache directory when it is decorated, from
    ``numba.config.CACHE_DIR``, which it reads from ``$NUMBA_CACHE_DIR`` at
    import and again whenever a ``NUMBA_*`` variable changes. So the variable
    is set (which keeps Numba out of this call, and reaches subprocesses), and
    the config value too where Numba is already imported.
    """
    path = numba_cache_dir()
    os.environ[ENV_VAR] = str(path)
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.CACHE_DIR = str(path)
    return path
