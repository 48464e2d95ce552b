"""Turning a -m/--model value into a model file: a path, a catalogue name, a file in the models folder, or the demo.

Every name `gptoss models` lists must resolve here, so the two share
:func:`local_model_name` for the GGUF files that are not in the catalogue.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection

from .app_paths import config_path, models_dir
from .catalogue import find_model, load_models
from .errors import ModelFileError
from .user_config import load_user_config

__all__ = [
    "DEMO_ALIASES",
    "DEMO_DESCRIPTION",
    "DEMO_NAME",
    "builtin_default_model",
    "local_model_file",
    "local_model_name",
    "resolve_model",
]

DEMO_NAME = "demo"
DEMO_ALIASES = ("gptoss-demo",)
DEMO_DESCRIPTION = ("built-in demo: a tiny trained gpt-oss that only adds two numbers from 0 to 99 "
                    "(for real work: gptoss pull gpt-oss-20b)")


def builtin_default_model() -> Path | None:
    """The built-in demo model shipped in the package (gptoss_cli/data/demo.gguf), if installed.

    It is used when neither -m nor default_model is given, and answers to the name
    ``demo``; scripts/train_demo_model.py makes it.
    """
    path = Path(__file__).resolve().parent / "data" / "demo.gguf"
    return path if path.is_file() else None


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.lower().endswith(".gguf") or spec.startswith(("~", "."))


def local_model_file(spec: str, directory: Path) -> Path | None:
    """The GGUF file in `directory` that `spec` names, with or without ``.gguf``; else None."""
    if not spec or "/" in spec or os.sep in spec or spec in (".", ".."):
        return None
    for name in (spec, spec + ".gguf"):
        p = directory / name
        if name.lower().endswith(".gguf") and p.is_file():
            return p
    return None


def local_model_name(path: Path, taken: Collection[str]) -> str:
    """The name `gptoss models` lists for a GGUF file outside the catalogue: its stem,
    or its whole file name when the stem is already a model name or alias (in `taken`, lower-case)."""
    return path.name if path.stem.lower() in taken else path.stem


def resolve_model(spec: str | None) -> Path:
    """Turn a -m/--model value into a model file path.

    - an existing path is returned as is (``~`` expanded);
    - ``demo`` is the built-in demo model;
    - a name or alias from models.toml maps to its file in the models directory
      (ModelFileError when it is not downloaded yet);
    - another name is a GGUF file in the models directory (as `gptoss models` lists it);
    - None means the user config's ``default_model``, then the built-in demo
      model (:func:`builtin_default_model`), else a ModelFileError asking for -m.
    """
    if spec is None or not str(spec).strip():
        default = load_user_config().get("default_model")
        if default:
            return resolve_model(default)
        builtin = builtin_default_model()
        if builtin is not None:
            return builtin
        raise ModelFileError(
            "no model given: pass -m/--model with a GGUF path or a model name (see: gptoss models), "
            f"or set default_model in {config_path()}"
        )
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if spec.lower() in (DEMO_NAME, *DEMO_ALIASES):
        builtin = builtin_default_model()
        if builtin is None:
            raise ModelFileError("the built-in demo model is not installed with this copy of gptoss")
        return builtin
    entries = load_models()
    entry = find_model(spec, entries)
    if entry is None:
        local = local_model_file(spec, models_dir())
        if local is not None:
            return local
        if _looks_like_path(spec):
            raise ModelFileError(f"no such file: {spec} (model file not found)")
        names = ", ".join(n for e in entries for n in (e.name, *e.aliases))
        raise ModelFileError(
            f"unknown model '{spec}': not a file, not a known model name ({names}) "
            "and not a GGUF file in the models directory (see: gptoss models)"
        )
    paths = entry.paths()
    if all(p.is_file() for p in paths):
        return paths[0]
    partial = [p for p in paths if p.with_name(p.name + ".part").exists()]
    if partial:
        raise ModelFileError(
            f"model {entry.name} is only partly downloaded; run: gptoss pull {entry.name} (it resumes)"
        )
    raise ModelFileError(f"model {entry.name} is not downloaded; run: gptoss pull {entry.name}")
