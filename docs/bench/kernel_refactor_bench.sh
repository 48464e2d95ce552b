#!/usr/bin/env bash
# Kernel speed before and after the kernel refactor (issue 19: each tiled loop written once,
# one kernel set per path): the old package (a copy installed at OLD_SITE) against this
# checkout, alternating old / new for ROUNDS rounds so that a drift of the machine hits both.
#
# Per round and version, on every path this CPU runs (or PATHS), for MXFP4 and Q8_0:
#   decode   python -m gptoss_kernels.bench            matvec and expert_matvec GB/s
#   rowdot   python -m gptoss_kernels.bench --matmul   the row-dot prefill kernels, GFLOP/s
#   prefill  this checkout's kernels/bench.py --prefill, run inside the package under test:
#            the public matmul (few-token / token-lane / row-dot kernel by T), GFLOP/s
# The first two are each version's own bench; the third is the same measuring code for both.
# Each version compiles into its own Numba cache (OLD_CACHE, NEW_CACHE); the benchmark times
# nothing of the compilation. Numbers go to OUT/<round>-<version>-<what>.txt, then a table of
# the median over the rounds, old against new.
#
#   docs/bench/kernel_refactor_bench.sh            # the real run: run it on a quiet machine
#   QUICK=1 docs/bench/kernel_refactor_bench.sh    # a tiny size: does the script work
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
OLD_SITE=${OLD_SITE:-/work/baseline-site}
OLD_CACHE=${OLD_CACHE:-/tmp/kernel-refactor-bench/cache-old}
NEW_CACHE=${NEW_CACHE:-/tmp/kernel-refactor-bench/cache-new}
OUT=${OUT:-/tmp/kernel-refactor-bench/results}
if [[ -n "${QUICK:-}" ]]; then
    ROUNDS=${ROUNDS:-1} MB=${MB:-20} TOKENS=${TOKENS:-8,16} THREADS=${THREADS:-1} MIN_TIME=${MIN_TIME:-0.05}
fi
ROUNDS=${ROUNDS:-3}
MB=${MB:-300}
TOKENS=${TOKENS:-8,16,64,512}
THREADS=${THREADS:-1,2}
MIN_TIME=${MIN_TIME:-1}
PATHS_ARG=()
if [[ -n "${PATHS:-}" ]]; then PATHS_ARG=(--paths "$PATHS"); fi
COMMON=(--types mxfp4,q8_0 --threads "$THREADS" --min-time "$MIN_TIME" "${PATHS_ARG[@]}")
# Loads this checkout's bench.py as a module of whichever gptoss_kernels is imported.
LOAD_NEW_BENCH='import importlib.util as u, sys
s = u.spec_from_file_location("gptoss_kernels.bench_under_test", sys.argv[1])
m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m); m.main(sys.argv[2:])'

mkdir -p "$OUT" "$OLD_CACHE" "$NEW_CACHE"

run() {  # run VERSION ROUND: the three measurements of one version
    local version=$1 round=$2 env=()
    if [[ $version == old ]]; then
        env=(PYTHONPATH="$OLD_SITE" NUMBA_CACHE_DIR="$OLD_CACHE")
    else
        env=(PYTHONPATH= NUMBA_CACHE_DIR="$NEW_CACHE")
    fi
    echo "== round $round, $version" >&2
    (cd /tmp && env "${env[@]}" "$PY" -m gptoss_kernels.bench "${COMMON[@]}" --mb "$MB") \
        >"$OUT/$round-$version-decode.txt"
    (cd /tmp && env "${env[@]}" "$PY" -m gptoss_kernels.bench "${COMMON[@]}" --matmul --tokens "$TOKENS") \
        >"$OUT/$round-$version-rowdot.txt"
    (cd /tmp && env "${env[@]}" "$PY" -c "$LOAD_NEW_BENCH" "$ROOT/kernels/bench.py" "${COMMON[@]}" --prefill \
        --tokens "$TOKENS") >"$OUT/$round-$version-prefill.txt"
}

for round in $(seq 1 "$ROUNDS"); do
    run old "$round"
    run new "$round"
done

"$PY" - "$OUT" "$ROUNDS" <<'EOF'
"""Median over the rounds of every measured figure, old against new."""
import re
import statistics
import sys
from collections import defaultdict

out, rounds = sys.argv[1], int(sys.argv[2])
NUMBER = re.compile(r"(\d+\.\d+) (GB/s|GFLOP/s)")
figures = defaultdict(lambda: defaultdict(list))  # (what, label, unit) -> version -> values
for what in ("decode", "rowdot", "prefill"):
    for version in ("old", "new"):
        for r in range(1, rounds + 1):
            for line in open(f"{out}/{r}-{version}-{what}.txt"):
                parts = NUMBER.split(re.sub(r"\([^)]*\)", "", line))  # text, value, unit, text, ...
                base = parts[0].split()
                for i in range(1, len(parts) - 1, 3):  # a line's later figures are named by the word before them
                    words = base if i == 1 else base[:-1] + parts[i - 1].split()
                    figures[(what, " ".join(words), parts[i + 1])][version].append(float(parts[i]))
print(f"{'what':8s} {'measurement':50s} {'old':>9s} {'new':>9s} {'new/old':>8s}")
for (what, label, unit), by in figures.items():
    old, new = statistics.median(by["old"]), statistics.median(by["new"])
    print(f"{what:8s} {label[:50]:50s} {old:9.2f} {new:9.2f} {new / old:8.3f}  {unit}")
EOF
