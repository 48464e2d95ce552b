"""`gptoss serve`: bind, answer /health at once, load the model, serve until SIGTERM or Ctrl-C.

The socket is bound before anything slow, so a port in use fails at once
with one line; uvicorn then serves while the model loads and llguidance
indexes its vocabulary (/health says 503 until both are done), and one line
with the URL is printed on stdout when the model is ready.
SIGTERM or Ctrl-C: new requests get 503, waiting ones are refused, running
ones get GRACE_S seconds to finish and are then cancelled; the process exits 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
import time
from typing import Any, Iterator

import uvicorn

from ..errors import GptossError, InputError
from ..options import SERVE, resolve

__all__ = ["serve", "GRACE_S", "is_loopback"]

GRACE_S = 5.0  # what running requests get to finish after SIGTERM


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{h}:{port}"


def _load(state: Any, server: Any, out: Any, err: Any) -> None:
    """The loader thread: open and compile the model, start the scheduler, say the URL."""
    from ..run import open_for
    from .scheduler import Scheduler
    from .structured import warm_up

    o = state.settings

    def notice(msg: str) -> None:
        err.write(f"gptoss: {msg}\n")
        err.flush()

    try:
        lm = open_for(o, notice)
        if int(o.parallel) > 1:
            lm.ensure_compiled(notice, batched=True)  # the batched decode step's kernels, before the first batch
        t0 = time.perf_counter()
        warm_up(lm.tokenizer)  # before /health says 200: no request pays the vocabulary index
        index_s = time.perf_counter() - t0
        scheduler = Scheduler(lm, int(o.parallel), int(o.max_queue), state.metrics)
        scheduler.start()
    except BaseException as e:  # noqa: BLE001 - reported by serve() after the server stops
        state.load_error = e
        server.should_exit = True
        return
    state.set_model(lm, scheduler)
    while not server.started and not server.should_exit:
        time.sleep(0.02)
    if server.should_exit:
        return
    if o.verbose:
        notice(f"loaded {lm.path} in {lm.load_s:.2f} s (context {lm.context}, {o.parallel} slots, {lm.threads} threads;"
               f" structured-output vocabulary indexed in {index_s:.2f} s)")
    out.write(f"gptoss: serving {state.model_id} at {_url(o.host, state.port)}/v1\n")
    out.flush()


def serve(opts: Any, *, stdout: Any = None, stderr: Any = None) -> int:
    """The whole command; returns the exit code (0 after SIGTERM / Ctrl-C). GptossError for user errors."""
    from ..model_names import resolve_model
    from .app import build_app
    from .state import ServerState

    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    o = resolve(SERVE, opts)
    path = resolve_model(o.model)
    if not is_loopback(o.host) and not o.api_key:
        err.write(f"gptoss: warning: listening on {o.host} without --api-key: anyone who can reach it can use"
                  " the model (set --api-key or GPTOSS_API_KEY)\n")
        err.flush()
    sock = _bind(o.host, int(o.port))
    state = ServerState(o, path, log=lambda line: (err.write(line + "\n"), err.flush()))
    state.port = sock.getsockname()[1]
    app = build_app(state)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=int(GRACE_S + 3), server_header=False)
    server = _Server(config, state)
    _quiet_uvicorn()
    loader = threading.Thread(target=_load, args=(state, server, out, err), name="gptoss-load", daemon=True)
    loader.start()
    try:
        server.run(sockets=[sock])
    finally:
        if state.scheduler is not None:
            state.scheduler.stop()
    if state.load_error is not None:
        e = state.load_error
        if isinstance(e, GptossError):
            raise e
        raise GptossError(f"the model failed to load: {type(e).__name__}: {e}")
    return 0


def _quiet_uvicorn() -> None:
    """uvicorn's own lines (and tracebacks) stay off the terminal: the server says what matters itself."""
    import logging

    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        lg = logging.getLogger(name)
        lg.handlers = [logging.NullHandler()]
        lg.propagate = False


class _Server(uvicorn.Server):
    """uvicorn's server with our shutdown: the scheduler refuses and cancels, and no signal is re-raised
    (uvicorn re-raises a caught SIGTERM after its shutdown, which would make the exit status 143)."""

    def __init__(self, config: uvicorn.Config, state: Any) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.state.scheduler is not None:
            self.state.scheduler.shutdown(GRACE_S)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
