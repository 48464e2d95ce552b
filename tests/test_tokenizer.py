"""Tokenizer: GGUF arrays, reading them back, and ids identical to tiktoken's o200k_harmony."""

from __future__ import annotations

import random
import struct

import pytest

from gptoss_cli.errors import InputError, ModelFileError
from gptoss_cli.tokenizer import Tokenizer
from gptoss_cli.tokenizer_arrays import (
    TOKEN_TYPE_CONTROL,
    TOKEN_TYPE_NORMAL,
    TokenizerArrays,
    from_tiktoken_ranks,
    read_tokenizer_arrays,
    token_bytes_to_string,
    token_string_to_bytes,
)
from o200k import o200k_arrays, o200k_ranks, write_tokenizer_gguf

# ---------------------------------------------------------------------------
# The arrays llama.cpp's converter writes
# ---------------------------------------------------------------------------


def test_o200k_arrays_match_llama_cpp_layout():
    a = o200k_arrays()
    assert len(a.tokens) == 201088 == len(a.token_types)
    assert len(a.merges) == 446189
    assert (a.bos_id, a.eos_id, a.padding_id) == (199998, 200002, 199999)
    assert (a.model, a.pre) == ("gpt2", "gpt-4o")
    assert a.tokens[0] == "!" and a.tokens[220] == "Ġ" and a.tokens[198] == "Ċ"
    assert a.merges[:3] == ["Ġ Ġ", "Ġ ĠĠĠ", "ĠĠ ĠĠ"]
    named = {
        199998: "<|startoftext|>",
        199999: "<|endoftext|>",
        200002: "<|return|>",
        200003: "<|constrain|>",
        200005: "<|channel|>",
        200006: "<|start|>",
        200007: "<|end|>",
        200008: "<|message|>",
        200012: "<|call|>",
        200018: "<|endofprompt|>",
    }
    for i, name in named.items():
        assert a.tokens[i] == name
    assert a.tokens[200000] == "<|reserved_200000|>"
    assert a.tokens[201087] == "<|reserved_201087|>"
    assert set(a.token_types[:199998]) == {TOKEN_TYPE_NORMAL}
    assert set(a.token_types[199998:]) == {TOKEN_TYPE_CONTROL}
    # every merge joins two tokens into a token; merges come in the order of that token's rank
    ranks = o200k_ranks()
    for chunk in (a.merges[:3000], a.merges[-3000:]):
        merged = []
        for m in chunk:
            left, right = m.split(" ")
            merged.append(ranks[token_string_to_bytes(left) + token_string_to_bytes(right)])
        assert merged == sorted(merged)


def test_byte_level_spelling_round_trips():
    for b in range(256):
        s = token_bytes_to_string(bytes([b]))
        assert len(s) == 1 and not s.isspace()
        assert token_string_to_bytes(s) == bytes([b])
    assert token_bytes_to_string(" hello\n".encode()) == "ĠhelloĊ"


def _small_arrays() -> TokenizerArrays:
    ranks = {bytes([b]): b for b in range(256)}
    for extra in [b"he", b"ll", b"hell", b"hello", b" w", b" wo"]:
        ranks[extra] = len(ranks)
    special = {"<|start|>": 263, "<|end|>": 264}
    return from_tiktoken_ranks(ranks, special, vocab_size=266, bos_id=263, eos_id=264, padding_id=None)


def test_small_vocab_arrays_and_merges():
    a = _small_arrays()
    assert a.tokens[261] == "Ġwo" and a.tokens[262] == "<|reserved_262|>" and a.tokens[263] == "<|start|>"
    assert a.tokens[265] == "<|reserved_265|>" and a.token_types[262] == TOKEN_TYPE_CONTROL
    assert a.merges == ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"]


def test_read_tokenizer_arrays_agrees_with_gguf_reader(tmp_path):
    import gguf

    a = _small_arrays()
    path = str(tmp_path / "small.gguf")
    write_tokenizer_gguf(path, a)
    b = read_tokenizer_arrays(path)
    assert b == a
    r = gguf.GGUFReader(path)
    assert r.fields["tokenizer.ggml.tokens"].contents() == b.tokens
    assert r.fields["tokenizer.ggml.merges"].contents() == b.merges
    assert r.fields["tokenizer.ggml.token_type"].contents() == b.token_types
    assert read_tokenizer_arrays(path, with_merges=False).merges == []


