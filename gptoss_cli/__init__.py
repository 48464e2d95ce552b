"""gptoss: run gpt-oss models on the CPU from GGUF files.

The public API is `load_model` (gptoss_cli.loader); it is imported lazily so
that `gptoss --help` does not pay for NumPy and Numba.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_model", "__version__"]


def __getattr__(name: str):
    if name == "load_model":
        from .loader import load_model

        return load_model
    raise AttributeError(name)
