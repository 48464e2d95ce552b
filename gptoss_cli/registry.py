"""Known models (models.toml), model-name resolution, the models directory and the user config.

Everything here is light: standard library plus Typer's app-dir helper, so the
CLI can import it without slowing `gptoss --help`.

Locations
---------
- App directory: ``$GPTOSS_HOME`` if set, else ``typer.get_app_dir("gptoss")``.
- User config:   ``<app dir>/config.toml``.
- Models:        ``models_dir`` from the user config, else ``<app dir>/models``.
- models.toml:   ``$GPTOSS_MODELS_TOML`` if set, else the copy packaged in
  ``gptoss_cli/`` (an installed wheel), else the repository root (a source checkout).

User config (all keys optional)::

    default_model = "gpt-oss-20b"     # a name, alias or path, used when -m is not given
    models_dir = "/data/gguf"         # where `gptoss pull` puts files
    offline = false                   # true: `gptoss pull` refuses to use the network

    [run]                             # defaults for `gptoss run` / `gptoss chat`
    threads = 8
    ctx_size = 8192
    temperature = 1.0
    reasoning_effort = "medium"
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import GptossError, ModelFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover
        tomllib = None  # type: ignore[assignment]

__all__ = [
    "ConfigError",
    "ModelEntry",
    "RUN_OPTION_TYPES",
    "app_dir",
    "builtin_default_model",
    "config_path",
    "find_model",
    "list_models",
    "load_models",
    "load_user_config",
    "models_dir",
    "models_toml_path",
    "read_digest",
    "resolve_model",
    "run_defaults",
    "show_models",
    "url_file_name",
]


class ConfigError(GptossError):
    """config.toml or models.toml is unreadable or holds a bad value."""


# --------------------------------------------------------------------------- locations


def app_dir() -> Path:
    """The gptoss application directory ($GPTOSS_HOME overrides the platform default)."""
    home = os.environ.get("GPTOSS_HOME")
    if home:
        return Path(home).expanduser()
    import typer  # already imported by the CLI; kept local so the API needs nothing more

    return Path(typer.get_app_dir("gptoss"))


def user_cache_dir() -> Path:
    """gptoss's directory in the user's cache: $XDG_CACHE_HOME/gptoss, else ~/.cache/gptoss."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gptoss"


def config_path() -> Path:
    return app_dir() / "config.toml"


def models_dir(config: dict[str, Any] | None = None) -> Path:
    """Where downloaded models live: config `models_dir`, else <app dir>/models."""
    cfg = load_user_config() if config is None else config
    d = cfg.get("models_dir")
    if d:
        return Path(str(d)).expanduser()
    return app_dir() / "models"


def models_toml_path() -> Path:
    env = os.environ.get("GPTOSS_MODELS_TOML")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent
    for candidate in (here / "models.toml", here.parent / "models.toml"):
        if candidate.is_file():
            return candidate
    return here / "models.toml"


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    if tomllib is None:  # pragma: no cover
        raise ConfigError(f"reading {what} needs Python 3.11+ or the 'tomli' package")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None


# --------------------------------------------------------------------------- user config

#: run options the user config may set under [run], with their types.
RUN_OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "threads": int,
    "ctx_size": int,
    "max_tokens": int,
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": int,
    "min_p": (int, float),
    "repeat_penalty": (int, float),
    "seed": int,
    "reasoning_effort": str,
    "system": str,
    "show_reasoning": bool,
}
_TOP_LEVEL_KEYS = {"default_model": str, "models_dir": str, "offline": bool, "run": dict}


def _check_type(key: str, value: Any, typ: type | tuple[type, ...], where: Path) -> None:
    types = typ if isinstance(typ, tuple) else (typ,)
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if not ok:
        what = {int: "an integer", str: "a string", bool: "true or false", dict: "a table"}
        want = "a number" if float in types else what.get(types[0], types[0].__name__)
        raise ConfigError(f"{where}: '{key}' must be {want}, not {value!r}")


