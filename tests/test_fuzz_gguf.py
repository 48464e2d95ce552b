"""Seeded GGUF mutation fuzzing: a corrupt file must end in a GptossError or a finite forward pass.

Each case changes one field of a small valid gpt-oss GGUF (its fields located by
`_walk`), or flips or cuts its bytes, then loads it and runs two tokens. Any other
exception, a warning, a crash or a hang fails. Non-finite logits fail too, unless
the mutation reinterprets tensor bytes (data flips, a tensor's type, the
alignment): load reads no weights, so those are left to the forward pass's
finiteness check. docs/reliability.md lists the families and their outcomes;
`pytest tests/test_fuzz_gguf.py -m slow` runs the long set.
"""

from __future__ import annotations

import faulthandler
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from gguf import GGUFValueType as VT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiny_models import TinySpec, _float_weights

from gptoss_cli import load_model
from gptoss_cli.convert.gguf_writer import GGUFTensor, encode_tensor, tensor_type_for, write_gpt_oss_gguf
from gptoss_cli.errors import GptossError


def _load_and_run(path: Path) -> np.ndarray:
    """Load the file and run two tokens: the one place that knows the model API.

    A two-token context: a mutated context_length down to 2 still gets as far as the forward pass."""
    m = load_model(path, threads=1, context=2)
    try:
        return m.logits([0, 1])
    finally:
        m.close()


DEMO = Path(__file__).resolve().parent.parent / "gptoss_cli" / "data" / "demo.gguf"
CASE_TIMEOUT_S = 120  # a hang (not a slow case: one takes well under a second) kills the run with a traceback

# --------------------------------------------------------------------------- the file's layout

_SCALAR_FORMATS = {
    VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h", VT.UINT32: "<I", VT.INT32: "<i",
    VT.FLOAT32: "<f", VT.BOOL: "<B", VT.UINT64: "<Q", VT.INT64: "<q", VT.FLOAT64: "<d",
}


@dataclass(frozen=True)
class Field:
    """One field of the header: what it is, whose it is (a key or tensor name), where, and its struct format."""

    kind: str
    owner: str
    pos: int
    fmt: str

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def value(self, data: bytes) -> int | float | bytes:
        return struct.unpack_from(self.fmt, data, self.pos)[0]


class Layout:
    """A valid file's bytes and fields. A plain class: Hypothesis prints a dataclass argument
    of a strategy field by field, here 170 kB."""

    def __init__(self, data: bytes, fields: tuple[Field, ...], data_start: int) -> None:
        self.data = data
        self.fields = fields
        self.data_start = data_start  # first byte of the tensor data section

    def __repr__(self) -> str:
        return f"Layout({len(self.data)} bytes, {len(self.fields)} fields)"

    def of_kinds(self, *kinds: str) -> list[Field]:
        return [f for f in self.fields if f.kind in kinds]

    def find(self, kind: str, owner: str) -> Field:
        return next(f for f in self.fields if f.kind == kind and f.owner == owner)


