"""`gptoss chat` without a terminal: the session, the slash commands and the reply loop, on scripted models."""

from __future__ import annotations

import io
import json

import pytest

from scripted_model import ScriptedModel

from gptoss_cli.chat.commands import ChatController, strip_triple_quotes, triple_quote_open
from gptoss_cli.chat.render import PlainReplyView, RichReplyView, markdown_cut
from gptoss_cli.chat.session import ChatSession, ChatSettings, SettingError, parse_setting, setting_key
from gptoss_cli.events import Done, MessageStart, PromptProcessed
from gptoss_cli.generation import Generator
from gptoss_cli.harmony import Conversation, Role
from gptoss_cli.prompt import tools_from_openai

DATE = "2025-01-02"
ANSWER = (
    "<|channel|>analysis<|message|>The user greets; greet back.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello there! ✓<|return|>"
)
CALL = (
    "<|channel|>analysis<|message|>Need the weather tool.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"location": "Paris", "unit": "celsius"}<|call|>'
)
AFTER_TOOL = (
    "<|channel|>analysis<|message|>The tool says 21.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>It is **21 °C** in Paris.<|return|>"
)
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["location"],
            },
        },
    }
]


class TurnModel(ScriptedModel):
    """A scripted model that moves to its next script on every prompt (multi-token feed)."""

    def __init__(self, encoding, *scripts: str, **kw):
        self.scripts = [encoding.tokenizer.encode(s, allow_special=True) for s in scripts]
        super().__init__(self.scripts[0], encoding.tokenizer.vocab_size, **kw)
        self.prompts = 0

    def forward(self, ids, cache, all_logits: bool = False):
        if len(ids) > 1:
            self.script = self.scripts[min(self.prompts, len(self.scripts) - 1)]
            self.prompts += 1
        return super().forward(ids, cache, all_logits)


class View:
    def __init__(self, show_reasoning: bool):
        self.show_reasoning = show_reasoning
        self.events = []
        self.result = None

    def begin(self, n: int) -> None:
        self.prompt_tokens = n

    def event(self, ev) -> None:
        self.events.append(ev)

    def finish(self, result) -> None:
        self.result = result


class RecordingUI:
    def __init__(self, tool_answers=()):
        self.tool_answers = list(tool_answers)
        self.asked = []
        self.views: list[View] = []
        self.infos: list[str] = []
        self.errors: list[str] = []
        self.tables: list[tuple[str, list]] = []

    def reply_view(self, show_reasoning: bool) -> View:
        self.views.append(View(show_reasoning))
        return self.views[-1]

    def info(self, text: str) -> None:
        self.infos.append(text)

    def error(self, text: str) -> None:
        self.errors.append(text)

    def rows(self, title, rows) -> None:
        self.tables.append((title, rows))

    def help(self, rows, notes) -> None:
        self.tables.append(("help", rows + [(n, "") for n in notes]))

    def transcript(self, session) -> None:
        pass

    def ask_tool_result(self, call):
        self.asked.append(call)
        return self.tool_answers.pop(0)


def make(enc, *scripts, tools=None, answers=(), context=4096, settings=None):
    model = TurnModel(enc, *(scripts or (ANSWER,)), context=context)
    session = ChatSession(Generator(model, enc), settings or ChatSettings(), date=DATE,
                          tools=tools_from_openai(tools) if tools else None)
    ui = RecordingUI(answers)
    return model, session, ui, ChatController(session, ui, [("model", "scripted")])


def text_of(enc, ids) -> str:
    return enc.tokenizer.decode(ids)


# -- conversation rules -------------------------------------------------------------------------


