"""`gptoss pull`: download a model (by catalogue name or URL) into the models directory.

How one file is downloaded, resumed, retried and checked is download.py's job;
this module picks the files, refuses when offline, and reports the result.

- Offline (``--offline``, ``GPTOSS_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or
  ``offline = true`` in config.toml): refuse to touch the network.
- ``GPTOSS_PULL_TIMEOUT``: seconds one connect or read may wait (default 30), after
  which the attempt counts as failed and is retried a bounded number of times.

Standard library only (urllib), plus rich for the progress bar.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .app_paths import models_dir
from .catalogue import SHA256_RE, find_model, load_models, read_digest, url_file_name
from .download import TIMEOUT_S, download
from .download_retry import RETRIES
from .errors import OptionError
from .pull_errors import DigestMismatch, PullError, PullInterrupted
from .user_config import load_user_config

__all__ = ["DigestMismatch", "PullError", "PullInterrupted", "PullResult", "download", "is_offline", "pull"]


@dataclass
class PullResult:
    name: str  # model name, or the file name for a URL
    paths: list[Path]
    downloaded: bool  # False when everything was already there
    sha256: list[str | None]
    verified: bool = False  # every downloaded file matched a known (published or given) digest

    @property
    def path(self) -> Path:
        return self.paths[0]


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def is_offline(flag: bool | None = None, config: dict | None = None) -> bool:
    if flag:
        return True
    if _truthy(os.environ.get("GPTOSS_OFFLINE")) or _truthy(os.environ.get("HF_HUB_OFFLINE")):
        return True
    cfg = load_user_config() if config is None else config
    return bool(cfg.get("offline", False))


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://"))


def _timeout_from_env() -> float:
    """GPTOSS_PULL_TIMEOUT in seconds, else TIMEOUT_S."""
    text = os.environ.get("GPTOSS_PULL_TIMEOUT", "").strip()
    if not text:
        return TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise OptionError(f"GPTOSS_PULL_TIMEOUT must be a positive number of seconds, not {text!r}")
    return value


def _checked_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not SHA256_RE.fullmatch(digest):
        raise OptionError(f"--sha256 must be 64 hexadecimal digits, not {sha256!r}")
    return digest


def pull(
    spec: str,
    *,
    force: bool = False,
    offline: bool | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
    retries: int = RETRIES,
) -> PullResult:
    """Download a model by name/alias (models.toml) or by http(s) URL into the models directory.

    Raises OptionError (a bad --sha256 or GPTOSS_PULL_TIMEOUT), PullError (offline,
    unknown name, HTTP failure, incomplete file), DigestMismatch, or PullInterrupted
    (Ctrl-C; the .part is kept). `timeout` (seconds per connect or read) defaults
    to GPTOSS_PULL_TIMEOUT, else TIMEOUT_S.
    """
    spec = spec.strip()
    sha256 = _checked_sha256(sha256)
    timeout = _timeout_from_env() if timeout is None else timeout
    cfg = load_user_config()
    mdir = models_dir(cfg)
    if _is_url(spec):
        name = url_file_name(spec)
        if not name.lower().endswith(".gguf"):
            name += ".gguf"  # only a complete GGUF is installed, and `gptoss models` lists *.gguf
        jobs = [(spec, mdir / name, sha256, None)]
    else:
        entries = load_models()
        entry = find_model(spec, entries)
        if entry is None:
            names = ", ".join(e.name for e in entries)
            raise PullError(f"unknown model '{spec}' (known: {names}); or pass an http(s) URL of a GGUF file")
        name = entry.name
        paths = entry.paths(mdir)
        if sha256 is not None and len(paths) > 1:
            raise OptionError(f"--sha256 cannot be used with {name}, which has {len(paths)} files")
        jobs = [
            (url, path, sha256 or entry.file_sha256(i), entry.file_size(i))
            for i, (url, path) in enumerate(zip(entry.sources, paths))
        ]

    todo = [j for j in jobs if force or not j[1].is_file()]
    if not todo:
        return PullResult(name, [j[1] for j in jobs], False, [read_digest(j[1]) for j in jobs])
    if is_offline(offline, cfg):
        raise PullError(
            f"offline mode is on (--offline, GPTOSS_OFFLINE or config 'offline'): not downloading {name}"
        )
    digests: list[str | None] = []
    verified = True
    current: Path | None = None
    try:
        for url, path, want_sha, want_size in jobs:
            current = path
            if not force and path.is_file():
                digests.append(read_digest(path))
                continue
            verified = verified and want_sha is not None
            if progress:
                sys.stderr.write(f"pulling {path.name} from {url}\n")
            digests.append(
                download(url, path, expected_sha256=want_sha, expected_size=want_size, force=force,
                         progress=progress, retries=retries, timeout=timeout)
            )
    except KeyboardInterrupt:
        part = current.with_name(current.name + ".part") if current else None
        kept = f"; partial download kept in {part}" if part is not None and part.exists() else ""
        raise PullInterrupted(f"interrupted{kept}; run 'gptoss pull {spec}' to resume") from None
    return PullResult(name, [j[1] for j in jobs], True, digests, verified)


def pull_command(spec: str, *, force: bool = False, offline: bool = False, sha256: str | None = None) -> int:
    """`gptoss pull`: status on stderr, the model path on stdout. Returns the exit code."""
    try:
        result = pull(spec, force=force, offline=offline or None, sha256=sha256)
    except PullInterrupted as e:
        sys.stderr.write(f"gptoss: {e}\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("gptoss: interrupted\n")
        return 130
    if not result.downloaded:
        sys.stderr.write(f"{result.name} is already downloaded (use --force to download it again)\n")
    else:
        digest = result.sha256[0] or "?"
        how = "verified" if result.verified else "recorded; no published digest to check against"
        sys.stderr.write(f"pulled {result.name}: sha256 {digest} ({how})\n")
    sys.stdout.write(f"{result.path}\n")
    return 0
