"""The GGUF reader against gguf-py: same metadata, same tensor bytes, clear errors."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT

from gptoss_cli.errors import ModelFileError, UnsupportedTensorType
from gptoss_cli.gguf_file import GGUFFile


def _write(path: Path, tensors: dict[str, tuple[np.ndarray, QT]], arch: str = "gpt-oss") -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_uint32(f"{arch}.block_count", 3)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_string("general.name", "tést ✓")
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "Ġhello", "", "<|end|>", "é"])
    w.add_array("tokenizer.ggml.token_type", [1, 1, 1, 1, 3, 1])
    w.add_array("some.floats", [1.5, -2.0])
    w.add_bool("some.flag", True)
    w.add_uint64("some.big", 2**40)
    w.add_int32("some.neg", -7)
    for name, (data, qtype) in tensors.items():
        raw = data if qtype in (QT.F32, QT.F16) else gguf.quants.quantize(data, qtype)
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict[str, tuple[np.ndarray, QT]]]:
    rng = np.random.default_rng(0)
    tensors = {
        "a.f32": (rng.standard_normal((3, 64)).astype(np.float32), QT.F32),
        "b.f16": (rng.standard_normal((5, 32)).astype(np.float16), QT.F16),
        "c.bf16": (rng.standard_normal((4, 64)).astype(np.float32), QT.BF16),
        "d.q8": (rng.standard_normal((6, 96)).astype(np.float32), QT.Q8_0),
        "e.mx": (rng.standard_normal((2, 3, 64)).astype(np.float32), QT.MXFP4),
        "f.vec": (rng.standard_normal(7).astype(np.float32), QT.F32),
    }
    path = _write(tmp_path_factory.mktemp("gguf") / "sample.gguf", tensors)
    return path, tensors


def test_metadata_matches_gguf_py(sample):
    path, _ = sample
    ref = gguf.GGUFReader(str(path))
    with GGUFFile(path) as gf:
        assert gf.architecture == "gpt-oss"
        assert gf.metadata["general.name"] == "tést ✓"
        assert gf.metadata["gpt-oss.block_count"] == 3
        assert gf.metadata["some.flag"] is True
        assert gf.metadata["some.big"] == 2**40
        assert gf.metadata["some.neg"] == -7
        assert gf.metadata["tokenizer.ggml.tokens"].tolist() == ref.fields["tokenizer.ggml.tokens"].contents()
        assert gf.metadata["tokenizer.ggml.tokens"][2] == "Ġhello"
        assert gf.metadata["tokenizer.ggml.token_type"].tolist() == [1, 1, 1, 1, 3, 1]
        np.testing.assert_array_equal(gf.metadata["some.floats"], [1.5, -2.0])
        assert gf.metadata["gpt-oss.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)


def test_tensor_views_equal_gguf_py_bytes_and_share_the_map(sample):
    path, tensors = sample
    ref = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    with GGUFFile(path) as gf:
        for name, (data, qtype) in tensors.items():
            info = gf.tensors[name]
            assert info.ggml_type == int(qtype)
            assert info.shape == data.shape
            view = gf.tensor(name)
            assert np.shares_memory(view, gf.data), name
            assert not view.flags.writeable
            assert view.tobytes() == np.asarray(ref[name].data).tobytes(), name


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        GGUFFile(tmp_path / "nope.gguf")


def test_not_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        GGUFFile(p)


def test_empty_file(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        GGUFFile(p)


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="directory"):
        GGUFFile(tmp_path)


@pytest.mark.parametrize("keep", [0.02, 0.1, 0.5, 0.9, -8])
def test_truncated_anywhere(sample, tmp_path, keep):
    path, _ = sample
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    # -8 cuts into the last tensor's values (its padding is only 4 bytes).
    cut.write_bytes(data[: int(len(data) * keep)] if keep > 0 else data[:keep])
    with pytest.raises(ModelFileError, match="truncated"):
        GGUFFile(cut)


def test_bad_version(sample, tmp_path):
    path, _ = sample
    data = bytearray(path.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    p = tmp_path / "v.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="unsupported GGUF version 99"):
        GGUFFile(p)


def test_unsupported_type_refused_by_name(tmp_path):
    rng = np.random.default_rng(1)
    path = _write(tmp_path / "q4.gguf", {"w": (rng.standard_normal((2, 32)).astype(np.float32), QT.Q4_0)})
    with GGUFFile(path) as gf:
        with pytest.raises(UnsupportedTensorType, match="Q4_0"):
            gf.tensor("w")


# --- corrupt headers (issue 20): one ModelFileError naming the field, never another exception ---


def _after(data: bytes, name: str) -> int:
    """Position just past a key's or tensor's name in the header (the sample's names are unique)."""
    raw = name.encode()
    return data.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw)


