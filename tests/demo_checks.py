"""The demo model's chat check, shared by its test and by scripts/train_demo_model.py's report."""

from __future__ import annotations

import random
from typing import Callable


def wrong_chat_turns(model, chats: int, turns: int, rng: random.Random,
                     date_for: Callable[[int], str]) -> list[tuple[int, int, int, int, str]]:
    """Greedy chats of `turns` sums each through the chat session (earlier analysis dropped, as
    `gptoss chat` drops it): (chat, turn, a, b, final) for every turn whose final answer lacks
    `= a+b`. `date_for(chat)` is called before that chat's sums are drawn from `rng`."""
    from gptoss_cli.chat.session import ChatSession, ChatSettings

    wrong = []
    for chat in range(chats):
        session = ChatSession(model.generator(), ChatSettings(temperature=0.0, max_tokens=80), date=date_for(chat))
        for turn in range(turns):
            a, b = rng.randrange(100), rng.randrange(100)
            session.add_user(f"What is {a} + {b}?")
            result = session.start_reply().run()
            session.commit(result)
            if f"= {a + b}" not in result.final:
                wrong.append((chat, turn, a, b, result.final))
    return wrong