def test_read_real_sized_gguf(o200k_gguf):
    b = read_tokenizer_arrays(o200k_gguf)
    a = o200k_arrays()
    assert b.tokens == a.tokens and b.token_types == a.token_types and b.merges == a.merges
    assert (b.bos_id, b.eos_id, b.padding_id, b.model, b.pre) == (199998, 200002, 199999, "gpt2", "gpt-4o")


def test_read_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        read_tokenizer_arrays(tmp_path / "missing.gguf")
    with pytest.raises(ModelFileError, match="directory"):
        read_tokenizer_arrays(tmp_path)
    p = tmp_path / "text.gguf"
    p.write_text("hello, not a model")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        read_tokenizer_arrays(p)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError):
        read_tokenizer_arrays(empty)
    good = tmp_path / "small.gguf"
    write_tokenizer_gguf(str(good), _small_arrays())
    data = good.read_bytes()
    for cut in (4, 10, 30, len(data) // 3, len(data) // 2, len(data) - 40):
        t = tmp_path / f"cut{cut}.gguf"
        t.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            read_tokenizer_arrays(t)
    # a GGUF without tokenizer keys
    import gguf

    nt = tmp_path / "notok.gguf"
    w = gguf.GGUFWriter(str(nt), "gpt-oss")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="no tokenizer"):
        read_tokenizer_arrays(nt)
    # tokenizer keys of the wrong kind
    odd = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(odd), "gpt-oss")
    w.add_tokenizer_model("gpt2")
    w.add_array("tokenizer.ggml.tokens", ["a", "b"])
    w.add_array("tokenizer.ggml.token_type", ["x", "y"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="malformed"):
        read_tokenizer_arrays(odd)
    # a version-1 header
    v1 = tmp_path / "v1.gguf"
    v1.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    with pytest.raises(ModelFileError, match="version"):
        read_tokenizer_arrays(v1)


def test_unsupported_tokenizers_are_model_file_errors():
    a = _small_arrays()
    for change in ({"model": "llama"}, {"pre": "llama-bpe"}):
        b = TokenizerArrays(**{**a.__dict__, **change})
        with pytest.raises(ModelFileError):
            Tokenizer(b)
    bad = TokenizerArrays(**{**a.__dict__, "tokens": ["x y z"] + a.tokens[1:]})
    with pytest.raises(ModelFileError):
        Tokenizer(bad)


def test_small_vocab_tokenizer():
    tok = Tokenizer(_small_arrays())
    assert tok.vocab_size == 266
    assert tok.encode("hello world") == [259, 261, ord("r"), ord("l"), ord("d")]
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert tok.encode("<|start|>", allow_special=True) == [263]
    assert tok.decode([265]) == "<|reserved_265|>"


# ---------------------------------------------------------------------------
# Identical ids to tiktoken's o200k_harmony
# ---------------------------------------------------------------------------

CORPUS = [
    "",
    "a",
    " ",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
    "I'm sure they'RE here; we'VE been told he'll come, she'd know, it's 'quoted' DON'T",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
    # scripts
    "Привет, как дела? Съешь же ещё этих мягких французских булок.",
    "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
    "我想在apple工作1314151天～ 中文字符测试，标点符号。",
    "日本語のテキスト、カタカナとひらがな。東京は晴れです。",
    "한국어 텍스트입니다. 안녕하세요!",
    "العربية: مرحبا بالعالم، كيف حالك؟ ١٢٣٤٥",
    "עברית: שלום עולם",
    "हिन्दी: नमस्ते दुनिया, क्षत्रिय ज्ञान",
    "ภาษาไทย สวัสดีครับ",
    "កាន់តែពិសេសអាច😁 ខ្មែរ",
    "বাংলা ভাষা, தமிழ் மொழி, ქართული ენა, Հայերեն",
    "Tiếng Việt có dấu: Người Việt Nam",
    "Ünïcödé çömbïnïng: e\u0301 a\u0308 o\u0302\u0323 \u0301alone",
    "İstanbul ıiIİ ß ẞ ﬁ ligatures Ǆǅǆ titlecase",
    # code
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 3.14f; }\r\n",
    'fn main() { println!("{}", vec![1, 2, 3].iter().sum::<i32>()); }',
    '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b\\n"}}',
    "<html><body><div class='x'>Text &amp; more</div></body></html>",
    "https://example.com/path/to/file?query=1&x=%20#frag //comment /* c */",
    "    indented\n        more\n\t\ttabs\n",
    # emoji
    "👨‍👩‍👧‍👦 family 👩🏽‍💻 coder 🏳️‍🌈 flag 🇯🇵🇺🇸 keycap 1️⃣ 😶‍🌫️",
    "🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙",
    # whitespace of every kind
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n",
    "a  b   c    d\t\te\n\nf\r\ng\rh",
    "line1\r\nline2\r\n\r\nline3\r\n",
    "trailing spaces   ",
    "   leading spaces",
    "\u00a0nbsp\u00a0\u00a0x \u3000ideographic\u3000 \u2028ls\u2029ps \u0085nel \x0bvt\x0cff",
    " \n",
    "\n\n\n",
    "\t\t\t",
    "x\u200bzero\u200cwidth\u200djoiner\ufeffbom",
    # digits
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3",
    "1234567890 1,000,000 3.14159265358979 -42 +7 1e10 0x1F 0b1010",
    "٠١٢٣٤٥٦٧٨٩ ０１２３４５ ①②③ ¼½¾ Ⅻ",
    # punctuation runs
    "------======= ''''''```````\"\"\"\"......!!!!!!??????",
    "a/b//c///d\\e\\\\f",
    "?!/\r\n/\n",
    # looks like special tokens
    "<|start|>assistant<|channel|>final<|message|>hi<|end|>",
    "<|endoftext|> <|startoftext|> <|return|> <|call|> <|constrain|> <|endofprompt|>",
    "<|reserved_200100|> <|notatoken|> <| |> <|start| |start|> <<||>>",
    # control characters
    "".join(chr(c) for c in range(32)) + "\x7f",
    "\x00null\x00byte",
    # long repeats
    "a" * 5000,
    " " * 3000,
    "ab" * 2000,
    "\n" * 1000,
    "\r\n" * 500,
    "😀" * 300,
    "1" * 3001,
    "the " * 1000,
    "\u0301" * 200,
    "ñ" * 1000,
]


