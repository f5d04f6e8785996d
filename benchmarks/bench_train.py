#!/usr/bin/env python
"""npalexnet against PyTorch, side by side in one process: training and inference throughput.

    python benchmarks/bench_train.py --net cifar --batch 128        # the CIFAR net, 2 threads
    python benchmarks/bench_train.py --net paper --batch 32
    python benchmarks/bench_train.py --net cifar --device cuda       # CuPy against torch CUDA (TF32 off)
    python benchmarks/bench_train.py --net cifar --memory            # + peak memory of a training step

Both libraries get the same net, the same weights, the same batch, dtype and
thread count. A *training step* is forward, cross-entropy, backward and an
SGD step with momentum 0.9 and weight decay 5e-4; *inference* is a forward
pass in eval mode. After warm-up, rounds alternate between the libraries
(so a busy neighbour on a shared machine slows both alike) and the median
time per step is reported with images/s and the ratio npalexnet / PyTorch
(above 1: npalexnet is faster). Each library runs in a worker process of its
own, driven in alternation by this one (see :func:`compare` for why).

Peak memory (``--memory``) is the high-water mark of the resident set while
one library runs three training steps in a fresh subprocess, minus the
resident set right after the imports (see :func:`peak_memory`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout without `pip install -e .`
NETS = {"cifar": dict(variant="cifar", num_classes=10, size=32),
        "paper": dict(variant="paper", num_classes=1000, size=227)}


def set_threads(threads: int) -> None:
    """Pin BLAS/OpenMP threads of both libraries before NumPy and torch load their BLAS."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))


def build(net: str, batch: int, device: str, seed: int = 0):
    """The npalexnet model, its torch twin (same weights), a batch and labels for both."""
    import numpy
    import torch

    import npalexnet
    from npalexnet.gradcheck.torch_twin import to_torch
    from npalexnet.models import alexnet

    spec = NETS[net]
    npalexnet.manual_seed(seed)
    model = alexnet(spec["variant"], num_classes=spec["num_classes"])
    twin = to_torch(model, replay_dropout=False)
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, spec["size"], spec["size"])).astype(numpy.float32)
    y = rng.integers(0, spec["num_classes"], batch)
    tdev = "cuda" if device == "cuda" else "cpu"
    model.to(device)
    twin = twin.to(tdev)
    xp = npalexnet.backend.xp_for(device)
    return model, twin, (xp.asarray(x), xp.asarray(y)), (torch.from_numpy(x).to(tdev), torch.from_numpy(y).to(tdev))


def npalexnet_steps(model, batch, device):
    """Closures for one training step and one inference pass of npalexnet."""
    from npalexnet import backend, config, nn, no_grad, optim

    config.set_defaults(buffer_pool=True)   # as the training program: large arrays recycled between steps
    x, y = batch
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    xp = backend.xp_for(device)
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if device == "cuda" else (lambda: None)

    def train():
        model.train()
        opt.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward(), input_grad=False)   # as torch: the batch needs no gradient
        opt.step()
        sync()

    def infer():
        model.eval()
        with no_grad():   # as torch.no_grad below: nothing kept for a backward pass
            model(x)
        sync()

    return train, infer


def torch_steps(twin, batch, device):
    """The same closures for PyTorch eager."""
    import torch

    x, y = batch
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def train():
        twin.train()
        opt.zero_grad()
        criterion(twin(x), y).backward()
        opt.step()
        sync()

    def infer():
        twin.eval()
        with torch.no_grad():
            twin(x)
        sync()

    return train, infer


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _worker(conn, library: str, args_dict: dict) -> None:
    """One library in its own process: build, warm up, then time what the parent asks for."""
    args = argparse.Namespace(**args_dict)
    set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model, twin, ours_batch, torch_batch = build(args.net, args.batch, args.device)
    if library == "npalexnet":
        del twin
        steps = dict(zip(("train", "infer"), npalexnet_steps(model, ours_batch, args.device)))
    else:
        del model
        steps = dict(zip(("train", "infer"), torch_steps(twin, torch_batch, args.device)))
    for fn in steps.values():
        timed(fn, args.warmup)
    conn.send("ready")
    while True:
        request = conn.recv()
        if request is None:
            return
        kind, n = request
        conn.send(timed(steps[kind], n))


