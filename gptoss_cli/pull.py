"""`gptoss pull`: download a model into the models directory.

- Downloads go to ``<file>.part``, which is renamed to ``<file>`` only when the
  whole file is there and its sha256 (when published in models.toml, or given
  with --sha256) matches. The digest is recorded beside it as ``<file>.sha256``
  (``sha256sum -c`` format).
- An interrupted download (Ctrl-C, dropped connection) keeps the .part; the next
  pull resumes it with an HTTP Range request. A server that ignores Range gets a
  clean restart from byte 0. Dropped connections are retried a bounded number of
  times.
- ``HF_TOKEN`` is sent as ``Authorization: Bearer`` to Hugging Face hosts (and to
  ``$HF_ENDPOINT``), never to other hosts and never across redirects.
- Offline (``--offline``, ``GPTOSS_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or
  ``offline = true`` in config.toml): refuse to touch the network.

Standard library only (urllib), plus rich for the progress bar.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, build_opener

from . import __version__
from .errors import GptossError
from .registry import find_model, load_models, load_user_config, models_dir, read_digest, url_file_name

__all__ = ["DigestMismatch", "PullError", "PullInterrupted", "PullResult", "download", "is_offline", "pull"]

CHUNK = 1 << 20
TIMEOUT_S = 30.0
RETRIES = 5  # consecutive failed attempts (no new bytes) before giving up


class PullError(GptossError):
    """A download failed or was refused."""


class DigestMismatch(PullError):
    """The downloaded bytes do not match the expected sha256; nothing was kept."""


class PullInterrupted(GptossError):
    """Ctrl-C during a download; the .part file is kept for resuming."""

    exit_code = 130


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


def _token_for(url: str) -> str | None:
    """HF_TOKEN, only for Hugging Face hosts (or $HF_ENDPOINT's host)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        return None
    host = (urlsplit(url).hostname or "").lower()
    hosts = {"huggingface.co", "hf.co"}
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:
        hosts.add((urlsplit(endpoint).hostname or "").lower())
    if host in hosts or host.endswith(".huggingface.co") or host.endswith(".hf.co"):
        return token.strip()
    return None


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSAT = re.compile(r"bytes\s+\*/(\d+)")


class _Reporter:
    """Progress to stderr: a rich bar on a terminal, a few plain lines otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._progress = None
        self._task = None
        self._last_tenth = -1

    def note(self, msg: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(msg, highlight=False, markup=False)
        else:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    @contextmanager
    def bar(self, name: str) -> Iterator[None]:
        if not self.tty:
            yield
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress = progress
        self._task = progress.add_task(name, total=None)
        try:
            with progress:
                yield
        finally:
            self._progress = None
            self._task = None

    def update(self, completed: int, total: int | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, total=total)
        elif self.enabled and not self.tty and total:
            # logs: one plain line per 10% instead of a bar
            tenth = completed * 10 // total
            if tenth > self._last_tenth:
                if self._last_tenth >= 0:
                    self.note(f"  {tenth * 10}% ({_fmt_bytes(completed)} of {_fmt_bytes(total)})")
                self._last_tenth = tenth


def _parse_total(resp) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr:
        m = _CONTENT_RANGE.match(cr.strip())
        if m and m.group(3) != "*":
            return int(m.group(3))
    return None


def _hash_file(path: Path, upto: int) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = upto
        while left > 0:
            b = f.read(min(CHUNK, left))
            if not b:
                break
            h.update(b)
            left -= len(b)
    return h


@contextmanager
def _locked(part: Path) -> Iterator[None]:
    """One pull per file at a time (advisory lock on <file>.part.lock)."""
    lock_path = part.with_name(part.name + ".lock")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PullError(f"another gptoss pull is already downloading {part.name[:-5]}") from None
        try:
            yield
        finally:
            try:
                os.unlink(lock_path)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    force: bool = False,
    progress: bool = True,
    retries: int = RETRIES,
    timeout: float = TIMEOUT_S,
    _sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download `url` to `dest` through `<dest>.part`; return the sha256 (hex) of the file.

    Resumes an existing .part unless `force`. Raises PullError / DigestMismatch;
    KeyboardInterrupt propagates with the .part kept.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    rep = _Reporter(progress)
    expected_sha256 = expected_sha256.lower() if expected_sha256 else None

    headers = {"User-Agent": f"gptoss/{__version__}", "Accept-Encoding": "identity"}
    token = _token_for(url)
    opener = build_opener()

    with _locked(part):
        if force and part.exists():
            part.unlink()
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            part.unlink()
            offset = 0
        if offset:
            rep.note(f"resuming {dest.name} at {_fmt_bytes(offset)}")
        hasher = _hash_file(part, offset) if offset else hashlib.sha256()
        hashed = offset
        failures = 0
        total: int | None = expected_size
        ignored_range_notes = 0

        with rep.bar(dest.name):
            while True:
                offset = part.stat().st_size if part.exists() else 0
                if hashed != offset:  # should not happen; keep the digest honest
                    hasher, hashed = _hash_file(part, offset), offset
                if total is not None and offset == total:
                    break
                req = Request(url, headers=headers)
                if token:
                    req.add_unredirected_header("Authorization", f"Bearer {token}")
                if offset:
                    req.add_header("Range", f"bytes={offset}-")
                start_offset = offset
                try:
                    resp = opener.open(req, timeout=timeout)
                except HTTPError as e:
                    e.close()
                    if e.code == 416 and offset:
                        m = _CONTENT_RANGE_UNSAT.match((e.headers.get("Content-Range") or "").strip())
                        if m and int(m.group(1)) == offset:
                            total = offset  # the .part is already complete
                            continue
                        rep.note(f"the partial {dest.name} does not match the server's file; starting over")
                        part.unlink()
                        hasher, hashed = hashlib.sha256(), 0
                        failures += 1
                        if failures > retries:
                            raise PullError(f"download of {url} failed: the server refuses to resume") from None
                        continue
                    if e.code in (401, 403):
                        hint = "" if token else "; if the model is gated, set HF_TOKEN"
                        raise PullError(f"access denied (HTTP {e.code}) for {url}{hint}") from None
                    if e.code == 404:
                        raise PullError(f"not found (HTTP 404): {url}") from None
                    if e.code >= 500 or e.code == 429:
                        failures += 1
                        if failures <= retries:
                            _sleep(min(2.0 ** failures, 30.0) / 10)
                            continue
                    raise PullError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
                except (URLError, OSError) as e:
                    reason = getattr(e, "reason", None) or e
                    failures += 1
                    if failures <= retries:
                        _sleep(min(2.0 ** failures, 30.0) / 10)
                        continue
                    raise PullError(f"cannot download {url}: {reason}") from None

                with resp:
                    status = getattr(resp, "status", 200)
                    length = resp.headers.get("Content-Length")
                    length = int(length) if length and length.isdigit() else None
                    if status == 206:
                        m = _CONTENT_RANGE.match((resp.headers.get("Content-Range") or "").strip())
                        if not m or int(m.group(1)) != offset:
                            rep.note(f"the server sent an unexpected range for {dest.name}; starting over")
                            part.unlink()
                            hasher, hashed = hashlib.sha256(), 0
                            failures += 1
                            if failures > retries:
                                raise PullError(f"download of {url} failed: bad ranges from the server")
                            continue
                        total = _parse_total(resp) or total
                        mode = "ab"
                    else:
                        if offset:
                            if ignored_range_notes == 0:
                                rep.note(f"the server cannot resume {dest.name}; starting over")
                            ignored_range_notes += 1
                            hasher, hashed = hashlib.sha256(), 0
                            offset = 0
                        if length is not None:
                            total = length
                        mode = "wb"
                    if expected_size is not None and total is not None and total != expected_size:
                        _remove(part)
                        raise PullError(
                            f"{dest.name}: the server's file is {total} bytes, models.toml says {expected_size}; "
                            "not downloading"
                        )
                    if total is not None:
                        _check_space(dest.parent, total - offset)
                    done = offset
                    rep.update(done, total)
                    try:
                        with open(part, mode) as f:
                            while True:
                                try:
                                    chunk = resp.read(CHUNK)
                                except (OSError, ValueError, http.client.HTTPException) as e:
                                    raise _Dropped(e) from None
                                if not chunk:
                                    break
                                try:
                                    f.write(chunk)
                                except OSError as e:
                                    if e.errno == errno.ENOSPC:
                                        raise PullError(
                                            f"no space left in {dest.parent}; the partial download is kept "
                                            f"({part}), free some space and pull again to resume"
                                        ) from None
                                    raise PullError(f"cannot write {part}: {e.strerror or e}") from None
                                hasher.update(chunk)
                                done += len(chunk)
                                hashed = done
                                rep.update(done, total)
                    except _Dropped as d:
                        now = part.stat().st_size if part.exists() else 0
                        failures = 0 if now > start_offset else failures + 1
                        if failures > retries:
                            raise PullError(
                                f"download of {dest.name} keeps failing ({d.cause}); "
                                f"the partial download is kept, pull again to resume"
                            ) from None
                        rep.note(f"connection lost at {_fmt_bytes(now)}; resuming")
                        continue
                    if total is not None and done < total:
                        now = done
                        failures = 0 if now > start_offset else failures + 1
                        if failures > retries:
                            raise PullError(
                                f"download of {dest.name} keeps stopping early; the partial download is kept, "
                                "pull again to resume"
                            )
                        rep.note(f"connection lost at {_fmt_bytes(now)}; resuming")
                        continue
                    if total is not None and done > total:
                        _remove(part)
                        raise PullError(f"{dest.name}: the server sent more bytes than announced; download deleted")
                    total = done
                    break

        digest = hasher.hexdigest()
        if expected_sha256 and digest != expected_sha256:
            _remove(part)
            raise DigestMismatch(
                f"sha256 mismatch for {dest.name}: expected {expected_sha256}, got {digest}; "
                "the download was deleted"
            )
        side = dest.with_name(dest.name + ".sha256")
        side_tmp = dest.with_name(dest.name + ".sha256.tmp")
        side_tmp.write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
        os.replace(part, dest)
        os.replace(side_tmp, side)
    return digest


class _Dropped(Exception):
    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause.__class__.__name__ if not str(cause) else str(cause)


def _remove(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def _check_space(directory: Path, need: int) -> None:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if need > free:
        raise PullError(
            f"not enough disk space in {directory}: need {_fmt_bytes(need)}, {_fmt_bytes(free)} free"
        )


def pull(
    spec: str,
    *,
    force: bool = False,
    offline: bool | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> PullResult:
    """Download a model by name/alias (models.toml) or by http(s) URL into the models directory.

    Raises PullError (offline, unknown name, HTTP failure), DigestMismatch, or
    PullInterrupted (Ctrl-C; the .part is kept).
    """
    spec = spec.strip()
    cfg = load_user_config()
    mdir = models_dir(cfg)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise PullError("--sha256 must be 64 hexadecimal digits")
    if _is_url(spec):
        name = url_file_name(spec)
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
            raise PullError(f"--sha256 cannot be used with {name}, which has {len(paths)} files")
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
                download(url, path, expected_sha256=want_sha, expected_size=want_size, force=force, progress=progress)
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