def _walk(data: bytes) -> Layout:
    """Every fixed-size field of a valid GGUF, in file order (string arrays: three elements' lengths)."""
    fields: list[Field] = []
    pos = 0

    def take(kind: str, owner: str, fmt: str) -> int | bytes:
        nonlocal pos
        f = Field(kind, owner, pos, fmt)
        fields.append(f)
        pos += f.size
        return f.value(data)

    def string(kind: str, owner: str | None = None) -> str:
        nonlocal pos
        n = struct.unpack_from("<Q", data, pos)[0]
        text = data[pos + 8 : pos + 8 + n].decode("utf-8")
        fields.append(Field(f"{kind}_len", owner or text, pos, "<Q"))
        if n:
            fields.append(Field(kind, owner or text, pos + 8, f"<{n}s"))
        pos += 8 + n
        return text

    take("magic", "", "<4s")
    take("version", "", "<I")
    n_tensors = take("n_tensors", "", "<Q")
    n_kv = take("n_kv", "", "<Q")
    alignment = 32
    for _ in range(n_kv):
        key = string("key")
        vtype = take("value_type", key, "<I")
        if vtype == VT.STRING:
            string("text", key)
        elif vtype == VT.ARRAY:
            etype = take("array_type", key, "<I")
            count = take("array_len", key, "<Q")
            if etype == VT.STRING:
                for i in range(count):
                    if i in (0, count // 2, count - 1):
                        string("text", f"{key}[{i}]")
                    else:
                        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
            else:
                fmt = _SCALAR_FORMATS[VT(etype)]
                start, step = pos, struct.calcsize(fmt)
                for i in sorted({0, count - 1}) if count else ():
                    fields.append(Field("element", f"{key}[{i}]", start + i * step, fmt))
                pos = start + count * step
        else:
            value = take("value", key, _SCALAR_FORMATS[VT(vtype)])
            if key == "general.alignment":
                alignment = int(value)
    for _ in range(n_tensors):
        name = string("name")
        n_dims = take("n_dims", name, "<I")
        for _ in range(n_dims):
            take("dim", name, "<Q")
        take("tensor_type", name, "<I")
        take("offset", name, "<Q")
    return Layout(data, tuple(fields), -(-pos // alignment) * alignment)


# --------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Mutation:
    """Bytes to write at positions of the base file, or a length to cut it to."""

    label: str
    writes: tuple[tuple[int, bytes], ...] = ()
    cut: int | None = None
    reinterprets: bool = False  # changes what tensor bytes mean: non-finite logits are the forward check's

    def apply(self, data: bytes) -> bytes:
        out = bytearray(data if self.cut is None else data[: self.cut])
        for pos, raw in self.writes:
            out[pos : pos + len(raw)] = raw
        return bytes(out)


def _set(field: Field, value: int | float | bytes, *, reinterprets: bool = False) -> Mutation:
    raw = struct.pack(field.fmt, value)
    return Mutation(f"{field.kind} of {field.owner or 'header'} = {value!r}", ((field.pos, raw),), None, reinterprets)


_INT_RANGES = {
    "<B": (0, 2**8 - 1), "<b": (-(2**7), 2**7 - 1), "<H": (0, 2**16 - 1), "<h": (-(2**15), 2**15 - 1),
    "<I": (0, 2**32 - 1), "<i": (-(2**31), 2**31 - 1), "<Q": (0, 2**64 - 1), "<q": (-(2**63), 2**63 - 1),
}
_SPECIAL_FLOATS = [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-45, 1e-38, 1.0, 1.0 + 1e-7,
                   1e30, 3.4e38, -3.4e38]


def _int_values(fmt: str, old: int, file_size: int) -> st.SearchStrategy[int]:
    """Edge values of the field's type, values near the old one, sizes near the file's, and anything."""
    lo, hi = _INT_RANGES[fmt]
    near = [old - 1, old + 1, old * 2, old // 2, old + 8, old - 32, old + 32, file_size, file_size - old]
    edges = [0, 1, 2, 3, 4, 7, 13, lo, hi, hi - 1, hi // 2, hi // 2 + 1, 2**24 + 1, 2**31, 2**32 - 1, 2**32]
    candidates = sorted({v for v in near + edges if lo <= v <= hi and v != old})
    return st.one_of(st.sampled_from(candidates), st.integers(lo, hi))


def _values(layout: Layout, field: Field) -> st.SearchStrategy[int | float | bytes]:
    old = field.value(layout.data)
    if field.fmt in ("<f", "<d"):
        width = 32 if field.fmt == "<f" else 64
        return st.one_of(st.sampled_from(_SPECIAL_FLOATS), st.floats(width=width))
    if field.fmt.endswith("s"):  # text: one byte changed (a renamed key, invalid UTF-8, a NUL)
        assert isinstance(old, bytes)
        return st.tuples(st.integers(0, len(old) - 1), st.integers(1, 255)).map(
            lambda iv: old[: iv[0]] + bytes([old[iv[0]] ^ iv[1]]) + old[iv[0] + 1 :]
        )
    assert isinstance(old, int)
    return _int_values(field.fmt, old, len(layout.data)).filter(lambda v: v != old)


@st.composite
def _field_mutation(draw: st.DrawFn, layout: Layout, kinds: tuple[str, ...]) -> Mutation:
    candidates = layout.of_kinds(*kinds)
    field = candidates[draw(st.integers(0, len(candidates) - 1))]
    if field.kind == "magic":
        value = draw(st.sampled_from([b"GGUf", b"GGML", b"FUGG", b"\0\0\0\0"]) | st.binary(min_size=4, max_size=4))
        return _set(field, value) if value != b"GGUF" else _set(field, b"GGUf")
    if field.kind == "offset":
        old = field.value(layout.data)
        others = [f.value(layout.data) for f in layout.of_kinds("offset") if f != field]
        shift = draw(st.sampled_from([-64, -32, -16, -1, 1, 2, 16, 32, 64, 4096]))
        value = draw(st.sampled_from([max(0, old + shift)] * 4 + others + [2**63, 2**64 - 1]))
        if value == old:
            value = old + 32
        return _set(field, value)
    value = draw(_values(layout, field))
    reinterprets = field.kind == "tensor_type" or field.owner == "general.alignment"
    return _set(field, value, reinterprets=reinterprets)


@st.composite
def _byte_mutation(draw: st.DrawFn, layout: Layout) -> Mutation:
    size = len(layout.data)
    how = draw(st.sampled_from(["flip in tensor data", "flip anywhere", "cut"]))
    if how == "cut":
        n = draw(st.integers(0, size - 1))
        return Mutation(f"cut to {n} of {size} bytes", cut=n)
    lo = layout.data_start if how == "flip in tensor data" else 0
    flips = draw(st.lists(st.tuples(st.integers(lo, size - 1), st.integers(1, 255)), min_size=1, max_size=4))
    writes = tuple((p, bytes([layout.data[p] ^ x])) for p, x in flips)
    in_data = all(p >= layout.data_start for p, _ in flips)
    return Mutation(f"{how}: {[(p, hex(x)) for p, x in flips]}", writes, None, in_data)


FAMILIES: dict[str, Callable[[Layout], st.SearchStrategy[Mutation]]] = {
    "header": lambda lay: _field_mutation(lay, ("magic", "version", "n_tensors", "n_kv")),
    "metadata structure": lambda lay: _field_mutation(
        lay, ("key_len", "key", "value_type", "text_len", "text", "array_type", "array_len")
    ),
    "metadata values": lambda lay: _field_mutation(lay, ("value", "element")),
    "tensor table": lambda lay: _field_mutation(
        lay, ("name_len", "name", "n_dims", "dim", "tensor_type", "offset")
    ),
    "data bytes": _byte_mutation,
}
QUICK_EXAMPLES = {"header": 6, "metadata structure": 8, "metadata values": 12, "tensor table": 10, "data bytes": 8}
SLOW_EXAMPLES = {
    "header": 40, "metadata structure": 120, "metadata values": 160, "tensor table": 140, "data bytes": 140,
}
# GPTOSS_FUZZ_SCALE=25 multiplies the slow counts for a deeper search, under the same fixed seed
SLOW_SCALE = int(os.environ.get("GPTOSS_FUZZ_SCALE", "1"))

# --------------------------------------------------------------------------- the base file and the check

OUTCOMES: Counter[tuple[str, str, str]] = Counter()  # (run, family, outcome) -> cases


def _write_base(path: Path) -> Path:
    """A 2-layer gpt-oss with every tensor type gptoss reads, a small tokenizer and general.alignment."""
    spec = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=32, expert_ffn=32, n_heads=4, n_kv_heads=2,
                    head_dim=16, vocab=64, sliding_window=4, seed=3)
    cfg = spec.model_config()
    dense = {"token_embd": "q8_0", "output": "bf16", "blk.0": "f16", "blk.1": "q8_0"}
    tensors = []
    for name, x in _float_weights(spec, cfg).items():
        qt = tensor_type_for(name, x.ndim, next(v for k, v in dense.items() if name.startswith(k)))
        tensors.append(GGUFTensor(name, encode_tensor(x, qt), qt, x.shape))
    tokens = [f"t{i}" * (1 + i % 3) for i in range(spec.vocab)]
    tokenizer = SimpleNamespace(
        tokens=tokens, token_types=[1] * len(tokens), merges=["t 0", "t0 t1"], bos_id=1, eos_id=2, padding_id=3,
        model="gpt2", pre="gpt-4o", add_bos=False, chat_template="{{ messages }}",
    )
    alignment = [("general.alignment", 32, VT.UINT32)]
    return write_gpt_oss_gguf(path, cfg, tensors, tokenizer=tokenizer, extra_metadata=alignment, fsync=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory, request) -> tuple[Layout, Path]:
    folder = tmp_path_factory.mktemp("fuzz")
    path = _write_base(folder / "base.gguf")
    assert np.isfinite(_load_and_run(path)).all()  # also compiles the kernels before any case is timed
    request.addfinalizer(lambda: _report(request.config))
    return _walk(path.read_bytes()), folder / "case.gguf"


def _report(config: pytest.Config) -> None:
    """The outcome counts, for docs/reliability.md."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capture is None or not OUTCOMES:
        return
    with capture.global_and_fixture_disabled():
        tr.write_line("")
        for (run, family, outcome), n in sorted(OUTCOMES.items()):
            tr.write_line(f"fuzz {run:5} {family:20} {outcome:45} {n:4}")


def _check(layout: Layout, target: Path, mutation: Mutation) -> str:
    """Run one case; return its outcome, or fail with the mutation that broke the contract."""
    target.write_bytes(mutation.apply(layout.data))
    faulthandler.dump_traceback_later(CASE_TIMEOUT_S, exit=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                logits = _load_and_run(target)
            except GptossError as err:
                assert "\n" not in str(err), f"{mutation.label}: a multi-line error: {err!r}"
                assert not caught, f"{mutation.label}: warned before refusing: {[str(w.message) for w in caught]}"
                return "refused"
            except Exception as err:
                raise AssertionError(f"{mutation.label}: {type(err).__name__}: {err}") from err
    finally:
        faulthandler.cancel_dump_traceback_later()
    finite = bool(np.isfinite(logits).all())
    if finite and not caught:
        return "ran, finite logits"
    assert mutation.reinterprets, (
        f"{mutation.label}: loaded, then {'non-finite logits' if not finite else 'warned'}"
        f" {[str(w.message) for w in caught]}"
    )
    return "ran, non-finite or warned (forward check's)"


def _fuzz(base: tuple[Layout, Path], family: str, examples: int, run: str) -> None:
    layout, target = base

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(mutation=FAMILIES[family](layout))
    def case(mutation: Mutation) -> None:
        OUTCOMES[(run, family, _check(layout, target, mutation))] += 1

    case()


@pytest.mark.parametrize("family", FAMILIES)
def test_mutations_quick(base, family):
    _fuzz(base, family, QUICK_EXAMPLES[family], "quick")


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_mutations_slow(base, family):
    _fuzz(base, family, SLOW_EXAMPLES[family] * SLOW_SCALE, "slow")


# --------------------------------------------------------------------------- the findings, pinned


def _value(key: str, value: int | float) -> Callable[[Layout], Mutation]:
    return lambda lay: _set(lay.find("value", key), value)


def _tensor_value(name: str, value: float) -> Callable[[Layout], Mutation]:
    """An F32 tensor's first value overwritten."""
    def make(lay: Layout) -> Mutation:
        pos = lay.data_start + lay.find("offset", name).value(lay.data)
        return Mutation(f"{name}[0] = {value}", ((pos, struct.pack("<f", value)),))
    return make


def _offset_shift(name: str, delta: int) -> Callable[[Layout], Mutation]:
    def make(lay: Layout) -> Mutation:
        field = lay.find("offset", name)
        return _set(field, field.value(lay.data) + delta)
    return make


# name -> (the mutation, a word the one-line error must contain)
FINDINGS: dict[str, tuple[Callable[[Layout], Mutation], str]] = {
    "string length 2**63": (lambda lay: _set(lay.find("text_len", "general.name"), 2**63), "general.name"),
    "token string length 2**63": (
        lambda lay: _set(lay.find("text_len", "tokenizer.ggml.tokens[0]"), 2**63), "tokenizer.ggml.tokens"
    ),
    "yarn_beta_fast 0": (_value("gpt-oss.rope.scaling.yarn_beta_fast", 0.0), "yarn_beta_fast"),
    "yarn_beta_fast inf": (_value("gpt-oss.rope.scaling.yarn_beta_fast", math.inf), "yarn_beta_fast"),
    "yarn_beta_slow -1": (_value("gpt-oss.rope.scaling.yarn_beta_slow", -1.0), "yarn_beta_slow"),
    "yarn_beta_slow nan": (_value("gpt-oss.rope.scaling.yarn_beta_slow", math.nan), "yarn_beta_slow"),
    "rope factor nan": (_value("gpt-oss.rope.scaling.factor", math.nan), "rope.scaling.factor"),
    "freq_base 0": (_value("gpt-oss.rope.freq_base", 0.0), "freq_base"),
    "freq_base -inf": (_value("gpt-oss.rope.freq_base", -math.inf), "freq_base"),
    "freq_base 1": (_value("gpt-oss.rope.freq_base", 1.0), "freq_base"),
    "rms epsilon 0": (_value("gpt-oss.attention.layer_norm_rms_epsilon", 0.0), "rms_epsilon"),
    "rms epsilon nan": (_value("gpt-oss.attention.layer_norm_rms_epsilon", math.nan), "rms_epsilon"),
    "context_length 2**32-1": (_value("gpt-oss.context_length", 2**32 - 1), "context_length"),
    "original context 0": (_value("gpt-oss.rope.scaling.original_context_length", 0), "original_context_length"),
    "block_count below the layers": (_value("gpt-oss.block_count", 1), "blk.1"),
    "tensor dim 2**64-1": (lambda lay: _set(_dim(lay, "blk.0.attn_q.weight", 1), 2**64 - 1), "blk.0.attn_q.weight"),
    "bos id = vocab size": (
        lambda lay: _set(lay.find("value", "tokenizer.ggml.bos_token_id"), _vocab_size(lay)), "bos_token_id"
    ),
    "eos id 2**32-1": (_value("tokenizer.ggml.eos_token_id", 2**32 - 1), "eos_token_id"),
    "padding id 2**31": (_value("tokenizer.ggml.padding_token_id", 2**31), "padding_token_id"),
    "misaligned offset": (_offset_shift("output_norm.weight", 4), "output_norm.weight"),
    "offset shifted by the alignment": (_offset_shift("blk.1.attn_q.bias", 32), "blk.1.attn_q.bias"),
    "offset shifted back": (_offset_shift("output.weight", -64), "output.weight"),
    "NaN in a norm": (_tensor_value("blk.0.attn_norm.weight", math.nan), "blk.0.attn_norm.weight"),
    "inf in the sinks": (_tensor_value("blk.1.attn_sinks.weight", -math.inf), "blk.1.attn_sinks.weight"),
    "cut in half": (lambda lay: Mutation("cut in half", cut=len(lay.data) // 2), "truncated"),
}


def _dim(lay: Layout, name: str, i: int) -> Field:
    """A tensor's i-th ggml dim (ggml order: 1 is the rows of a matrix)."""
    return [f for f in lay.fields if f.kind == "dim" and f.owner == name][i]


def _vocab_size(lay: Layout) -> int:
    return _dim(lay, "token_embd.weight", 1).value(lay.data)


@pytest.mark.parametrize("case", FINDINGS)
def test_finding_is_refused_by_name(case, base):
    layout, target = base
    make, named = FINDINGS[case]
    target.write_bytes(make(layout).apply(layout.data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GptossError, match=re.escape(named)):
            _load_and_run(target)


# --------------------------------------------------------------------------- through the CLI


def _gptoss() -> str:
    exe = Path(sys.executable).with_name("gptoss")
    found = str(exe) if exe.exists() else shutil.which("gptoss")
    if found is None:
        pytest.skip("the gptoss console script is not installed (pip install -e .)")
    return found


@pytest.fixture(scope="module")
def demo_layout() -> Layout:
    return _walk(DEMO.read_bytes())


QUICK_CLI = ("string length 2**63", "context_length 2**32-1", "tensor dim 2**64-1")


def _run_cli_error(path: Path, tmp_path: Path) -> str:
    """`gptoss run` on the file: exit 1 (a ModelFileError), no traceback, and exactly one error line (returned);
    other stderr lines may only be gptoss's notices (such as the first run's kernel compile)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["GPTOSS_HOME"] = str(tmp_path / "home")  # no user config.toml
    proc = subprocess.run([_gptoss(), "run", "-m", str(path), "-t", "1", "-n", "1", "hi"],
                          capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("gptoss: error: ")]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and all(line.startswith("gptoss: ") for line in lines), proc.stderr
    return errors[0]


@pytest.mark.parametrize(
    "case", [c if c in QUICK_CLI else pytest.param(c, marks=pytest.mark.slow) for c in FINDINGS]
)
def test_cli_refuses_with_one_line(case, demo_layout, tmp_path):
    """The findings on the demo model, whose real tokenizer lets `run` go as far as it can."""
    make, named = FINDINGS[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(make(demo_layout).apply(demo_layout.data))
    assert named in _run_cli_error(path, tmp_path)


@pytest.mark.slow
def test_cli_non_finite_weights_are_one_line(demo_layout, tmp_path):
    """NaN scales in a matrix, which load does not read: the generation loop's finiteness check says so."""
    pos = demo_layout.data_start + demo_layout.find("offset", "output.weight").value(demo_layout.data)
    assert demo_layout.find("tensor_type", "output.weight").value(demo_layout.data) == 39  # MXFP4: 17-byte blocks
    path = tmp_path / "nan.gguf"
    path.write_bytes(Mutation("E8M0 scales 0xFF", tuple((pos + b, b"\xff") for b in range(0, 17 * 4, 17)))
                     .apply(demo_layout.data))
    assert "non-finite logits" in _run_cli_error(path, tmp_path)