def test_multi_turn_drops_earlier_analysis_and_stores_return_as_end(harmony_encoding, harmony_oracle):
    enc = harmony_encoding
    model, session, ui, ctl = make(enc, ANSWER, ANSWER)
    assert ctl.handle("Hi")
    assert ctl.handle("Again")
    assert ui.errors == []
    # the full history keeps every message (what /save writes) ...
    assert [(m.author.role.value, m.channel) for m in session.history] == [
        ("user", None), ("assistant", "analysis"), ("assistant", "final"),
        ("user", None), ("assistant", "analysis"), ("assistant", "final"),
    ]
    # ... the second prompt the model saw has the first answer, ended by <|end|>, and not its analysis
    second = text_of(enc, _last_prompt(model))
    assert "<|channel|>final<|message|>Hello there! ✓<|end|><|start|>user<|message|>Again<|end|>" in second
    assert "The user greets" not in second
    # the next prompt drops the analysis of both answered turns
    session.add_user("Third")
    ids = session.prompt_ids()
    text = text_of(enc, ids)
    assert "The user greets" not in text and text.count("Hello there! ✓<|end|>") == 2
    assert "<|return|>" not in text and text.endswith("<|start|>user<|message|>Third<|end|><|start|>assistant")
    # and equals openai-harmony's rendering of the same (filtered) messages
    from openai_harmony import Conversation as HConversation, Role as HRole

    conv = HConversation.from_json(Conversation.from_messages(session.prompt_messages()).to_json())
    assert ids == harmony_oracle.render_conversation_for_completion(conv, HRole.ASSISTANT)


def _last_prompt(model) -> list[int]:
    return [ids for ids in model.feeds if len(ids) > 1][-1]


def test_tool_call_result_continues_the_turn(harmony_encoding, harmony_oracle):
    enc = harmony_encoding
    model, session, ui, ctl = make(enc, CALL, AFTER_TOOL, tools=WEATHER_TOOLS, answers=['{"temp_c": 21}'])
    ctl.handle("Weather in Paris?")
    assert ui.errors == []
    (call,) = ui.asked
    assert call.recipient == "functions.get_weather" and call.arguments == {"location": "Paris", "unit": "celsius"}
    assert len(ui.views) == 2  # the call, then the same turn continued
    assert ui.views[0].result.stop_reason == "tool_call" and ui.views[1].result.stop_reason == "stop"
    tool_msg = session.history[3]
    assert tool_msg.to_dict() == {
        "role": "tool", "name": "functions.get_weather",
        "content": [{"type": "text", "text": '{"temp_c": 21}'}],
        "channel": "commentary", "recipient": "assistant",
    }
    assert [(m.author.role.value, m.channel, m.recipient) for m in session.history] == [
        ("user", None, None), ("assistant", "analysis", None),
        ("assistant", "commentary", "functions.get_weather"), ("tool", "commentary", "assistant"),
        ("assistant", "analysis", None), ("assistant", "final", None),
    ]
    # the continuation reused the KV cache: only the tool message and the new header were processed
    first = next(e for e in ui.views[1].events if isinstance(e, PromptProcessed))
    assert first.cached_tokens > 0
    assert first.cached_tokens == ui.views[0].events[0].prompt_tokens + len(model.scripts[0]) - 1
    cont = text_of(enc, _last_prompt(model))
    assert cont == (
        '<|call|><|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temp_c": 21}<|end|>'
        "<|start|>assistant"
    )
    # the continuation prompt keeps this turn's analysis and matches openai-harmony token for token
    session.history = session.history[:4]
    from openai_harmony import Conversation as HConversation, Role as HRole

    text = text_of(enc, session.prompt_ids())
    assert "Need the weather tool." in text
    conv = HConversation.from_json(session.conversation().to_json())
    assert session.prompt_ids() == harmony_oracle.render_conversation_for_completion(conv, HRole.ASSISTANT)


def test_tool_call_skip_drops_the_call(harmony_encoding):
    enc = harmony_encoding
    _, session, ui, ctl = make(enc, CALL, tools=WEATHER_TOOLS, answers=[None])
    ctl.handle("Weather?")
    assert len(ui.views) == 1
    assert session.pending_call() is None
    assert all(m.recipient is None for m in session.history)
    assert any("skipped" in i for i in ui.infos)
    ctl.handle("/skip")
    assert ui.errors and "nothing to skip" in ui.errors[-1]


