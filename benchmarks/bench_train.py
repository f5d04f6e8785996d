#!/usr/bin/env python
"""npalexnet against PyTorch, side by side in one process: training and inference throughput.

    python benchmarks/bench_train.py --net cifar --batch 128        # the CIFAR net, 2 threads
    python benchmarks/bench_train.py --net paper --batch 32
    python benchmarks/bench_train.py --net cifar --device cuda       # CuPy against torch CUDA + cuDNN (TF32 off)
    python benchmarks/bench_train.py --net paper --batch 128 --device cuda --tf32   # both with TF32 matmuls
    python benchmarks/bench_train.py --net cifar --memory            # + peak memory of a training step
    python benchmarks/bench_train.py --net cifar --against-batch 64  # npalexnet at 128 against itself at 64

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

On a GPU (``--device cuda``: CuPy against PyTorch eager with cuDNN) a
timed round is ``--steps`` steps between two device synchronisations (a
step's kernels are queued, so timing one step alone would measure the
launch, not the work); the samples are the rounds' mean step times. Both
run float32 with TF32 off, or on with ``--tf32`` (CuPy: ``CUPY_TF32=1``,
set before CuPy is imported; torch: ``allow_tf32`` for matmuls and cuDNN).
After the timing each worker reports the peak GPU memory of three training
steps (:func:`gpu_peak_memory`): bytes in use at the high-water mark, the
counterpart of ``torch.cuda.max_memory_allocated``, and what its allocator
holds (CuPy's pool, torch's reserved memory). npalexnet runs with the
settings the environment gives (``NPALEXNET_CUDA_KERNELS``, ``NPALEXNET_CONV``),
which the result records.

``--against-batch B`` puts npalexnet at batch ``B`` in the second worker
instead of PyTorch, with the same alternation: the time per image of two
batch sizes measured side by side (a recipe's cost per epoch, e.g. the
10% time cap of issue 15). The ratio is then images/s at ``--batch`` over
images/s at ``B`` (below 1: batch ``B`` takes longer per image).
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
    """Closures for one training step and one inference pass of npalexnet (on a GPU they return with
    the work queued: :func:`timed` synchronises around them)."""
    from npalexnet import config, nn, no_grad, optim

    config.set_defaults(buffer_pool=True)   # as the training program: large arrays recycled between steps
    x, y = batch
    # As the training program: the labels' range is checked once per dataset, not in every step (on a
    # GPU that check would wait for the forward pass to finish).
    criterion = nn.CrossEntropyLoss(check_targets=False)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train():
        model.train()
        opt.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward(), input_grad=False)   # as torch: the batch needs no gradient
        opt.step()

    def infer():
        model.eval()
        with no_grad():   # as torch.no_grad below: nothing kept for a backward pass
            model(x)

    return train, infer


def torch_steps(twin, batch, device):
    """The same closures for PyTorch eager."""
    import torch

    x, y = batch
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train():
        twin.train()
        opt.zero_grad()
        criterion(twin(x), y).backward()
        opt.step()

    def infer():
        twin.eval()
        with torch.no_grad():
            twin(x)

    return train, infer


def timed(fn, repeat: int, sync=None) -> list[float]:
    """Seconds per step: one sample per step (CPU), or one per round of ``repeat`` steps between two
    calls of ``sync`` (GPU: the steps' kernels are asynchronous)."""
    if sync is None:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return [(time.perf_counter() - start) / repeat]


def configure_tf32(enabled: bool) -> None:
    """TF32 matmuls on or off for both libraries, before either touches the GPU.

    CuPy reads ``CUPY_TF32`` once, when it is imported, so this must run before
    the first ``import cupy`` of the process (the workers are spawned fresh).
    """
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def gpu_peak_memory(library: str, train, steps: int = 3) -> dict:
    """MiB of GPU memory at the high-water mark of ``steps`` training steps, and what the allocator holds.

    torch: ``max_memory_allocated`` / ``max_memory_reserved`` after a reset. CuPy keeps no high-water
    mark, so its default pool's ``used_bytes`` is read after every allocation during the steps
    (``cupy.cuda.set_allocator``); ``total_bytes`` is what the pool holds, freed blocks included.
    """
    mib = 2.0 ** -20
    if library == "pytorch":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            train()
        torch.cuda.synchronize()
        return {"peak_in_use_mib": torch.cuda.max_memory_allocated() * mib,
                "allocator_holds_mib": torch.cuda.max_memory_reserved() * mib}
    import cupy

    pool = cupy.get_default_memory_pool()
    cupy.cuda.Stream.null.synchronize()
    peak = [pool.used_bytes()]

    def malloc(size):
        memory = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return memory

    cupy.cuda.set_allocator(malloc)
    try:
        for _ in range(steps):
            train()
        cupy.cuda.Stream.null.synchronize()
    finally:
        cupy.cuda.set_allocator(pool.malloc)
    return {"peak_in_use_mib": peak[0] * mib, "allocator_holds_mib": pool.total_bytes() * mib}


def library_versions(library: str, device: str) -> dict:
    """Versions and settings a result depends on (recorded with it)."""
    import numpy
    import torch

    info = {"numpy": numpy.__version__, "torch": torch.__version__}
    if library == "npalexnet":
        import npalexnet
        from npalexnet import config

        settings = config.current()
        info.update(npalexnet=npalexnet.__version__, cuda_kernels=settings.cuda_kernels, conv=settings.conv)
        if device == "cuda":
            import cupy

            info.update(cupy=cupy.__version__, cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                        gpu=cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
                        cupy_tf32=os.environ.get("CUPY_TF32", "0"))
    elif device == "cuda":
        info.update(cudnn=torch.backends.cudnn.version(), gpu=torch.cuda.get_device_name(0),
                    allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32))
    return info


