"""The PyTorch half of couplet's comparison (see BENCHMARKS.md).

Times, in PyTorch, the cases that benches/compare.rs times in couplet, with the same shapes,
the same lengths (splitmix64 seeded with 6, uniform in [T/2, T]), the same passes and the
same timing loop, and writes the per-case median (seconds) as JSON:

    .venv/bin/python scripts/bench/pytorch_bench.py [--out FILE] [--min-time S] [--min-iters N]
                                                    [--filter TEXT] [--threads N]

Cases (names shared with couplet where the work is the same):
- cell_step/{lstm,gru}/{BxTxIxH}: nn.LSTMCell / nn.GRUCell, one step from zeros, forward.
- {lstm,gru}/{padded,packed}/{fwd,fwd_bwd}/{BxTxIxH}: nn.LSTM / nn.GRU (batch_first) on the
  padded batch, or pack_padded_sequence(enforce_sorted=False) -> RNN -> pad_packed_sequence
  with the lengths (packing and unpacking are timed, as couplet's sorting and unpacking are).
- lstm_bi, lstm_stack2, lstm_stack2_dropout (target shape only): nn.LSTM with
  bidirectional=True, num_layers=2, num_layers=2 + dropout=0.1.
- attention/mha/{pass}/32x100x256x8: nn.MultiheadAttention(256, 8, batch_first=True),
  self-attention, need_weights=False.
- attention/transformer_layer/{pass}/32x100x256x8: nn.TransformerEncoderLayer(256, 8,
  dim_feedforward=1024, batch_first=True), defaults otherwise (post-norm, ReLU, dropout 0.1;
  its eval/no_grad forward takes PyTorch's fused fast path).
- attention/attentive_read/{pass}/32x100x256x8: Sonnet's AttentiveRead in torch ops
  (tile the query, concat with memory, Linear(512,128) -> relu -> Linear(128,1), softmax
  over the 100 slots, weighted sum of memory).

fwd runs in eval mode under torch.no_grad(); fwd_bwd runs in train mode and back-propagates
out.sum() (gradients accumulate, as in couplet). Threads: torch.set_num_threads(cores).
"""

import argparse
import json
import os
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

SHAPES = [(1, 100, 64, 128), (32, 100, 64, 256), (64, 50, 256, 512)]
TARGET = SHAPES[1]
ATTN = dict(batch=32, heads=8, model=256, length=100, logit_hidden=128, ff=1024)
PASSES = ["fwd", "fwd_bwd"]
MASK64 = (1 << 64) - 1


def label(shape):
    return "x".join(str(v) for v in shape)


def lengths(shape):
    """Same values as benches/common/mod.rs `lengths`."""
    b, t, _, _ = shape
    low, span, x, out = t // 2, t - t // 2 + 1, 6, []
    for _ in range(b):
        x = (x + 0x9E3779B97F4A7C15) & MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        out.append(low + z % span)
    return out


def run_pass(module, pass_, f):
    """Returns a runner doing one iteration of `f()` (which returns the outputs)."""
    if pass_ == "fwd":
        def run():
            module.eval()
            with torch.no_grad():
                f()
    else:
        def run():
            module.train()
            f().sum().backward()
    return run


def cell_case(kind, shape):
    b, _, i, h = shape
    cell = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(i, h)
    x = torch.randn(b, i)
    state = (torch.zeros(b, h), torch.zeros(b, h)) if kind == "lstm" else torch.zeros(b, h)
    return run_pass(cell, "fwd", lambda: cell(x, state))


def rnn_case(model, data, pass_, shape):
    b, t, i, h = shape
    if model == "gru":
        rnn = nn.GRU(i, h, batch_first=True)
    else:
        rnn = nn.LSTM(
            i,
            h,
            batch_first=True,
            bidirectional=model == "lstm_bi",
            num_layers=2 if model.startswith("lstm_stack2") else 1,
            dropout=0.1 if model == "lstm_stack2_dropout" else 0.0,
        )
    x = torch.randn(b, t, i)
    if data == "padded":
        return run_pass(rnn, pass_, lambda: rnn(x)[0])
    lens = torch.tensor(lengths(shape), dtype=torch.int64)

    def packed():
        p = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(rnn(p)[0], batch_first=True, total_length=t)[0]

    return run_pass(rnn, pass_, packed)


class AttentiveRead(nn.Module):
    def __init__(self, model, hidden):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * model, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, memory, query):
        b, n, dm = memory.shape
        tiled = query.unsqueeze(1).expand(b, n, query.shape[1])
        logits = self.mlp(torch.cat([memory, tiled], 2).reshape(b * n, -1)).view(b, n)
        weights = torch.softmax(logits, -1)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1)


def attention_case(kind, pass_):
    b, n, e = ATTN["batch"], ATTN["length"], ATTN["model"]
    if kind == "mha":
        mha = nn.MultiheadAttention(e, ATTN["heads"], batch_first=True)
        x = torch.randn(b, n, e)
        return run_pass(mha, pass_, lambda: mha(x, x, x, need_weights=False)[0])
    if kind == "transformer_layer":
        layer = nn.TransformerEncoderLayer(e, ATTN["heads"], dim_feedforward=ATTN["ff"], batch_first=True)
        x = torch.randn(b, n, e)
        return run_pass(layer, pass_, lambda: layer(x))
    read = AttentiveRead(e, ATTN["logit_hidden"])
    memory, query = torch.randn(b, n, e), torch.randn(b, e)
    return run_pass(read, pass_, lambda: read(memory, query))


def cases():
    """(name, builder) pairs in couplet's order."""
    out = []
    for shape in SHAPES:
        for kind in ["lstm", "gru"]:
            out.append((f"cell_step/{kind}/{label(shape)}", lambda k=kind, s=shape: cell_case(k, s)))
    for model in ["lstm", "gru", "lstm_bi", "lstm_stack2", "lstm_stack2_dropout"]:
        shapes = SHAPES if model in ("lstm", "gru") else [TARGET]
        for shape in shapes:
            for data in ["padded", "packed"]:
                for pass_ in PASSES:
                    name = f"{model}/{data}/{pass_}/{label(shape)}"
                    out.append((name, lambda m=model, d=data, p=pass_, s=shape: rnn_case(m, d, p, s)))
    attn = f"{ATTN['batch']}x{ATTN['length']}x{ATTN['model']}x{ATTN['heads']}"
    for pass_ in PASSES:
        for kind in ["attentive_read", "mha", "transformer_layer"]:
            out.append((f"attention/{kind}/{pass_}/{attn}", lambda k=kind, p=pass_: attention_case(k, p)))
    return out


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def time_case(run, min_time, min_iters):
    run()
    run()
    times, start = [], time.perf_counter()
    while len(times) < 1000 and (len(times) < min_iters or time.perf_counter() - start < min_time):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--min-iters", type=int, default=3)
    parser.add_argument("--filter")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("COUPLET_BENCH_THREADS", os.cpu_count())))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    medians = {}
    for name, build in cases():
        if args.filter and args.filter not in name:
            continue
        torch.manual_seed(0)
        medians[name] = time_case(build(), args.min_time, args.min_iters)
        print(f"{name:<50} {medians[name] * 1e3:>10.3f} ms", flush=True)
    report = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "lengths_sum": {label(s): sum(lengths(s)) for s in SHAPES},
        "medians_s": medians,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