def compare(args) -> dict:
    """Rounds alternate between the two libraries; medians, images/s and ratios.

    Each library runs in a process of its own, started side by side and driven
    in alternation from here, so both see the same machine (a busy neighbour
    slows both alike) but neither's thread pools (OpenBLAS and numba for
    npalexnet, OpenMP for torch) spin on the cores while the other runs: in one
    process they slow each other by up to 30% depending on which ran last.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    workers = {}
    for library in ("npalexnet", "pytorch"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, library, vars(args)), daemon=True)
        proc.start()
        workers[library] = (proc, parent)
    try:
        for _, conn in workers.values():
            if conn.recv() != "ready":
                raise RuntimeError("a benchmark worker failed to start")
        result = {"net": args.net, "batch": args.batch, "threads": args.threads, "device": args.device}
        for kind in ("train", "infer"):
            samples = {"npalexnet": [], "pytorch": []}
            for _ in range(args.rounds):
                for library, (_, conn) in workers.items():
                    conn.send((kind, args.steps))
                    samples[library] += conn.recv()
            med = {lib: statistics.median(t) for lib, t in samples.items()}
            result[kind] = {lib: {"ms_per_step": 1000 * m, "images_per_s": args.batch / m} for lib, m in med.items()}
            result[kind]["ratio"] = med["pytorch"] / med["npalexnet"]
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(None)
            except OSError:
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
    return result


def peak_memory(args, library: str) -> float:
    """MiB of the resident-set peak during training steps, over the process after its imports.

    Measured in a fresh subprocess: import both libraries, note the resident
    set, build the net (both libraries build it, for the same weights), drop
    the other library's copy, reset the kernel's high-water mark
    (``/proc/self/clear_refs``), run three training steps and read ``VmHWM``.
    The figure holds weights, gradients, optimizer state, the batch and the
    step's activations and temporaries.
    """
    code = f"""
import gc, sys
sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
import bench_train as b
b.set_threads({args.threads})
import numpy, torch, npalexnet
torch.set_num_threads({args.threads})
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
base = status('VmRSS')
model, twin, ours, theirs = b.build({args.net!r}, {args.batch}, 'cpu')
if {library!r} == 'npalexnet':
    del twin, theirs
    train, _ = b.npalexnet_steps(model, ours, 'cpu')
else:
    del model, ours
    train, _ = b.torch_steps(twin, theirs, 'cpu')
gc.collect()
open('/proc/self/clear_refs', 'w').write('5')
for _ in range(3):
    train()
print(status('VmHWM') - base)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=sorted(NETS), default="cifar")
    p.add_argument("--batch", type=int, default=None, help="default: 128 for cifar, 32 for paper")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (torch needs a few to reach speed)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=3, help="steps per round and library")
    p.add_argument("--memory", action="store_true", help="also measure peak memory (CPU)")
    p.add_argument("--json", help="append the result as one JSON line to this file")
    args = p.parse_args(argv)
    args.batch = args.batch or (128 if args.net == "cifar" else 32)
    set_threads(args.threads)
    result = compare(args)
    if args.memory and args.device == "cpu":
        result["memory_mib"] = {lib: peak_memory(args, lib) for lib in ("npalexnet", "pytorch")}
        result["memory_mib"]["ratio"] = result["memory_mib"]["npalexnet"] / result["memory_mib"]["pytorch"]
    print(f"{args.net} net, batch {args.batch}, {args.threads} threads, {args.device}, float32")
    for kind in ("train", "infer"):
        r = result[kind]
        print(f"  {kind:5s}  npalexnet {r['npalexnet']['images_per_s']:8.1f} img/s "
              f"({r['npalexnet']['ms_per_step']:7.1f} ms)   pytorch {r['pytorch']['images_per_s']:8.1f} img/s "
              f"({r['pytorch']['ms_per_step']:7.1f} ms)   ratio {r['ratio']:.2f}x")
    if "memory_mib" in result:
        m = result["memory_mib"]
        print(f"  peak memory of a training step: npalexnet {m['npalexnet']:.0f} MiB, pytorch "
              f"{m['pytorch']:.0f} MiB, ratio {m['ratio']:.2f}x")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
