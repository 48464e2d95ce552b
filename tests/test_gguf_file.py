"""The GGUF reader against gguf-py: same metadata, same tensor bytes, clear errors."""

from __future__ import annotations

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
