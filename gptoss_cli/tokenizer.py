"""o200k_harmony tokenizer built from a GGUF's tokenizer metadata.

The GGUF stores the byte-pair tokens in GPT-2's byte-to-unicode spelling, with
token id == byte-pair rank (docs/design.md §4.7). We turn the strings back into
bytes, hand the ranks, the o200k pre-tokenization pattern and the special
tokens to tiktoken (built in memory, nothing downloaded) and use it as the
engine. The merges list is not needed: a rank-based BPE reproduces it.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError, ModelFileError
from .tokenizer_arrays import (
    TOKEN_TYPE_BYTE,
    TOKEN_TYPE_CONTROL,
    TOKEN_TYPE_NORMAL,
    TOKEN_TYPE_USER_DEFINED,
    _DECODE_TABLE,
    TokenizerArrays,
    read_tokenizer_arrays,
    token_string_to_bytes,
)

# The o200k pre-tokenization regular expression (tiktoken's o200k_base pat_str,
# llama.cpp's "gpt-4o" pre-tokenizer).
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

# GGUF `tokenizer.ggml.pre` values whose pre-tokenizer is the o200k pattern.
_PRE_PATTERNS = {"gpt-4o": O200K_PATTERN}


def _check_text(text: str) -> None:
    """Refuse strings that are not valid Unicode text (lone surrogates from undecodable input)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("input is not valid UTF-8 text") from None
    except AttributeError:
        raise InputError(f"expected text, got {type(text).__name__}") from None


# GPT-2 spelling character -> byte (what token_string_to_bytes does), -1 where that raises
_SPELLING_TO_BYTE = np.array(
    [_DECODE_TABLE.get(c, c if c < 256 else -1) for c in range(max(_DECODE_TABLE) + 1)], dtype=np.int16
)


