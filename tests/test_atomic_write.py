"""write_atomically: the target is either the old file or the whole new one, never a mix,
and no temporary file outlives its write (SIGTERM removes it; after SIGKILL the next write does)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gptoss_cli import atomic_write
from gptoss_cli.atomic_write import TEMP_NAME, atomic_path, sweep, write_atomically


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if TEMP_NAME.fullmatch(p.name))


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_replaces_whole_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    before = signal.getsignal(signal.SIGTERM)
    write_atomically(target, lambda f: f.write(b"new content"), durable=True)
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert signal.getsignal(signal.SIGTERM) is before  # our handler only while writing


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def half(f):
        f.write(b"partial")
        raise KeyboardInterrupt  # an interrupted run

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_missing_directory_is_oserror(tmp_path):
    with pytest.raises(OSError):
        write_atomically(tmp_path / "no" / "f.bin", lambda f: f.write(b"x"))


def test_temporary_name_and_mode(tmp_path):
    """The temporary file has our pattern with our pid; atomic_path leaves the mode to the umask."""
    seen = []
    with atomic_path(tmp_path / "out.gguf") as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"data")
    (name,) = seen
    m = TEMP_NAME.fullmatch(name)
    assert m and m["name"] == "out.gguf" and int(m["pid"]) == os.getpid()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.gguf").stat().st_mode & 0o777 == 0o666 & ~umask
    write_atomically(tmp_path / "private", lambda f: f.write(b"x"))
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600  # as mkstemp made it before


class _Stop(Exception):
    pass


def test_sigterm_with_a_python_handler_calls_it(tmp_path):
    """A handler the program set is called after the temporary file is gone, and is back afterwards."""
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    calls = []

    def mine(signum, frame):
        calls.append(signum)
        raise _Stop

    old = signal.signal(signal.SIGTERM, mine)
    try:
        def write(f):
            f.write(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler's exception

        with pytest.raises(_Stop):
            write_atomically(target, write)
        assert calls == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from gptoss_cli.atomic_write import write_atomically

    def write(f):
        for i in range(600):
            f.write(b"x" * 4096)
            f.flush()
            if i == 0:
                print("writing", flush=True)
            time.sleep(0.05)

    write_atomically(sys.argv[1], write)
    """
)


def _start_slow_writer(target):
    p = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "writing\n"
    return p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_terminated_writer_leaves_no_temporary_file(tmp_path, sig):
    target = tmp_path / "out.gguf"
    target.write_bytes(b"old")
    p = _start_slow_writer(target)
    assert len(_temps(tmp_path)) == 1
    p.send_signal(sig)
    assert p.wait(timeout=30) == -sig  # still dies of the signal (status 143 for SIGTERM in a shell)
    assert _temps(tmp_path) == [] and target.read_bytes() == b"old"


def test_killed_writer_is_swept_by_the_next_write(tmp_path):
    target = tmp_path / "out.gguf"
    p = _start_slow_writer(target)
    p.kill()
    assert p.wait(timeout=30) == -signal.SIGKILL
    (left,) = _temps(tmp_path)
    assert int(TEMP_NAME.fullmatch(left)["pid"]) == p.pid
    notes = []
    write_atomically(tmp_path / "other.bin", lambda f: f.write(b"new"), notice=notes.append)
    assert _temps(tmp_path) == [] and sorted(q.name for q in tmp_path.iterdir()) == ["other.bin"]
    assert len(notes) == 1 and left in notes[0] and "interrupted write" in notes[0]


def test_sweep_touches_only_our_dead_unlocked_files(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / f".a.gguf.{dead}.0123456789ab.part"
    mine = tmp_path / f".a.gguf.{live}.0123456789ab.part"  # a write of this (live) process
    held = tmp_path / f".b.gguf.{dead}.00000000000c.part"  # a writer in another PID namespace holds its lock
    others = [
        "a.gguf.part",  # a download's .part
        ".notes.part",
        f".a.gguf.{dead}.part",
        f".a.gguf.{dead}.0123456789AB.part",
        f".a.gguf.{dead}.0123456789ab.part.bak",
        f"a.gguf.{dead}.0123456789ab.part",
        f".a.gguf.{dead}.0123456789ab.tmp",
    ]
    for p in [stale, mine, held] + [tmp_path / n for n in others]:
        p.write_bytes(b"keep")
    (tmp_path / f".d.{dead}.0123456789ab.part").mkdir()  # a folder of that name
    (tmp_path / f".l.{dead}.0123456789ab.part").symlink_to(tmp_path / "a.gguf.part")  # a link
    with open(held, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        assert sweep(tmp_path) == [stale]
    assert not stale.exists()
    assert mine.exists() and held.exists() and all((tmp_path / n).read_bytes() == b"keep" for n in others)
    assert (tmp_path / f".d.{dead}.0123456789ab.part").is_dir()
    assert (tmp_path / f".l.{dead}.0123456789ab.part").is_symlink() and (tmp_path / "a.gguf.part").exists()
    assert sweep(tmp_path) == [held]  # its lock is released: now it is stale too
    assert sweep(tmp_path / "missing") == []


def test_no_handler_in_other_threads(tmp_path):
    """signal.signal works only in the main thread: a write elsewhere runs without it."""
    import threading

    errors = []

    def run():
        try:
            write_atomically(tmp_path / "t.bin", lambda f: f.write(b"x"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors == [] and (tmp_path / "t.bin").read_bytes() == b"x"
    assert atomic_write._depth == 0 and atomic_write._live == set()
