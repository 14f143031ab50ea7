"""Joins the rounds written by scripts/bench/compare.sh into one markdown table.

    .venv/bin/python scripts/bench/join.py DIR

DIR holds couplet-R.json and pytorch-R.json for each round R (and load.txt). Each case's
figure is the median over rounds of the per-round medians; the ratio is couplet / PyTorch
(below 1: couplet is faster).
"""

import glob
import json
import os
import statistics
import sys


def load(dir_, framework):
    rounds = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(dir_, f"{framework}-*.json")))]
    if not rounds:
        sys.exit(f"no {framework}-*.json in {dir_}")
    names = rounds[0]["medians_s"].keys()
    medians = {n: statistics.median(r["medians_s"][n] for r in rounds if n in r["medians_s"]) for n in names}
    return rounds, medians


def references(name):
    """The PyTorch cases a couplet case is compared with: [(torch name, note)]."""
    parts = name.split("/")
    if parts[0] in ("cell_step", "attention"):
        return [(name, "")]
    model, route, data, pass_, shape = parts
    torch_model = {"lstm_dropout": "lstm", "lstm_layernorm": "lstm"}.get(model, model)
    if data == "padded":
        return [(f"{torch_model}/padded/{pass_}/{shape}", "")]
    return [(f"{torch_model}/packed/{pass_}/{shape}", ""), (f"{torch_model}/padded/{pass_}/{shape}", "")]


def main():
    dir_ = sys.argv[1]
    c_rounds, couplet = load(dir_, "couplet")
    p_rounds, torch = load(dir_, "pytorch")
    assert c_rounds[0]["lengths_sum"] == p_rounds[0]["lengths_sum"], "lengths differ between the two sides"
    print(f"rounds: {len(c_rounds)} couplet, {len(p_rounds)} PyTorch; threads: couplet "
          f"{c_rounds[0]['threads']}, PyTorch {p_rounds[0]['threads']} (torch {p_rounds[0]['torch']})")
    load_file = os.path.join(dir_, "load.txt")
    if os.path.exists(load_file):
        loads = [float(line.split()[3]) for line in open(load_file) if line.strip()]
        print(f"1-minute load average during the run: min {min(loads):.2f}, "
              f"median {statistics.median(loads):.2f}, max {max(loads):.2f} ({len(loads)} readings)")
    print()
    print("| couplet case | couplet ms | PyTorch case | PyTorch ms | couplet / PyTorch |")
    print("|---|---:|---|---:|---:|")
    for name, secs in couplet.items():
        for ref, _ in references(name):
            if ref not in torch:
                continue
            print(f"| `{name}` | {secs * 1e3:.3f} | `{ref}` | {torch[ref] * 1e3:.3f} | {secs / torch[ref]:.2f} |")


if __name__ == "__main__":
    main()
