"""What `gptoss tokenize`, `gptoss harmony render` and `gptoss harmony parse` do.

Each function takes plain values, does the work and writes to `out`; the CLI
only parses options. Errors a user can cause are GptossError subclasses.
"""

from __future__ import annotations

import json
import sys
from typing import IO

from ..errors import InputError


def _read_input(path: str, what: str, stdin: IO[bytes] | None = None) -> bytes:
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return stream.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} is a directory: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} is not valid UTF-8 (byte {e.start})") from None


def _load_json(data: bytes, what: str):
    text = _utf8(data, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _tokenizer_side(model: str | None):
    """The model file opened for its tokenizer and Harmony encoding only (no weights, no Numba)."""
    from ..loader import load_model

    return load_model(model, weights=False)


def _encoding(model: str | None):
    with _tokenizer_side(model) as lm:
        return lm.encoding


# -- tokenize --------------------------------------------------------------------


def tokenize(
    model: str | None,
    text: str | None,
    *,
    as_json: bool = False,
    jsonl: bool = False,
    allow_special: bool = False,
    out: IO[str] | None = None,
    stdin: IO[bytes] | None = None,
) -> None:
    """Print the token ids of TEXT (or stdin when TEXT is '-' or absent).

    Default output: ids separated by spaces. as_json: one JSON array.
    jsonl: every stdin line is a JSON string; every output line its JSON array.
    """
    out = out if out is not None else sys.stdout
    if jsonl and text not in (None, "-"):
        raise InputError("--jsonl reads JSON strings from standard input; give no TEXT (or '-')")
    if jsonl and as_json:
        raise InputError("--json and --jsonl cannot be used together")
    with _tokenizer_side(model) as lm:
        tok = lm.tokenizer
    if jsonl:
        stream = stdin if stdin is not None else sys.stdin.buffer
        for lineno, raw in enumerate(stream, 1):
            line = _utf8(raw, f"input line {lineno}").strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"input line {lineno} is not valid JSON: {e.msg}") from None
            if not isinstance(value, str):
                raise InputError(f"input line {lineno} is not a JSON string")
            try:
                ids = tok.encode(value, allow_special=allow_special)
            except InputError as e:
                raise InputError(f"input line {lineno}: {e}") from None
            out.write(json.dumps(ids, separators=(",", ":")) + "\n")
            out.flush()
        return
    if text is None or text == "-":
        text = _utf8(_read_input("-", "standard input", stdin), "standard input")
    ids = tok.encode(text, allow_special=allow_special)
    if as_json:
        out.write(json.dumps(ids, separators=(",", ":")) + "\n")
    else:
        out.write(" ".join(map(str, ids)) + "\n")


# -- harmony render -----------------------------------------------------------------


def render(
    model: str | None,
    conversation_path: str,
    *,
    as_text: bool = False,
    next_role: str | None = "assistant",
    auto_drop_analysis: bool = True,
    out: IO[str] | None = None,
    stdin: IO[bytes] | None = None,
) -> None:
    """Print the completion prompt of an openai-harmony conversation JSON file.

    Default: the token ids as one JSON array; as_text: the prompt's text with
    special tokens spelled out. next_role None renders the conversation alone.
    """
    from .model import Conversation, role_from_str
    from .render import RenderConversationConfig

    out = out if out is not None else sys.stdout
    data = _load_json(_read_input(conversation_path, "conversation file", stdin), "conversation file")
    conv = Conversation.from_dict(data)
    role = None if next_role is None else role_from_str(next_role)
    enc = _encoding(model)
    cfg = RenderConversationConfig(auto_drop_analysis=auto_drop_analysis)
    if role is None:
        ids = enc.render_conversation(conv, cfg)
    else:
        ids = enc.render_conversation_for_completion(conv, role, cfg)
    if as_text:
        out.write(enc.tokenizer.decode(ids) + "\n")
    else:
        out.write(json.dumps(ids, separators=(",", ":")) + "\n")


# -- harmony parse ------------------------------------------------------------------


def _token_list(data) -> list[int]:
    if isinstance(data, dict) and "tokens" in data:
        data = data["tokens"]
    if not isinstance(data, list):
        raise InputError("tokens file must hold a JSON array of token ids")
    for i, t in enumerate(data):
        if isinstance(t, bool) or not isinstance(t, int):
            raise InputError(f"tokens file: item {i} is not an integer token id: {json.dumps(t)[:40]}")
    return data


def parse(
    model: str | None,
    tokens_path: str,
    *,
    as_json: bool = False,
    role: str | None = "auto",
    out: IO[str] | None = None,
    stdin: IO[bytes] | None = None,
) -> None:
    """Print the messages in a JSON array of completion token ids.

    role: the role of the message the tokens complete ('assistant' after a
    prompt ending in `<|start|>assistant`), 'none' when the tokens begin with
    `<|start|>`, or 'auto' (default): 'none' if the first token is `<|start|>`,
    else 'assistant'. as_json: the messages as a JSON list in openai-harmony's
    `Message.to_dict()` form; otherwise one readable block per message.
    """
    from .model import role_from_str
    from .parse import parse_messages_from_completion_tokens

    out = out if out is not None else sys.stdout
    tokens = _token_list(_load_json(_read_input(tokens_path, "tokens file", stdin), "tokens file"))
    enc = _encoding(model)
    n = enc.tokenizer.vocab_size
    for t in tokens:
        if not 0 <= t < n:
            raise InputError(f"token id {t} is outside the vocabulary (0..{n - 1})")
    if role is None or role == "none":
        r = None
    elif role == "auto":
        r = None if tokens and tokens[0] == enc.start_id else role_from_str("assistant")
    else:
        r = role_from_str(role)
    messages = parse_messages_from_completion_tokens(enc, tokens, r)
    if as_json:
        out.write(json.dumps([m.to_dict() for m in messages], ensure_ascii=False) + "\n")
        return
    for m in messages:
        head = m.author.role.value if m.author.name is None else f"{m.author.role.value}:{m.author.name}"
        if m.channel is not None:
            head += f" [{m.channel}]"
        if m.recipient is not None:
            head += f" to={m.recipient}"
        if m.content_type is not None:
            head += f" ({m.content_type})"
        out.write(f"--- {head}\n{m.text}\n")


__all__ = ["tokenize", "render", "parse"]
