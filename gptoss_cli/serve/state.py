"""What the endpoints share: the settings, the model once loaded, its scheduler, names and counters."""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import GptossError
from ..harmony.model import Conversation, Message
from .errors import APIError
from .metrics import Metrics
from .responses import ResponseStore

__all__ = ["ServerState"]


class ServerState:
    def __init__(self, settings: Any, path: Path, *, log: Any = None) -> None:
        self.settings = settings
        self.path = path
        self.model_id = settings.model if settings.model else path.stem
        self.model_names = {self.model_id, path.name, path.stem}
        self.created = int(time.time())
        self.metrics = Metrics()
        self.lm: Any = None
        self.scheduler: Any = None
        self.load_error: BaseException | None = None
        self.fingerprint = "fp_" + hashlib.sha256(path.name.encode()).hexdigest()[:10]
        self._ready = threading.Event()
        self._log = log if log is not None else (lambda line: sys.stderr.write(line + "\n"))
        self.continuations: Any = None  # gptoss_cli.serve.continuations.Continuations, once loaded
        self.responses = ResponseStore()  # previous_response_id
        self.port = 0  # set once the socket is bound

    # -- loading ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def set_model(self, lm: Any, scheduler: Any) -> None:
        from .continuations import Continuations

        self.lm = lm
        self.scheduler = scheduler
        self.continuations = Continuations()
        self.fingerprint = "fp_" + hashlib.sha256(f"{self.path.name}:{lm.fingerprint}".encode()).hexdigest()[:10]
        self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def require_model(self) -> None:
        if not self.ready:
            raise APIError(503, "Loading model", code="model_loading")

    @property
    def encoding(self) -> Any:
        return self.lm.encoding

    @property
    def tokenizer(self) -> Any:
        return self.lm.tokenizer

    @property
    def context(self) -> int:
        return int(self.lm.context)

    # -- prompts ------------------------------------------------------------------

    def check_length(self, prompt: list[int]) -> None:
        n = len(prompt)
        if n == 0:
            raise APIError(400, "the prompt is empty", param="messages", code="invalid_prompt")
        if n >= self.context:
            raise APIError(
                400,
                f"This model's maximum context length is {self.context} tokens, but the prompt is {n} tokens"
                " (start the server with a larger -c/--ctx-size, or shorten the prompt)",
                param="messages",
                code="context_length_exceeded",
            )

    def render(self, messages: list[Message]) -> list[int]:
        """The completion prompt of a conversation, continuing the model's own tokens where it can."""
        try:
            canonical = self.encoding.render_conversation_for_completion(Conversation.from_messages(messages))
        except GptossError as e:
            raise APIError(400, str(e), param="messages", code="invalid_value") from None
        prompt = self.continuations.continue_prompt(canonical) if self.continuations is not None else canonical
        self.check_length(prompt)
        return prompt

    def after_reply(self, req: Any, result: Any, mapper: Any) -> None:
        """A reply is done: remember its tokens for the conversation's next request; log it under -v."""
        if self.continuations is not None:
            self.continuations.record(self, req, result, mapper)

    def reply_messages(self, mapper: Any) -> list[Message]:
        """A reply as the client sends it back next time, in Harmony messages."""
        from .chat import assistant_message
        from .messages import assistant_to_harmony

        return assistant_to_harmony(assistant_message(mapper))

    # -- logging ---------------------------------------------------------------------

    def log(self, line: str) -> None:
        """A line on stderr under -v (never a prompt's or reply's text)."""
        if self.settings.verbose:
            self._log(line)

    def log_error(self, line: str) -> None:
        """A server-side failure: always one line on stderr."""
        self._log(f"gptoss: error: {line}")
