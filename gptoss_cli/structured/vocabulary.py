"""llguidance's view of a model's vocabulary, built from the GGUF's own tokenizer (nothing downloaded).

llguidance needs every token's bytes, which ids are special (Harmony's
`<|channel|>`, `<|message|>`, ...) and the tokens that may end a value; it
indexes them once (about a second for o200k_harmony's 201088 tokens), so the
result is kept per Tokenizer object for the life of the process (a server
builds it once per model).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["ll_tokenizer", "END_TOKENS"]

#: the tokens that may end a constrained value: the final message's and a tool call's
END_TOKENS = ("<|return|>", "<|call|>")

_built: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class _Vocabulary:
    """What llguidance's TokenizerWrapper reads: token bytes, special ids, an encoder."""

    def __init__(self, tokenizer: Any) -> None:
        n = tokenizer.vocab_size
        self.tokens = [tokenizer.token_bytes(i) for i in range(n)]  # special tokens give their names
        self.special_token_ids = sorted(tokenizer.special_tokens.values())
        self.eos_token_id = tokenizer.token_id(END_TOKENS[0])
        self.bos_token_id = None
        self._tokenizer = tokenizer

    def __call__(self, text: bytes | str) -> list[int]:
        s = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        return self._tokenizer.encode(s)


def ll_tokenizer(tokenizer: Any) -> Any:
    """The llguidance LLTokenizer of a gptoss Tokenizer (built on first use, then reused)."""
    with _lock:
        ll = _built.get(tokenizer)
        if ll is None:
            import llguidance

            ends = [tokenizer.token_id(t) for t in END_TOKENS]
            ll = llguidance.LLTokenizer(
                llguidance.TokenizerWrapper(_Vocabulary(tokenizer)), n_vocab=tokenizer.vocab_size, eos_token=ends
            )
            _built[tokenizer] = ll
        return ll
