#!/usr/bin/env bash
# Whole-model speed before and after the issue 19 reshaping (stateless engine, one loader,
# kernels written once): the code before it (a copy installed at OLD_SITE, e.g. with
# `pip install --no-deps --target /work/baseline-site <checkout at b889516>`) against this
# checkout, on the same GGUF, same threads, alternating old/new (AB BA ...) for ROUNDS rounds.
# The new side runs with --precision exact (the arithmetic the old code had; NEW_PRECISION to change).
# Prints one JSON line per run (engine version, round, pp and tg tok/s) and then the medians.
#
#   docs/bench/reshape_before_after.sh MODEL.gguf     # e.g. a cached synthetic 20b cut to 4 layers
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
OLD_SITE=${OLD_SITE:-/work/baseline-site}
MODEL=${1:?usage: reshape_before_after.sh MODEL.gguf}
ROUNDS=${ROUNDS:-3} PP=${PP:-128} TG=${TG:-32} THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/reshape-bench}
mkdir -p "$OUT"
run() {  # $1 old|new, $2 round
    local env=(NUMBA_CACHE_DIR="$OUT/cache-$1" GPTOSS_HOME="$OUT/home-$1")
    local reps=(--reps 2 --precision "${NEW_PRECISION:-exact}")
    if [[ $1 == old ]]; then env+=(PYTHONPATH="$OLD_SITE"); reps=(-r 2); fi
    (cd /tmp && env "${env[@]}" "$PY" -m gptoss_cli.cli bench -m "$MODEL" --pp "$PP" --tg "$TG" "${reps[@]}" \
        -t "$THREADS" --json) > "$OUT/$2-$1.json"
    "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); r=r[0] if isinstance(r,list) else r; \
print(json.dumps({'version': sys.argv[2], 'round': int(sys.argv[3]), 'pp': r['pp_tok_s'], 'tg': r['tg_tok_s']}))" \
        "$OUT/$2-$1.json" "$1" "$2"
}
for r in $(seq 1 "$ROUNDS"); do
    if (( r % 2 )); then run old "$r"; run new "$r"; else run new "$r"; run old "$r"; fi
done | tee "$OUT/runs.jsonl"
"$PY" - "$OUT/runs.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for key in ("pp", "tg"):
    old = statistics.median(r[key] for r in rows if r["version"] == "old")
    new = statistics.median(r[key] for r in rows if r["version"] == "new")
    print(f"{key}: old {old:.2f} tok/s, new {new:.2f} tok/s, new/old {new / old:.3f}")
PYEOF
