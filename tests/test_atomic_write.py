"""write_atomically: the target is either the old file or the whole new one, never a mix."""

from __future__ import annotations

import pytest

from gptoss_cli.atomic_write import write_atomically


def test_replaces_whole_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    write_atomically(target, lambda f: f.write(b"new content"), durable=True)
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


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