def test_ctrl_c_keeps_the_answer_seen_and_drops_a_reply_without_one(harmony_encoding):
    enc = harmony_encoding
    model, session, ui, ctl = make(enc, ANSWER)
    n_analysis = len(enc.tokenizer.encode(ANSWER.split("<|start|>")[0], allow_special=True))
    feeds_before = {"n": 0}

    def boom(n):  # n counts feeds; the prompt is feed 0, then one feed per generated token
        if n - feeds_before["n"] == n_analysis + 8:
            raise KeyboardInterrupt

    model.on_feed = boom
    ctl.handle("Hi")
    r = ui.views[-1].result
    assert r.stop_reason == "interrupted" and isinstance(ui.views[-1].events[-1], Done)
    assert [m.channel for m in session.history[1:]] == ["analysis", "final"]  # the analysis leaves the next prompt
    kept = session.history[-1].text
    assert kept and "Hello there! ✓".startswith(kept) and kept != "Hello there! ✓"
    # interrupted inside the analysis: nothing of the reply is kept, the user's message stays
    feeds_before["n"] = len(model.feeds)
    model.on_feed = lambda n: (_ for _ in ()).throw(KeyboardInterrupt) if n - feeds_before["n"] == 4 else None
    ctl.handle("Again")
    assert ui.views[-1].result.stop_reason == "interrupted"
    assert [m.author.role.value for m in session.history] == ["user", "assistant", "assistant", "user"]
    model.on_feed = None
    ctl.handle("/regen")  # answers the unanswered message
    assert [m.channel for m in session.history[-2:]] == ["analysis", "final"]


def test_regen_runs_again(harmony_encoding):
    enc = harmony_encoding
    model, session, ui, ctl = make(enc, ANSWER)
    ctl.handle("Hi")
    ctl.handle("/regen")
    assert len(ui.views) == 2 and ui.errors == []
    assert [m.author.role.value for m in session.history] == ["user", "assistant", "assistant"]
    assert session.turns == 1


def test_clear_starts_over_and_keeps_settings(harmony_encoding):
    enc = harmony_encoding
    _, session, ui, ctl = make(enc, ANSWER)
    ctl.handle("/set temperature 0.25")
    ctl.handle("/set system Answer in French.")
    ctl.handle("Hi")
    ctl.handle("/clear")
    assert session.history == [] and session.settings.temperature == 0.25
    assert session.instructions == "Answer in French."
    text = text_of(enc, session.prompt_ids())
    assert "Hi" not in text and "Answer in French." in text


# -- /set ---------------------------------------------------------------------------------------


def test_set_changes_settings_and_the_prompt(harmony_encoding):
    enc = harmony_encoding
    _, session, ui, ctl = make(enc)
    for line in ("/set temperature 0.5", "/set top-p 0.9", "/set TOP_K 40", "/set min_p 0.05", "/set seed 7",
                 "/set max_tokens 64", "/set repeat_penalty 1.1", "/set effort high", "/set system Be terse."):
        ctl.handle(line)
    assert ui.errors == []
    s = session.settings
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.seed, s.max_tokens, s.repeat_penalty, s.reasoning_effort) == (
        0.5, 0.9, 40, 0.05, 7, 64, 1.1, "high")
    text = text_of(enc, session.prompt_ids())
    assert "Reasoning: high" in text and "# Instructions\n\nBe terse." in text
    assert session.sampler().params.temperature == 0.5 and session.sampler().params.seed == 7
    ctl.handle("/set seed random")
    ctl.handle("/set max_tokens none")
    ctl.handle("/set system")
    assert s.seed is None and s.max_tokens is None and session.instructions is None
    assert "# Instructions" not in text_of(enc, session.prompt_ids())
    ctl.handle("/reasoning low")
    ctl.handle("/reasoning hide")
    assert s.reasoning_effort == "low" and s.show_reasoning is False
    assert "Reasoning: low" in text_of(enc, session.prompt_ids())
    ctl.handle("/show")
    shown = dict(ui.tables[-1][1])
    assert shown["temperature"] == "0.5" and shown["reasoning shown"] == "no"
    assert ui.tables[-2][0] == "model"


@pytest.mark.parametrize(
    "line, needle",
    [
        ("/set temperature -1", "invalid value for temperature: -1.0 (must be >= 0"),
        ("/set temperature hot", "'hot' is not a number"),
        ("/set temperature nan", "not a finite number"),
        ("/set top_p 0", "invalid value for top_p"),
        ("/set top_p 1.5", "invalid value for top_p"),
        ("/set top_k -3", "invalid value for top_k"),
        ("/set top_k 2.5", "not an integer"),
        ("/set min_p 2", "invalid value for min_p"),
        ("/set repeat_penalty 0", "invalid value for repeat_penalty"),
        ("/set seed -1", "invalid value for seed"),
        ("/set max_tokens 0", "invalid value for max_tokens"),
        ("/set reasoning extreme", "must be low, medium or high"),
        ("/set colour blue", "unknown setting 'colour'"),
        ("/set temperature", "needs a value"),
        ("/reasoning sideways", "usage: /reasoning"),
        ("/save", "usage: /save FILE"),
        ("/frobnicate", "unknown command /frobnicate"),
    ],
)
def test_bad_values_are_one_line_and_change_nothing(harmony_encoding, line, needle):
    _, session, ui, ctl = make(harmony_encoding)
    before = ChatSettings(**vars(session.settings))
    assert ctl.handle(line) is True  # the REPL goes on
    assert len(ui.errors) == 1 and needle in ui.errors[0], ui.errors
    assert "\n" not in ui.errors[0]
    assert vars(session.settings) == vars(before)