def _worker(conn, library: str, args_dict: dict, batch: int) -> None:
    """One library in its own process at ``batch`` images a step: build, warm up, then time what the
    parent asks for."""
    args = argparse.Namespace(**args_dict)
    set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        configure_tf32(args.tf32)
    model, twin, ours_batch, torch_batch = build(args.net, batch, args.device)
    if library == "npalexnet":
        del twin
        steps = dict(zip(("train", "infer"), npalexnet_steps(model, ours_batch, args.device)))
        sync = device_sync_npalexnet(args.device)
    else:
        del model
        steps = dict(zip(("train", "infer"), torch_steps(twin, torch_batch, args.device)))
        sync = torch.cuda.synchronize if args.device == "cuda" else None
    for fn in steps.values():
        timed(fn, args.warmup, sync)
    conn.send("ready")
    while True:
        request = conn.recv()
        if request is None:
            return
        if request == "memory":
            conn.send(gpu_peak_memory(library, steps["train"]) if args.device == "cuda" else {})
        elif request == "versions":
            conn.send(library_versions(library, args.device))
        else:
            kind, n = request
            conn.send(timed(steps[kind], n, sync))


def device_sync_npalexnet(device: str):
    """Waits for CuPy's queued work (None on the CPU, where every step has finished when it returns)."""
    if device != "cuda":
        return None
    import cupy

    return cupy.cuda.Stream.null.synchronize


def contenders(args) -> dict:
    """The two workers, by the name the result gives them: (library, batch) each. The first is always
    npalexnet at ``--batch``; the second PyTorch at the same batch, or npalexnet at ``--against-batch``."""
    other = ("pytorch", ("pytorch", args.batch)) if args.against_batch is None else \
        (f"npalexnet at batch {args.against_batch}", ("npalexnet", args.against_batch))
    return {"npalexnet": ("npalexnet", args.batch), other[0]: other[1]}


