#!/usr/bin/env bash
# The side-by-side runs behind docs/performance.md (gptoss vs llama.cpp, same file, same threads).
# Usage: LLAMA_PY=/path/to/venv-with-llama-cpp-python/bin/python [PRECISION=exact] bash docs/bench/run_all.sh [names...]
# Each run writes docs/bench/<name>.json (one object per engine, with pp_ratio / tg_ratio); with PRECISION
# set (fast or exact; gptoss's default is fast) docs/bench/<name>-<precision>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
LLAMA_PY=${LLAMA_PY:?set LLAMA_PY to a Python that has llama-cpp-python 0.3.36}
bench() { local name=$1; shift; echo "== $name: gptoss bench $* --precision ${PRECISION:-fast}" >&2
  gptoss bench -t 2 --vs-llama-cpp --llama-python "$LLAMA_PY" --json --precision "${PRECISION:-fast}" "$@" \
    > "docs/bench/$name${PRECISION:+-$PRECISION}.json"; }
run() {
  case $1 in
    20b-pp128-tg32) bench "$1" --synthetic 20b --pp 128 --tg 32 --reps 2 --rounds 3 ;;
    20b-pp32)       bench "$1" --synthetic 20b --pp 32 --tg 0 --reps 2 --rounds 3 ;;
    20b-pp512)      bench "$1" --synthetic 20b --pp 512 --tg 0 --reps 1 --rounds 3 ;;
    20b-4l-pp128-tg32) bench "$1" --synthetic 20b --layers 4 --pp 128 --tg 32 --reps 2 --rounds 3 ;;
    20b-4l-pp512)      bench "$1" --synthetic 20b --layers 4 --pp 512 --tg 0 --reps 1 --rounds 3 ;;
    20b-2l-depth0)     bench "$1" --synthetic 20b --layers 2 --pp 0 --tg 32 --reps 2 --rounds 2 --ctx-depth 0 ;;
    20b-2l-depth4096)  bench "$1" --synthetic 20b --layers 2 --pp 0 --tg 32 --reps 2 --rounds 2 --ctx-depth 4096 ;;
    20b-2l-depth32768) bench "$1" --synthetic 20b --layers 2 --pp 0 --tg 32 --reps 1 --rounds 2 --ctx-depth 32768 ;;
    120b-2l-tg32)   bench "$1" --synthetic 120b --layers 2 --pp 0 --tg 32 --reps 2 --rounds 2 ;;
    120b-4l-tg32)   bench "$1" --synthetic 120b --layers 4 --pp 0 --tg 32 --reps 2 --rounds 3 ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}
if [ $# -eq 0 ]; then
  set -- 20b-pp128-tg32 20b-pp32 20b-pp512 20b-2l-depth0 20b-2l-depth4096 20b-2l-depth32768 120b-2l-tg32 120b-4l-tg32
fi
for name in "$@"; do run "$name"; done