def _random_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ranges = [
        (0x20, 0x7E),
        (0x00, 0x20),
        (0xA0, 0x24F),
        (0x300, 0x36F),
        (0x370, 0x3FF),
        (0x400, 0x4FF),
        (0x590, 0x6FF),
        (0x900, 0x97F),
        (0xE00, 0xE7F),
        (0x1100, 0x11FF),
        (0x2000, 0x206F),
        (0x3000, 0x30FF),
        (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3),
        (0xE000, 0xF8FF),
        (0xFE00, 0xFFFD),
        (0x1F300, 0x1FAFF),
        (0x10000, 0x10FFFF),
    ]
    ws = [" ", "\n", "\t", "\r\n", "\r", "  ", "\u00a0", "\u3000"]
    out = []
    for _ in range(n):
        length = rng.randint(0, 60)
        chars = []
        for _ in range(length):
            r = rng.random()
            if r < 0.15:
                chars.append(rng.choice(ws))
            elif r < 0.2:
                chars.append(rng.choice(["'s", "'T", "'re", "'VE", "'m", "'ll", "'d", "\u200d", "<|", "|>"]))
            else:
                lo, hi = rng.choice(ranges)
                c = rng.randint(lo, hi)
                if 0xD800 <= c <= 0xDFFF:
                    c = 0x41
                chars.append(chr(c))
        out.append("".join(chars))
    return out


RANDOM = _random_strings(400, seed=1234)


def test_corpus_matches_tiktoken(o200k_tokenizer, tiktoken_oracle):
    tok = o200k_tokenizer
    for text in CORPUS:
        ids = tok.encode(text)
        assert ids == tiktoken_oracle.encode(text, disallowed_special=()), repr(text[:80])
        assert tok.decode(ids) == text
        assert tok.decode_bytes(ids) == text.encode("utf-8")
        assert ids == tiktoken_oracle.encode_ordinary(text)


