#!/usr/bin/env python
"""The results table of a ``benchmarks/gpu_all.sh`` run, from the files it wrote.

    python benchmarks/gpu_summary.py gpu_out

Reads ``tests_off.txt`` / ``tests_on.txt`` (pytest's last line and its
FAILED/ERROR lines), ``results.jsonl`` (``bench_train.py`` and
``bench_cuda_kernels.py`` results), ``train_cuda.txt`` (the training run)
and, for the training run's CPU counterpart, the line of
benchmarks/RESULTS.md that starts with :data:`CPU_REFERENCE`. Prints what a
session copies into RESULTS.md: the goals of issue 13 are training
throughput of at least 1.0x PyTorch on the CIFAR net and 0.5x on the paper
net (batch 128, float32, TF32 off).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_REFERENCE = "3-epoch CPU reference:"
GOALS = {"cifar": 1.0, "paper": 0.5}   # training images/s against PyTorch eager + cuDNN, float32, the defaults


def pytest_outcome(path: Path) -> list[str]:
    """The final summary line of a pytest log and its first FAILED/ERROR lines."""
    if not path.is_file():
        return ["(not run)"]
    lines = path.read_text(errors="replace").splitlines()
    final = [line for line in lines if re.search(r"\d+ (passed|failed|error|skipped)", line) and " in " in line]
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    shown = failures[:15] + ([f"... and {len(failures) - 15} more"] if len(failures) > 15 else [])
    return [final[-1].strip("= ") if final else "(no pytest summary line: see the log)"] + ["  " + f for f in shown]


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def bench_table(rows: list[dict]) -> list[str]:
    benches = [r for r in rows if "net" in r and "train" in r]
    if not benches:
        return ["(no bench_train.py result)"]
    out = ["| net | TF32 | CUDA kernels | conv | train img/s npalexnet / PyTorch | train ratio (goal) "
           "| inference ratio | peak GPU MiB npalexnet / PyTorch (ratio) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in benches:
        ours = r.get("versions", {}).get("npalexnet", {})
        train, memory = r["train"], r.get("gpu_memory")
        defaults = ours.get("cuda_kernels") and ours.get("conv") == "auto"   # what a user runs
        goal = GOALS.get(r["net"]) if not r.get("tf32") and defaults else None
        verdict = "" if goal is None else f" ({'met' if train['ratio'] >= goal else 'not met'}: {goal}x)"
        mem = ("-" if not memory else f"{memory['npalexnet']['peak_in_use_mib']:.0f} / "
               f"{memory['pytorch']['peak_in_use_mib']:.0f} ({memory['ratio']:.2f}x)")
        out.append(f"| {r['net']}, {r['batch']} | {'on' if r.get('tf32') else 'off'} | "
                   f"{'on' if ours.get('cuda_kernels') else 'off'} | {ours.get('conv', '?')} | "
                   f"{train['npalexnet']['images_per_s']:.0f} / {train['pytorch']['images_per_s']:.0f} | "
                   f"{train['ratio']:.2f}x{verdict} | {r['infer']['ratio']:.2f}x | {mem} |")
    first = benches[0].get("versions", {})
    torch_side = first.get("pytorch", {})
    out.append(f"{first.get('npalexnet', {}).get('gpu', '?')}; CuPy {first.get('npalexnet', {}).get('cupy', '?')}, "
               f"torch {torch_side.get('torch', '?')}, cuDNN {torch_side.get('cudnn', '?')}")
    return out


def kernel_lines(rows: list[dict]) -> list[str]:
    kernels = [r for r in rows if r.get("kind") == "kernels"]
    if not kernels:
        return ["(no bench_cuda_kernels.py result)"]
    rows = kernels[-1]["rows"]
    total_a, total_k = sum(r["array_ms"] for r in rows), sum(r["kernel_ms"] for r in rows)
    out = [f"sum over {len(rows)} rows: array code {total_a:.2f} ms, CUDA kernels {total_k:.2f} ms "
           f"(x{total_a / total_k:.2f}); largest relative difference {max(r['rel_err'] for r in rows):.1e}"]
    out += [f"  {r['name']:44s} x{r['speedup']:5.2f}  ({r['array_ms']:.3f} -> {r['kernel_ms']:.3f} ms)" for r in rows]
    return out


def training_lines(path: Path) -> list[str]:
    """The last training run in ``path`` that got to its test accuracy, labelled with its device."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    runs = [block for block in re.split(r"^(?=\$ )", text, flags=re.M) if "test accuracy:" in block]
    if not runs:
        out = ["GPU: (no finished training run: see train_cuda.txt)"]
    else:
        device = re.search(r"--device (\w+)", runs[-1].splitlines()[0])
        label = {"cuda": "GPU", "cpu": "CPU (a rehearsal's short run)"}.get(device.group(1) if device else "", "?")
        out = [f"{label}: {re.findall(r'^test accuracy: .*$', runs[-1], flags=re.M)[-1]}"]
        out += ["  " + e for e in re.findall(r"^epoch \d+/\d+: .*$", runs[-1], flags=re.M)]
    reference = ROOT / "benchmarks" / "RESULTS.md"
    cpu = [line for line in reference.read_text().splitlines() if line.startswith(CPU_REFERENCE)] \
        if reference.is_file() else []
    reference_text = cpu[0][len(CPU_REFERENCE):].strip() if cpu else "(no CPU reference in RESULTS.md)"
    out.append(f"CPU, the same command (RESULTS.md): {reference_text}")
    return out


def summary(out_dir: Path) -> str:
    rows = read_results(out_dir / "results.jsonl")
    lines = ["=== results"]
    for name in ("off", "on"):
        lines += [f"tests, CUDA kernels {name}: " + "\n".join(pytest_outcome(out_dir / f"tests_{name}.txt"))]
    lines += ["--- training step against PyTorch eager + cuDNN (bench_train.py --device cuda)"] + bench_table(rows)
    lines += ["--- CUDA kernels against the array code (bench_cuda_kernels.py, forward + backward per layer)"]
    lines += kernel_lines(rows)
    lines += ["--- 3 epochs on gpu_data/cifar10-10k, seed 0 (examples/train_cifar10.py)"]
    lines += training_lines(out_dir / "train_cuda.txt")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python benchmarks/gpu_summary.py OUT_DIR (the folder gpu_all.sh wrote)", file=sys.stderr)
        return 2
    print(summary(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
