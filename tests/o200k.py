"""Offline o200k_harmony oracles for the tests (docs/design.md §7).

- `o200k_ranks()`: the genuine o200k_base byte-pair ranks from the bpe-openai wheel.
- `tiktoken_oracle()`: tiktoken's o200k_harmony built in memory from those ranks.
- `harmony_encoding()`: openai-harmony's HarmonyGptOss encoding, loaded offline.
- `write_tokenizer_gguf(path)`: a GGUF with only the tokenizer keys (as llama.cpp writes them).
"""

from __future__ import annotations

import base64
import functools
import gzip
import importlib.util
import os
import tempfile

O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


def _gz_bytes() -> bytes:
    # locate the wheel's data file without importing bpe_openai (its import loads vocabularies)
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bpe-openai wheel is not installed (pip install bpe-openai)")
    folder = list(spec.submodule_search_locations)[0]
    with open(os.path.join(folder, "data", "o200k_base.tiktoken.gz"), "rb") as f:
        return f.read()


@functools.lru_cache(maxsize=1)
def o200k_file_bytes() -> bytes:
    return gzip.decompress(_gz_bytes())


@functools.lru_cache(maxsize=1)
def o200k_ranks() -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in o200k_file_bytes().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def special_tokens() -> dict[str, int]:
    from gptoss_cli.tokenizer_arrays import o200k_harmony_special_tokens

    return o200k_harmony_special_tokens()


@functools.lru_cache(maxsize=1)
def tiktoken_oracle():
    import tiktoken

    return tiktoken.Encoding(
        name="o200k_harmony",
        pat_str=O200K_PATTERN,
        mergeable_ranks=o200k_ranks(),
        special_tokens=special_tokens(),
    )


_ENC_DIR: str | None = None


@functools.lru_cache(maxsize=1)
def harmony_encoding():
    """openai-harmony's encoding, offline: o200k_base.tiktoken unpacked into a temp folder."""
    global _ENC_DIR
    if _ENC_DIR is None:
        _ENC_DIR = tempfile.mkdtemp(prefix="o200k_")
        with open(os.path.join(_ENC_DIR, "o200k_base.tiktoken"), "wb") as f:
            f.write(o200k_file_bytes())
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = _ENC_DIR
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


@functools.lru_cache(maxsize=1)
def o200k_arrays():
    from gptoss_cli.tokenizer_arrays import from_tiktoken_ranks

    return from_tiktoken_ranks(o200k_ranks(), special_tokens())


def write_tokenizer_gguf(path: str, arrays=None) -> str:
    """Write a GGUF holding only `general.architecture` and the tokenizer keys."""
    import gguf

    if arrays is None:
        arrays = o200k_arrays()
    w = gguf.GGUFWriter(path, "gpt-oss")
    w.add_tokenizer_model(arrays.model)
    w.add_tokenizer_pre(arrays.pre)
    w.add_token_list(arrays.tokens)
    w.add_token_types(arrays.token_types)
    w.add_token_merges(arrays.merges)
    if arrays.bos_id is not None:
        w.add_bos_token_id(arrays.bos_id)
    if arrays.eos_id is not None:
        w.add_eos_token_id(arrays.eos_id)
    if arrays.padding_id is not None:
        w.add_pad_token_id(arrays.padding_id)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