def test_random_unicode_matches_tiktoken(o200k_tokenizer, tiktoken_oracle):
    tok = o200k_tokenizer
    for text in RANDOM:
        ids = tok.encode(text)
        assert ids == tiktoken_oracle.encode_ordinary(text), repr(text)
        assert tok.decode(ids) == text


def test_whole_corpus_as_one_text(o200k_tokenizer, tiktoken_oracle):
    text = "\n".join(CORPUS + RANDOM)
    ids = o200k_tokenizer.encode(text)
    assert ids == tiktoken_oracle.encode_ordinary(text)
    assert o200k_tokenizer.decode(ids) == text


def test_special_tokens(o200k_tokenizer, tiktoken_oracle):
    tok = o200k_tokenizer
    text = "<|start|>user<|message|>What's <|end|> in text?<|end|><|start|>assistant<|reserved_200100|><|endofprompt|>"
    assert tok.encode(text, allow_special=True) == tiktoken_oracle.encode(text, allowed_special="all")
    assert tok.encode(text) == tiktoken_oracle.encode_ordinary(text)
    assert 200006 not in tok.encode(text)
    assert tok.decode(tok.encode(text, allow_special=True)) == text
    assert tok.token_id("<|start|>") == 200006
    assert tok.token_id("<|call|>") == 200012
    assert tok.token_id("<|endofprompt|>") == 200018
    assert tok.is_special(200007) and not tok.is_special(100)
    with pytest.raises(KeyError):
        tok.token_id("<|nope|>")
    assert tok.vocab_size == 201088
    assert (tok.bos_id, tok.eos_id, tok.padding_id) == (199998, 200002, 199999)


def test_encode_matches_harmony_oracle(o200k_tokenizer, harmony_oracle):
    for text in CORPUS[:40]:
        assert o200k_tokenizer.encode(text) == harmony_oracle.encode(text, disallowed_special=())


def test_non_utf8_text_is_input_error(o200k_tokenizer):
    bad = b"abc\xff\xfe".decode("utf-8", "surrogateescape")
    with pytest.raises(InputError, match="UTF-8"):
        o200k_tokenizer.encode(bad)
    with pytest.raises(InputError):
        o200k_tokenizer.encode("\ud800")


def test_decode_checks_ids(o200k_tokenizer):
    tok = o200k_tokenizer
    with pytest.raises(InputError):
        tok.decode([201088])
    with pytest.raises(InputError):
        tok.decode([-1])
    with pytest.raises(InputError):
        tok.decode(["1"])  # type: ignore[list-item]
    import numpy as np

    assert tok.decode(np.array([13225, 2375])) == "Hello world"
    # bytes that are not UTF-8 on their own: replacement on decode, raw in decode_bytes
    ids = tok.encode("é")
    partial = [t for t in range(256) if tok.decode_bytes([t]) == b"\xc3"]
    assert partial and tok.decode(partial) == "\ufffd"
    assert tok.decode_bytes(partial + ids) == b"\xc3" + "é".encode()
    with pytest.raises(InputError):
        tok.decode(partial, errors="strict")


def test_stream_decoder_never_splits_characters(o200k_tokenizer):
    tok = o200k_tokenizer
    texts = ["👨‍👩‍👧‍👦 é 中文 😶‍🌫️ ok", "Привет ✅ 🦙🦙 ١٢٣", "".join(CORPUS[8:20])] + RANDOM[:50]
    for text in texts:
        ids = tok.encode(text)
        sd = tok.stream_decoder()
        pieces = [sd.feed(t) for t in ids]
        tail = sd.flush()
        assert "".join(pieces) + tail == text
        assert tail == ""
        for p in pieces:
            assert "\ufffd" not in p or "\ufffd" in text
            p.encode("utf-8")  # never a lone surrogate or half a character
    # a byte that never completes comes out as U+FFFD at flush
    sd = tok.stream_decoder()
    half = [t for t in range(256) if tok.decode_bytes([t]) == b"\xe4"][0]
    assert sd.feed([half]) == ""
    assert sd.pending_bytes == b"\xe4"
    assert sd.flush() == "\ufffd"
    # feeding lists works too
    sd = tok.stream_decoder()
    assert sd.feed(tok.encode("ab")) == "ab"
