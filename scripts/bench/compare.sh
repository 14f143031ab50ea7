#!/usr/bin/env bash
# couplet vs PyTorch, in one run: builds benches/compare.rs, then for each round runs it and
# scripts/bench/pytorch_bench.py one after the other (alternating which goes first), records
# the load average around each, and prints one markdown table of couplet / PyTorch ratios
# (medians over rounds of per-round medians). See BENCHMARKS.md.
#
#   scripts/bench/compare.sh [ROUNDS]          (default 5)
#
# Environment: PYTHON (default .venv/bin/python), MIN_TIME (seconds per case and round,
# default 0.3), FILTER (substring of case names), COUPLET_BENCH_THREADS (default: all cores),
# OUT_DIR (default $CARGO_TARGET_DIR/bench-compare/<date>). LIBTORCH must point at the
# libtorch of the venv's torch (scripts/setup-libtorch.sh does this).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
python=${PYTHON:-.venv/bin/python}
min_time=${MIN_TIME:-0.3}
out=${OUT_DIR:-${CARGO_TARGET_DIR:-target}/bench-compare/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
filter=()
if [[ -n "${FILTER:-}" ]]; then filter=(--filter "$FILTER"); fi

cargo bench --bench compare --no-run
couplet() {
    echo "round $1 couplet-start $(cut -d' ' -f1 /proc/loadavg)" >>"$out/load.txt"
    cargo bench -q --bench compare -- --out "$out/couplet-$1.json" --min-time "$min_time" "${filter[@]}"
    echo "round $1 couplet-end $(cut -d' ' -f1 /proc/loadavg)" >>"$out/load.txt"
}
pytorch() {
    echo "round $1 pytorch-start $(cut -d' ' -f1 /proc/loadavg)" >>"$out/load.txt"
    "$python" scripts/bench/pytorch_bench.py --out "$out/pytorch-$1.json" --min-time "$min_time" "${filter[@]}"
    echo "round $1 pytorch-end $(cut -d' ' -f1 /proc/loadavg)" >>"$out/load.txt"
}
for r in $(seq 1 "$rounds"); do
    if ((r % 2)); then couplet "$r"; pytorch "$r"; else pytorch "$r"; couplet "$r"; fi
done
echo "results: $out"
"$python" scripts/bench/join.py "$out"
