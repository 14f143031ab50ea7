"""The Python half of tests/interop.rs: rank 1 of a 2-process Gloo group whose rank 0 is a
couplet process. Joins with torch.distributed.init_process_group (tcp:// rendezvous on the
store couplet hosts), runs the same collectives as the couplet side and prints what it sees
as JSON on the last line of stdout.

Usage: .venv/bin/python interop_peer.py PORT
"""

import datetime
import json
import sys

import torch
import torch.distributed as dist


def main() -> None:
    port = int(sys.argv[1])
    # "cpu:gloo": one Gloo backend for CPU tensors (plain "gloo" would also make one for CUDA
    # tensors, which a CPU-only peer never joins).
    dist.init_process_group(
        "cpu:gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=1,
        world_size=2,
        timeout=datetime.timedelta(seconds=30),
    )
    seen = {}
    f32 = torch.tensor([10.0, 20.0, 30.5], dtype=torch.float32)
    dist.all_reduce(f32)
    seen["f32"] = f32.tolist()
    f64 = torch.tensor([[1e-3, -2.0], [4.0, 8.0]], dtype=torch.float64)
    dist.all_reduce(f64)
    seen["f64"] = f64.flatten().tolist()
    i64 = torch.tensor([7, -1, 2**40], dtype=torch.int64)
    dist.all_reduce(i64, op=dist.ReduceOp.MAX)
    seen["i64_max"] = i64.tolist()
    b = torch.zeros(3, dtype=torch.float32)
    dist.broadcast(b, src=0)
    seen["broadcast"] = b.tolist()
    gathered = [torch.zeros(2, dtype=torch.int64) for _ in range(2)]
    dist.all_gather(gathered, torch.tensor([100, 200], dtype=torch.int64))
    seen["all_gather"] = torch.stack(gathered).flatten().tolist()
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
