"""llama.cpp as a peer for convert / quantize (slow; see docs/compatibility.md).

Needs two things, given by environment variables (the test skips without them):

  GPTOSS_LLAMA_CONVERTER  path of llama.cpp's convert_hf_to_gguf.py (from the
                          llama-cpp-python 0.3.36 sdist: vendor/llama.cpp/); it is
                          run with this interpreter (torch, transformers present)
  GPTOSS_LLAMA_PYTHON     a Python interpreter that has llama-cpp-python 0.3.36

    GPTOSS_LLAMA_CONVERTER=/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py \\
    GPTOSS_LLAMA_PYTHON=/work/llama/venv/bin/python \\
    .venv/bin/pytest -m slow tests/test_llama_cpp_compat.py -s

A tiny gpt-oss with the real o200k_harmony tokenizer (llama.cpp recognises the
pre-tokenizer by hashing a test encoding, so a toy vocabulary would be refused)
is written as an HF checkpoint; llama.cpp's converter and ours convert it with
each --outtype; the files must hold the same tensors (names, types, shapes,
bytes) and the same keys (but general.name); llama.cpp must load ours and give
bit-identical logits to those from its own conversion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from checkpoints import write_hf_checkpoint
from tiny_models import TinySpec, build_tiny_model

from gptoss_cli.convert.convert import convert_checkpoint
from gptoss_cli.convert.quantize import quantize_gguf
from gptoss_cli.gguf_file import GGUFFile, StringArray

CONVERTER = os.environ.get("GPTOSS_LLAMA_CONVERTER")
LLAMA_PYTHON = os.environ.get("GPTOSS_LLAMA_PYTHON")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CONVERTER and LLAMA_PYTHON), reason="set GPTOSS_LLAMA_CONVERTER and GPTOSS_LLAMA_PYTHON"),
]

SPEC = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2,
                head_dim=64, vocab=201088, sliding_window=8, seed=7, dense="bf16")

# Logits through llama-cpp-python. n_batch=1: llama.cpp 0.3.36's AMX Q8_0 matmul
# (used for batches of 8 and more on CPUs with AMX) crashes here with SIGSEGV.
_LLAMA_SCRIPT = r"""
import json, sys, numpy as np
from llama_cpp import Llama
ids = json.loads(sys.argv[1])
for path in sys.argv[2:]:
    llm = Llama(model_path=path, n_ctx=256, n_batch=1, logits_all=True, n_threads=2, verbose=False)
    llm.eval(ids)
    np.save(path + ".llama.npy", np.array(llm.scores[: len(ids)], dtype=np.float32))
    del llm
