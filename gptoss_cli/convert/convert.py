"""`gptoss convert`: a gpt-oss safetensors checkpoint -> GGUF, like llama.cpp's
`convert_hf_to_gguf.py` (same tensor names, types, shapes and bytes, same
`gpt-oss.*` keys and tokenizer arrays).

Types written:
  * experts in MXFP4 in the checkpoint: repacked byte for byte as MXFP4,
    whatever `--outtype`;
  * experts as plain float tensors (bf16 fine-tunes): `--outtype auto`
    quantizes them to MXFP4 (bit-identical to gguf.quants); an explicit
    `--outtype` writes them in that type (what llama.cpp's converter does with
    the same `--outtype`);
  * 2-D dense weights (token embedding, output, attention): `--outtype`; `auto`
    keeps the checkpoint's 16-bit type (BF16 for gpt-oss; F16 for float16, and
    F16 for float32 checkpoints, as llama.cpp's "auto" picks);
  * norms, biases, sinks and the router: F32.
  * `general.file_type`: the outtype's (ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7,
    MOSTLY_BF16 32), or MOSTLY_MXFP4_MOE (38) when the experts are MXFP4 and the
    outtype is a float type (llama.cpp's rule).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gguf import GGMLQuantizationType as QT

from ..errors import OptionError
from ..gguf_split import shard_paths, shards_note
from .errors import ConvertError
from .gguf_writer import (
    DENSE_TYPES,
    FILE_TYPE_MXFP4_MOE,
    GGUFTensor,
    expected_tensor_shapes,
    tensor_type_for,
    write_gpt_oss_gguf,
)
from .hf_layout import Plan, is_hf_config, plan_hf, read_json_config
from .original_layout import is_original_config, plan_original
from .progress import ByteProgress, fmt_bytes
from .recipes import MXFP4Recipe, encode
from .tokenizer_json import ConvertedTokenizer, read_tokenizer_json

__all__ = ["OUTTYPES", "FILE_TYPES", "ConvertResult", "plan_checkpoint", "convert_checkpoint", "convert_command",
           "check_output_path"]

OUTTYPES = ("auto", "bf16", "f16", "f32", "q8_0")
# llama.cpp's LlamaFileType values
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}
_AUTO_DENSE = {"BF16": "bf16", "F16": "f16", "F32": "f16"}

# o200k_harmony ids used when neither tokenizer_config.json nor config.json names them
_HARMONY_SPECIALS = {"bos_id": "<|startoftext|>", "eos_id": "<|return|>", "padding_id": "<|endoftext|>"}


@dataclass
class ConvertResult:
    path: Path
    layout: str
    n_tensors: int
    nbytes: int
    seconds: float
    dense_type: str
    expert_type: str
    experts_repacked: bool
    file_type: int


def check_output_path(out: Path, force: bool) -> None:
    if out.is_dir():
        raise ConvertError(f"{out}: is a directory (give the output file name, e.g. {out / 'model.gguf'})")
    if out.exists() and not force:
        raise ConvertError(f"{out}: already exists (use --force to overwrite)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConvertError(f"{parent}: no such folder for the output file")
    if not os.access(parent, os.W_OK):
        raise ConvertError(f"{parent}: folder is not writable")


def plan_checkpoint(src: str | os.PathLike[str]) -> Plan:
    """Read the checkpoint's config and headers and plan every tensor (reads no weights)."""
    src = Path(src)
    if not src.exists():
        raise ConvertError(f"{src}: no such checkpoint folder")
    if src.is_file():
        if src.name == "config.json":
            src = src.parent if str(src.parent) else Path(".")
        else:
            raise ConvertError(f"{src}: is a file; give the checkpoint folder (with config.json and *.safetensors)")
    config_path = src / "config.json"
    config = read_json_config(config_path)
    if is_hf_config(config):
        return plan_hf(src, config)
    if is_original_config(config):
        return plan_original(src, config)
    what = config.get("model_type") or (config.get("architectures") or [None])[0]
    detail = f"model_type {what!r}" if what else "neither the Hugging Face nor the original gpt-oss layout"
    raise ConvertError(f"{config_path}: not a gpt-oss config ({detail}); gptoss converts only gpt-oss")


def _fill_harmony_specials(tok: ConvertedTokenizer) -> list[str]:
    if any(getattr(tok, a) is not None for a in _HARMONY_SPECIALS):
        return []
    index = {t: i for i, t in enumerate(tok.tokens) if t.startswith("<|")}
    filled = []
    for attr, name in _HARMONY_SPECIALS.items():
        if name in index:
            setattr(tok, attr, index[name])
            filled.append(f"{attr[:-3] if attr != 'padding_id' else 'padding'} {index[name]} ({name})")
    return [f"no special token ids in tokenizer_config.json / config.json; using o200k_harmony's: {', '.join(filled)}"] if filled else []


