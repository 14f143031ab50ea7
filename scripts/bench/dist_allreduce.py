"""torch.distributed's half of scripts/bench/dist_bench.sh: run under torchrun, it times Gloo
all-reduces of 1 KB to 64 MB (float32, sum) exactly as couplet's dist_bench example does
(3 warm-up calls, then the median of N calls each after a barrier) and prints JSON lines on
rank 0.

Usage: .venv/bin/torchrun --nproc-per-node 2 scripts/bench/dist_allreduce.py
"""

import json
import statistics
import time

import torch
import torch.distributed as dist


def main() -> None:
    dist.init_process_group("cpu:gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    for nbytes in [1 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]:
        iters = 10 if nbytes >= 16 << 20 else 50
        t = torch.ones(nbytes // 4, dtype=torch.float32)
        for _ in range(3):
            dist.all_reduce(t)
        times = []
        for _ in range(iters):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - start)
        times.sort()
        secs = times[len(times) // 2]
        if rank == 0:
            bus = 2 * (world - 1) / world * nbytes / secs / 1e9
            print(json.dumps({"impl": "torch", "bytes": nbytes, "world": world, "seconds": secs, "bus_gb_s": round(bus, 4)}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
