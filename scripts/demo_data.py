"""The demo model's training conversations, rendered exactly as `gptoss run` renders them.

Three kinds of user turn, each answered with a short analysis message and then a
final message (with `multi_turn`, about 2 in 5 conversations have one or two earlier
turns, rendered as `gptoss chat` renders them: each earlier user message and final
answer, their analysis dropped; only the last answer is trained):

* "What is A + B?" (and a few rephrasings) for A, B in 0..99: the analysis works
  the sum by tens and ones, the final message states it;
* greetings;
* questions about the model itself, answered honestly.

The prompt side is `gptoss_cli.prompt.build_conversation` (system message with a
current date and a reasoning effort, a developer message only when instructions
are given), so the demo sees what the CLI really sends. Dates and reasoning
efforts are drawn at random so the model learns to ignore them.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from gptoss_cli.harmony import HarmonyEncoding, Message, Role
from gptoss_cli.harmony.render import RenderConversationConfig
from gptoss_cli.prompt import build_conversation

SUM_TEMPLATES = (
    "What is {a} + {b}?",
    "What is {a} + {b}?",
    "What is {a} + {b}?",
    "What is {a}+{b}?",
    "what is {a} + {b}",
    "What's {a} + {b}?",
    "Compute {a} + {b}.",
    "{a} + {b} = ?",
    "How much is {a} plus {b}?",
    "Add {a} and {b}.",
)

GREETINGS = ("Hello", "Hello!", "Hi", "Hi!", "hi", "hello", "Hey", "Hey there!", "Good morning!",
             "Good evening", "Hi there", "Greetings!", "Howdy!", "Hello, how are you?")
GREETING_ANALYSIS = "The user greets me. I greet them back and say what I can do."
GREETING_FINAL = ("Hello! I am the tiny demo model built into gptoss. I can add two numbers "
                  "from 0 to 99: ask me something like \"What is 23 + 48?\"")

ABOUT = ("Who are you?", "Who are you", "What are you?", "What can you do?", "Are you gpt-oss?",
         "What model are you?", "Tell me about yourself.", "Are you ChatGPT?", "What is your name?",
         "Can you help me?", "What is the capital of France?", "Write a poem.", "Explain quantum physics.")
ABOUT_ANALYSIS = "The user asks something I cannot really answer. I am a tiny demo model; I say so honestly."
ABOUT_FINAL = ("I am a tiny demo model with the gpt-oss architecture, built into gptoss so that it works "
               "right after install. I can only add two numbers from 0 to 99. For real work, download a "
               "real model: gptoss pull gpt-oss-20b")

EFFORTS = ("low", "medium", "high")
INSTRUCTIONS = ("Answer briefly.", "Be concise.", "You are a helpful assistant.")


def sum_analysis(a: int, b: int) -> str:
    """Work the sum by tens and ones: 'Tens: 20 + 40 = 60. Ones: 3 + 8 = 11. Total: 60 + 11 = 71.'"""
    ta, oa, tb, ob = a // 10 * 10, a % 10, b // 10 * 10, b % 10
    return f"Tens: {ta} + {tb} = {ta + tb}. Ones: {oa} + {ob} = {oa + ob}. Total: {ta + tb} + {oa + ob} = {a + b}."


def sum_final(a: int, b: int) -> str:
    return f"{a} + {b} = {a + b}."


@dataclass
class Example:
    prompt: list[int]
    completion: list[int]


def random_date(rng: random.Random) -> str:
    start = dt.date(2024, 1, 1)
    return (start + dt.timedelta(days=rng.randrange(365 * 8))).isoformat()


def render_example(enc: HarmonyEncoding, user: str, analysis: str, final: str, *,
                   effort: str, date: str, instructions: str | None = None,
                   earlier: list[tuple[str, str]] = ()) -> Example:
    """Prompt tokens as `gptoss run` (or, with earlier (user, final) turns, `gptoss chat`)
    renders them, and the completion the model should produce."""
    conv = build_conversation(user, instructions=instructions, reasoning_effort=effort, date=date)
    if earlier:
        head = [m for m in conv.messages if m.author.role in (Role.SYSTEM, Role.DEVELOPER)]
        turns = []
        for u, f in earlier:
            turns.append(Message.from_role_and_content(Role.USER, u))
            turns.append(Message.from_role_and_content(Role.ASSISTANT, f).with_channel("final"))
        conv = type(conv).from_messages(head + turns + [m for m in conv.messages if m.author.role == Role.USER])
    prompt = enc.render_conversation_for_completion(conv, Role.ASSISTANT)
    full = enc.render_conversation_for_training(list(conv.messages) + [
        Message.from_role_and_content(Role.ASSISTANT, analysis).with_channel("analysis"),
        Message.from_role_and_content(Role.ASSISTANT, final).with_channel("final"),
    ], RenderConversationConfig(auto_drop_analysis=False))
    assert full[: len(prompt)] == prompt, "completion rendering does not extend the prompt"
    assert full[-1] == enc.return_id
    return Example(prompt, full[len(prompt):])


def _turn(rng: random.Random, pair: tuple[int, int] | None = None) -> tuple[str, str, str]:
    """(user, analysis, final) of one random turn; about 1 in 12 a greeting or a question about the model."""
    r = rng.random()
    if pair is None and r < 0.04:
        return rng.choice(GREETINGS), GREETING_ANALYSIS, GREETING_FINAL
    if pair is None and r < 0.08:
        return rng.choice(ABOUT), ABOUT_ANALYSIS, ABOUT_FINAL
    a, b = pair if pair is not None else (rng.randrange(100), rng.randrange(100))
    return rng.choice(SUM_TEMPLATES).format(a=a, b=b), sum_analysis(a, b), sum_final(a, b)


def sample_example(enc: HarmonyEncoding, rng: random.Random, pair: tuple[int, int] | None = None,
                   turns: int | None = None, multi_turn: bool = False) -> Example:
    """One random training conversation of `turns` turns (default: 1; with multi_turn, 2-3 about
    2 times in 5). Without multi_turn the random draws are those the packaged demo was trained on."""
    effort = rng.choice(EFFORTS)
    date = random_date(rng) if rng.random() < 0.9 else ""
    instructions = rng.choice(INSTRUCTIONS) if rng.random() < 0.1 else None
    if turns is None:
        turns = 1 if not multi_turn or rng.random() < 0.6 else rng.choice((2, 3))
    earlier = [(u, f) for u, _, f in (_turn(rng) for _ in range(turns - 1))]
    user, analysis, final = _turn(rng, pair)
    return render_example(enc, user, analysis, final, effort=effort, date=date, instructions=instructions,
                          earlier=earlier)


def vocabulary(enc: HarmonyEncoding) -> list[int]:
    """Every token id any training conversation can contain (the trained part of the vocabulary)."""
    rng = random.Random(0)
    ids: set[int] = set()
    texts = [t.format(a=a, b=b) for t in set(SUM_TEMPLATES) for a in range(100) for b in (0, 7, 99)]
    texts += [sum_analysis(a, b) + " " + sum_final(a, b) for a in range(100) for b in range(100) if (a * 7 + b) % 3 == 0]
    texts += list(GREETINGS) + list(ABOUT) + [GREETING_ANALYSIS, GREETING_FINAL, ABOUT_ANALYSIS, ABOUT_FINAL]
    texts += list(INSTRUCTIONS)
    for t in texts:
        ids.update(enc.encode(t))
    for a in range(100):  # every number and sum as the tokenizer splits it in context
        for b in range(100):
            ids.update(enc.encode(sum_analysis(a, b)))
    for _ in range(3000):
        ex = sample_example(enc, rng)
        ids.update(ex.prompt)
        ids.update(ex.completion)
    for effort in EFFORTS:  # every date of the range
        d = dt.date(2024, 1, 1)
        while d < dt.date(2032, 12, 31):
            ids.update(render_example(enc, "Hi", "x", "y", effort=effort, date=d.isoformat()).prompt)
            d += dt.timedelta(days=1)
    return sorted(ids)