def load_user_config() -> dict[str, Any]:
    """The user config as a dict ({} when there is no config file). Validated; keys normalised."""
    path = config_path()
    try:
        raw = _read_toml(path, "config")
    except FileNotFoundError:
        return {}
    cfg: dict[str, Any] = {}
    for key, value in raw.items():
        k = key.replace("-", "_")
        if k not in _TOP_LEVEL_KEYS:
            known = ", ".join(sorted(_TOP_LEVEL_KEYS))
            raise ConfigError(f"{path}: unknown key '{key}' (known: {known}; run options go under [run])")
        _check_type(k, value, _TOP_LEVEL_KEYS[k], path)
        cfg[k] = value
    run: dict[str, Any] = {}
    for key, value in cfg.get("run", {}).items():
        k = key.replace("-", "_")
        if k not in RUN_OPTION_TYPES:
            known = ", ".join(sorted(RUN_OPTION_TYPES))
            raise ConfigError(f"{path}: unknown run option '{key}' in [run] (known: {known})")
        _check_type(f"run.{k}", value, RUN_OPTION_TYPES[k], path)
        if k == "reasoning_effort" and value not in ("low", "medium", "high"):
            raise ConfigError(f"{path}: 'run.reasoning_effort' must be low, medium or high, not {value!r}")
        run[k] = float(value) if RUN_OPTION_TYPES[k] == (int, float) else value
    cfg["run"] = run
    return cfg


def run_defaults() -> dict[str, Any]:
    """Default options for `gptoss run` / `chat` from the user config's [run] table.

    Keys are the option names with underscores (threads, ctx_size, max_tokens,
    temperature, top_p, top_k, min_p, repeat_penalty, seed, reasoning_effort,
    system, show_reasoning, prompt_cache); only keys the user set are present. Command-line
    options win over these.
    """
    return dict(load_user_config().get("run", {}))


# --------------------------------------------------------------------------- models.toml

_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


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


def url_file_name(url: str) -> str:
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


def load_models(path: Path | None = None) -> list[ModelEntry]:
    """Parse models.toml into entries (in file order)."""
    p = models_toml_path() if path is None else path
    try:
        data = _read_toml(p, "models list")
    except FileNotFoundError:
        raise ConfigError(f"models list not found: {p}") from None
    table = data.get("models", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{p}: [models] must be a table")
    entries: list[ModelEntry] = []
    seen: dict[str, str] = {}
    for name, spec in table.items():
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
            if not (isinstance(sha, str) and _SHA_RE.match(sha.lower())):
                raise ConfigError(f"{p}: model '{name}': 'sha256' must be 64 hex digits")
        sizes = _per_file(spec.get("size"), split, p, name, "size")
        for size in sizes:
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise ConfigError(f"{p}: model '{name}': 'size' must be a positive number of bytes")
        known = {"source", "aliases", "sha256", "size", "approx_size_gb", "split", "description", "file"}
        entry = ModelEntry(
            name=name,
            source=spec["source"],
            aliases=tuple(aliases),
            file=str(spec.get("file", "")),
            sha256s=tuple(x.lower() for x in shas),
            sizes=tuple(sizes),
            approx_size_gb=spec.get("approx_size_gb"),
            split=split,
            description=str(spec.get("description", "")),
            extra={k: v for k, v in spec.items() if k not in known},
        )
        for key in (name, *aliases):
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


# --------------------------------------------------------------------------- resolution


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


def resolve_model(spec: str | None) -> Path:
    """Turn a -m/--model value into a model file path.

    - an existing path is returned as is (``~`` expanded);
    - a name or alias from models.toml maps to its file in the models directory
      (ModelFileError when it is not downloaded yet);
    - None means the user config's ``default_model``, then the built-in demo
      model (:func:`builtin_default_model`), else a ModelFileError asking for -m.
    """
    if spec is None or not str(spec).strip():
        cfg = load_user_config()
        default = cfg.get("default_model")
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
    entry = find_model(spec)
    if entry is None:
        if _looks_like_path(spec):
            raise ModelFileError(f"no such file: {spec}")
        names = ", ".join(n for e in load_models() for n in (e.name, *e.aliases))
        raise ModelFileError(f"unknown model '{spec}': not a file and not a known model name ({names})")
    paths = entry.paths()
    if all(p.is_file() for p in paths):
        return paths[0]
    partial = [p for p in paths if p.with_name(p.name + ".part").exists()]
    if partial:
        raise ModelFileError(
            f"model {entry.name} is only partly downloaded; run: gptoss pull {entry.name} (it resumes)"
        )
    raise ModelFileError(f"model {entry.name} is not downloaded; run: gptoss pull {entry.name}")


# --------------------------------------------------------------------------- listing


def read_digest(path: Path) -> str | None:
    """The sha256 recorded beside a downloaded file (``<file>.sha256``), if any."""
    side = path.with_name(path.name + ".sha256")
    try:
        text = side.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0].lower() if text and _SHA_RE.match(text[0].lower()) else None