def convert_checkpoint(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    outtype: str = "auto",
    *,
    force: bool = False,
    progress: bool = True,
    fsync: bool = True,
    split_max_size: int = 0,
) -> ConvertResult:
    """Convert a gpt-oss checkpoint folder (HF or original layout) to a GGUF file at `out`."""
    if outtype not in OUTTYPES:
        raise OptionError(f"--outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    out = Path(out)
    check_output_path(out, force)
    plan = plan_checkpoint(src)
    cfg = plan.cfg
    tok = read_tokenizer_json(plan.tokenizer_dir, cfg.vocab_size, plan.tokenizer_config)
    notes = list(tok.warnings) + _fill_harmony_specials(tok)
    if tok.eos_id is None:
        notes.append("no end-of-sequence token id found; the file has no tokenizer.ggml.eos_token_id")

    sources = {f.path.resolve() for f in _checkpoint_files(plan)}
    if out.resolve() in sources:
        raise ConvertError(f"{out}: is one of the checkpoint's own files")

    dense = _AUTO_DENSE[plan.dense_dtype] if outtype == "auto" else outtype
    float_experts_qt = QT.MXFP4 if outtype == "auto" else DENSE_TYPES[outtype]
    shapes = expected_tensor_shapes(cfg)
    if set(shapes) != set(plan.recipes):  # pragma: no cover - the layouts make every tensor
        raise AssertionError(f"planned tensors differ from the GGUF layout: {set(shapes) ^ set(plan.recipes)}")
    tensors: list[GGUFTensor] = []
    for name in shapes:
        recipe = plan.recipes[name]
        assert tuple(recipe.shape) == shapes[name], name
        if isinstance(recipe, MXFP4Recipe):
            qt = QT.MXFP4
        elif name.endswith("_exps.weight"):
            qt = float_experts_qt
        else:
            qt = tensor_type_for(name, len(recipe.shape), dense)
        tensors.append(GGUFTensor(name, encode(recipe, qt), qt, recipe.shape))
    expert_qt = QT.MXFP4 if plan.experts == "mxfp4" else QT(float_experts_qt)
    file_type = FILE_TYPES[dense]
    if expert_qt == QT.MXFP4 and dense in ("f32", "f16", "bf16"):
        file_type = FILE_TYPE_MXFP4_MOE

    total = sum(t.nbytes for t in tensors)
    bar = ByteProgress(f"convert {out.name}", total, enabled=progress)
    with bar:
        for n in notes:
            bar.note(f"gptoss: note: {n}")
        if plan.experts == "float":
            bar.note(
                f"gptoss: note: the checkpoint's experts are plain tensors; writing them as {expert_qt.name}"
                + (" (quantized, bit-identical to gguf.quants)" if expert_qt == QT.MXFP4 else "")
            )
        try:
            first = write_gpt_oss_gguf(
                out, cfg, tensors, tokenizer=tok, name=plan.name, file_type=file_type,
                yarn_betas=plan.yarn_betas, fsync=fsync, progress=bar.advance, split_max_size=split_max_size,
            )
        except OSError as err:
            raise ConvertError(f"{out}: cannot write ({err.strerror or err})") from None
        finally:
            for f in _checkpoint_files(plan):
                f.close()
    return ConvertResult(
        path=first,
        layout=plan.layout,
        n_tensors=len(tensors),
        nbytes=sum(p.stat().st_size for p in shard_paths(first)),
        seconds=bar.seconds,
        dense_type=DENSE_TYPES[dense].name,
        expert_type=expert_qt.name,
        experts_repacked=plan.experts == "mxfp4",
        file_type=file_type,
    )


def _checkpoint_files(plan: Plan):
    return list(plan.checkpoint.files.values()) if plan.checkpoint is not None else []


def convert_command(src: str, out: str, outtype: str = "auto", force: bool = False, split_max_size: int = 0) -> None:
    """The CLI's `convert`: convert and print a one-line summary to stderr."""
    import sys

    r = convert_checkpoint(src, out, outtype, force=force, progress=True, split_max_size=split_max_size)
    experts = f"experts {r.expert_type}" + (" (repacked)" if r.experts_repacked else "")
    sys.stderr.write(
        f"gptoss: wrote {shards_note(r.path)} ({r.layout} layout, {r.n_tensors} tensors, {fmt_bytes(r.nbytes)}; "
        f"dense {r.dense_type}, {experts}) in {r.seconds:.1f} s\n"
    )
