"""`gptoss models`: the demo, the catalogue's models and any other GGUF files in the models directory.

Every listed name resolves with `gptoss run -m NAME` (see model_names).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .app_paths import models_dir
from .byte_sizes import format_bytes
from .catalogue import ModelEntry, load_models, read_digest
from .model_names import DEMO_ALIASES, DEMO_DESCRIPTION, DEMO_NAME, builtin_default_model, local_model_name
from .user_config import load_user_config

__all__ = ["list_models", "show_models"]


def _item(name: str, path: Path, size: int | None, **more: Any) -> dict[str, Any]:
    """One listed model with every key present (the --json shape); `more` overrides the defaults."""
    item: dict[str, Any] = {
        "name": name, "aliases": [], "description": "", "source": None, "approx_size_gb": None,
        "size": size, "published_sha256": None, "sha256": None, "present": True, "partial_bytes": 0,
        "path": str(path), "files": [str(path)], "known": True,
    }
    item.update(more)
    return item


def _catalogue_item(e: ModelEntry, mdir: Path) -> dict[str, Any]:
    paths = e.paths(mdir)
    present = all(p.is_file() for p in paths)
    parts = [p.with_name(p.name + ".part") for p in paths]
    partial = sum(p.stat().st_size for p in parts if p.is_file())
    return _item(
        e.name, paths[0], sum(p.stat().st_size for p in paths) if present else e.size,
        aliases=list(e.aliases), description=e.description, source=e.source,
        approx_size_gb=e.approx_size_gb, published_sha256=e.sha256,
        sha256=(read_digest(paths[0]) if present else None) or e.sha256,
        present=present, partial_bytes=partial, files=[str(p) for p in paths],
    )


def list_models() -> list[dict[str, Any]]:
    """Known models plus any other GGUF files in the models directory.

    Each item: name, aliases, description, source, approx_size_gb, size (bytes:
    on disk when present, else the published size or None), published_sha256,
    sha256 (recorded at download, else published), present, partial_bytes,
    path, files, known (False for a file not in models.toml); the demo also has demo=True.
    """
    mdir = models_dir(load_user_config())
    out: list[dict[str, Any]] = []
    taken = {DEMO_NAME, *DEMO_ALIASES}
    demo = builtin_default_model()
    if demo is not None:
        out.append(_item(DEMO_NAME, demo, demo.stat().st_size, aliases=list(DEMO_ALIASES),
                         description=DEMO_DESCRIPTION, demo=True))
    claimed: set[str] = set()
    for e in load_models():
        claimed.update(e.files)
        taken.update(n.lower() for n in (e.name, *e.aliases))
        out.append(_catalogue_item(e, mdir))
    if mdir.is_dir():
        for p in sorted(mdir.glob("*.gguf")):
            if p.name in claimed or not p.is_file():
                continue
            out.append(_item(local_model_name(p, taken), p, p.stat().st_size, sha256=read_digest(p), known=False))
    return out


def _size_text(m: dict[str, Any]) -> str:
    if m["size"]:
        return format_bytes(m["size"])
    if m["approx_size_gb"]:
        return f"~{m['approx_size_gb']} GB"
    return "?"


def _status_text(m: dict[str, Any]) -> str:
    if m.get("demo"):
        return "built-in demo"
    if m["present"]:
        return "downloaded"
    if m["partial_bytes"]:
        return f"partial ({format_bytes(m['partial_bytes'])})"
    return "-"


def show_models(as_json: bool = False) -> None:
    """`gptoss models`: print the known models (a table, or JSON with --json) to stdout."""
    items = list_models()
    if as_json:
        import json

        sys.stdout.write(json.dumps(items, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("NAME", "ALIASES", "SIZE", "STATUS", "PATH"):
        table.add_column(col, overflow="fold")
    for m in items:
        table.add_row(m["name"], ", ".join(m["aliases"]), _size_text(m), _status_text(m),
                      m["path"] if m["present"] else "")
    console = Console(soft_wrap=False)
    console.print(table)
    console.print(f"models directory: {models_dir()}", highlight=False, markup=False, soft_wrap=True)

