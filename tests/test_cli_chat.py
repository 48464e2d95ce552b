"""`gptoss chat` through the installed executable, in a pseudo-terminal (pexpect) and through pipes.

The tiny model's weights are random, so its replies are noise (usually not
valid Harmony): these tests check the REPL's plumbing; tests/test_chat.py
checks the conversation rules with scripted models.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

# A new prompt (not a redraw of the line being typed): prompt_toolkit turns on bracketed paste
# once at the start of each prompt, then draws ">>>".
PROMPT = r"\x1b\[\?2004h.{0,80}?>>>"
STARTUP_S = 300  # the first start may compile the kernels


def _gptoss() -> str:
    exe = Path(sys.executable).with_name("gptoss")
    if exe.exists():
        return str(exe)
    found = shutil.which("gptoss")
    if found is None:
        pytest.skip("the gptoss console script is not installed (pip install -e .)")
    return found


@pytest.fixture()
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def _env(home: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_ENCODINGS_BASE", "NO_COLOR")}
    e.update(GPTOSS_HOME=str(home), TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="120", LINES="40")
    return e


_GAP = r"(?:\s|\x1b\[[0-9;?]*[A-Za-z])+"  # spaces and terminal escape codes between table cells
_ESC = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"  # terminal escape codes, if any


def _row(key: str, value: str) -> str:
    """A pattern for one row of a /show table."""
    return re.escape(key) + _GAP + value


def _spawn(home: Path, model, *args: str):
    child = pexpect.spawn(
        _gptoss(), ["chat", "-m", str(model), "-t", "1", *args],
        env=_env(home), encoding="utf-8", dimensions=(40, 120), timeout=60,
    )
    child.expect("gptoss chat", timeout=STARTUP_S)
    child.expect(PROMPT)
    return child


def _command(child, line: str, *expect: str) -> str:
    """Send a line, wait for each pattern and the next prompt; the text seen (escape codes removed)."""
    child.send(line + "\r")
    seen = []
    for pattern in expect:
        child.expect(pattern)
        seen.append(child.before + child.after)
    child.expect(PROMPT)
    seen.append(child.before)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", "".join(seen))


def _finish(child) -> int:
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    return child.exitstatus


def test_chat_session_in_a_terminal(home, tiny_harmony_gguf, tmp_path):
    child = _spawn(home, tiny_harmony_gguf, "-n", "8", "--seed", "3")
    t0 = time.monotonic()  # after the start (which may compile the kernels once)
    try:
        banner = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before)
        assert "tiny-harmony.gguf" in banner and "context 2048 tokens" in banner and "1 thread" in banner

        # a message and its reply, with the stats line
        out = _command(child, "hello there", r"reading \d+ prompt tokens", r"reply 8 tok, [0-9.]+ tok/s")
        assert "token limit (8)" in out

        # /set then /show
        assert "temperature: 0.5" in _command(child, "/set temperature 0.5", "temperature: 0.5")
        shown = _command(child, "/show", _row("temperature", r"0\.5"))
        assert "tiny-harmony.gguf" in shown and re.search(r"max_tokens\s+8", shown)
        # a bad value: one line, the REPL goes on
        assert "invalid value for top_p" in _command(child, "/set top_p 7", "invalid value for top_p")

        # multiline input: a \"\"\" block and Alt-Enter; Tab completes a command
        child.send('"""first line\r')
        child.send('second line"""\r')
        child.expect(r"tok/s")
        child.expect(PROMPT)
        child.send("one\x1b\rtwo\r")  # Esc Enter (what Alt-Enter sends) adds a line
        child.expect(r"tok/s")
        child.expect(PROMPT)
        child.send("/sho")
        child.expect("/show")  # the completion menu is up
        child.send("\t")  # Tab completes
        time.sleep(0.3)
        assert re.search(r"temperature\s+0\.5", _command(child, "", _row("temperature", r"0\.5")))

        # /save then /load: openai-harmony JSON, the same conversation back
        saved = tmp_path / "conv.json"
        _command(child, f"/save {saved}", r"saved \d+ messages")
        data = json.loads(saved.read_text(encoding="utf-8"))
        users = [m["content"][0]["text"] for m in data["messages"] if m["role"] == "user"]
        assert users == ["hello there", "first line\nsecond line", "one\ntwo"]
        from o200k import harmony_encoding  # sets up openai-harmony offline

        harmony_encoding()
        from openai_harmony import Conversation as HConversation

        assert json.loads(HConversation.from_json(saved.read_text()).to_json()) == data
        _command(child, "/clear", "new conversation")
        n = len(data["messages"])  # the noise replies are not valid Harmony, so not kept
        assert [m["role"] for m in data["messages"]][:2] == ["system", "user"]
        _command(child, f"/load {saved}", rf"loaded {n} messages \(3 turns\)")
        again = tmp_path / "again.json"
        _command(child, f"/save {again}", rf"saved {n} messages")
        assert again.read_bytes() == saved.read_bytes()

        # Ctrl-C during a long reply stops it and keeps the REPL and the conversation
        _command(child, "/set max_tokens none", "max_tokens: no limit")
        child.send("tell me a very long story\r")
        child.expect(r"reading \d+ prompt tokens")
        time.sleep(1.5)
        child.sendintr()
        child.expect("interrupted")
        child.expect(r"reply \d+ tok")
        child.expect(PROMPT)
        # the interrupted reply had no answer: the user's message stays (n - 1 + 1 messages), the reply does not
        shown = _command(child, "/show", _row("messages", r"\d+ in \d+ turns"))
        assert re.search(rf"messages\s+{n} in 4 turns", shown)

        child.send("/exit\r")
        assert _finish(child) == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
    history = (home / "chat_history").read_text(encoding="utf-8")
    assert "hello there" in history and "/set temperature 0.5" in history
    assert time.monotonic() - t0 < 60


