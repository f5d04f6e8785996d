#!/usr/bin/env python
"""Per-layer profile of an npalexnet training step: forward and backward time and share.

    python benchmarks/profile_layers.py --net cifar --batch 128
    python benchmarks/profile_layers.py --net paper --batch 32

Every leaf layer's ``forward`` and ``backward`` is wrapped with a timer; the
loss and the optimizer step are timed as their own rows. Medians over
``--steps`` steps after a warm-up; the shares add up to the whole step.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (sets no threads on import)


def profile(net: str, batch: int, steps: int, device: str = "cpu"):
    """``(rows, total)``: per leaf layer (then the loss and the SGD step) the median forward and
    backward seconds of a training step, and the median seconds of the whole step.

    A layer is timed through its ``__call__`` and ``backward``, the way a training step reaches it, so
    the time is that of whatever implementation the seam chose (``forward`` alone is the reference:
    timing it would miss the fast paths and break the record a backward pass needs).
    """
    from npalexnet import nn, optim

    model, _, (x, y), _ = bench_train.build(net, batch, device)
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    modules = {f"{name} {type(m).__name__}": m for name, m in model.named_modules()
               if name and next(m.children(), None) is None}   # the leaf layers
    modules["loss"] = criterion
    times = defaultdict(list)
    with _timed_calls(modules, times):
        totals = []
        for i in range(steps + 2):
            if i == 2:   # two warm-up steps: numba compiles, buffers are allocated
                times.clear()
                totals.clear()
            start = time.perf_counter()
            opt.zero_grad()
            criterion(model(x), y)
            model.backward(criterion.backward(), input_grad=False)
            before_step = time.perf_counter()
            opt.step()
            times["SGD step|fwd"].append(time.perf_counter() - before_step)
            totals.append(time.perf_counter() - start)
    rows = []
    for label in list(modules) + ["SGD step"]:
        fwd = statistics.median(times[f"{label}|fwd"]) if times[f"{label}|fwd"] else 0.0
        bwd = statistics.median(times[f"{label}|bwd"]) if times[f"{label}|bwd"] else 0.0
        rows.append((label, fwd, bwd))
    return rows, statistics.median(totals)


@contextlib.contextmanager
def _timed_calls(modules: dict, times):
    """Time ``__call__`` and ``backward`` of ``modules`` (label -> module) into ``times``.

    Python looks ``__call__`` up on the class, so the timer goes on :class:`~npalexnet.nn.Module`
    itself (no layer overrides either method; every layer's type stays what it is, which the seam
    chooses by), times only the modules given, and comes off on exit.
    """
    from npalexnet.nn import Module

    label_of = {id(m): label for label, m in modules.items()}
    call, backward = Module.__call__, Module.backward
    Module.__call__ = _timed(call, "fwd", label_of, times)
    Module.backward = _timed(backward, "bwd", label_of, times)
    try:
        yield
    finally:
        Module.__call__, Module.backward = call, backward


def _timed(method, phase: str, label_of: dict, times):
    def wrapped(self, *args, **kwargs):
        label = label_of.get(id(self))
        if label is None:   # a container: its children are timed
            return method(self, *args, **kwargs)
        start = time.perf_counter()
        out = method(self, *args, **kwargs)
        times[f"{label}|{phase}"].append(time.perf_counter() - start)
        return out
    return wrapped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=sorted(bench_train.NETS), default="cifar")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    args.batch = args.batch or (128 if args.net == "cifar" else 32)
    bench_train.set_threads(args.threads)
    rows, total = profile(args.net, args.batch, args.steps)
    print(f"{args.net} net, batch {args.batch}, {args.threads} threads: {1000 * total:.1f} ms per training step")
    print(f"{'layer':28s} {'forward ms':>10s} {'backward ms':>11s} {'share':>6s}")
    for label, fwd, bwd in rows:
        print(f"{label:28s} {1000 * fwd:10.1f} {1000 * bwd:11.1f} {100 * (fwd + bwd) / total:5.1f}%")
    accounted = sum(f + b for _, f, b in rows)
    print(f"{'(other: zero_grad, glue)':28s} {1000 * (total - accounted):10.1f} {'':11s} "
          f"{100 * (total - accounted) / total:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
