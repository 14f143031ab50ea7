"""The PyTorch reference for benches/summary.rs: torch.utils.tensorboard's SummaryWriter
(torch==2.13.0 with tensorboard==2.21.0, the project's .venv) timing the same work:
10 000 add_scalar calls then flush, and add_histogram of 1 000 000 float values (bins="tensorflow",
TensorFlow's default buckets, as couplet uses). Prints the median of REPEATS runs of each.

Usage: .venv/bin/python scripts/bench/summary_pytorch.py [REPEATS]
"""

import shutil
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.tensorboard import SummaryWriter

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
torch.set_num_threads(1)
logdir = tempfile.mkdtemp(prefix="couplet-bench-summary-pytorch-")
writer = SummaryWriter(logdir, max_queue=10, flush_secs=120)

step = 0
scalars = []
for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(10_000):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        step += 1
    writer.flush()
    scalars.append(time.perf_counter() - start)

values = torch.randn(1_000_000)
histograms = []
for _ in range(repeats):
    start = time.perf_counter()
    writer.add_histogram("weights", values, step, bins="tensorflow")
    step += 1
    histograms.append(time.perf_counter() - start)
writer.close()
shutil.rmtree(logdir)

s, h = statistics.median(scalars), statistics.median(histograms)
print(f"scalars_10k: {s * 1e3:.2f} ms median ({10_000 / s:,.0f} scalars/s)")
print(f"histogram_1m: {h * 1e3:.2f} ms median ({1e6 / h / 1e6:.1f} M values/s)")