def test_setting_names_and_values():
    assert setting_key("Top-P") == "top_p" and setting_key("temp") == "temperature" and setting_key("n") == "max_tokens"
    assert parse_setting("seed", "42") == 42 and parse_setting("seed", "none") is None
    with pytest.raises(SettingError):
        setting_key("nope")


# -- /save and /load ---------------------------------------------------------------------------------


def test_save_load_round_trip(harmony_encoding, tmp_path):
    enc = harmony_encoding
    _, session, ui, ctl = make(enc, CALL, AFTER_TOOL, tools=WEATHER_TOOLS, answers=['{"temp_c": 21}'])
    ctl.handle("/set reasoning high")
    ctl.handle("/set system Be terse.")
    ctl.handle("Weather in Paris?")
    path = tmp_path / "chat.json"
    ctl.handle(f"/save {path}")
    assert ui.errors == [] and f"saved 8 messages to {path}" in ui.infos[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json"]  # no temporary file left behind
    text = path.read_text(encoding="utf-8")
    saved = json.loads(text)
    # exactly openai-harmony's JSON form of the conversation
    from openai_harmony import Conversation as HConversation

    assert json.loads(HConversation.from_json(text).to_json()) == saved
    assert saved == session.conversation().to_dict()
    assert [m["role"] for m in saved["messages"]] == [
        "system", "developer", "user", "assistant", "assistant", "tool", "assistant", "assistant"]

    # a fresh session loads it: same conversation, same settings, same prompt
    _, other, ui2, ctl2 = make(enc)
    ctl2.handle(f"/load {path}")
    assert ui2.errors == [] and "loaded 8 messages (1 turn)" in ui2.infos[-1]
    assert other.conversation().to_dict() == saved
    assert other.settings.reasoning_effort == "high" and other.instructions == "Be terse."
    assert [t.name for t in other.tools] == ["get_weather"]
    assert other.prompt_ids() == session.prompt_ids()
    again = tmp_path / "again.json"
    ctl2.handle(f"/save {again}")
    assert again.read_bytes() == path.read_bytes()


def test_load_errors_keep_the_conversation(harmony_encoding, tmp_path):
    _, session, ui, ctl = make(harmony_encoding)
    ctl.handle("Hi")
    before = session.conversation().to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"messages": [{"role": "wizard", "content": "x"}]}))
    for line in (f"/load {bad}", f"/load {odd}", f"/load {tmp_path / 'missing.json'}",
                 f"/save {tmp_path / 'no' / 'such' / 'dir.json'}", f"/tools {bad}"):
        ctl.handle(line)
    assert len(ui.errors) == 5 and all("\n" not in e for e in ui.errors)
    assert "not valid JSON" in ui.errors[0] and "unknown role" in ui.errors[1]
    assert "not found" in ui.errors[2] and "does not exist" in ui.errors[3]
    assert session.conversation().to_dict() == before


def test_load_with_a_pending_call_asks_for_its_result(harmony_encoding, tmp_path):
    enc = harmony_encoding
    _, session, ui, ctl = make(enc, CALL, tools=WEATHER_TOOLS, answers=[None])
    ctl.handle("Weather?")
    # keep the call: save a conversation that ends with it
    session.history.append(ui.views[0].result.messages[-1])
    path = tmp_path / "pending.json"
    ctl.handle(f"/save {path}")
    _, other, ui2, ctl2 = make(enc, AFTER_TOOL, answers=['{"temp_c": 21}'])
    ctl2.handle(f"/load {path}")
    assert [c.recipient for c in ui2.asked] == ["functions.get_weather"]
    assert other.history[-1].channel == "final" and other.history[-2].author.role == Role.ASSISTANT


