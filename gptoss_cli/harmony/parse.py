"""Parsing completion tokens into Harmony messages, in one go or as a stream.

`StreamParser` is a per-token state machine; `parse_messages_from_completion_tokens`
feeds it everything and returns its messages, so the two agree for every way
of splitting the stream.

On well-formed output the messages equal openai-harmony's. On malformed
output the parser never raises:

- a header that never gets `<|message|>` but is ended by a stop token (or the
  end of the stream) is read the way openai-harmony's non-strict mode reads it
  when the role is known (channel taken out, the rest is the text);
- otherwise whatever cannot be parsed (text outside a message, a header that
  does not parse, undecodable bytes) ends the current message and comes out as
  a *raw* message: role assistant (or the parser's role), no channel, its text
  the tokens decoded as they are (special tokens spelled out). A raw stretch
  runs until the next `<|start|>` or stop token.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Union

from .model import Author, Message, Role, TextContent, role_from_str

REPLACEMENT = "\ufffd"
CHANNEL = "<|channel|>"
CONSTRAIN = "<|constrain|>"
MAX_HEADER_TOKENS = 256

# Rust's char::is_whitespace (Unicode White_Space) and ASCII whitespace.
_RUST_WS = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_RUST_WS_STR = "".join(sorted(_RUST_WS))
_ASCII_WS = " \t\n\x0c\r"


def _split_ascii_whitespace(s: str) -> list[str]:
    parts = []
    cur = []
    for ch in s:
        if ch in _ASCII_WS:
            if cur:
                parts.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return parts


class HeaderError(ValueError):
    pass


def _first_word_is_role(header: str) -> bool:
    words = _split_ascii_whitespace(header.replace(CHANNEL, " "))
    return bool(words) and words[0] in {r.value for r in Role}


@dataclass
class ParsedHeader:
    author: Author
    recipient: str | None = None
    channel: str | None = None
    content_type: str | None = None


def parse_header(header: str, role: Role | None, parse_recipient_and_type: bool = True) -> tuple[ParsedHeader, str | None]:
    """Read a decoded message header the way openai-harmony does.

    Returns the header and any leftover words (joined by single spaces).
    Raises HeaderError where openai-harmony raises.
    """
    channel = None
    idx = header.find(CHANNEL)
    if idx >= 0:
        after = header[idx + len(CHANNEL) :]
        end = len(after)
        for j, ch in enumerate(after):
            if ch in _RUST_WS or ch == "<":
                end = j
                break
        value = after[:end]
        if not value:
            raise HeaderError("channel marker present but no channel value found in header")
        channel = value
        header = header[:idx] + after[end:]
    header = header.strip(_RUST_WS_STR)
    if CONSTRAIN in header:
        header = header.replace(CONSTRAIN, " " + CONSTRAIN).strip(_RUST_WS_STR)
    parts = _split_ascii_whitespace(header)
    role_str = None
    if role is None:
        if not parts:
            raise HeaderError("message header did not contain a role")
        role_str = parts[0]
        try:
            role = role_from_str(role_str)
        except Exception:
            if len(parts) > 1 or parts[0].startswith("to="):
                parts.pop(0)
                role = Role.TOOL
            else:
                raise HeaderError(f"Unknown role: {role_str}") from None
    if parts and parts[0] == role.value:
        parts.pop(0)
    recipient = content_type = None
    if parse_recipient_and_type and parts:
        num = len(parts)
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif num == 1:
            recipient = last
        else:
            content_type = last
            if parts:
                raw = parts.pop()
                recipient = raw[3:] if raw.startswith("to=") else raw
    remaining = " ".join(parts) if parts else None
    name = role_str if role == Role.TOOL else None
    return ParsedHeader(Author(role, name), recipient, channel, content_type), remaining


# -- events -------------------------------------------------------------------


@dataclass
class MessageStart:
    """A new message begins. raw=True: text that is not a well-formed Harmony message."""

    role: Role
    name: str | None = None
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    raw: bool = False


@dataclass
class TextDelta:
    text: str


@dataclass
class MessageEnd:
    """The message is complete. end_token: the stop token that ended it (None: end of stream)."""

    message: Message
    end_token: int | None = None
    raw: bool = False


Event = Union[MessageStart, TextDelta, MessageEnd]


# -- the state machine ----------------------------------------------------------

_EXPECT_START = "expect_start"
_HEADER = "header"
_CONTENT = "content"
_RAW = "raw"


@dataclass
class _Current:
    header: ParsedHeader
    raw: bool = False
    parts: list[str] = field(default_factory=list)


class StreamParser:
    """Feed completion token ids, get events; never raises on malformed output.

    role: the role of the message being completed (the prompt ended with
    `<|start|>{role}`), or None when the tokens start with `<|start|>`.
    """

    def __init__(self, encoding, role: Role | str | None = Role.ASSISTANT):
        self.encoding = encoding
        self._tok = encoding.tokenizer
        self._start = encoding.start_id
        self._message = encoding.message_id
        self._stops = frozenset(encoding.stop_tokens())
        self._vocab = self._tok.vocab_size
        self.role: Role | None = None if role is None else role_from_str(role)
        self._fallback_role = self.role or Role.ASSISTANT
        self.messages: list[Message] = []
        self.tokens: list[int] = []
        self._next_role: Role | None = self.role
        self._header_tokens: list[int] = []
        self._cur: _Current | None = None
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._state = _HEADER if self.role is not None else _EXPECT_START
        self.last_content_delta: str | None = None

    # -- public state -------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def current_role(self) -> Role | None:
        if self._cur is not None:
            return self._cur.header.author.role
        return self._next_role

    @property
    def current_channel(self) -> str | None:
        return self._cur.header.channel if self._cur is not None else None

    @property
    def current_recipient(self) -> str | None:
        return self._cur.header.recipient if self._cur is not None else None

    @property
    def current_content_type(self) -> str | None:
        return self._cur.header.content_type if self._cur is not None else None

    @property
    def current_content(self) -> str:
        return "".join(self._cur.parts) if self._cur is not None else ""

    # -- helpers ------------------------------------------------------------

    def _bytes(self, token: int) -> bytes | None:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < self._vocab:
            return None
        try:
            return self._tok.token_bytes(token)
        except Exception:
            return None

    def _begin(self, header: ParsedHeader, raw: bool, events: list[Event]) -> None:
        self._cur = _Current(header=header, raw=raw)
        self._dec.reset()
        self._state = _RAW if raw else _CONTENT
        self._next_role = None
        events.append(
            MessageStart(
                role=header.author.role,
                name=header.author.name,
                channel=header.channel,
                recipient=header.recipient,
                content_type=header.content_type,
                raw=raw,
            )
        )

    def _emit(self, text: str, events: list[Event]) -> None:
        if text:
            assert self._cur is not None
            self._cur.parts.append(text)
            events.append(TextDelta(text))
            self.last_content_delta = text

    def _feed_content(self, token: int, events: list[Event]) -> None:
        b = self._bytes(token)
        if b is None:
            self._emit(self._dec.decode(b"", final=True) + REPLACEMENT, events)
            self._dec.reset()
        else:
            self._emit(self._dec.decode(b), events)

    def _finish(self, end_token: int | None, events: list[Event]) -> None:
        cur = self._cur
        assert cur is not None
        self._emit(self._dec.decode(b"", final=True), events)
        self._dec.reset()
        h = cur.header
        msg = Message(
            author=Author(h.author.role, h.author.name),
            content=[TextContent("".join(cur.parts))],
            channel=h.channel,
            recipient=h.recipient,
            content_type=h.content_type,
        )
        self.messages.append(msg)
        events.append(MessageEnd(msg, end_token, cur.raw))
        self._cur = None
        self._state = _EXPECT_START
        self._next_role = None

    def _raw_begin(self, role: Role | None, events: list[Event]) -> None:
        self._begin(ParsedHeader(Author(role or self._fallback_role)), True, events)

    def _header_failed(self, role: Role | None, events: list[Event]) -> None:
        """The header cannot be parsed: its tokens become the start of a raw message."""
        toks = self._header_tokens
        self._header_tokens = []
        self._raw_begin(role, events)
        for t in toks:
            self._feed_content(t, events)

    def _header_ended_early(self, end_token: int | None, events: list[Event]) -> None:
        """A stop token (or the end) arrived before <|message|>."""
        role = self._next_role
        toks = self._header_tokens
        if not toks:
            self._state = _EXPECT_START
            self._next_role = None
            return
        header = None
        try:
            text = self._tok.decode(toks, errors="strict")
        except Exception:
            text = None
        # openai-harmony's non-strict reading (channel out, the rest is text) when
        # the role is known; after <|start|> only when the header names a role.
        if text is not None and (role is not None or _first_word_is_role(text)):
            try:
                header, rest = parse_header(text, role, parse_recipient_and_type=False)
            except HeaderError:
                header = None
        if header is not None:
            self._header_tokens = []
            self._begin(header, False, events)
            self._emit(rest or "", events)
            self._finish(end_token, events)
            return
        self._header_failed(role, events)
        self._finish(end_token, events)

    # -- feeding --------------------------------------------------------------

    def process(self, token: int) -> list[Event]:
        """Feed one token; returns the events it causes."""
        events: list[Event] = []
        self.tokens.append(token)
        self.last_content_delta = None
        state = self._state
        if state == _EXPECT_START:
            if token == self._start:
                self._state = _HEADER
                self._header_tokens = []
            elif token in self._stops:
                pass  # a stray stop token between messages: nothing to show
            else:
                self._raw_begin(None, events)
                self._feed_content(token, events)
        elif state == _HEADER:
            if token == self._message:
                role = self._next_role
                try:
                    text = self._tok.decode(self._header_tokens, errors="strict")
                    header, rest = parse_header(text, role, parse_recipient_and_type=True)
                    if rest is not None:
                        raise HeaderError(f"unexpected tokens remaining in message header: {rest!r}")
                except Exception:
                    self._header_failed(role, events)
                    self._feed_content(token, events)
                else:
                    self._header_tokens = []
                    self._begin(header, False, events)
            elif token in self._stops:
                self._header_ended_early(token, events)
            elif token == self._start:
                # a new message starts before this header was finished
                self._header_ended_early(None, events)
                self._state = _HEADER
                self._header_tokens = []
            else:
                self._header_tokens.append(token)
                if len(self._header_tokens) > MAX_HEADER_TOKENS:
                    self._header_failed(self._next_role, events)
        elif state == _CONTENT:
            if token in self._stops:
                self._finish(token, events)
            else:
                self._feed_content(token, events)
        else:  # _RAW
            if token == self._start:
                self._finish(None, events)
                self._state = _HEADER
                self._header_tokens = []
            elif token in self._stops:
                self._finish(token, events)
            else:
                self._feed_content(token, events)
        return events

    def process_many(self, tokens: Iterable[int]) -> list[Event]:
        events: list[Event] = []
        for t in tokens:
            events.extend(self.process(t))
        return events

    def process_eos(self) -> list[Event]:
        """End of the stream: finish whatever is open."""
        events: list[Event] = []
        self.last_content_delta = None
        if self._state == _HEADER:
            self._header_ended_early(None, events)
        elif self._state in (_CONTENT, _RAW):
            self._finish(None, events)
        self._state = _EXPECT_START
        return events


def parse_messages_from_completion_tokens(encoding, tokens: Iterable[int], role: Role | str | None = None) -> list[Message]:
    """All messages in `tokens` (role: as for StreamParser). Never raises on malformed tokens."""
    p = StreamParser(encoding, role)
    for t in tokens:
        p.process(t)
    p.process_eos()
    return p.messages


__all__ = [
    "StreamParser",
    "MessageStart",
    "TextDelta",
    "MessageEnd",
    "Event",
    "parse_messages_from_completion_tokens",
    "parse_header",
    "ParsedHeader",
    "HeaderError",
]
