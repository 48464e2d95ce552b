"""A Hugging Face `tokenizer.json` (plus `tokenizer_config.json` / `config.json`)
-> the GGUF tokenizer arrays, as llama.cpp's converter writes them for gpt-oss.

Facts mirrored (llama.cpp `TextModel.get_vocab_base` / `_set_vocab_gpt2` and
gguf-py's `SpecialVocab`):

* `tokenizer.ggml.model` is "gpt2", `tokenizer.ggml.pre` "gpt-4o" (the o200k
  pre-tokenizer; llama.cpp recognises it by hashing a test encoding, we by the
  Split regex in tokenizer.json, with a warning when it differs);
* one token per id up to the config's `vocab_size`: the BPE vocabulary's
  strings (already in GPT-2 byte spelling), the added tokens' contents, and
  `[PAD{id}]` for ids that neither has;
* token types: NORMAL for vocabulary tokens; added tokens CONTROL when
  `special` or when they look like `<|...|>`, else USER_DEFINED; `[PAD]` UNUSED;
* merges from `model.merges`, strings as they are, pairs joined by a space
  (a space inside a pair's part written as U+0120, as gguf-py does);
* bos / eos / ... ids from `tokenizer_config.json`'s `*_token` names looked up
  among the added tokens, then `config.json`'s `*_token_id`; the first found
  wins. `add_bos_token` / `add_eos_token`: False for a ByteLevel post-processor
  (gpt-oss), overridden by explicit booleans in tokenizer_config.json;
* the chat template from tokenizer_config.json, else `chat_template.jinja`,
  else `chat_template.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tokenizer_arrays import (
    TOKEN_TYPE_CONTROL,
    TOKEN_TYPE_NORMAL,
    TOKEN_TYPE_UNUSED,
    TOKEN_TYPE_USER_DEFINED,
    TokenizerArrays,
)
from .errors import ConvertError

__all__ = ["ConvertedTokenizer", "read_tokenizer_json", "SPECIAL_TYPES"]

SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")


@dataclass
class ConvertedTokenizer(TokenizerArrays):
    """TokenizerArrays plus the optional keys `convert` writes."""

    unk_id: int | None = None
    sep_id: int | None = None
    cls_id: int | None = None
    mask_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    chat_template: str | None = None
    warnings: list[str] = field(default_factory=list)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConvertError(f"{path}: cannot read ({err})") from None
    except json.JSONDecodeError as err:
        raise ConvertError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def _looks_special(token: str) -> bool:
    # llama.cpp TextModel.does_token_look_special, the cases that can occur here
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def _merges(raw: Any, path: Path) -> list[str]:
    if not isinstance(raw, list) or not raw:
        return []
    if all(isinstance(m, str) for m in raw):
        return list(raw)
    out = []
    for m in raw:
        if not (isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) for s in m)):
            raise ConvertError(f"{path}: unknown merges format")
        out.append(" ".join(part.replace(" ", "\u0120") for part in m))
    return out


def _split_pattern(pre: Any) -> str | None:
    """The regex of the first Split pre-tokenizer, if any."""
    if not isinstance(pre, dict):
        return None
    if pre.get("type") == "Sequence":
        for p in pre.get("pretokenizers", []):
            found = _split_pattern(p)
            if found is not None:
                return found
        return None
    if pre.get("type") == "Split":
        pattern = pre.get("pattern")
        if isinstance(pattern, dict):
            return pattern.get("Regex") or pattern.get("String")
    return None


def read_tokenizer_json(folder: Path, vocab_size: int, config: dict | None = None) -> ConvertedTokenizer:
    """Read `folder/tokenizer.json` (and its tokenizer_config.json, chat template files).

    `config` is the model's config.json (for `*_token_id`); `vocab_size` the
    number of tokens to write (the model's embedding rows).
    """
    from ..tokenizer import O200K_PATTERN

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ConvertError(f"{path}: file not found (the tokenizer is needed to convert)")
    tj = _load_json(path)
    model = tj.get("model") if isinstance(tj, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict):
        raise ConvertError(f"{path}: not a tokenizer.json (no model.vocab)")
    if model.get("type", "BPE") != "BPE":
        raise ConvertError(f"{path}: tokenizer model is {model.get('type')!r}, gpt-oss uses BPE")

    warnings: list[str] = []
    tokens: list[str | None] = [None] * vocab_size
    types = [TOKEN_TYPE_UNUSED] * vocab_size
    for tok, i in model["vocab"].items():
        if not isinstance(i, int) or i < 0:
            raise ConvertError(f"{path}: bad id {i!r} for token {tok!r}")
        if i >= vocab_size:
            raise ConvertError(f"{path}: token id {i} is outside the model's vocabulary of {vocab_size}")
        tokens[i] = tok
        types[i] = TOKEN_TYPE_NORMAL
    added = tj.get("added_tokens") or []
    for a in added:
        try:
            i, content = int(a["id"]), str(a["content"])
        except (KeyError, TypeError, ValueError):
            raise ConvertError(f"{path}: malformed added_tokens entry") from None
        if not 0 <= i < vocab_size:
            raise ConvertError(f"{path}: added token id {i} is outside the model's vocabulary of {vocab_size}")
        tokens[i] = content
        types[i] = TOKEN_TYPE_CONTROL if (a.get("special") or _looks_special(content)) else TOKEN_TYPE_USER_DEFINED
    for i in range(vocab_size):
        if tokens[i] is None:
            tokens[i] = f"[PAD{i}]"

    merges = _merges(model.get("merges"), path)
    if not merges:
        raise ConvertError(f"{path}: no merges (a gpt-oss tokenizer.json has them in model.merges)")

    pattern = _split_pattern(tj.get("pre_tokenizer"))
    if pattern != O200K_PATTERN:
        warnings.append(
            f"{path}: the pre-tokenizer is not o200k's; writing tokenizer.ggml.pre = 'gpt-4o' anyway (gpt-oss uses o200k)"
        )

    out = ConvertedTokenizer(
        tokens=tokens,  # type: ignore[arg-type]
        token_types=types,
        merges=merges,
        model="gpt2",
        pre="gpt-4o",
        warnings=warnings,
    )

    # --- special ids, add_*_token, chat template (gguf-py SpecialVocab) -------------
    tc_path = folder / "tokenizer_config.json"
    tc = _load_json(tc_path) if tc_path.is_file() else None
    if tc is not None and not isinstance(tc, dict):
        raise ConvertError(f"{tc_path}: not a JSON object")
    ids: dict[str, int] = {}
    add: dict[str, bool] = {}
    post = tj.get("post_processor")
    if isinstance(post, dict):
        for proc in post.get("processors", [post]):
            if isinstance(proc, dict) and proc.get("type") == "ByteLevel":
                add.setdefault("bos", False)
                add.setdefault("eos", False)
    if tc:
        for typ in SPECIAL_TYPES:
            flag = tc.get(f"add_{typ}_token")
            if isinstance(flag, bool) and typ not in add:
                add[typ] = flag
            entry = tc.get(f"{typ}_token")
            content = entry.get("content") if isinstance(entry, dict) else entry
            if not isinstance(content, str):
                continue
            tid = next((a.get("id") for a in added if a.get("content") == content), None)
            if isinstance(tid, int) and 0 <= tid < vocab_size and typ not in ids:
                ids[typ] = tid
        template = tc.get("chat_template")
        if template is None:
            jinja = folder / "chat_template.jinja"
            cjson = folder / "chat_template.json"
            if jinja.is_file():
                template = jinja.read_text(encoding="utf-8")
            elif cjson.is_file():
                template = (_load_json(cjson) or {}).get("chat_template")
        if isinstance(template, str):
            out.chat_template = template
    for typ in SPECIAL_TYPES:
        tid = (config or {}).get(f"{typ}_token_id")
        if isinstance(tid, int) and not isinstance(tid, bool) and 0 <= tid < vocab_size and typ not in ids:
            ids[typ] = tid

    out.bos_id = ids.get("bos")
    out.eos_id = ids.get("eos")
    out.padding_id = ids.get("pad")
    out.unk_id = ids.get("unk")
    out.sep_id = ids.get("sep")
    out.cls_id = ids.get("cls")
    out.mask_id = ids.get("mask")
    out.add_bos = add.get("bos")
    out.add_eos = add.get("eos")
    return out