def test_ctrl_c_at_the_prompt_then_ctrl_d(home, tiny_harmony_gguf):
    child = _spawn(home, tiny_harmony_gguf)
    try:
        child.send("some half-typed text")
        child.sendintr()  # clears the line
        child.expect("Ctrl-C again or Ctrl-D to leave")
        child.expect(PROMPT)
        child.sendintr()  # a second one leaves
        assert _finish(child) == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
    child = _spawn(home, tiny_harmony_gguf)
    try:
        child.sendeof()  # Ctrl-D on an empty line
        assert _finish(child) == 0
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_chat_through_pipes(home, tiny_harmony_gguf, tmp_path):
    saved = tmp_path / "piped.json"
    script = f'hello\n"""two\nlines"""\n/set temperature 0\n/save {saved}\n/bogus\n'
    p = subprocess.run([_gptoss(), "chat", "-m", str(tiny_harmony_gguf), "-t", "1", "-n", "4"],
                       input=script.encode(), capture_output=True, env=_env(home), timeout=STARTUP_S)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert "Traceback" not in err and "error: unknown command /bogus" in err
    assert err.count("reply 4 tok") == 2
    assert "temperature: 0" in p.stdout.decode()
    users = [m["content"][0]["text"] for m in json.loads(saved.read_text())["messages"] if m["role"] == "user"]
    assert users == ["hello", "two\nlines"]


@pytest.mark.parametrize(
    "args, needle, code",
    [
        (["-m", "missing.gguf"], "no such file", 1),
        (["--temperature", "-1"], "--temperature", 2),
        (["--top-p", "2"], "--top-p", 2),
    ],
)
def test_chat_option_errors(home, tiny_harmony_gguf, args, needle, code):
    if "-m" not in args:
        args = ["-m", str(tiny_harmony_gguf), *args]
    p = subprocess.run([_gptoss(), "chat", "-t", "1", *args], input=b"", capture_output=True,
                       env=_env(home), timeout=120)
    err = p.stderr.decode()
    assert p.returncode == code, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("gptoss: error: ") and needle in lines[0], err


DRIVER_HEAD = """
import sys, time
sys.path.insert(0, {tests!r})
from rich.console import Console
from gptoss_cli.chat.commands import ChatController
from gptoss_cli.chat.repl import TerminalUI, run_loop
from gptoss_cli.chat.session import ChatSession
from gptoss_cli.generation import Generator
from gptoss_cli.harmony import HarmonyEncoding
from gptoss_cli.prompt import tools_from_openai
from gptoss_cli.tokenizer import Tokenizer
from test_chat import AFTER_TOOL, CALL, WEATHER_TOOLS, TurnModel

enc = HarmonyEncoding(Tokenizer.from_gguf({gguf!r}))
ui = TerminalUI(Console(highlight=False), None, context=4096)
"""

