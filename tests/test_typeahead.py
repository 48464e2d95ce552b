"""What keys typed during a reply become at the next prompt (gptoss_cli.chat.typeahead)."""

from gptoss_cli.chat.typeahead import TypeAhead, clean_typed


def test_typed_keys_become_prompt_text():
    assert clean_typed(b"/show\r") == "/show"  # Enter is held back: the user presses it again
    assert clean_typed(b"/save a.json\r/show\r") == "/save a.json\n/show"
    assert clean_typed(b"hel\x7flo") == "helo"  # backspace edits
    assert clean_typed(b"a\x1b[Ab\x1bOPc") == "abc"  # arrows and function keys dropped
    assert clean_typed("caf\u00e9 \u2713".encode()) == "caf\u00e9 \u2713"
    assert clean_typed(b"\xff ok") == "\ufffd ok"  # not UTF-8: replaced, never an error
    assert clean_typed(b"\x03\x04x") == "x"


def test_not_a_terminal_is_left_alone():
    class Pipe:
        def isatty(self):
            return False

        def fileno(self):
            return 0

    t = TypeAhead(Pipe())
    t.start()
    t.stop()
    assert t.take() == ""