def test_tools_command(harmony_encoding, tmp_path):
    enc = harmony_encoding
    _, session, ui, ctl = make(enc)
    f = tmp_path / "tools.json"
    f.write_text(json.dumps(WEATHER_TOOLS))
    ctl.handle(f"/tools {f}")
    assert ui.infos[-1] == "tools: functions.get_weather"
    assert "namespace functions" in text_of(enc, session.prompt_ids())
    ctl.handle("/tools off")
    assert session.tools == [] and "namespace functions" not in text_of(enc, session.prompt_ids())


def test_context_overflow_is_one_line(harmony_encoding):
    enc = harmony_encoding
    _, session, ui, ctl = make(enc, ANSWER, context=120)
    ctl.handle("word " * 200)
    assert len(ui.errors) == 1 and "context" in ui.errors[0] and "/clear" in ui.errors[0]
    assert session.history == []  # the message that did not fit is not kept


def test_input_forms(harmony_encoding):
    _, session, ui, ctl = make(harmony_encoding)
    ctl.handle('"""\nline one\n/not a command\n"""')
    assert session.history[0].text == "line one\n/not a command"
    ctl.handle("//usr is a folder")
    assert session.history[-3].text == "/usr is a folder"
    ctl.handle("/usr/bin/env is a program")
    assert session.history[-3].text == "/usr/bin/env is a program"
    assert not ctl.handle("/bye") and not ctl.handle("/exit")
    ctl.handle("/help")
    assert any(k.startswith("/save") for k, _ in ui.tables[-1][1])
    assert triple_quote_open('"""abc') and not triple_quote_open('"""abc"""') and not triple_quote_open("abc")
    assert strip_triple_quotes('"""x"""') == "x"


# -- rendering ---------------------------------------------------------------------------------------


def test_markdown_cut():
    assert markdown_cut("para one\n\npara two") == len("para one\n\n")
    assert markdown_cut("para one\n\n") == 0  # the next block has not begun
    assert markdown_cut("```\ncode\n\nmore\n```\n\nafter") == len("```\ncode\n\nmore\n```\n\n")
    assert markdown_cut("```\ncode\n\nmore") == 0  # inside a fence
    assert markdown_cut("1. item\n\n   continued") == 0  # an indented continuation stays with its item
    assert markdown_cut("a\n\nb\n\nc", 3) == len("a\n\nb\n\n")


def _events(enc, script):
    model = ScriptedModel.from_text(enc, script)
    session = ChatSession(Generator(model, enc), date=DATE)
    session.add_user("Hi")
    g = session.start_reply()
    return list(g), g.result


def _rich(enc, script, show_reasoning=True):
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, color_system=None)
    view = RichReplyView(console, show_reasoning=show_reasoning, context=4096)
    events, result = _events(enc, script)
    view.begin(10)
    for ev in events:
        view.event(ev)
    view.finish(result)
    return buf.getvalue()


def test_rich_rendering_of_channels(harmony_encoding):
    enc = harmony_encoding
    out = _rich(enc, ANSWER)
    assert "The user greets; greet back." in out and "Hello there! ✓" in out
    assert "tok/s" in out and "context" in out
    hidden = _rich(enc, ANSWER, show_reasoning=False)
    assert "The user greets" not in hidden and "Hello there! ✓" in hidden
    call = _rich(enc, CALL)
    assert "tool call · functions.get_weather" in call and '"location": "Paris"' in call
    md = _rich(enc, AFTER_TOOL.replace("It is **21 °C** in Paris.", "# Title\n\nSome *text*.\n\n- a\n- b\n\nEnd."))
    assert "Title" in md and "• a" in md and "End." in md and "**" not in md and "# Title" not in md


def test_plain_rendering(harmony_encoding):
    enc = harmony_encoding
    for script, show, want_out, want_err in (
        (ANSWER, True, "Hello there! ✓\n", "The user greets; greet back.\n"),
        (ANSWER, False, "Hello there! ✓\n", ""),
        (CALL, False, 'tool call: functions.get_weather {"location": "Paris", "unit": "celsius"}\n', ""),
    ):
        out, err = io.StringIO(), io.StringIO()
        view = PlainReplyView(out, err, show_reasoning=show, stats=False)
        events, result = _events(enc, script)
        for ev in events:
            view.event(ev)
        view.finish(result)
        assert out.getvalue() == want_out and err.getvalue() == want_err
    assert any(isinstance(e, MessageStart) for e in events)