TOOL_DRIVER = DRIVER_HEAD + """
session = ChatSession(Generator(TurnModel(enc, CALL, AFTER_TOOL), enc), tools=tools_from_openai(WEATHER_TOOLS))
sys.exit(run_loop(ChatController(session, ui, []), ui))
"""


def _spawn_driver(home: Path, tmp_path: Path, source: str, gguf: Path):
    """A terminal chat driven by a scripted model (the script `source`, formatted with tests/gguf)."""
    driver = tmp_path / "driver.py"
    driver.write_text(source.format(tests=str(Path(__file__).parent), gguf=str(gguf)))
    return pexpect.spawn(sys.executable, [str(driver)], env=_env(home), encoding="utf-8", dimensions=(40, 120),
                         timeout=60)


def test_tool_call_in_a_terminal(home, o200k_gguf, tmp_path):
    """The tool-call prompt of the real terminal UI, with a scripted model that calls get_weather."""
    child = _spawn_driver(home, tmp_path, TOOL_DRIVER, o200k_gguf)
    try:
        child.expect(PROMPT)
        child.send("Weather in Paris?\r")
        child.expect("tool call · functions.get_weather")
        # The finished panel is syntax-highlighted (escape codes around the colon); a frame drawn
        # while the JSON is still streaming is plain. Which of them arrives depends on timing.
        child.expect(r'"location"' + _ESC + ':' + _ESC + r'\s*' + _ESC + '"Paris"')
        child.expect("functions.get_weather needs a result")
        child.expect("get_weather result>")
        child.send('{"temp_c": 21}\r')
        child.expect("It is")
        child.expect("21 °C")
        child.expect("in Paris")
        child.expect(r"reply \d+ tok, [0-9.]+ tok/s · stop")
        child.expect(PROMPT)
        child.send("/save " + str(tmp_path / "tool.json") + "\r")
        child.expect("saved 8 messages")
        child.expect(PROMPT)
        child.send("/exit\r")
        assert _finish(child) == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
    roles = [(m["role"], m.get("name"), m.get("recipient")) for m in json.loads((tmp_path / "tool.json").read_text())["messages"]]
    assert roles[4:6] == [("assistant", None, "functions.get_weather"), ("tool", "functions.get_weather", "assistant")]


SLOW_DRIVER = DRIVER_HEAD + """
class Slow(TurnModel):
    def forward(self, ids, cache, all_logits=False):
        time.sleep(0.15)  # slow enough to type during the reply
        return super().forward(ids, cache, all_logits)

ANSWER = "<|channel|>final<|message|>" + " ".join(["word"] * 30) + " END<|return|>"
session = ChatSession(Generator(Slow(enc, ANSWER), enc))
sys.exit(run_loop(ChatController(session, ui, [("model", "slow-scripted")]), ui))
"""


def test_keys_typed_during_a_reply_wait_for_the_next_prompt(home, o200k_gguf, tmp_path):
    """Typing '/show' and Enter while the reply streams: nothing is echoed into the reply, nothing
    runs, and the next prompt starts with '/show' typed in; Enter then runs it once."""
    child = _spawn_driver(home, tmp_path, SLOW_DRIVER, o200k_gguf)
    try:
        child.expect(PROMPT)
        child.send("Say words\r")
        child.expect("word")  # the reply is streaming
        child.send("/show\r")
        child.expect(r"reply \d+ tok")
        during = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before)
        assert "END" in during and "/show" not in during and "slow-scripted" not in during
        child.expect(PROMPT)
        child.expect("/show")  # the next prompt holds what was typed ...
        assert child.expect(["slow-scripted", pexpect.TIMEOUT], timeout=2) == 1  # ... not yet sent
        child.send("\r")
        child.expect("slow-scripted")  # now /show runs
        child.expect(PROMPT)
        child.send("/exit\r")
        assert _finish(child) == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
