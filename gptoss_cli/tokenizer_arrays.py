"""The tokenizer as GGUF stores it: token strings, token types, merges, special ids.

`TokenizerArrays` is the plain-data form shared by the GGUF reader (for the
runtime tokenizer), the GGUF writer (for `convert`) and the tests.

`from_tiktoken_ranks` produces exactly what llama.cpp's converter writes for
gpt-oss from the o200k_harmony vocabulary: tokens in GPT-2's byte-to-unicode
spelling, the merges derived from the ranks (one merge per way a token splits
into two tokens, ordered by the token's rank, then by the ranks of the two
halves), NORMAL type for byte-pair tokens and CONTROL for special ones.

`read_tokenizer_arrays(path)` reads the same fields back from a GGUF file through
gptoss_cli/gguf_file.py (string arrays decoded on demand; gguf-py's GGUFReader
takes about 15 s on the real vocabulary); tests check it against GGUFReader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ModelFileError

if TYPE_CHECKING:
    from .gguf_file import GGUFFile

# gguf.TokenType values (gguf/constants.py); kept here so this module stays cheap to import.
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_UNKNOWN = 2
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4
TOKEN_TYPE_UNUSED = 5
TOKEN_TYPE_BYTE = 6

O200K_VOCAB_SIZE = 201088
O200K_BOS_ID = 199998  # <|startoftext|>
O200K_PAD_ID = 199999  # <|endoftext|>
O200K_EOS_ID = 200002  # <|return|>

# The named special tokens of o200k_harmony as the gpt-oss tokenizer.json lists
# them; every other id from 199998 to 201087 is <|reserved_N|>.
O200K_HARMONY_SPECIALS: dict[str, int] = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,
}


def o200k_harmony_special_tokens(vocab_size: int = O200K_VOCAB_SIZE, first: int = 199998) -> dict[str, int]:
    """All special tokens of o200k_harmony: the named ones plus <|reserved_N|> for the other ids."""
    by_id = {i: name for name, i in O200K_HARMONY_SPECIALS.items()}
    return {by_id.get(i, f"<|reserved_{i}|>"): i for i in range(first, vocab_size)}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_TO_UNICODE: dict[int, str] = _bytes_to_unicode()
UNICODE_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_UNICODE.items()}
# str.translate tables: bytes decoded as latin-1 <-> GPT-2 spelling.
_ENCODE_TABLE = {b: c for b, c in BYTE_TO_UNICODE.items()}
_DECODE_TABLE = {ord(c): b for c, b in UNICODE_TO_BYTE.items()}


def token_bytes_to_string(b: bytes) -> str:
    """bytes -> GPT-2 byte-level spelling (as stored in GGUF `tokenizer.ggml.tokens`)."""
    return b.decode("latin-1").translate(_ENCODE_TABLE)


def token_string_to_bytes(s: str) -> bytes:
    """GPT-2 byte-level spelling -> bytes. Raises ValueError for characters outside the map."""
    return s.translate(_DECODE_TABLE).encode("latin-1")


@dataclass
class TokenizerArrays:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None = None
    eos_id: int | None = None
    padding_id: int | None = None
    model: str = "gpt2"
    pre: str = "gpt-4o"

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)


def derive_merges(ranks: dict[bytes, int]) -> list[str]:
    """Merges implied by byte-pair ranks, in the order transformers' TikTokenConverter gives them."""
    merges: list[str] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        n = len(token)
        if n < 2:
            continue
        local = []
        for i in range(1, n):
            left = ranks.get(token[:i])
            if left is None:
                continue
            right = ranks.get(token[i:])
            if right is None:
                continue
            local.append((left, right, i))
        if not local:
            continue
        local.sort()
        for _, _, i in local:
            merges.append(token_bytes_to_string(token[:i]) + " " + token_bytes_to_string(token[i:]))
    return merges