"""


def _same_file_contents(a: Path, b: Path) -> list[str]:
    """Differences between two GGUF files: tensors by name, then keys (general.name ignored)."""
    diffs = []
    with GGUFFile(a) as x, GGUFFile(b) as y:
        if set(x.tensors) != set(y.tensors):
            diffs.append(f"tensor names differ: {sorted(set(x.tensors) ^ set(y.tensors))[:5]}")
        for n in set(x.tensors) & set(y.tensors):
            s, t = x.tensors[n], y.tensors[n]
            if (s.ggml_type, s.shape) != (t.ggml_type, t.shape):
                diffs.append(f"{n}: {s.type_name}{s.shape} vs {t.type_name}{t.shape}")
            elif bytes(x.data[s.offset : s.offset + s.nbytes]) != bytes(y.data[t.offset : t.offset + t.nbytes]):
                diffs.append(f"{n}: bytes differ")

        def norm(v):
            return tuple(v.tolist()) if isinstance(v, (StringArray, np.ndarray)) else v

        for k in set(x.metadata) | set(y.metadata):
            if k != "general.name" and norm(x.metadata.get(k)) != norm(y.metadata.get(k)):
                diffs.append(f"key {k} differs")
    return diffs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama-compat")
    tm = build_tiny_model(SPEC, root)
    ckpt = write_hf_checkpoint(tm, root / "gpt-oss-tiny", shards=2)
    return tm, ckpt, root


def _llama_convert(ckpt: Path, out: Path, outtype: str) -> None:
    p = subprocess.run([sys.executable, CONVERTER, str(ckpt), "--outfile", str(out), "--outtype", outtype],
                       capture_output=True, text=True, cwd=Path(CONVERTER).parent, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.mark.parametrize("outtype", ["auto", "bf16", "f16", "f32", "q8_0"])
def test_converter_output_equals_llama_cpp(setup, outtype):
    tm, ckpt, root = setup
    theirs, ours = root / f"llama-{outtype}.gguf", root / f"ours-{outtype}.gguf"
    _llama_convert(ckpt, theirs, outtype)
    convert_checkpoint(ckpt, ours, outtype, progress=False, fsync=False)
    assert _same_file_contents(ours, theirs) == []


def test_llama_cpp_logits_on_our_files(setup):
    tm, ckpt, root = setup
    for t in ("auto", "q8_0"):
        if not (root / f"llama-{t}.gguf").exists():
            _llama_convert(ckpt, root / f"llama-{t}.gguf", t)
        if not (root / f"ours-{t}.gguf").exists():
            convert_checkpoint(ckpt, root / f"ours-{t}.gguf", t, progress=False, fsync=False)
    quantize_gguf(root / "ours-auto.gguf", root / "ours-quantized-q8_0.gguf", "q8_0", force=True, progress=False, fsync=False)
    files = ["llama-auto", "ours-auto", "llama-q8_0", "ours-q8_0", "ours-quantized-q8_0"]
    ids = np.random.default_rng(1).integers(0, 199998, 64).tolist()
    p = subprocess.run([LLAMA_PYTHON, "-c", _LLAMA_SCRIPT, json.dumps(ids), *[str(root / f"{f}.gguf") for f in files]],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    L = {f: np.load(root / f"{f}.gguf.llama.npy") for f in files}
    assert np.array_equal(L["ours-auto"], L["llama-auto"])
    assert np.array_equal(L["ours-q8_0"], L["llama-q8_0"])
    assert np.array_equal(L["ours-quantized-q8_0"], L["llama-q8_0"])
    ref = tm.reference_logits(ids)
    for f, a in L.items():
        rel = float(np.mean(np.abs(a - ref)) / ref.std())
        agree = float(np.mean(a.argmax(-1) == ref.argmax(-1)))
        print(f"\nllama.cpp on {f}: top-1 vs transformers {agree:.3f}, mean |err| / std {rel:.2e}")
        assert rel < 0.05  # llama.cpp's own arithmetic (8-bit activations, f16 KV) on a tiny random model


_QUANTIZE_SCRIPT = r"""
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = int(sys.argv[3])
p.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"""


def test_quantize_equals_llama_quantize(setup):
    """`gptoss quantize F q8_0` == llama-quantize's MXFP4_MOE (experts MXFP4, every
    other 2-D weight Q8_0: the layout of ggml-org's published files), key for key."""
    tm, ckpt, root = setup
    src = root / "ours-auto.gguf"
    if not src.exists():
        convert_checkpoint(ckpt, src, "auto", progress=False, fsync=False)
    theirs, ours = root / "llama-quantize-mxfp4-moe.gguf", root / "ours-quantize-q8_0.gguf"
    p = subprocess.run([LLAMA_PYTHON, "-c", _QUANTIZE_SCRIPT, str(src), str(theirs), "38"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    quantize_gguf(src, ours, "q8_0", force=True, progress=False, fsync=False)
    assert _same_file_contents(ours, theirs) == []


def test_llama_cpp_loads_our_split_files(setup):
    """convert --split-max-size and quantize --split-max-size write shards llama.cpp opens from the first
    one, with logits identical to the unsplit file's."""
    tm, ckpt, root = setup
    whole = root / "ours-auto.gguf"
    if not whole.exists():
        convert_checkpoint(ckpt, whole, "auto", progress=False, fsync=False)
    (root / "conv-split").mkdir(exist_ok=True)
    (root / "quant-split").mkdir(exist_ok=True)
    conv = convert_checkpoint(ckpt, root / "conv-split" / "m.gguf", "auto", force=True, progress=False, fsync=False,
                              split_max_size=2_000_000).path
    quant = quantize_gguf(whole, root / "quant-split" / "m.gguf", "q8_0", force=True, progress=False, fsync=False,
                          split_max_size=2_000_000).path
    unsplit_q = root / "ours-quantized-q8_0.gguf"
    if not unsplit_q.exists():
        quantize_gguf(whole, unsplit_q, "q8_0", force=True, progress=False, fsync=False)
    assert conv.name.endswith("-00001-of-" + conv.name[-10:]) and len(list(conv.parent.glob("m-*.gguf"))) > 1
    ids = np.random.default_rng(2).integers(0, 199998, 32).tolist()
    files = [whole, conv, unsplit_q, quant]
    p = subprocess.run([LLAMA_PYTHON, "-c", _LLAMA_SCRIPT, json.dumps(ids), *map(str, files)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    L = [np.load(str(f) + ".llama.npy") for f in files]
    assert np.array_equal(L[0], L[1]) and np.array_equal(L[2], L[3])