def list_models() -> list[dict[str, Any]]:
    """Known models plus any other GGUF files in the models directory.

    Each item: name, aliases, description, source, approx_size_gb, size (bytes:
    on disk when present, else the published size or None), published_sha256,
    sha256 (recorded at download, else published), present, partial_bytes,
    path, files, known (False for a file not in models.toml).
    """
    cfg = load_user_config()
    mdir = models_dir(cfg)
    out: list[dict[str, Any]] = []
    claimed: set[str] = set()
    demo = builtin_default_model()
    if demo is not None:
        out.append(
            {
                "name": DEMO_NAME, "aliases": list(DEMO_ALIASES), "description": DEMO_DESCRIPTION,
                "source": None, "approx_size_gb": None, "size": demo.stat().st_size,
                "published_sha256": None, "sha256": None, "present": True, "partial_bytes": 0,
                "path": str(demo), "files": [str(demo)], "known": True, "demo": True,
            }
        )
    for e in load_models():
        paths = e.paths(mdir)
        claimed.update(p.name for p in paths)
        present = all(p.is_file() for p in paths)
        partial = sum(
            p.with_name(p.name + ".part").stat().st_size
            for p in paths
            if p.with_name(p.name + ".part").is_file()
        )
        size = sum(p.stat().st_size for p in paths) if present else e.size
        out.append(
            {
                "name": e.name,
                "aliases": list(e.aliases),
                "description": e.description,
                "source": e.source,
                "approx_size_gb": e.approx_size_gb,
                "size": size,
                "published_sha256": e.sha256,
                "sha256": (read_digest(paths[0]) if present else None) or e.sha256,
                "present": present,
                "partial_bytes": partial,
                "path": str(paths[0]),
                "files": [str(p) for p in paths],
                "known": True,
            }
        )
    if mdir.is_dir():
        for p in sorted(mdir.glob("*.gguf")):
            if p.name in claimed or not p.is_file():
                continue
            out.append(
                {
                    "name": p.stem,
                    "aliases": [],
                    "description": "",
                    "source": None,
                    "approx_size_gb": None,
                    "size": p.stat().st_size,
                    "published_sha256": None,
                    "sha256": read_digest(p),
                    "present": True,
                    "partial_bytes": 0,
                    "path": str(p),
                    "files": [str(p)],
                    "known": False,
                }
            )
    return out


def show_models(as_json: bool = False) -> None:
    """`gptoss models`: print the known models (a table, or JSON with --json) to stdout."""
    items = list_models()
    if as_json:
        import json

        sys.stdout.write(json.dumps(items, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    def size_text(m: dict[str, Any]) -> str:
        if m["present"] and m["size"]:
            return f"{m['size'] / 1e9:.1f} GB"
        if m["size"]:
            return f"{m['size'] / 1e9:.1f} GB"
        if m["approx_size_gb"]:
            return f"~{m['approx_size_gb']} GB"
        return "?"

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("NAME", "ALIASES", "SIZE", "STATUS", "PATH"):
        table.add_column(col, overflow="fold")
    for m in items:
        if m.get("demo"):
            status = "built-in demo"
        elif m["present"]:
            status = "downloaded"
        elif m["partial_bytes"]:
            status = f"partial ({m['partial_bytes'] / 1e9:.1f} GB)"
        else:
            status = "-"
        table.add_row(m["name"], ", ".join(m["aliases"]), size_text(m), status, m["path"] if m["present"] else "")
    console = Console(soft_wrap=False)
    console.print(table)
    console.print(f"models directory: {models_dir()}", highlight=False, markup=False, soft_wrap=True)
