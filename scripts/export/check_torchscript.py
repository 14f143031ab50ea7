"""Loads couplet's TorchScript exports in Python and checks them against couplet's outputs.

Usage: python check_torchscript.py DIR

DIR holds, written by tests/export.rs:
  - `{name}.pt` for every module in `manifest.json`;
  - `manifest.json`: {name: {"parameters": [...], "buffers": [...], "methods": [...]}};
  - `cases.safetensors`: for each module `name` and method `m`, inputs `{name}.{m}.in.{i}` and
    the outputs couplet computed eagerly, `{name}.{m}.out.{i}` (on inputs other than the
    traced ones, e.g. another batch size).

Checks, per module: `torch.jit.load` opens it; `named_parameters()` / `named_buffers()` list
exactly couplet's variable names (`/` read as `.`; in module-tree order), as parameters that require grad; every
method's outputs match couplet's within 1e-6 (absolute and relative). Prints one JSON line of
the largest differences and exits 1 on any mismatch. Needs torch 2.13 and safetensors (the
project's .venv).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

TOLERANCE = 1e-6


def main(folder: Path) -> int:
    manifest = json.loads((folder / "manifest.json").read_text())
    cases = load_file(str(folder / "cases.safetensors"))
    failures, report = [], {"torch": torch.__version__}
    for name, spec in manifest.items():
        module = torch.jit.load(str(folder / f"{name}.pt"))
        module.eval()
        params = dict(module.named_parameters())
        # Python lists them in module-tree order (a scope's variables together), couplet in
        # creation order: the same names.
        if sorted(params) != sorted(spec["parameters"]):
            failures.append(f"{name}: parameters {list(params)} != {spec['parameters']}")
        if not all(p.requires_grad for p in params.values()):
            failures.append(f"{name}: a parameter does not require grad")
        buffers = [b for b, _ in module.named_buffers()]
        if sorted(buffers) != sorted(spec["buffers"]):
            failures.append(f"{name}: buffers {buffers} != {spec['buffers']}")
        for method in spec["methods"]:
            prefix = f"{name}.{method}"
            count = lambda kind: sum(1 for k in cases if k.startswith(f"{prefix}.{kind}."))
            inputs = [cases[f"{prefix}.in.{i}"] for i in range(count("in"))]
            expected = [cases[f"{prefix}.out.{i}"] for i in range(count("out"))]
            with torch.no_grad():
                got = getattr(module, method)(*inputs)
            got = list(got) if isinstance(got, (tuple, list)) else [got]
            if len(got) != len(expected):
                failures.append(f"{prefix}: {len(got)} outputs, expected {len(expected)}")
                continue
            worst = 0.0
            for i, (g, e) in enumerate(zip(got, expected)):
                if g.shape != e.shape or g.dtype != e.dtype:
                    failures.append(f"{prefix} output {i}: {g.dtype}{list(g.shape)} != {e.dtype}{list(e.shape)}")
                    continue
                if e.is_floating_point():
                    worst = max(worst, (g - e).abs().max().item() if e.numel() else 0.0)
                    if not torch.allclose(g, e, rtol=TOLERANCE, atol=TOLERANCE):
                        failures.append(f"{prefix} output {i}: max difference {(g - e).abs().max().item():.3g}")
                elif not torch.equal(g, e):
                    failures.append(f"{prefix} output {i}: values differ")
            report[prefix] = worst
    report["failures"] = failures
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
