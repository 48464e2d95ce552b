"""Pages of the model's file maps: advice to the kernel, and one helper thread that reads them in.

Why a helper thread and Numba: the engine's kernels hold the GIL while they run, so
a Python thread that reads pages would wait for every kernel to end before each
system call. Here a whole job (every range of it advised MADV_WILLNEED, so the
kernel queues large reads of exactly those bytes at once, then MADV_POPULATE_READ,
which waits for them and maps them; or a release, MADV_DONTNEED) is one Numba call
per advice that releases the GIL. Releases are urgent jobs too, queued before the
read they make room for, so the model's thread never waits for the kernel to unmap.
Expert ranges are advised MADV_RANDOM first, so a page the helper has not read
is never fetched with its neighbours by readahead.
"""

from __future__ import annotations

import mmap
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import types

__all__ = [
    "PAGE", "MADV_NORMAL", "MADV_RANDOM", "MADV_WILLNEED", "MADV_DONTNEED", "MADV_PAGEOUT", "MADV_POPULATE_READ",
    "Ranges", "absent_pages", "advise", "io_read_bytes", "view_range", "PageJob", "PageReader",
]

PAGE = mmap.PAGESIZE
# Linux <asm-generic/mman-common.h>; the mmap module lacks the newer ones.
MADV_NORMAL, MADV_RANDOM, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 3, 4
MADV_PAGEOUT, MADV_POPULATE_READ = 21, 22  # Linux 5.4, 5.14

_madvise = types.ExternalFunction("madvise", types.intc(types.uintp, types.uintp, types.intc))
_mincore = types.ExternalFunction("mincore", types.intc(types.uintp, types.uintp, types.uintp))


@numba.njit(nogil=True, cache=True)
def _advise(starts: np.ndarray, lengths: np.ndarray, advice: np.intc) -> int:  # pragma: no cover - compiled
    """madvise over each (start, length); the number of calls that failed."""
    failed = 0
    for i in range(starts.size):
        if lengths[i] > 0 and _madvise(starts[i], lengths[i], advice) != 0:
            failed += 1
    return failed


