"""Run every injected fault of tests/test_pull.py several times and tally the outcomes.

The counts in docs/reliability.md ("Downloads (pull)") come from this:

    .venv/bin/python tests/pull_fault_tally.py 5

Each run: a fresh server and GPTOSS_HOME in a temporary folder, the fault's
setup, one pull (timeout 0.5 s, 1 retry), a look at the models folder, then the
server healed and a second pull, which must complete. Not collected by pytest.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_pull as tp  # noqa: E402

from gptoss_cli import pull as pullmod  # noqa: E402
from gptoss_cli.errors import GptossError  # noqa: E402


def _one_run(setup) -> tuple[str, bool, bool, bool, float]:
    """(outcome, .part kept, a wrong model installed, the healed pull completed, seconds)."""
    srv = tp.LocalServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    tmp = Path(tempfile.mkdtemp(prefix="pull-fault-"))
    home = tmp / "home"
    home.mkdir()
    toml = tmp / "models.toml"
    os.environ["GPTOSS_HOME"], os.environ["GPTOSS_MODELS_TOML"] = str(home), str(toml)
    try:
        tp.write_models_toml(toml, srv, sha=tp.SHA)
        setup(srv, home)
        t0 = time.monotonic()
        try:
            pullmod.pull("gpt-oss-20b", progress=False, timeout=0.5, retries=1)
            outcome = "installed"
        except GptossError as e:
            first = re.sub(r"http://\S+", "URL", str(e)).split(";")[0].split(" (")[0]
            outcome = f"exit {e.exit_code}: {first}"
        seconds = time.monotonic() - t0
        model, part = tp.model_path(home), home / "models" / (tp.FILE + ".part")
        kept, wrong = part.exists(), model.exists() and model.read_bytes() != tp.DATA
        srv.heal()
        srv.files["/" + tp.FILE] = tp.DATA
        tp.write_models_toml(toml, srv, sha=tp.SHA)
        pullmod.pull("gpt-oss-20b", progress=False, timeout=5)
        return outcome, kept, wrong, model.read_bytes() == tp.DATA, seconds
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)
        shutil.rmtree(tmp, ignore_errors=True)


def main(runs: int) -> None:
    for var in ("GPTOSS_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT",
                "GPTOSS_PULL_TIMEOUT"):
        os.environ.pop(var, None)
    total = wrong_models = healed = 0
    for fault, (setup, _error, _kept) in tp.FAULTS.items():
        tally: collections.Counter = collections.Counter()
        slowest = 0.0
        for _ in range(runs):
            outcome, kept, wrong, ok, seconds = _one_run(setup)
            tally[(outcome, kept)] += 1
            slowest = max(slowest, seconds)
            total, wrong_models, healed = total + 1, wrong_models + wrong, healed + ok
        for (outcome, kept), n in tally.items():
            print(f"{fault} | {n}/{runs} | {outcome} | .part kept: {kept} | slowest {slowest:.1f} s")
    print(f"{len(tp.FAULTS)} faults, {total} runs, {wrong_models} wrong or incomplete models installed, "
          f"healed pull completed in {healed} of {total}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
