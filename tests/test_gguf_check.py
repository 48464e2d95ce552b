"""gguf_check: the completeness check `gptoss pull` runs before installing a download."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gguf_bytes import F32, Q8_0, gguf_bytes, sample_gguf
from gptoss_cli.errors import ModelFileError
from gptoss_cli.gguf_check import IncompleteGGUF, check_complete_gguf
from gptoss_cli.gguf_file import GGUFFile

DATA, LAYOUT = sample_gguf()
DEMO = Path(__file__).resolve().parent.parent / "gptoss_cli" / "data" / "demo.gguf"


def _file(tmp_path: Path, data: bytes, name: str = "m.gguf") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_complete_files_pass(tmp_path):
    check_complete_gguf(_file(tmp_path, DATA))
    if DEMO.is_file():  # a real gpt-oss file with a 200k-token vocabulary
        check_complete_gguf(DEMO)


def test_file_from_the_reference_writer_passes(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    p = tmp_path / "ref.gguf"
    w = gguf.GGUFWriter(str(p), "gpt-oss")
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    w.add_array("some.ints", [1, 2, 3])
    w.add_tensor("x", np.arange(96, dtype=np.float32).reshape(3, 32))
    w.add_tensor("y", np.ones((5, 7), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    check_complete_gguf(p)
    with pytest.raises(IncompleteGGUF) as ei:
        check_complete_gguf(_file(tmp_path, p.read_bytes()[:-40], "cut.gguf"))  # past the padding
    assert ei.value.truncated


def _cuts() -> dict[str, int]:
    a0, a1 = LAYOUT.tensors["a.weight"]
    return {
        "empty": 0, "magic": 2, "version": 6, "counts": 20, "metadata": LAYOUT.metadata + 30,
        "tensor-table": LAYOUT.tensor_table + 10, "before-data": LAYOUT.data - 1, "data-start": LAYOUT.data,
        "first-tensor": (a0 + a1) // 2, "last-byte": len(DATA) - 1,
    }


@pytest.mark.parametrize("where", list(_cuts()))
def test_every_cut_is_truncated(tmp_path, where):
    p = _file(tmp_path, DATA[: _cuts()[where]])
    with pytest.raises(IncompleteGGUF) as ei:
        check_complete_gguf(p)
    assert ei.value.truncated, str(ei.value)
    assert "\n" not in str(ei.value)
    if where not in ("empty", "magic"):  # the runtime's reader refuses it too
        with pytest.raises(ModelFileError):
            GGUFFile(p).close()


def _one_tensor(ne: tuple[int, ...] = (32, 2), ttype: int = F32, **meta: object) -> bytes:
    nbytes = {F32: 4 * ne[0], Q8_0: 34 * (ne[0] // 32)}[ttype] * (ne[1] if len(ne) > 1 else 1)
    return gguf_bytes([("t", ne, ttype, b"\1" * nbytes)], dict(meta))[0]


@pytest.mark.parametrize(
    "data, match",
    [
        (b"<!doctype html><html>not found</html>", "not a GGUF file"),
        (b"GGUF" + struct.pack("<I", 1) + b"\0" * 40, "version 1"),
        (_one_tensor(**{"general.alignment": 48}), "not a power of two"),
        (_one_tensor((33, 1), Q8_0), "not whole blocks"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99) + b"\0" * 8,
         "unknown or too deeply nested value type 99"),
    ],
)
def test_corrupt_files_are_not_truncated(tmp_path, data, match):
    with pytest.raises(IncompleteGGUF, match=match) as ei:
        check_complete_gguf(_file(tmp_path, data))
    assert not ei.value.truncated


def test_tensor_offset_past_the_end(tmp_path):
    data = bytearray(_one_tensor())
    # the tensor info's offset is the table's last 8 bytes before the padding: point it far away
    table_end = data.index(b"t", 24) + 1 + 4 + 16 + 4
    data[table_end : table_end + 8] = struct.pack("<Q", 1 << 20)
    with pytest.raises(IncompleteGGUF, match="ends inside tensor 't'") as ei:
        check_complete_gguf(_file(tmp_path, bytes(data)))
    assert ei.value.truncated


def test_absurd_counts_do_not_loop(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 1 << 62, 0) + b"\0" * 64
    with pytest.raises(IncompleteGGUF, match="too short for the 4611686018427387904 tensor infos"):
        check_complete_gguf(_file(tmp_path, data))
