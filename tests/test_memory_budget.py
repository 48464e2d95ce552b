"""The memory budget: its default, what counts, when a model must page, and the refusal of an impossible one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptoss_cli import memory_budget as mb
from gptoss_cli.errors import OptionError
from gptoss_cli.options import Settings, resolve

GPTOSS = str(Path(sys.executable).with_name("gptoss"))
GB = 10**9

MEMINFO = """MemTotal:       24683772 kB
MemFree:        18402356 kB
MemAvailable:   20962176 kB
Cached:          2557012 kB
"""


def test_meminfo_in_bytes():
    info = mb.meminfo(MEMINFO)
    assert info["MemTotal"] == 24683772 * 1024 and info["MemAvailable"] == 20962176 * 1024


def test_default_is_available_memory_minus_a_margin():
    info = mb.meminfo(MEMINFO)
    budget, how = mb.default_budget(info)
    margin = int(0.20 * info["MemTotal"])  # a fifth of the machine (more than the 1 GB floor here)
    assert budget == info["MemAvailable"] - margin and "available minus" in how
    small = {"MemTotal": 4 * GB, "MemAvailable": 3 * GB}
    assert mb.default_budget(small)[0] == 2 * GB  # at least 1 GB is left to the rest
    assert mb.default_budget({}) is None  # no /proc/meminfo: no default budget


def test_this_machines_default_and_resident_set():
    found = mb.default_budget()
    if found is None:
        pytest.skip("no /proc/meminfo here")
    assert 0 < found[0] < mb.meminfo()["MemTotal"]
    assert 0 < mb.rss_bytes() <= mb.peak_rss_bytes() + 64 * 2**20


@pytest.mark.parametrize("text, value", [("16G", 16 * GB), ("500M", 500 * 10**6), ("2.5G", 2_500_000_000),
                                         ("1048576", 1048576)])
def test_sizes(text, value):
    assert mb.parse_budget(text) == value and mb.size_problem(text) is None


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "16Q"])
def test_a_value_that_is_not_a_size_is_refused(text):
    with pytest.raises(OptionError) as e:
        mb.parse_budget(text)
    assert e.value.option == "mem_budget" and mb.size_problem(text)


def _plan(budget: int, **kw) -> mb.BudgetPlan:
    args = dict(rss=400 * 10**6, dense_bytes=1700 * 10**6, needed=63 * GB, slot_bytes=13_221_888, min_slots=128)
    args.update(kw)
    return mb.plan_budget(budget, "--mem-budget", **args)


def test_a_120b_on_16G_pages_with_a_hot_set_of_what_is_left():
    p = _plan(16 * GB)
    assert p.paging and p.slack == mb.SLACK_MIN + int(0.02 * 16 * GB)
    other = p.base  # nothing else resident yet
    assert p.hot_slots(other) == (16 * GB - p.slack - other) // p.slot_bytes
    assert p.hot_slots(16 * GB) == 128  # a full budget still runs one layer's experts


def test_a_model_that_fits_is_not_paged():
    assert not _plan(80 * GB).paging


def test_an_impossible_budget_is_one_line_naming_what_it_needs():
    with pytest.raises(OptionError) as e:
        _plan(3 * GB)
    msg = str(e.value)
    assert "\n" not in msg and e.value.option == "mem_budget"
    assert "3.0 GB is below" in msg and "128 experts" in msg and "dense weights" in msg
    p = _plan(int(_plan(16 * GB).minimum))  # exactly the minimum is allowed
    assert p.hot_slots(p.base) == 128


def test_the_option_from_the_command_line_and_config():
    s = resolve("run", Settings(mem_budget="16G"), config={})
    assert s.mem_budget == "16G"
    assert resolve("serve", Settings(), config={"mem_budget": "8G"}).mem_budget == "8G"
    assert resolve("chat", Settings(), config={}).mem_budget is None  # the default: found at load
    with pytest.raises(OptionError, match="--mem-budget"):
        resolve("run", Settings(mem_budget="lots"), config={})
    with pytest.raises(OptionError, match=r"mem_budget under \[run\]"):
        resolve("run", Settings(), config={"mem_budget": "16Q"})


# -- through the executable ------------------------------------------------------------


def _gptoss(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GPTOSS_HOME=str(home))
    return subprocess.run([GPTOSS, *args], capture_output=True, text=True, env=env, timeout=300)


def test_run_refuses_an_impossible_budget_in_one_line(tiny_harmony_gguf, tmp_path):
    p = _gptoss(tmp_path, "run", "-m", str(tiny_harmony_gguf), "-t", "1", "--mem-budget", "10M", "hi")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "--mem-budget" in p.stderr and "needs at least" in p.stderr
    p = _gptoss(tmp_path, "run", "-m", str(tiny_harmony_gguf), "--mem-budget", "lots", "hi")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--mem-budget" in p.stderr


def test_run_verbose_reports_peak_rss_against_the_budget(tiny_harmony_gguf, tmp_path):
    p = _gptoss(tmp_path, "run", "-m", str(tiny_harmony_gguf), "-t", "1", "-n", "2", "-v", "--mem-budget", "1T", "hi")
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stderr.splitlines() if "memory:" in x)
    assert "peak RSS" in line and "budget 1.0 TB (--mem-budget)" in line and "no paging" in line


def test_bench_reports_the_budget(tiny_harmony_gguf, tmp_path):
    p = _gptoss(tmp_path, "bench", "-m", str(tiny_harmony_gguf), "--pp", "4", "--tg", "2", "--reps", "1", "-t", "1",
                "--mem-budget", "1T", "--json")
    assert p.returncode == 0, p.stderr
    extra = json.loads(p.stdout)["extra"]
    assert extra["mem_budget_mb"] == round(10**12 / 2**20, 1) and extra["paging"] is False
    p = _gptoss(tmp_path, "bench", "-m", str(tiny_harmony_gguf), "--pp", "4", "--tg", "2", "--mem-budget", "x")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--mem-budget" in p.stderr
