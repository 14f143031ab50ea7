"""Loads couplet's TorchScript exports in Python and checks them against couplet's outputs.

Usage: python check_torchscript.py DIR

DIR holds, written by tests/export.rs:
  - `{name}.pt` for every module in `manifest.json`;
  - `manifest.json`: {name: {"parameters": [...], "buffers": [...], "methods": [...],
    "cases": [{"method": m, "error": null or text}, ...]}};
  - `cases.safetensors`: for module `name` and its case `i`, the inputs `{name}.{i}.in.{j}` and
    the outputs couplet computed eagerly, `{name}.{i}.out.{j}` (on inputs other than the
    traced ones, e.g. other batch sizes); a case with an `error` has no outputs: the call must
    raise an exception whose message contains that text.

Checks, per module: `torch.jit.load` opens it; `named_parameters()` / `named_buffers()` list
exactly couplet's variable names (`/` read as `.`; in module-tree order), as parameters that
require grad; every case's outputs are equal to couplet's (shape, dtype and values: difference
0), or it raises the expected error. Prints one JSON line (torch version, number of cases,
errors raised, largest difference per module) and exits 1 on any mismatch. Needs torch 2.13
and safetensors (the project's .venv).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def main(folder: Path) -> int:
    manifest = json.loads((folder / "manifest.json").read_text())
    tensors = load_file(str(folder / "cases.safetensors"))
    failures = []
    report = {"torch": torch.__version__, "cases": 0, "errors_raised": 0}
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
        worst = 0.0
        for i, case in enumerate(spec["cases"]):
            label = f"{name} case {i} ({case['method']})"
            listed = lambda kind: [tensors[f"{name}.{i}.{kind}.{j}"] for j in range(count(tensors, f"{name}.{i}.{kind}."))]
            inputs, expected = listed("in"), listed("out")
            report["cases"] += 1
            try:
                # Grad mode as couplet computed the outputs (enabled, torch's default): under
                # no_grad libtorch picks other kernels for some shapes (the encoder at batch 1
                # differs in the last bit, 9e-8), and the check is for difference 0.
                got = getattr(module, case["method"])(*inputs)
            except Exception as e:  # torch.jit.Error (a RuntimeError) from the graph's check
                if case["error"] is not None and case["error"] in str(e):
                    report["errors_raised"] += 1
                else:
                    failures.append(f"{label}: raised {str(e)[-400:]!r}")
                continue
            if case["error"] is not None:
                failures.append(f"{label}: expected an error containing {case['error']!r}, got outputs")
                continue
            got = list(got) if isinstance(got, (tuple, list)) else [got]
            if len(got) != len(expected):
                failures.append(f"{label}: {len(got)} outputs, expected {len(expected)}")
                continue
            for j, (g, e) in enumerate(zip(got, expected)):
                if g.shape != e.shape or g.dtype != e.dtype:
                    failures.append(f"{label} output {j}: {g.dtype}{list(g.shape)} != {e.dtype}{list(e.shape)}")
                    continue
                if e.is_floating_point() and e.numel():
                    worst = max(worst, (g.double() - e.double()).abs().max().item())
                if not torch.equal(g, e):
                    failures.append(f"{label} output {j}: values differ from couplet's")
        report[name] = worst
    report["failures"] = failures
    print(json.dumps(report))
    return 1 if failures else 0


def count(tensors, prefix: str) -> int:
    return sum(1 for k in tensors if k.startswith(prefix))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
