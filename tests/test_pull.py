"""`gptoss pull` against a local HTTP server on 127.0.0.1 (no internet).

The server serves a small valid GGUF, honours Range (or ignores it on request),
and can inject faults: drop the connection part-way (once or always), send no
Content-Length or a wrong one, answer an error status, refuse every resume
with 416, or stall. It records the requests it saw. Every test shuts its server
down (a stalled handler is released at teardown, and waits at most 10 s);
every client loop is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gguf_bytes import sample_gguf
from gptoss_cli import pull as pullmod
from gptoss_cli.errors import GptossError, OptionError
from gptoss_cli.gguf_check import check_complete_gguf

GPTOSS = str(Path(sys.executable).with_name("gptoss"))
FILE = "gpt-oss-20b-mxfp4.gguf"
DATA, LAYOUT = sample_gguf()
SHA = hashlib.sha256(DATA).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _empty(self, status: int, **headers: str) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range"),
                             "auth": self.headers.get("Authorization")})
        path = self.path.split("?")[0]
        f = srv if srv.fault_path in (None, path) else _NO_FAULTS
        if f.status and f.status_times != 0:
            f.status_times -= 1  # negative: always
            return self._empty(f.status)
        data = srv.files.get(path)
        if data is None:
            return self._empty(404)
        if f.stall_at == 0:
            return self._stall()
        start = 0
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and f.always_416:
            return self._empty(416, Content_Range=f"bytes */{len(data)}")
        if m and not f.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                return self._empty(416, Content_Range=f"bytes */{len(data)}")
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if f.no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            wrong = f.length_error if start == 0 else 0
            self.send_header("Content-Length", str(len(body) + wrong))
            if wrong:
                self.close_connection = True
        self.send_header("Accept-Ranges", "none" if f.ignore_range else "bytes")
        self.end_headers()
        limit = len(body)
        if f.drop_after is not None:
            limit = min(limit, f.drop_after)
            if not f.drop_always:
                f.drop_after = None  # drop once
        if f.stall_at is not None:
            limit = min(limit, max(0, f.stall_at - start))
        sent = 0
        step = 64 * 1024
        try:
            while sent < limit:
                n = min(step, limit - sent)
                self.wfile.write(body[sent:sent + n])
                sent += n
                if f.delay:
                    self.wfile.flush()
                    time.sleep(f.delay)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if f.stall_at is not None and sent < len(body):
            return self._stall()
        if sent < len(body):
            self.close_connection = True
            self.connection.shutdown(2)

    def _stall(self) -> None:
        """Keep the connection open and send nothing, until the test ends (at most 10 s)."""
        self.wfile.flush()
        self.server.release.wait(10)
        self.close_connection = True


class _Faults:
    """The faults a LocalServer injects; the class values are a well-behaved server."""

    ignore_range = False
    drop_after: int | None = None  # bytes of each response body before closing early
    drop_always = False  # every response (else only the first)
    delay = 0.0  # seconds after each 64 kB
    status = 0  # answer with this status instead (status_times requests; -1: all)
    status_times = -1
    no_length = False  # no Content-Length: the body ends when the connection closes
    length_error = 0  # added to the Content-Length of full (200) responses
    always_416 = False  # refuse every Range request
    stall_at: int | None = None  # stop sending at this byte of the file and wait


_NO_FAULTS = _Faults()


class LocalServer(_Faults, ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = {"/" + FILE: DATA}
        self.requests: list[dict] = []
        self.fault_path: str | None = None  # inject faults only for this path (None: every path)
        self.release = threading.Event()

    def url(self, name: str = FILE) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def heal(self) -> None:
        """Stop injecting faults (the next pull meets a well-behaved server)."""
        for name in vars(_Faults):
            if not name.startswith("_"):
                self.__dict__.pop(name, None)


@pytest.fixture
def server():
    srv = LocalServer()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture
def home(tmp_path, monkeypatch, server):
    """GPTOSS_HOME in tmp, and a models.toml whose gpt-oss-20b comes from the local server."""
    h = tmp_path / "home"
    h.mkdir()
    toml = tmp_path / "models.toml"
    write_models_toml(toml, server, sha=SHA)
    for var in ("GPTOSS_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GPTOSS_HOME", str(h))
    monkeypatch.setenv("GPTOSS_MODELS_TOML", str(toml))
    return h


def write_models_toml(path: Path, server: LocalServer, sha: str | None, size: int | None = None) -> None:
    lines = ["[models.gpt-oss-20b]", 'aliases = ["20b"]', f'source = "{server.url()}"', "approx_size_gb = 0.003"]
    if sha:
        lines.append(f'sha256 = "{sha}"')
    if size:
        lines.append(f"size = {size}")
    path.write_text("\n".join(lines) + "\n")


def model_path(home: Path) -> Path:
    return home / "models" / FILE


def run_cli(*args: str, env_extra: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([GPTOSS, *args], capture_output=True, text=True, env=env, timeout=timeout)


# --------------------------------------------------------------------------- in-process


def test_full_download_verifies_and_records_digest(home, server):
    res = pullmod.pull("gpt-oss-20b", progress=False)
    p = model_path(home)
    assert res.downloaded and res.verified and res.path == p
    assert p.read_bytes() == DATA
    assert (p.parent / (FILE + ".sha256")).read_text() == f"{SHA}  {FILE}\n"
    assert not (p.parent / (FILE + ".part")).exists()
    assert [r["range"] for r in server.requests] == [None]
    # a second pull does nothing and does not touch the network
    again = pullmod.pull("20b", progress=False)
    assert not again.downloaded and again.sha256 == [SHA]
    assert len(server.requests) == 1


def test_resume_from_partial_part_file(home, server):
    d = home / "models"
    d.mkdir()
    (d / (FILE + ".part")).write_bytes(DATA[:1_000_000])
    res = pullmod.pull("gpt-oss-20b", progress=False)
    assert res.sha256 == [SHA]
    assert model_path(home).read_bytes() == DATA
    assert [r["range"] for r in server.requests] == ["bytes=1000000-"]


def test_dropped_connection_is_resumed(home, server):
    server.drop_after = 1_500_000
    pullmod.pull("gpt-oss-20b", progress=False)
    assert model_path(home).read_bytes() == DATA
    ranges = [r["range"] for r in server.requests]
    assert ranges[0] is None and len(ranges) == 2 and ranges[1].startswith("bytes=")
    assert int(ranges[1][6:-1]) >= 1_000_000


def test_server_ignoring_range_restarts_cleanly(home, server):
    server.ignore_range = True
    d = home / "models"
    d.mkdir()
    (d / (FILE + ".part")).write_bytes(b"\xff" * 500_000)  # garbage that a resume would keep
    pullmod.pull("gpt-oss-20b", progress=False)
    assert model_path(home).read_bytes() == DATA
    assert [r["range"] for r in server.requests] == ["bytes=500000-"]


def test_complete_part_gets_416_and_is_accepted(home, server):
    d = home / "models"
    d.mkdir()
    (d / (FILE + ".part")).write_bytes(DATA)
    pullmod.pull("gpt-oss-20b", progress=False)
    assert model_path(home).read_bytes() == DATA


def test_digest_mismatch_is_refused_and_leaves_nothing(home, server, tmp_path):
    write_models_toml(tmp_path / "models.toml", server, sha="0" * 64)
    with pytest.raises(pullmod.DigestMismatch, match="sha256 mismatch"):
        pullmod.pull("gpt-oss-20b", progress=False)
    d = home / "models"
    assert sorted(os.listdir(d)) == []


def test_size_mismatch_is_refused(home, server, tmp_path):
    write_models_toml(tmp_path / "models.toml", server, sha=None, size=len(DATA) + 1)
    with pytest.raises(pullmod.PullError, match="bytes"):
        pullmod.pull("gpt-oss-20b", progress=False)
    assert not model_path(home).exists()


def test_complete_part_of_the_wrong_size_is_refused(home, server, tmp_path):
    write_models_toml(tmp_path / "models.toml", server, sha=None, size=len(DATA) + 1)
    (home / "models").mkdir()
    (home / "models" / (FILE + ".part")).write_bytes(DATA)  # the server answers 416 */len(DATA)
    with pytest.raises(pullmod.PullError, match="models.toml says"):
        pullmod.pull("gpt-oss-20b", progress=False)
    assert os.listdir(home / "models") == []


def test_retry_policy_counts_only_attempts_without_progress():
    from gptoss_cli.download_retry import RetryPolicy

    sleeps: list[float] = []
    policy = RetryPolicy(retries=2, sleep=sleeps.append)
    policy.failed("x")
    policy.failed("x", progressed=True)  # resets: resume at once
    policy.failed("x")
    policy.failed("x")
    with pytest.raises(pullmod.PullError, match="^gave up$"):
        policy.failed("gave up")
    assert sleeps == [0.2, 0.2, 0.4]


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_bad_timeout_env_is_an_option_error(home, server, monkeypatch, value):
    monkeypatch.setenv("GPTOSS_PULL_TIMEOUT", value)
    with pytest.raises(OptionError, match="GPTOSS_PULL_TIMEOUT"):
        pullmod.pull("gpt-oss-20b", progress=False)
    assert server.requests == []


def test_offline_refuses(home, server, monkeypatch):
    with pytest.raises(pullmod.PullError, match="offline"):
        pullmod.pull("gpt-oss-20b", offline=True, progress=False)
    monkeypatch.setenv("GPTOSS_OFFLINE", "1")
    with pytest.raises(pullmod.PullError, match="offline"):
        pullmod.pull("gpt-oss-20b", progress=False)
    monkeypatch.delenv("GPTOSS_OFFLINE")
    (home / "config.toml").write_text("offline = true\n")
    with pytest.raises(pullmod.PullError, match="offline"):
        pullmod.pull("gpt-oss-20b", progress=False)
    assert server.requests == []


def test_hf_token_sent_only_to_hf_endpoint(home, server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    pullmod.pull(server.url(), progress=False)  # 127.0.0.1 is not a Hugging Face host
    assert server.requests[-1]["auth"] is None
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    pullmod.pull(server.url(), force=True, progress=False)
    assert server.requests[-1]["auth"] == "Bearer hf_secret"


def test_pull_by_url_with_sha256_option(home, server):
    with pytest.raises(pullmod.DigestMismatch):
        pullmod.pull(server.url(), sha256="1" * 64, progress=False)
    assert not model_path(home).exists()
    res = pullmod.pull(server.url(), sha256=SHA.upper(), progress=False)
    assert res.verified and res.path.read_bytes() == DATA


def test_http_errors_are_one_line(home, server):
    with pytest.raises(pullmod.PullError, match="404"):
        pullmod.pull(server.url("missing.gguf"), progress=False)
    server.status = 401
    with pytest.raises(pullmod.PullError, match="HF_TOKEN"):
        pullmod.pull("gpt-oss-20b", progress=False)
    with pytest.raises(pullmod.PullError, match="unknown model"):
        pullmod.pull("nope", progress=False)


def test_unreachable_server_gives_up_after_bounded_retries(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    sleeps: list[float] = []
    with pytest.raises(pullmod.PullError, match="cannot download"):
        pullmod.download(f"http://127.0.0.1:{port}/x.gguf", tmp_path / "x.gguf", progress=False,
                         retries=2, _sleep=sleeps.append)
    assert len(sleeps) == 2


def test_repeated_drops_without_progress_give_up(tmp_path, server):
    # every response drops after 100 kB and the server never resumes: no net progress after the first
    server.ignore_range = True
    server.drop_after, server.drop_always = 100_000, True
    with pytest.raises(pullmod.PullError, match="keeps failing|keeps stopping"):
        pullmod.download(server.url(), tmp_path / "x.gguf", progress=False, retries=2)
    assert len(server.requests) == 4  # the first try, then 3 without progress (retries=2 allowed)
    assert not (tmp_path / "x.gguf").exists()


# --------------------------------------------------------------------------- injected faults
#
# Each fault runs one pull against the faulty server. Whatever happens: the models
# folder holds only complete models, a failure is one line with a non-zero exit
# code, and the .part is kept exactly where a later pull can resume it. Then the
# server is healed and a second pull must complete (resuming the kept .part).

_A0, _A1 = LAYOUT.tensors["a.weight"]
_ERR_INCOMPLETE = r"is incomplete \(it (ends inside|is too short for) .*\); the partial download is kept"


def _no_length(cut: int | None):
    def setup(srv, home):
        srv.no_length = True
        srv.drop_after = cut
    return setup


def _set(**faults):
    def setup(srv, home):
        for k, v in faults.items():
            setattr(srv, k, v)
    return setup


def _part_then(size: int, **faults):
    def setup(srv, home):
        (home / "models").mkdir()
        (home / "models" / (FILE + ".part")).write_bytes((DATA + b"x" * 100)[:size])
        _set(**faults)(srv, home)
    return setup


def _serve(body: bytes):
    def setup(srv, home):
        srv.files["/" + FILE] = body
    return setup


def _digest(sha: str):
    def setup(srv, home):
        write_models_toml(home.parent / "models.toml", srv, sha=sha)
    return setup


# name -> (setup, error regex or None for success, .part kept after a failure)
FAULTS = {
    "no length, closed in the metadata": (_no_length(LAYOUT.metadata + 30), _ERR_INCOMPLETE, True),
    "no length, closed in the tensor table": (_no_length(LAYOUT.tensor_table + 10), _ERR_INCOMPLETE, True),
    "no length, closed at the data start": (_no_length(LAYOUT.data), _ERR_INCOMPLETE, True),
    "no length, closed inside a tensor": (_no_length((_A0 + _A1) // 2), _ERR_INCOMPLETE, True),
    "no length, closed one byte short": (_no_length(len(DATA) - 1), _ERR_INCOMPLETE, True),
    "no length, whole file": (_no_length(None), None, False),
    "Content-Length 1000 too small": (_set(length_error=-1000), _ERR_INCOMPLETE, True),
    "Content-Length 1000 too large": (_set(length_error=1000), None, False),
    "closed early with a length, once": (_set(drop_after=1_500_000), None, False),
    "closed early with a length, every response": (_set(drop_after=700_000, drop_always=True), None, False),
    "closed early every response, Range ignored": (
        _set(drop_after=100_000, drop_always=True, ignore_range=True), r"keeps (failing|stopping).*kept", True),
    "404": (_set(status=404), r"not found \(HTTP 404\)", False),
    "404 with a .part from before": (_part_then(1_000_000, status=404), r"not found \(HTTP 404\)", True),
    "500 every time": (_set(status=500), r"HTTP 500", False),
    "500 every time, with a .part": (_part_then(1_000_000, status=500), r"HTTP 500.*partial download is kept", True),
    "500 once": (_set(status=500, status_times=1), None, False),
    "416 on every resume": (_part_then(1_000_000, always_416=True), None, False),
    "416: .part larger than the file": (_part_then(len(DATA) + 50), None, False),
    "wrong sha256": (_digest("0" * 64), r"sha256 mismatch.*deleted", False),
    "not a GGUF (an HTML page)": (_serve(b"<!doctype html><p>rate limited</p>" * 10),
                                   r"not a usable GGUF file \(it is not a GGUF file.*deleted", False),
    "stalled before the headers": (_set(stall_at=0), r"cannot download .*timed out", False),
    "stalled part-way": (_set(stall_at=1_000_000), r"keeps failing \(timed out\).*kept", True),
}


def _assert_models_folder_clean(home: Path) -> None:
    """Only complete, correct models (and their digests, and resumable .part files) in the models folder."""
    d = home / "models"
    for p in d.iterdir() if d.is_dir() else []:
        assert not p.name.endswith((".tmp", ".lock")), p
        if p.name.endswith(".gguf"):
            check_complete_gguf(p)
            assert p.read_bytes() == DATA


@pytest.mark.parametrize("fault", list(FAULTS))
def test_injected_fault(home, server, fault):
    setup, error, part_kept = FAULTS[fault]
    setup(server, home)
    part = home / "models" / (FILE + ".part")
    t0 = time.monotonic()
    try:
        pullmod.pull("gpt-oss-20b", progress=False, timeout=0.5, retries=1)
    except GptossError as e:
        assert error is not None, f"unexpected failure: {e}"
        assert re.search(error, str(e)), str(e)
        assert "\n" not in str(e) and e.exit_code != 0
        assert not model_path(home).exists()
        assert part.exists() == part_kept
        if part_kept:
            assert 0 < part.stat().st_size <= len(DATA) + 100
    else:
        assert error is None, f"pull succeeded, expected: {error}"
        assert model_path(home).read_bytes() == DATA and not part.exists()
    assert time.monotonic() - t0 < 10  # stalls time out, retries are bounded
    _assert_models_folder_clean(home)

    # the server recovers: a second pull completes, resuming what was kept
    kept = part.stat().st_size if part.exists() else 0
    server.heal()
    server.files["/" + FILE] = DATA
    write_models_toml(home.parent / "models.toml", server, sha=SHA)
    asked = len(server.requests)
    res = pullmod.pull("gpt-oss-20b", progress=False, timeout=5)
    assert model_path(home).read_bytes() == DATA and res.sha256 == [SHA]
    if error is None:
        assert not res.downloaded and len(server.requests) == asked
    elif kept and kept <= len(DATA):
        assert server.requests[asked]["range"] == f"bytes={kept}-"
    _assert_models_folder_clean(home)


def test_split_model_installs_only_complete_shards(home, server, tmp_path):
    shard2 = sample_gguf(seed=5)[0]
    base = "gpt-oss-120b-mxfp4"
    names = [f"{base}-0000{i}-of-00002.gguf" for i in (1, 2)]
    server.files = {"/" + names[0]: DATA, "/" + names[1]: shard2}
    (tmp_path / "models.toml").write_text(
        f'[models.big]\nsource = "{server.url(names[0])}"\nsplit = 2\n'
    )
    server.fault_path = "/" + names[1]
    server.no_length, server.drop_after = True, 1_000_000
    with pytest.raises(pullmod.PullError, match=f"{names[1]} is incomplete"):
        pullmod.pull("big", progress=False)
    d = home / "models"
    assert (d / names[0]).read_bytes() == DATA
    assert not (d / names[1]).exists() and (d / (names[1] + ".part")).stat().st_size == 1_000_000
    from gptoss_cli.model_names import resolve_model

    with pytest.raises(GptossError, match="only partly downloaded"):
        resolve_model("big")
    server.heal()
    res = pullmod.pull("big", progress=False)
    assert res.paths == [d / n for n in names] and (d / names[1]).read_bytes() == shard2
    assert server.requests[-1]["range"] == "bytes=1000000-"


def test_url_pull_is_listed_under_a_name_run_accepts(home, server):
    from gptoss_cli.model_names import resolve_model
    from gptoss_cli.models_list import list_models

    server.files["/download"] = server.files["/my-finetune.gguf"] = DATA
    res = pullmod.pull(server.url("download"), progress=False)
    assert res.path == home / "models" / "download.gguf"  # named so that it is listed
    pullmod.pull(server.url("my-finetune.gguf"), progress=False)
    pullmod.pull(server.url(), progress=False)  # the catalogue's file name: listed as gpt-oss-20b
    items = {m["name"]: m for m in list_models()}
    assert items["gpt-oss-20b"]["present"]
    listed = [m for m in items.values() if not m["known"]]
    assert [m["name"] for m in listed] == ["download", "my-finetune"]
    for m in listed:
        assert resolve_model(m["name"]) == Path(m["path"])


def test_bad_sha256_option_is_an_option_error(home, server):
    for bad in ("zz", "ab" * 31, "g" * 64):
        with pytest.raises(OptionError, match="--sha256 must be 64 hexadecimal digits"):
            pullmod.pull(server.url(), sha256=bad, progress=False)
    assert server.requests == []


# --------------------------------------------------------------------------- through the executable


def test_cli_pull_then_models(home, server):
    r = run_cli("pull", "20b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(model_path(home))
    assert "verified" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("models", "--json")

    items = {m["name"]: m for m in json.loads(r.stdout)}
    m = items["gpt-oss-20b"]
    assert m["present"] and m["path"] == str(model_path(home)) and m["sha256"] == SHA and m["size"] == len(DATA)


@pytest.mark.parametrize(
    "fault, args, env, code, message",
    [
        ("no length, closed inside a tensor", ("pull", "20b"), {}, 1, "is incomplete"),
        ("404", ("pull", "20b"), {}, 1, "not found (HTTP 404)"),
        ("stalled part-way", ("pull", "20b"), {"GPTOSS_PULL_TIMEOUT": "0.3"}, 1, "keeps failing (timed out)"),
        (None, ("pull", "20b", "--sha256", "zz"), {}, 2, "--sha256 must be 64 hexadecimal digits"),
        (None, ("pull", "20b"), {"GPTOSS_PULL_TIMEOUT": "soon"}, 2, "GPTOSS_PULL_TIMEOUT must be a positive"),
    ],
)
def test_cli_fault_is_one_error_line_and_nonzero_exit(home, server, fault, args, env, code, message):
    if fault:
        FAULTS[fault][0](server, home)
    t0 = time.monotonic()
    r = run_cli(*args, env_extra=env)
    assert time.monotonic() - t0 < 40
    assert r.returncode == code, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("gptoss: error:")]
    assert len(errors) == 1 and message in errors[0] and r.stderr.rstrip().endswith(errors[0])
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not model_path(home).exists()
    items = {m["name"]: m for m in json.loads(run_cli("models", "--json").stdout)}
    assert not items["gpt-oss-20b"]["present"]
    assert (items["gpt-oss-20b"]["partial_bytes"] > 0) == (fault in ("no length, closed inside a tensor",
                                                                     "stalled part-way"))


def test_cli_digest_mismatch_exit_code(home, server, tmp_path):
    write_models_toml(tmp_path / "models.toml", server, sha="0" * 64)
    r = run_cli("pull", "gpt-oss-20b")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("gptoss: error: sha256 mismatch")
    assert "Traceback" not in r.stderr
    assert os.listdir(home / "models") == []


def test_cli_offline_refusal(home, server):
    r = run_cli("pull", "gpt-oss-20b", "--offline")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "offline" in r.stderr
    r = run_cli("pull", "gpt-oss-20b", env_extra={"GPTOSS_OFFLINE": "1"})
    assert r.returncode == 1 and "offline" in r.stderr
    assert server.requests == []


def test_cli_ctrl_c_keeps_part_and_resume_completes(home, server):
    server.delay = 0.02  # ~3 MB/s: the download takes about a second
    env = dict(os.environ)
    proc = subprocess.Popen([GPTOSS, "pull", "gpt-oss-20b"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    part = home / "models" / (FILE + ".part")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 200_000):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("gptoss: interrupted") and ".part" in lines[-1]
    assert "Traceback" not in err
    assert part.exists() and 0 < part.stat().st_size < len(DATA)
    assert not model_path(home).exists()
    server.delay = 0.0
    r = run_cli("pull", "gpt-oss-20b")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    assert model_path(home).read_bytes() == DATA
    last = server.requests[-1]["range"]
    assert last is not None and last != "bytes=0-"


def test_gptoss_errors_are_gptoss_errors():
    assert issubclass(pullmod.PullError, GptossError)
    assert pullmod.PullInterrupted.exit_code == 130