def _patched(sample, tmp_path: Path, pos: int, fmt: str, value) -> Path:
    data = bytearray(sample[0].read_bytes())
    struct.pack_into(fmt, data, pos, value)
    p = tmp_path / "patched.gguf"
    p.write_bytes(bytes(data))
    return p


def _open_quietly(path: Path) -> None:
    """Open with warnings as errors: a NumPy overflow warning before the error is a bug too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GGUFFile(path).close()


@pytest.mark.parametrize("key", ["general.name", "tokenizer.ggml.tokens"])
def test_string_length_past_int64(sample, tmp_path, key):
    data = sample[0].read_bytes()
    # a string value's length follows its type; a string array's first length follows type, element type, count
    pos = _after(data, key) + (4 if key == "general.name" else 16)
    p = _patched(sample, tmp_path, pos, "<Q", 2**63)
    with pytest.raises(ModelFileError, match=f"truncated GGUF file .*value of '{key}'"):
        _open_quietly(p)


def test_tensor_dim_near_2_64(sample, tmp_path):
    pos = _after(sample[0].read_bytes(), "d.q8") + 4 + 8  # the second dim (rows)
    p = _patched(sample, tmp_path, pos, "<Q", 2**64 - 1)
    with pytest.raises(ModelFileError, match="tensor 'd.q8' with dims .* needs"):
        _open_quietly(p)


def test_too_many_dims(sample, tmp_path):
    p = _patched(sample, tmp_path, _after(sample[0].read_bytes(), "a.f32"), "<I", 5)
    with pytest.raises(ModelFileError, match="'a.f32' has 5 dims"):
        _open_quietly(p)


def _offset_pos(data: bytes, name: str, n_dims: int) -> int:
    return _after(data, name) + 4 + 8 * n_dims + 4


def test_offset_not_aligned(sample, tmp_path):
    data = sample[0].read_bytes()
    pos = _offset_pos(data, "c.bf16", 2)
    p = _patched(sample, tmp_path, pos, "<Q", struct.unpack_from("<Q", data, pos)[0] + 4)
    with pytest.raises(ModelFileError, match="'c.bf16' has offset .* not a multiple of general.alignment 32"):
        _open_quietly(p)


@pytest.mark.parametrize("shift", [-32, 32])
def test_offset_shifted_by_the_alignment(sample, tmp_path, shift):
    data = sample[0].read_bytes()
    pos = _offset_pos(data, "c.bf16", 2)
    p = _patched(sample, tmp_path, pos, "<Q", struct.unpack_from("<Q", data, pos)[0] + shift)
    with pytest.raises(ModelFileError, match="'c.bf16' starts at data offset .* where 'b.f16' ends"):
        _open_quietly(p)


def test_type_that_shrinks_a_tensor(sample, tmp_path):
    """F32 read as F16: the tensor now ends halfway, so the next one does not start where it ends."""
    data = sample[0].read_bytes()
    p = _patched(sample, tmp_path, _offset_pos(data, "a.f32", 2) - 4, "<I", int(QT.F16))
    with pytest.raises(ModelFileError, match="'b.f16' starts at data offset .* where 'a.f32' ends"):
        _open_quietly(p)


def test_duplicate_key_and_tensor(sample, tmp_path):
    data = sample[0].read_bytes()
    p = tmp_path / "dup.gguf"
    p.write_bytes(data.replace(b"some.big", b"some.neg"))
    with pytest.raises(ModelFileError, match="key 'some.neg' appears twice"):
        _open_quietly(p)
    p.write_bytes(data.replace(b"b.f16", b"a.f32", 1))
    with pytest.raises(ModelFileError, match="tensor 'a.f32' appears twice"):
        _open_quietly(p)


@pytest.mark.parametrize("value", [24, 0, 2.0, "32"])
def test_bad_alignment(tmp_path, value):
    w = gguf.GGUFWriter(str(tmp_path / "a.gguf"), "gpt-oss")
    w.add_key_value("general.alignment", value, gguf.GGUFValueType.get_type(value))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="invalid general.alignment"):
        _open_quietly(tmp_path / "a.gguf")