def _split_vocabulary(tokens: list[str], types: list[int]) -> tuple[dict[bytes, int], dict[str, int], set[int]] | None:
    """(byte-pair ranks, special tokens, unused ids) of a well-formed vocabulary, or None
    when anything is off (then _split_vocabulary_checked finds and names the problem).

    All normal tokens are respelled to bytes with one table lookup over their joined
    text: each GPT-2 character is one byte, so character offsets are byte offsets.
    """
    from itertools import accumulate

    normal_types = (TOKEN_TYPE_NORMAL, TOKEN_TYPE_BYTE)
    special_types = (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
    ids = [i for i, ty in enumerate(types) if ty in normal_types]
    strings = [tokens[i] for i in ids]
    codes = np.frombuffer("".join(strings).encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    if codes.size and int(codes.max()) >= _SPELLING_TO_BYTE.size:
        return None
    spelled = _SPELLING_TO_BYTE[codes]
    if spelled.size and int(spelled.min()) < 0:
        return None
    blob = spelled.astype(np.uint8).tobytes()
    ends = list(accumulate(map(len, strings)))
    pieces = [blob[a:b] for a, b in zip([0] + ends[:-1], ends)]
    ranks = dict(zip(pieces, ids))
    special_ids = [i for i, ty in enumerate(types) if ty in special_types]
    special = {tokens[i]: i for i in special_ids}
    if len(ranks) != len(ids) or len(special) != len(special_ids):  # repeated bytes or names
        return None
    if len(ids) + len(special_ids) == len(types):
        return ranks, special, set()
    return ranks, special, set(range(len(types))).difference(ids, special_ids)


def _split_vocabulary_checked(tokens: list[str], types: list[int]) -> tuple[dict[bytes, int], dict[str, int], set[int]]:
    """Token by token, raising ModelFileError at the first malformed entry."""
    ranks: dict[bytes, int] = {}
    special: dict[str, int] = {}
    unused: set[int] = set()
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        if ty == TOKEN_TYPE_NORMAL or ty == TOKEN_TYPE_BYTE:
            try:
                b = token_string_to_bytes(tok)
            except UnicodeEncodeError:
                raise ModelFileError(
                    f"malformed tokenizer: token {i} ({tok!r}) is not in GPT-2 byte-level spelling"
                ) from None
            if b in ranks:
                raise ModelFileError(f"malformed tokenizer: tokens {ranks[b]} and {i} have the same bytes")
            ranks[b] = i
        elif ty == TOKEN_TYPE_CONTROL or ty == TOKEN_TYPE_USER_DEFINED:
            if tok in special:
                raise ModelFileError(f"malformed tokenizer: special token {tok!r} appears twice")
            special[tok] = i
        else:  # UNUSED / UNKNOWN: no bytes, never produced by encode
            unused.add(i)
    return ranks, special, unused


def _pre_pattern(pre: str) -> str:
    """The regular expression of a GGUF pre-tokenizer name; ModelFileError for any other."""
    pattern = _PRE_PATTERNS.get(pre)
    if pattern is None:
        raise ModelFileError(f"unsupported pre-tokenizer {pre!r} (expected 'gpt-4o', the o200k pattern of gpt-oss)")
    return pattern


@dataclass(frozen=True)
class VocabParts:
    """What a Tokenizer is built from: the vocabulary split by kind, checked (see vocab_cache)."""

    ranks: dict[bytes, int]
    special: dict[str, int]
    unused: frozenset[int]
    pre: str
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    padding_id: int | None


def vocab_parts(arrays: TokenizerArrays) -> VocabParts:
    """Check a GGUF's tokenizer arrays and split them; ModelFileError names what is wrong."""
    if arrays.model != "gpt2":
        raise ModelFileError(f"unsupported tokenizer model {arrays.model!r} (expected 'gpt2', byte-level BPE)")
    _pre_pattern(arrays.pre)
    tokens, types = arrays.tokens, arrays.token_types
    if len(tokens) != len(types):
        raise ModelFileError("malformed tokenizer: token and token-type arrays have different lengths")
    parts = _split_vocabulary(tokens, types)
    if parts is None:
        parts = _split_vocabulary_checked(tokens, types)
    ranks, special, unused = parts
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ModelFileError(f"malformed tokenizer: no token for the single byte 0x{missing[0]:02x}")
    return VocabParts(
        ranks, special, frozenset(unused), arrays.pre, len(tokens), arrays.bos_id, arrays.eos_id, arrays.padding_id
    )


class Tokenizer:
    """Encode/decode with the o200k_harmony vocabulary of a gpt-oss GGUF."""

    def __init__(self, arrays: TokenizerArrays | VocabParts):
        import tiktoken

        parts = arrays if isinstance(arrays, VocabParts) else vocab_parts(arrays)
        try:
            self._enc = tiktoken.Encoding(
                name="o200k_harmony",
                pat_str=_pre_pattern(parts.pre),
                mergeable_ranks=parts.ranks,
                special_tokens=parts.special,
            )
        except Exception as e:  # tiktoken refuses inconsistent vocabularies
            raise ModelFileError(f"malformed tokenizer: {e}") from None
        self._special = parts.special
        self._special_ids = frozenset(parts.special.values())
        self._unused = parts.unused
        self._vocab_size = parts.vocab_size
        self.bos_id = parts.bos_id
        self.eos_id = parts.eos_id
        self.padding_id = parts.padding_id

    # -- construction ---------------------------------------------------

    @classmethod
    def from_arrays(cls, arrays: TokenizerArrays) -> "Tokenizer":
        return cls(arrays)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str]) -> "Tokenizer":
        return cls(read_tokenizer_arrays(path, with_merges=False))

    # -- properties -----------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    def token_id(self, special_name: str) -> int:
        """Id of a special token such as '<|start|>'. KeyError if the vocabulary has none."""
        try:
            return self._special[special_name]
        except KeyError:
            raise KeyError(f"no special token {special_name!r} in this vocabulary") from None

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    # -- encoding -------------------------------------------------------

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of `text`. Special-token spellings are ordinary text unless allow_special."""
        _check_text(text)
        if allow_special:
            return self._enc.encode(text, allowed_special="all", disallowed_special=())
        return self._enc.encode_ordinary(text)

    def encode_ordinary(self, text: str) -> list[int]:
        return self.encode(text, allow_special=False)

    def encode_batch(self, texts: Sequence[str], allow_special: bool = False) -> list[list[int]]:
        return [self.encode(t, allow_special=allow_special) for t in texts]

    # -- decoding -------------------------------------------------------

    def _validate_ids(self, ids: Iterable[int]) -> list[int]:
        out = []
        n = self._vocab_size
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, int):
                try:
                    import numpy as np  # numpy integers are fine

                    if isinstance(t, np.integer):
                        t = int(t)
                    else:
                        raise TypeError
                except (ImportError, TypeError):
                    raise InputError(f"token ids must be integers, got {t!r}") from None
            if not 0 <= t < n:
                raise InputError(f"token id {t} is outside the vocabulary (0..{n - 1})")
            out.append(t)
        return out

    def token_bytes(self, token_id: int) -> bytes:
        """Bytes of one token (special tokens give their name; unused ids give b'')."""
        (t,) = self._validate_ids([token_id])
        if t in self._unused:
            return b""
        return self._enc.decode_single_token_bytes(t)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = self._validate_ids(ids)
        if self._unused:
            ids = [t for t in ids if t not in self._unused]
        return self._enc.decode_bytes(ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of `ids`; bytes that are not UTF-8 become U+FFFD (errors='strict' raises InputError)."""
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError:
            raise InputError("tokens do not decode to valid UTF-8 text") from None

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)


class StreamDecoder:
    """Incremental detokenizer: feed ids, get text, never half a UTF-8 character.

    Bytes of an incomplete character are held back until the rest arrives;
    bytes that can never become valid UTF-8 come out as U+FFFD. Call flush()
    at the end to get whatever is held back.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids: int | Iterable[int]) -> str:
        if isinstance(ids, int):
            ids = [ids]
        return self._dec.decode(self._tok.decode_bytes(ids), final=False)

    def flush(self) -> str:
        out = self._dec.decode(b"", final=True)
        self._dec.reset()
        return out

    @property
    def pending_bytes(self) -> bytes:
        return self._dec.getstate()[0]


__all__ = ["Tokenizer", "StreamDecoder", "O200K_PATTERN"]
