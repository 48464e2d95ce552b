"""The catalogue of known models, models.toml: its entries, and the digests recorded at download.

models.toml is ``$GPTOSS_MODELS_TOML`` if set, else the copy packaged in
``gptoss_cli/`` (an installed wheel), else the repository root (a source checkout).
Each entry names a download URL, aliases, and optionally per-file sizes and sha256s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .app_paths import models_dir
from .errors import GptossError
from .toml_file import ConfigError, read_toml

__all__ = [
    "ModelEntry",
    "SHA256_RE",
    "find_model",
    "load_models",
    "models_toml_path",
    "read_digest",
    "url_file_name",
]

_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
#: a sha256 digest as models.toml and the <file>.sha256 sidecars hold it (lower-case hex)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelEntry:
    """One model from models.toml."""

    name: str
    source: str
    aliases: tuple[str, ...] = ()
    file: str = ""  # local file name of an unsplit model (default: the source URL's last path part)
    sha256s: tuple[str | None, ...] = ()  # published digests, one per file (lower-case hex)
    sizes: tuple[int | None, ...] = ()  # published exact sizes in bytes, one per file
    approx_size_gb: float | None = None
    split: int = 1  # number of GGUF shards; source names the first
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def sources(self) -> list[str]:
        """Download URLs of every shard (one for an unsplit model)."""
        if self.split <= 1:
            return [self.source]
        m = _SPLIT_RE.search(self.source)
        if not m:
            return [self.source]
        n = int(m.group(2))
        base = self.source[: m.start()]
        return [f"{base}-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]

    @property
    def files(self) -> list[str]:
        """Local file names of every shard; files[0] is what the runtime opens."""
        if len(self.sources) == 1:
            return [self.file or url_file_name(self.source)]
        return [url_file_name(u) for u in self.sources]

    @property
    def sha256(self) -> str | None:
        """Published digest of the first (for unsplit models, the only) file."""
        return self.sha256s[0] if self.sha256s else None

    @property
    def size(self) -> int | None:
        """Published exact size of the whole model in bytes, when every file's size is known."""
        if not self.sizes or any(s is None for s in self.sizes):
            return None
        return sum(s for s in self.sizes if s is not None)

    def file_sha256(self, i: int) -> str | None:
        return self.sha256s[i] if i < len(self.sha256s) else None

    def file_size(self, i: int) -> int | None:
        return self.sizes[i] if i < len(self.sizes) else None

    def paths(self, directory: Path | None = None) -> list[Path]:
        d = models_dir() if directory is None else directory
        return [d / f for f in self.files]


def models_toml_path() -> Path:
    """The models.toml in use ($GPTOSS_MODELS_TOML, the packaged copy, or the repository's)."""
    env = os.environ.get("GPTOSS_MODELS_TOML")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent
    for candidate in (here / "models.toml", here.parent / "models.toml"):
        if candidate.is_file():
            return candidate
    return here / "models.toml"


def url_file_name(url: str) -> str:
    """The local file name for a download URL: its last path part, percent-decoded."""
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise GptossError(f"cannot tell a file name from the URL {url}")
    return name


def _per_file(value: Any, split: int, p: Path, name: str, key: str) -> list[Any]:
    """A per-file value: absent, one value (unsplit models), or a list with one per shard."""
    if value is None:
        return []
    if split == 1 and not isinstance(value, list):
        return [value]
    if not isinstance(value, list) or len(value) != split:
        raise ConfigError(f"{p}: model '{name}': '{key}' must list one value per file ({split})")
    return value


_ENTRY_KEYS = {"source", "aliases", "sha256", "size", "approx_size_gb", "split", "description", "file"}


def _entry(name: str, spec: Any, p: Path) -> ModelEntry:
    """One [models.<name>] table, checked."""
    if not isinstance(spec, dict) or not isinstance(spec.get("source"), str):
        raise ConfigError(f"{p}: model '{name}' needs a 'source' URL")
    aliases = spec.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError(f"{p}: model '{name}': 'aliases' must be a list of strings")
    split = spec.get("split", 1)
    if not isinstance(split, int) or isinstance(split, bool) or split < 1:
        raise ConfigError(f"{p}: model '{name}': 'split' must be a positive integer")
    shas = _per_file(spec.get("sha256"), split, p, name, "sha256")
    for sha in shas:
        if not (isinstance(sha, str) and SHA256_RE.match(sha.lower())):
            raise ConfigError(f"{p}: model '{name}': 'sha256' must be 64 hex digits")
    sizes = _per_file(spec.get("size"), split, p, name, "size")
    for size in sizes:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ConfigError(f"{p}: model '{name}': 'size' must be a positive number of bytes")
    return ModelEntry(
        name=name,
        source=spec["source"],
        aliases=tuple(aliases),
        file=str(spec.get("file", "")),
        sha256s=tuple(x.lower() for x in shas),
        sizes=tuple(sizes),
        approx_size_gb=spec.get("approx_size_gb"),
        split=split,
        description=str(spec.get("description", "")),
        extra={k: v for k, v in spec.items() if k not in _ENTRY_KEYS},
    )


def load_models(path: Path | None = None) -> list[ModelEntry]:
    """Parse models.toml into entries (in file order); a name or alias used twice is refused."""
    p = models_toml_path() if path is None else path
    try:
        data = read_toml(p, "models list")
    except FileNotFoundError:
        raise ConfigError(f"models list not found: {p}") from None
    table = data.get("models", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{p}: [models] must be a table")
    entries: list[ModelEntry] = []
    seen: dict[str, str] = {}
    for name, spec in table.items():
        entry = _entry(name, spec, p)
        for key in (name, *entry.aliases):
            k = key.lower()
            if k in seen:
                raise ConfigError(f"{p}: name or alias '{key}' is used by both '{seen[k]}' and '{name}'")
            seen[k] = name
        entries.append(entry)
    return entries


def find_model(name: str, entries: list[ModelEntry] | None = None) -> ModelEntry | None:
    """The entry whose name or alias is `name` (case-insensitive), or None."""
    key = name.strip().lower()
    for e in load_models() if entries is None else entries:
        if key == e.name.lower() or key in (a.lower() for a in e.aliases):
            return e
    return None


def read_digest(path: Path) -> str | None:
    """The sha256 recorded beside a downloaded file (``<file>.sha256``), if any."""
    side = path.with_name(path.name + ".sha256")
    try:
        text = side.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0].lower() if text and SHA256_RE.match(text[0].lower()) else None
