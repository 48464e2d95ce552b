"""Where gptoss keeps its files: the app directory, the user config, the models, the cache.

- App directory: ``$GPTOSS_HOME`` if set, else ``typer.get_app_dir("gptoss")``.
- User config:   ``<app dir>/config.toml``.
- Models:        ``models_dir`` from the user config, else ``<app dir>/models``.
- Cache:         ``$XDG_CACHE_HOME/gptoss``, else ``~/.cache/gptoss``.

Standard library only (plus Typer's app-dir helper), so `gptoss --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["app_dir", "config_path", "models_dir", "user_cache_dir"]


def app_dir() -> Path:
    """The gptoss application directory ($GPTOSS_HOME overrides the platform default)."""
    home = os.environ.get("GPTOSS_HOME")
    if home:
        return Path(home).expanduser()
    import typer  # already imported by the CLI; kept local so the API needs nothing more

    return Path(typer.get_app_dir("gptoss"))


def user_cache_dir() -> Path:
    """gptoss's directory in the user's cache: $XDG_CACHE_HOME/gptoss, else ~/.cache/gptoss
    (a relative XDG_CACHE_HOME is ignored, as the XDG spec says and the kernels' cache does)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gptoss"


def config_path() -> Path:
    """The user config file, <app dir>/config.toml (it need not exist)."""
    return app_dir() / "config.toml"


def models_dir(config: dict[str, Any] | None = None) -> Path:
    """Where downloaded models live: the config's `models_dir`, else <app dir>/models.

    `config` is a loaded user config; None reads config.toml.
    """
    if config is None:
        from .user_config import load_user_config  # user_config needs config_path from here

        config = load_user_config()
    d = config.get("models_dir")
    if d:
        return Path(str(d)).expanduser()
    return app_dir() / "models"
