"""`/format` and --json-schema in chat: the developer message says it, and each reply's final answer follows it."""

from __future__ import annotations

import json

import jsonschema

from scripted_model import ScriptedModel

from gptoss_cli.chat.commands import ChatController
from gptoss_cli.chat.session import ChatSession, ChatSettings
from gptoss_cli.generation import Generator

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["answer", "n"],
    "additionalProperties": False,
}
FITS = '<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>{"answer":"yes","n":3}<|return|>'
DOES_NOT_FIT = '<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|channel|>final<|message|>Maybe, who knows.<|return|>'


class UI:
    def __init__(self):
        self.infos, self.errors, self.tables = [], [], []
        self.results = []

    def reply_view(self, show_reasoning):
        ui = self

        class View:
            def begin(self, n): pass
            def event(self, ev): pass
            def finish(self, result): ui.results.append(result)

        return View()

    def info(self, text): self.infos.append(text)
    def error(self, text): self.errors.append(text)
    def rows(self, title, rows): self.tables.append((title, rows))
    def help(self, rows, notes): self.tables.append(("help", rows))
    def transcript(self, session): pass
    def ask_tool_result(self, call): return None


def make(enc, script, settings=None):
    model = ScriptedModel.from_text(enc, script)
    session = ChatSession(Generator(model, enc), settings or ChatSettings(), date="2025-01-02")
    ui = UI()
    return model, session, ui, ChatController(session, ui, [("model", "scripted")])


def final_text(result) -> str:
    return [m for m in result.messages if m.channel == "final"][-1].text


def test_format_command_describes_and_enforces_the_schema(harmony_encoding, tmp_path):
    enc = harmony_encoding
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(SCHEMA))
    model, session, ui, ctl = make(enc, DOES_NOT_FIT)
    ctl.handle(f"/format {f}")
    assert ui.infos[-1] == "format: JSON schema answer" and not ui.errors
    ctl.handle("Is it?")
    prompt = enc.tokenizer.decode(model.feeds[0])
    assert "<|start|>developer<|message|># Response Formats\n\n## answer\n\n{" in prompt
    result = ui.results[-1]
    assert result.stop_reason == "stop"
    jsonschema.validate(json.loads(final_text(result)), SCHEMA)  # the script's free text was not allowed
    assert "Hmm." in [m.text for m in result.messages if m.channel == "analysis"][0]  # analysis as scripted
    ctl.handle("/show")
    assert ("format", "JSON schema answer") in ui.tables[-1][1]
    ctl.handle("/format off")
    assert ui.infos[-1] == "format: free text"
    ctl.handle("Again?")
    assert "Response Formats" not in enc.tokenizer.decode(model.feeds[-1])
    assert final_text(ui.results[-1]) == "Maybe, who knows."


def test_a_schema_the_script_fits_is_left_alone_and_json_means_any_object(harmony_encoding):
    model, session, ui, ctl = make(harmony_encoding, FITS)
    ctl.handle("/format json")
    assert ui.infos[-1] == "format: any JSON object"
    ctl.handle("Is it?")
    assert final_text(ui.results[-1]) == '{"answer":"yes","n":3}'


def test_json_schema_option_reaches_the_session(harmony_encoding, tmp_path):
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(SCHEMA))
    model, session, ui, ctl = make(harmony_encoding, FITS, ChatSettings(json_schema=str(f)))
    assert session.response_format.name == "answer"
    ctl.handle("Is it?")
    assert json.loads(final_text(ui.results[-1])) == {"answer": "yes", "n": 3}


def test_bad_format_files_are_one_line_errors(harmony_encoding, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}))
    grammar = tmp_path / "g.lark"
    grammar.write_text("start: nothing_here\n")
    _, session, ui, ctl = make(harmony_encoding, FITS)
    ctl.handle(f"/format {bad}")
    ctl.handle(f"/format {grammar}")
    ctl.handle("/format")
    assert len(ui.errors) == 3 and all("\n" not in e for e in ui.errors)
    assert "uniqueItems" in ui.errors[0] and "/properties/tags/uniqueItems" in ui.errors[0]
    assert "line 1, column 8" in ui.errors[1]
    assert ui.errors[2] == "usage: /format FILE|json|off"
    assert session.response_format is None


def test_tools_whose_parameters_are_refused_are_one_line_errors(harmony_encoding, tmp_path):
    f = tmp_path / "tools.json"
    f.write_text(json.dumps([{"type": "function", "function": {"name": "f", "parameters": {"type": "obj"}}}]))
    _, session, ui, ctl = make(harmony_encoding, FITS)
    ctl.handle(f"/tools {f}")
    assert ui.errors == ["tool f parameters: Invalid type: obj (at /type)"] and session.tools == []
