"""Download one file into place: through ``<file>.part``, resumed, retried, checked, then renamed.

- The bytes go to ``<file>.part``; it is renamed to ``<file>`` only when the
  server's whole file is there, it is a complete GGUF (gguf_check), and its
  sha256 matches the expected one when there is one. The digest is recorded
  beside it as ``<file>.sha256`` (``sha256sum -c`` format).
- An interrupted download keeps the .part; the next one resumes it with an HTTP
  Range request. A server that ignores Range gets a clean restart from byte 0.
- Failed attempts are retried a bounded number of times (download_retry).
- ``HF_TOKEN`` is sent as ``Authorization: Bearer`` to Hugging Face hosts (and to
  ``$HF_ENDPOINT``), never to other hosts and never across redirects.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, build_opener

from . import __version__
from .byte_sizes import format_bytes
from .download_progress import Reporter
from .download_response import Retry, body_plan, complete_size_or_raise
from .download_retry import RETRIES, RetryPolicy
from .gguf_check import IncompleteGGUF, check_complete_gguf
from .part_file import Dropped, PartFile, check_space
from .pull_errors import DigestMismatch, PullError

__all__ = ["TIMEOUT_S", "download"]

TIMEOUT_S = 30.0  # seconds one connect or read may wait before the attempt counts as failed


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


class _Transfer:
    """Requests for one URL until the .part holds the server's whole file."""

    def __init__(self, url: str, part: PartFile, name: str, rep: Reporter, *,
                 expected_size: int | None, timeout: float) -> None:
        self.url, self.part, self.name, self.rep = url, part, name, rep
        self.expected_size = expected_size
        self.total = expected_size  # the whole file's size, once known
        self.timeout = timeout
        self.token = _token_for(url)
        self.opener = build_opener()
        self.said_no_resume = False

    def run(self, policy: RetryPolicy) -> None:
        """Attempt until complete; a failed attempt is retried as `policy` allows (PullError after)."""
        while self.total is None or self.part.size != self.total:
            before = self.part.size
            try:
                self.total = self._attempt()
                return
            except Retry as r:
                if r.restart:
                    self.part.remove()
                if r.note:
                    self.rep.note(r.note)
                policy.failed(r.why + self._kept(), progressed=self.part.size > before)

    def _check_total(self, total: int | None) -> None:
        """PullError (and no .part) when the server's file size is not the one models.toml publishes."""
        if self.expected_size is not None and total is not None and total != self.expected_size:
            self.part.remove()
            raise PullError(
                f"{self.name}: the server's file is {total} bytes, models.toml says {self.expected_size}; "
                "not downloading"
            )

    def _kept(self) -> str:
        if not self.part.size:
            return ""
        return f"; the partial download is kept ({format_bytes(self.part.size)}), pull again to resume"

    def _request(self, offset: int) -> Request:
        req = Request(self.url, headers={"User-Agent": f"gptoss/{__version__}", "Accept-Encoding": "identity"})
        if self.token:
            req.add_unredirected_header("Authorization", f"Bearer {self.token}")
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        return req

    def _attempt(self) -> int:
        """One request; returns the file's size when the .part is complete. Raises Retry or PullError."""
        offset = self.part.size
        try:
            resp = self.opener.open(self._request(offset), timeout=self.timeout)
        except HTTPError as e:
            size = complete_size_or_raise(e, self.url, self.name, offset, sent_token=self.token is not None)
            self._check_total(size)
            return size
        except (URLError, OSError) as e:
            raise Retry(f"cannot download {self.url}: {getattr(e, 'reason', None) or e}") from None
        with resp:
            plan = body_plan(getattr(resp, "status", 200), resp.headers, offset, self.name)
            if not plan.append and offset:
                if not self.said_no_resume:
                    self.rep.note(f"the server cannot resume {self.name}; starting over")
                    self.said_no_resume = True
                self.part.remove()
            total = self.total if plan.total is None else plan.total
            self._check_total(total)
            self.total = total
            if total is not None:
                check_space(self.part.path.parent, total - self.part.size)
            self.rep.update(self.part.size, total)
            try:
                self.part.append_body(resp, lambda done: self.rep.update(done, total))
            except Dropped as d:
                raise Retry(f"download of {self.name} keeps failing ({d.cause})",
                            note=f"connection lost at {format_bytes(self.part.size)}; resuming") from None
        if total is not None and self.part.size < total:
            raise Retry(f"download of {self.name} keeps stopping early",
                        note=f"connection lost at {format_bytes(self.part.size)}; resuming")
        if total is not None and self.part.size > total:
            self.part.remove()
            raise PullError(f"{self.name}: the server sent more bytes than announced; download deleted")
        return self.part.size


def _install(part: PartFile, dest: Path, expected_sha256: str | None) -> str:
    """Rename the finished .part to `dest` if it is a complete GGUF with the expected digest; return the digest.

    A truncated file keeps its .part (the next pull resumes it); a file that is
    not a GGUF, or has the wrong digest, is deleted.
    """
    try:
        check_complete_gguf(part.path)
    except IncompleteGGUF as e:
        if e.truncated:
            raise PullError(
                f"{dest.name} is incomplete ({e}); the partial download is kept ({part.path}), "
                "pull again to resume, or with --force to start over"
            ) from None
        part.remove()
        raise PullError(f"{dest.name} is not a usable GGUF file ({e}); the download was deleted") from None
    except OSError as e:
        raise PullError(f"cannot read {part.path}: {e.strerror or e}") from None
    digest = part.hexdigest()
    if expected_sha256 and digest != expected_sha256:
        part.remove()
        raise DigestMismatch(
            f"sha256 mismatch for {dest.name}: expected {expected_sha256}, got {digest}; the download was deleted"
        )
    side = dest.with_name(dest.name + ".sha256")
    side_tmp = dest.with_name(dest.name + ".sha256.tmp")
    try:
        side_tmp.write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
        os.replace(part.path, dest)
        os.replace(side_tmp, side)
    except OSError as e:
        raise PullError(f"cannot move the download into place as {dest}: {e.strerror or e}") from None
    return digest


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
    part_path = dest.with_name(dest.name + ".part")
    rep = Reporter(progress)
    with _locked(part_path):
        part = PartFile(part_path, fresh=force, max_size=expected_size)
        if part.size:
            rep.note(f"resuming {dest.name} at {format_bytes(part.size)}")
        try:
            with rep.bar(dest.name):
                transfer = _Transfer(url, part, dest.name, rep, expected_size=expected_size, timeout=timeout)
                transfer.run(RetryPolicy(retries, _sleep))
        except BaseException:
            if not part.size:
                part.remove()  # nothing to resume: leave no empty .part behind
            raise
        return _install(part, dest, expected_sha256.lower() if expected_sha256 else None)
