#!/usr/bin/env bash
# All-reduce bus bandwidth over loopback (Gloo, 2 processes, 1 KB–64 MB): couplet against
# torch.distributed in the same run, alternating for ROUNDS rounds; then the data-parallel step
# time of the MLP example's model at 1 and 2 processes. Prints JSON lines and a summary table
# (medians over rounds). Usage: bash scripts/bench/dist_bench.sh [ROUNDS]  (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
export LIBTORCH=${LIBTORCH:-$PWD/.libtorch} OMP_NUM_THREADS=1
cargo build --release -p couplet-distributed --example dist_bench >&2
BIN=target/release/examples/dist_bench
RUN=".venv/bin/torchrun --nproc-per-node"
OUT=$(mktemp)
port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for round in $(seq "$ROUNDS"); do
  $RUN 2 --master-addr 127.0.0.1 --master-port "$(port)" --no-python $BIN allreduce | tee -a "$OUT"
  $RUN 2 --master-addr 127.0.0.1 --master-port "$(port)" scripts/bench/dist_allreduce.py | tee -a "$OUT"
  for n in 1 2; do
    $RUN $n --master-addr 127.0.0.1 --master-port "$(port)" --no-python $BIN mlp | tee -a "$OUT"
  done
done
.venv/bin/python - "$OUT" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
bw = collections.defaultdict(list)
mlp = collections.defaultdict(list)
for r in rows:
    if "bytes" in r:
        bw[(r["bytes"], r["impl"])].append(r["bus_gb_s"])
    else:
        mlp[r["world"]].append(r["mlp_step_ms"])
print("\n| size | couplet GB/s | torch.distributed GB/s | ratio |\n| --- | --- | --- | --- |")
for size in sorted({b for b, _ in bw}):
    c, t = statistics.median(bw[(size, "couplet")]), statistics.median(bw[(size, "torch")])
    label = f"{size >> 20} MB" if size >= 1 << 20 else f"{size >> 10} KB"
    print(f"| {label} | {c:.3f} | {t:.3f} | {c / t:.2f}× |")
print("\n| processes | MLP step (ms, median) |\n| --- | --- |")
for world in sorted(mlp):
    print(f"| {world} | {statistics.median(mlp[world]):.3f} |")
PY
rm -f "$OUT"
