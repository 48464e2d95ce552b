"""Aggregate decode speed of `gptoss serve` against llama-cpp-python's OpenAI server, side by side.

Both servers get the same GGUF, threads and context; rounds alternate which one runs first.
In each round a server is started, warmed up with one request, and then given N concurrent
`/v1/completions` requests (raw prompts, greedy, `max_tokens` fixed) for every N of --streams:
aggregate tok/s is all completion tokens (the servers' own `usage`) over the wall time from the
first request sent to the last answer. Then time to first token (a streamed request) for a long
prompt seen for the first time, and for the same prompt with a new line appended (its prefix is
in the cache). One JSON line per measurement, then the medians and the ratios.

    python docs/bench/serve_throughput.py MODEL.gguf --llama-python /work/llama-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WORDS = ("river stone lantern orbit meadow signal copper harbor violet engine winter garden "
         "thunder ribbon marble compass falcon ember glacier velvet").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 600.0) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def first_chunk_s(url: str, body: dict) -> float:
    """Seconds from sending a streamed request to its first data line with text."""
    req = urllib.request.Request(url, json.dumps(dict(body, stream=True)).encode(), {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first = None
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if first is None and line.startswith(b"data: {"):
                if json.loads(line[6:])["choices"][0].get("text"):
                    first = time.perf_counter() - t0
    return first if first is not None else float("nan")


def prompt(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * (seed % 5 + 1)) % len(WORDS)] for i in range(words))


def start(engine: str, args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen:
    if engine == "gptoss":
        cmd = [sys.executable, "-m", "gptoss_cli.cli", "serve", "-m", args.model, "--port", str(port),
               "-t", str(args.threads), "-c", str(args.ctx), "--parallel", str(max(args.streams)),
               "--no-prompt-cache", "--precision", args.precision]
    else:
        cmd = [args.llama_python, "-m", "llama_cpp.server", "--model", args.model, "--port", str(port),
               "--host", "127.0.0.1", "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
               "--n_ctx", str(args.ctx)]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    ready = "/health" if engine == "gptoss" else "/v1/models"  # gptoss answers /v1/models while loading
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{engine} server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{engine} server did not start; see {log}")


def measure(engine: str, rnd: int, args: argparse.Namespace) -> list[dict]:
    port = free_port()
    proc = start(engine, args, port, Path(args.out) / f"{engine}-{rnd}.log")
    url = f"http://127.0.0.1:{port}/v1/completions"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
        name = json.loads(r.read())["data"][0]["id"]  # gptoss refuses a model name it does not serve
    base = {"model": name, "temperature": 0, "max_tokens": args.tokens}
    rows = []
    try:
        post(url, dict(base, prompt=prompt(999, 30), max_tokens=8))  # warm-up (compiles, pages in)
        for n in args.streams:
            bodies = [dict(base, prompt=f"{rnd}-{n}-{i}: " + prompt(rnd * 100 + n * 10 + i, 30)) for i in range(n)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                answers = list(pool.map(lambda b: post(url, b), bodies))
            wall = time.perf_counter() - t0
            tokens = sum(a["usage"]["completion_tokens"] for a in answers)
            rows.append({"engine": engine, "round": rnd, "streams": n, "tokens": tokens, "wall_s": wall,
                         "tok_s": tokens / wall})
            print(json.dumps(rows[-1]), flush=True)
        long = f"round {rnd} {engine}: " + prompt(rnd + 17, args.long_words)
        ttft = {"fresh": first_chunk_s(url, dict(base, prompt=long, max_tokens=4)),
                "prefix_hit": first_chunk_s(url, dict(base, prompt=long + "\nand one more line", max_tokens=4))}
        rows.append({"engine": engine, "round": rnd, "ttft_s": ttft})
        print(json.dumps(rows[-1]), flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--llama-python", required=True, help="a Python with llama-cpp-python[server]")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--long-words", type=int, default=400, help="words of the time-to-first-token prompt")
    ap.add_argument("--precision", default="fast")
    ap.add_argument("--out", default="/tmp/serve-bench")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows: list[dict] = []
    for rnd in range(1, args.rounds + 1):
        order = ("gptoss", "llama") if rnd % 2 else ("llama", "gptoss")
        for engine in order:
            rows += measure(engine, rnd, args)
    Path(args.out, "rows.json").write_text(json.dumps(rows, indent=1))
    print("\nstreams  gptoss tok/s  llama tok/s  ratio (median of per-round ratios)")
    for n in args.streams:
        g = {r["round"]: r["tok_s"] for r in rows if r.get("streams") == n and r["engine"] == "gptoss"}
        l_ = {r["round"]: r["tok_s"] for r in rows if r.get("streams") == n and r["engine"] == "llama"}
        ratio = statistics.median(g[k] / l_[k] for k in g)
        print(f"{n:7d}  {statistics.median(g.values()):12.2f}  {statistics.median(l_.values()):11.2f}  {ratio:.2f}x")
    for kind in ("fresh", "prefix_hit"):
        for engine in ("gptoss", "llama"):
            v = [r["ttft_s"][kind] for r in rows if "ttft_s" in r and r["engine"] == engine]
            print(f"time to first token, {kind}, {engine}: median {statistics.median(v):.3f} s ({', '.join(f'{x:.3f}' for x in v)})")


if __name__ == "__main__":
    main()