def compare(args) -> dict:
    """Rounds alternate between the two workers; medians, images/s and ratios.

    Each library runs in a process of its own, started side by side and driven
    in alternation from here, so both see the same machine (a busy neighbour
    slows both alike) but neither's thread pools (OpenBLAS and numba for
    npalexnet, OpenMP for torch) spin on the cores while the other runs: in one
    process they slow each other by up to 30% depending on which ran last.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    roles = contenders(args)
    workers = {}
    for name, (library, batch) in roles.items():
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, library, vars(args), batch), daemon=True)
        proc.start()
        workers[name] = (proc, parent)
    ours, other = roles
    try:
        for _, conn in workers.values():
            if conn.recv() != "ready":
                raise RuntimeError("a benchmark worker failed to start")
        result = {"net": args.net, "batch": args.batch, "threads": args.threads, "device": args.device,
                  "tf32": bool(args.tf32), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "warmup": args.warmup, "rounds": args.rounds, "steps": args.steps, "against": other}
        for library, (_, conn) in workers.items():
            conn.send("versions")
            result.setdefault("versions", {})[library] = conn.recv()
        for kind in ("train", "infer"):
            samples = {name: [] for name in workers}
            for _ in range(args.rounds):
                for name, (_, conn) in workers.items():
                    conn.send((kind, args.steps))
                    samples[name] += conn.recv()
            med = {name: statistics.median(t) for name, t in samples.items()}
            result[kind] = {name: {"ms_per_step": 1000 * m, "images_per_s": roles[name][1] / m}
                            for name, m in med.items()}
            result[kind]["ratio"] = result[kind][ours]["images_per_s"] / result[kind][other]["images_per_s"]
        if args.device == "cuda":
            memory = {}
            for library, (_, conn) in workers.items():
                conn.send("memory")
                memory[library] = conn.recv()
            memory["ratio"] = memory["npalexnet"]["peak_in_use_mib"] / memory["pytorch"]["peak_in_use_mib"]
            result["gpu_memory"] = memory
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


def parse_args(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, check and fill in the defaults that depend on other options."""
    args = p.parse_args(argv)
    if args.tf32 and args.device != "cuda":
        p.error("--tf32 needs --device cuda (TF32 is a mode of NVIDIA's matrix units)")
    if args.against_batch is not None and (args.memory or args.device == "cuda"):
        p.error("--against-batch times npalexnet against itself on the CPU; --memory and --device cuda "
                "compare it with PyTorch")
    gpu = args.device == "cuda"
    args.batch = args.batch or (128 if args.net == "cifar" else 32)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 5)
    args.steps = args.steps if args.steps is not None else (10 if gpu else 3)
    for name in ("batch", "rounds", "steps", "against_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=sorted(NETS), default="cifar")
    p.add_argument("--batch", type=int, default=None, help="default: 128 for cifar, 32 for paper")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: npalexnet on CuPy against PyTorch eager with cuDNN")
    p.add_argument("--tf32", action="store_true",
                   help="with --device cuda: TF32 matmuls and convolutions on both sides (CUPY_TF32=1, allow_tf32)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps first (torch needs a few to reach speed; default 5, 10 on cuda)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=None, help="steps per round and library (default 3, 10 on cuda)")
    p.add_argument("--memory", action="store_true", help="also measure peak memory (CPU; always measured on cuda)")
    p.add_argument("--against-batch", type=int, default=None, metavar="B",
                   help="time npalexnet at --batch against npalexnet at batch B (per image) instead of PyTorch")
    p.add_argument("--json", help="append the result as one JSON line to this file")
    return p


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    set_threads(args.threads)
    result = compare(args)
    if args.memory and args.device == "cpu":
        result["memory_mib"] = {lib: peak_memory(args, lib) for lib in ("npalexnet", "pytorch")}
        result["memory_mib"]["ratio"] = result["memory_mib"]["npalexnet"] / result["memory_mib"]["pytorch"]
    print(f"{args.net} net, batch {args.batch}, {args.threads} threads, {args.device}, float32"
          + (f", TF32 {'on' if args.tf32 else 'off'}" if args.device == "cuda" else ""))
    for kind in ("train", "infer"):
        r = result[kind]
        rates = [f"{name} {r[name]['images_per_s']:8.1f} img/s ({r[name]['ms_per_step']:7.1f} ms)"
                 for name in ("npalexnet", result["against"])]
        print(f"  {kind:5s}  {'   '.join(rates)}   ratio {r['ratio']:.2f}x")
    if "memory_mib" in result:
        m = result["memory_mib"]
        print(f"  peak memory of a training step: npalexnet {m['npalexnet']:.0f} MiB, pytorch "
              f"{m['pytorch']:.0f} MiB, ratio {m['ratio']:.2f}x")
    if "gpu_memory" in result:
        m = result["gpu_memory"]
        print(f"  peak GPU memory of a training step: npalexnet {m['npalexnet']['peak_in_use_mib']:.0f} MiB "
              f"(pool {m['npalexnet']['allocator_holds_mib']:.0f}), pytorch {m['pytorch']['peak_in_use_mib']:.0f} "
              f"MiB (reserved {m['pytorch']['allocator_holds_mib']:.0f}), ratio {m['ratio']:.2f}x")
        ours = result["versions"]["npalexnet"]
        print(f"  {ours.get('gpu')}, CuPy {ours.get('cupy')}, torch {result['versions']['pytorch']['torch']} "
              f"(cuDNN {result['versions']['pytorch'].get('cudnn')}); npalexnet cuda_kernels={ours['cuda_kernels']}, "
              f"conv={ours['conv']}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