@numba.njit(nogil=True, cache=True)
def _absent(starts: np.ndarray, lengths: np.ndarray, page: int) -> int:  # pragma: no cover - compiled
    """Pages of the ranges not in the page cache (mincore); a failed call counts its range absent."""
    absent = 0
    longest = 0
    for i in range(lengths.size):
        longest = max(longest, (lengths[i] + page - 1) // page)
    vec = np.empty(longest, dtype=np.uint8)
    for i in range(starts.size):
        n = (lengths[i] + page - 1) // page
        if _mincore(starts[i], lengths[i], vec.ctypes.data) != 0:
            absent += n
            continue
        for j in range(n):
            absent += 1 - (vec[j] & 1)
    return absent


@dataclass(frozen=True, eq=False)
class Ranges:
    """Page-aligned address ranges in this process (uint64 starts and lengths)."""

    starts: np.ndarray
    lengths: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.lengths.sum())

    @staticmethod
    def of(spans: list[tuple[int, int]], *, inward: bool = False) -> "Ranges":
        """Byte spans (address, length) rounded out to whole pages, or with inward=True to the
        pages that lie wholly inside (what may be dropped without touching a neighbour's bytes)."""
        starts, lengths = [], []
        for addr, n in spans:
            lo, hi = (-(-addr // PAGE) * PAGE, (addr + n) // PAGE * PAGE) if inward else (
                addr // PAGE * PAGE, -(-(addr + n) // PAGE) * PAGE)
            if hi > lo:
                starts.append(lo)
                lengths.append(hi - lo)
        return Ranges(np.array(starts, dtype=np.uint64), np.array(lengths, dtype=np.uint64))

    def __add__(self, other: "Ranges") -> "Ranges":
        return Ranges(np.concatenate([self.starts, other.starts]), np.concatenate([self.lengths, other.lengths]))


def advise(r: Ranges, advice: int) -> int:
    """madvise(advice) over every range without the GIL; how many calls failed."""
    if r.starts.size == 0:
        return 0
    return int(_advise(r.starts, r.lengths, np.intc(advice)))


def absent_pages(r: Ranges) -> int:
    """How many pages of the ranges the kernel has dropped (mapped pages it reclaimed are among them)."""
    if r.starts.size == 0:
        return 0
    return int(_absent(r.starts, r.lengths, PAGE))


def view_range(view: np.ndarray) -> tuple[int, int]:
    """(address, bytes) of a contiguous view, e.g. one expert's matrix inside the file map."""
    return int(view.__array_interface__["data"][0]), int(view.nbytes)


def io_read_bytes() -> int:
    """Bytes this process has caused to be read from storage (/proc/self/io read_bytes; 0 if unknown)."""
    try:
        with open("/proc/self/io", "rb") as f:
            for line in f:
                if line.startswith(b"read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(eq=False)
class PageJob:
    """Ranges to read in and map (advice None), or to release with `advice`; `done` is set when
    that is done (or the reader stopped)."""

    ranges: Ranges
    advice: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    failed: int = 0
    seconds: float = 0.0

    def wait(self) -> None:
        self.done.wait()


class PageReader:
    """One daemon thread that runs PageJobs: urgent ones first, each queue in submission order."""

    def __init__(self) -> None:
        self._urgent: deque[PageJob] = deque()
        self._later: deque[PageJob] = deque()
        self._cv = threading.Condition()
        self._stopped = False
        self.populate = _populate_supported()
        advise(Ranges.of([]), MADV_WILLNEED)  # compile (or load from Numba's cache) here, not in the thread
        self._thread = threading.Thread(target=self._loop, name="gptoss-pager", daemon=True)
        self._thread.start()

    def submit(self, ranges: Ranges, *, urgent: bool = False, advice: int | None = None) -> PageJob:
        """Queue a read (advice None) or a release of `ranges`."""
        job = PageJob(ranges, advice)
        with self._cv:
            if self._stopped:
                job.done.set()
                return job
            (self._urgent if urgent else self._later).append(job)
            self._cv.notify()
        return job

    def promote(self, job: PageJob) -> None:
        """Make a queued job urgent (the model needs its pages now)."""
        with self._cv:
            if job in self._later:
                self._later.remove(job)
                self._urgent.append(job)

    def pending(self) -> int:
        with self._cv:
            return len(self._urgent) + len(self._later)

    def run_now(self, ranges: Ranges) -> PageJob:
        """Read ranges in on the calling thread (at load, before the model runs)."""
        job = PageJob(ranges)
        self._run(job)
        return job

    def _run(self, job: PageJob) -> None:
        t = time.perf_counter()
        if job.advice is not None:
            job.failed = advise(job.ranges, job.advice)
        else:
            job.failed = advise(job.ranges, MADV_WILLNEED)
            if self.populate:
                job.failed += advise(job.ranges, MADV_POPULATE_READ)
        job.seconds = time.perf_counter() - t
        job.done.set()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._urgent and not self._later and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                job = (self._urgent or self._later).popleft()
                job.started = True
            self._run(job)

    def close(self) -> None:
        with self._cv:
            self._stopped = True
            left = list(self._urgent) + list(self._later)
            self._urgent.clear()
            self._later.clear()
            self._cv.notify()
        for job in left:
            job.done.set()
        self._thread.join(timeout=5)


def _populate_supported() -> bool:
    """MADV_POPULATE_READ exists from Linux 5.14; before it, WILLNEED alone starts the reads."""
    import ctypes

    buf = mmap.mmap(-1, PAGE)
    try:
        cell = ctypes.c_char.from_buffer(buf)
        addr = ctypes.addressof(cell)
        del cell
        probe = Ranges(np.array([addr], dtype=np.uint64), np.array([PAGE], dtype=np.uint64))
        return advise(probe, MADV_POPULATE_READ) == 0
    finally:
        buf.close()
