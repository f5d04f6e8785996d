"""Data-parallel training speed: the CIFAR net on 1 and 2 processes of this machine.

Runs three configurations, each in fresh processes with its thread count
fixed before NumPy loads its BLAS:

* 1 process, 1 BLAS thread (the unit of scaling);
* 1 process, 2 BLAS threads (what one process gets out of this machine);
* ``mpiexec -n 2``, 1 BLAS thread each (data-parallel, the same 2 cores).

Each times full training steps of the CIFAR AlexNet (float32, the global
batch split over the ranks, dropout keyed by sample, one fused share-weighted
allreduce of all gradients, the per-step metric sums) after warm-up steps,
on random pre-processed images (no data loading or augmentation in the time).
Prints images/s, the time per step, the time in the gradient allreduce, and
the scaling efficiency ``throughput(2 ranks) / (2 x throughput(1 rank, 1 thread))``.

    python benchmarks/bench_distributed.py [--batch 128] [--steps 6] [--warmup 2] [--width 1.0]
    python benchmarks/bench_distributed.py --json out.json   # also write the numbers

The machine may be shared: run it when it is otherwise idle, and read the
spread (min/median over steps) before trusting a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def worker(args) -> None:
    """One rank's timing loop (run under mpiexec, or alone); rank 0 writes the JSON."""
    import numpy

    import npalexnet
    from npalexnet import distributed, nn, optim
    from npalexnet.models import alexnet
    from npalexnet.train import train_step

    comm = distributed.init(args.distributed, "cpu")
    distributed.install_abort_on_exception(comm)
    npalexnet.manual_seed(0)
    model = alexnet("cifar", width=args.width)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    parallel = distributed.DataParallel(model, comm)
    parallel.broadcast_initial_state()
    loss_fn = nn.CrossEntropyLoss()
    rng = numpy.random.default_rng(0)
    images = rng.standard_normal((args.batch, 3, 32, 32)).astype(numpy.float32)
    labels = rng.integers(0, 10, args.batch)
    step_times, reduce_times = [], []
    for step in range(args.warmup + args.steps):
        batch = numpy.arange(args.batch)
        mine = parallel.local_batch(batch)
        comm.barrier()
        start = time.perf_counter()
        train_step(model, loss_fn, opt, images[mine], labels[mine], mine, seed=0, epoch=step, parallel=parallel,
                   global_count=args.batch)   # the training program's step: sums, sync, update
        elapsed = time.perf_counter() - start
        if step >= args.warmup:
            step_times.append(elapsed)
            reduce_times.append(parallel.averager.last_seconds)
    everyone = comm.allgather_object((step_times, reduce_times))
    if comm.is_root:
        # A step takes as long as its slowest rank.
        steps = [max(times[i] for times, _ in everyone) for i in range(args.steps)]
        reduces = [statistics.fmean(r[i] for _, r in everyone) for i in range(args.steps)]
        result = {"ranks": comm.size, "threads": int(os.environ.get("OPENBLAS_NUM_THREADS", "0") or 0),
                  "batch": args.batch, "width": args.width,
                  "parameters": sum(p.size for p in model.parameters()),
                  "step_median_s": statistics.median(steps), "step_min_s": min(steps),
                  "allreduce_median_s": statistics.median(reduces) if comm.size > 1 else 0.0,
                  "images_per_s": args.batch / statistics.median(steps),
                  "images_per_s_best": args.batch / min(steps)}
        Path(args.worker_out).write_text(json.dumps(result))


def run_config(args, ranks: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NPALEXNET_DEVICE="cpu", **{v: str(threads) for v in THREAD_VARIABLES})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--worker", str(out), "--batch", str(args.batch),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--width", str(args.width)]
        if ranks > 1:
            mpiexec = Path(sys.executable).parent / "mpiexec"
            mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
            if mpiexec is None:
                sys.exit("bench_distributed: no mpiexec (pip install -e \".[mpi]\")")
            command = [mpiexec, "-n", str(ranks), *command, "--distributed"]
        subprocess.run(command, env=env, check=True, timeout=args.timeout)
        return json.loads(out.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128, help="global batch")
    p.add_argument("--steps", type=int, default=6, help="timed steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of the CIFAR net")
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", dest="worker_out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_out:
        worker(args)
        return 0
    configs = [(1, 1), (1, 2), (2, 1)]
    results = [run_config(args, ranks, threads) for ranks, threads in configs]
    base, one_two, two = results
    print(f"CIFAR AlexNet (width {args.width}, {base['parameters']:,} parameters, float32), global batch "
          f"{args.batch}, median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'processes x threads':>20} {'images/s':>9} {'best':>7} {'step ms':>8} {'min ms':>7} "
          f"{'allreduce ms':>13}")
    for (ranks, threads), r in zip(configs, results):
        print(f"{f'{ranks} x {threads}':>20} {r['images_per_s']:9.1f} {r['images_per_s_best']:7.1f} "
              f"{1e3 * r['step_median_s']:8.1f} {1e3 * r['step_min_s']:7.1f} {1e3 * r['allreduce_median_s']:13.1f}")
    efficiency = two["images_per_s"] / (2 * base["images_per_s"])
    best_efficiency = two["images_per_s_best"] / (2 * base["images_per_s_best"])
    print(f"scaling efficiency, 2 ranks vs 2 x (1 rank, 1 thread): {100 * efficiency:.0f}% "
          f"(best steps: {100 * best_efficiency:.0f}%)")
    print(f"speed-up of 2 ranks x 1 thread over 1 process x 2 threads: "
          f"{two['images_per_s'] / one_two['images_per_s']:.2f}x")
    print(f"allreduce share of a 2-rank step: {100 * two['allreduce_median_s'] / two['step_median_s']:.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps({"configs": results, "efficiency": efficiency}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
