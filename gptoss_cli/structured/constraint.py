"""The Harmony-aware token constraint: headers, then free text or a constrained value.

One `HarmonyConstraint` follows one assistant turn token by token (the
generation loop asks `allowed()` before each token and calls `consume()` after):

- a message header is held to header.py's grammar (declared channels; a
  recipient only among the declared tools, always with `<|constrain|>json`);
- the content of analysis and commentary messages is free (`allowed()` is None,
  nothing is computed), so reasoning is never squeezed into the schema;
- the content of the final message follows the response format, and once the
  value is complete only `<|return|>` may follow; a tool call's arguments
  follow that tool's parameter schema, then `<|call|>`.

A `StructuredPlan` holds what is compiled once per request (grammars, the
vocabulary); `plan.constraint()` gives a fresh constraint per generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .formats import ResponseFormat, compile_schema
from .header import header_grammar, read_header
from .vocabulary import ll_tokenizer

__all__ = ["StructuredPlan", "HarmonyConstraint", "make_plan", "compile_tools", "HEADER", "FREE", "VALUE", "DONE"]

HEADER, FREE, VALUE, DONE = "header", "free", "value", "done"


@dataclass
class StructuredPlan:
    """Compiled grammars for one request: the response format's and each tool's arguments'."""

    tokenizer: Any  # gptoss_cli.tokenizer.Tokenizer
    response_format: ResponseFormat | None
    tool_grammars: dict[str, str] = field(default_factory=dict)  # tool name -> grammar of its arguments

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.ll = ll_tokenizer(tok)
        names = list(self.tool_grammars)
        self.ids = {name: tok.token_id(name) for name in ("<|message|>", "<|end|>", "<|return|>", "<|call|>")}
        # matchers are built once here; each constraint starts from copies (a copy costs microseconds)
        grammars = [header_grammar(names, after_end=False), header_grammar(names, after_end=True)]
        fmt = self.response_format
        self._matchers = [self.matcher(g) for g in grammars + ([fmt.grammar] if fmt is not None else [])]

    def matcher(self, grammar: str) -> Any:
        """An llguidance matcher over this vocabulary (grammars are checked before; a refusal is a bug)."""
        import llguidance

        m = llguidance.LLMatcher(self.ll, grammar, log_level=0)
        if m.is_error():
            raise RuntimeError(f"llguidance refused a checked grammar: {m.get_error()}")
        return m

    def fresh_matchers(self) -> list[Any]:
        """Copies of the first header's, a later header's and the response format's matchers."""
        return [m.deep_copy() for m in self._matchers]

    def constraint(self) -> "HarmonyConstraint":
        return HarmonyConstraint(self)


def compile_tools(tools: Sequence[Any] | None, strict: Sequence[str] = ()) -> dict[str, str]:
    """Each tool's name -> the llguidance grammar of its arguments (no model needed, so it runs
    before one is loaded). Parameter schemas are compiled leniently (keywords llguidance does not
    implement are ignored) unless the tool is in `strict`; OptionError names the tool and the keyword."""
    grammars: dict[str, str] = {}
    for t in tools or ():
        params = t.parameters if t.parameters is not None else {"type": "object"}
        grammars[t.name] = compile_schema(params, f"tool {t.name} parameters", lenient=t.name not in strict)
    return grammars


def make_plan(
    tokenizer: Any, response_format: ResponseFormat | None = None, tools: Sequence[Any] | None = None,
    strict: Sequence[str] = (), *, tool_grammars: dict[str, str] | None = None,
) -> StructuredPlan | None:
    """The plan of a request, or None when nothing is constrained (no format, no tools).

    tools: ToolDescription-like objects (name, parameters), compiled by compile_tools, or
    their grammars compiled already (tool_grammars).
    """
    grammars = tool_grammars if tool_grammars is not None else compile_tools(tools, strict)
    if response_format is None and not grammars:
        return None
    return StructuredPlan(tokenizer, response_format, grammars)


class HarmonyConstraint:
    """A TokenConstraint (gptoss_cli.generation) for one assistant turn; see the module notes."""

    def __init__(self, plan: StructuredPlan):
        self.plan = plan
        self.vocab = plan.tokenizer.vocab_size
        self._bits = np.zeros((self.vocab + 31) // 32, dtype=np.int32)
        matchers = plan.fresh_matchers()
        self._headers = matchers[:2]
        self._format = matchers[2] if len(matchers) > 2 else None
        ids = plan.ids
        self._message, self._end, self._return, self._call = (
            ids["<|message|>"], ids["<|end|>"], ids["<|return|>"], ids["<|call|>"]
        )
        self.phase = HEADER
        self._matcher = self._headers[0]
        self._header: list[int] = []
        self._value_end: int | None = None  # the token that closes the value being written
        self.channel: str | None = None
        self.recipient: str | None = None
        self.complete = False  # a value was finished and closed by its end token
        self.error: str | None = None  # why the constraint stopped early (a token it did not allow)

    # -- the TokenConstraint interface --------------------------------------------------------

    def allowed(self) -> np.ndarray | None:
        """The tokens that may come next, or None where any may (free text, or after the turn)."""
        if self.phase in (FREE, DONE):
            return None
        m = self._matcher
        m.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        mask = np.unpackbits(self._bits.view(np.uint8), count=self.vocab, bitorder="little").view(np.bool_)
        if self.phase == VALUE:  # llguidance allows both end tokens once the value may end
            mask[self._call if self._value_end == self._return else self._return] = False
        return mask

    def consume(self, token: int) -> None:
        """Move past the token that was drawn (a header's last token decides what its content is)."""
        token = int(token)
        if self.phase == HEADER:
            self._consume_header(token)
        elif self.phase == FREE:
            if token == self._end:
                self._start_header(after_end=True)
            elif token in (self._return, self._call):
                self.phase = DONE
        elif self.phase == VALUE:
            if token == self._value_end:
                self.complete = self._matcher.is_accepting()
                self.phase = DONE
            elif not self._matcher.consume_token(token):
                self._stop(f"token {token} does not fit the value's grammar: {self._matcher.get_error()}")

    # -- internals ------------------------------------------------------------------------------

    def _stop(self, why: str) -> None:
        self.error = why
        self.phase = DONE

    def _start_header(self, after_end: bool) -> None:
        m = self._headers[1 if after_end else 0]
        m.reset()
        self._matcher, self._header, self.phase = m, [], HEADER
        self.channel = self.recipient = None

    def _consume_header(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            self._stop(f"token {token} does not fit a Harmony header: {self._matcher.get_error()}")
            return
        self._header.append(token)
        if token != self._message:
            return
        h = read_header(self.plan.tokenizer.decode(self._header))
        self.channel, self.recipient = h.channel, h.recipient
        tool = h.recipient[len("functions."):] if h.recipient and h.recipient.startswith("functions.") else None
        if tool is not None and tool in self.plan.tool_grammars:
            self._start_value(self.plan.matcher(self.plan.tool_grammars[tool]), self._call)
        elif h.channel == "final" and h.recipient is None and self._format is not None:
            self._start_value(self._format, self._return)
        else:
            self.phase = FREE

    def _start_value(self, matcher: Any, end: int) -> None:
        self._matcher, self._value_end, self.phase = matcher, end, VALUE