def from_tiktoken_ranks(
    ranks: dict[bytes, int],
    special: dict[str, int],
    vocab_size: int = O200K_VOCAB_SIZE,
    *,
    bos_id: int | None = O200K_BOS_ID,
    eos_id: int | None = O200K_EOS_ID,
    padding_id: int | None = O200K_PAD_ID,
) -> TokenizerArrays:
    """Build the GGUF tokenizer arrays from tiktoken ranks plus special tokens.

    Ids in 0..vocab_size-1 that neither map names are filled with
    `<|reserved_N|>` CONTROL tokens, as the gpt-oss tokenizer.json does.
    """
    tokens: list[str | None] = [None] * vocab_size
    types = [TOKEN_TYPE_CONTROL] * vocab_size
    for b, r in ranks.items():
        if not 0 <= r < vocab_size:
            raise ValueError(f"rank {r} outside the vocabulary of {vocab_size}")
        tokens[r] = token_bytes_to_string(b)
        types[r] = TOKEN_TYPE_NORMAL
    # A name may appear twice for one id (tiktoken's o200k_harmony maps both
    # <|endofprompt|> and <|reserved_200018|> to 200018); the named one wins.
    for name, i in sorted(special.items(), key=lambda kv: kv[0].startswith("<|reserved_")):
        if not 0 <= i < vocab_size:
            continue
        if tokens[i] is not None and types[i] == TOKEN_TYPE_NORMAL:
            raise ValueError(f"special token {name!r} collides with byte-pair token {i}")
        if tokens[i] is None:
            tokens[i] = name
            types[i] = TOKEN_TYPE_CONTROL
    for i in range(vocab_size):
        if tokens[i] is None:
            tokens[i] = f"<|reserved_{i}|>"
            types[i] = TOKEN_TYPE_CONTROL
    return TokenizerArrays(
        tokens=tokens,  # type: ignore[arg-type]
        token_types=types,
        merges=derive_merges(ranks),
        bos_id=bos_id,
        eos_id=eos_id,
        padding_id=padding_id,
    )


# --- reading GGUF -----------------------------------------------------------

def tokenizer_arrays_from_gguf(gf: "GGUFFile", *, with_merges: bool = True) -> TokenizerArrays:
    """The tokenizer keys of an open GGUF file. Raises ModelFileError for anything unusable.

    with_merges=False leaves `merges` empty (the rank-based tokenizer does not
    need them; skipping saves decoding ~446k strings).
    """
    from .gguf_file import StringArray

    md = gf.metadata
    path = gf.path
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens"):
        if key not in md:
            raise ModelFileError(f"{path}: GGUF file has no tokenizer (missing key {key})")
    try:
        tokens = md["tokenizer.ggml.tokens"]
        if not isinstance(tokens, StringArray):
            raise TypeError("tokenizer.ggml.tokens is not an array of strings")
        token_types = md.get("tokenizer.ggml.token_type")
        if token_types is None:
            types = [TOKEN_TYPE_NORMAL] * len(tokens)
        elif isinstance(token_types, StringArray) or len(token_types) != len(tokens):
            raise TypeError("token and token-type arrays disagree")
        else:
            types = [int(t) for t in token_types.tolist()]
        merges = md.get("tokenizer.ggml.merges")
        merge_list = merges.tolist() if with_merges and isinstance(merges, StringArray) else []

        def opt_int(key: str) -> int | None:
            v = md.get(key)
            return None if v is None else int(v)

        return TokenizerArrays(
            tokens=tokens.tolist(),
            token_types=types,
            merges=merge_list,
            bos_id=opt_int("tokenizer.ggml.bos_token_id"),
            eos_id=opt_int("tokenizer.ggml.eos_token_id"),
            padding_id=opt_int("tokenizer.ggml.padding_token_id"),
            model=str(md["tokenizer.ggml.model"]),
            pre=str(md.get("tokenizer.ggml.pre", "")),
        )
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: malformed tokenizer metadata: {e}") from None


def read_tokenizer_arrays(path: str | os.PathLike[str], *, with_merges: bool = True) -> TokenizerArrays:
    """Open a GGUF file and read its tokenizer keys (see tokenizer_arrays_from_gguf)."""
    from .gguf_file import GGUFFile

    with GGUFFile(path) as gf:
        return tokenizer_arrays_from_gguf(gf, with_merges=with_merges)


__all__ = [
    "TokenizerArrays",
    "from_tiktoken_ranks",
    "read_tokenizer_arrays",
    "tokenizer_arrays_from_gguf",
    "derive_merges",
    "token_bytes_to_string",
    "token_string_to_bytes",
    "o200k_harmony_special_tokens",
    "O200K_HARMONY_SPECIALS",
    "O200K_VOCAB_SIZE",
]
