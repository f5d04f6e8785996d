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
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (sets no threads on import)


def profile(net: str, batch: int, steps: int, device: str = "cpu"):
    from npalexnet import nn, optim

    model, _, (x, y), _ = bench_train.build(net, batch, device)
    times = defaultdict(list)

    def timer(name, fn):
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            times[name].append(time.perf_counter() - start)
            return out
        return wrapped

    order = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None and name:   # leaf layers only
            label = f"{name} {type(module).__name__}"
            order.append(label)
            module.forward = timer(f"{label}|fwd", module.forward)
            module.backward = timer(f"{label}|bwd", module.backward)
    criterion = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fwd = timer("loss|fwd", criterion.forward)
    loss_bwd = timer("loss|bwd", criterion.backward)
    opt_step = timer("SGD step|fwd", opt.step)
    totals = []
    for i in range(steps + 2):
        if i == 2:
            times.clear()
            totals.clear()
        start = time.perf_counter()
        opt.zero_grad()
        loss_fwd(model(x), y)
        model.backward(loss_bwd(), input_grad=False)
        opt_step()
        totals.append(time.perf_counter() - start)
    rows = []
    for label in order + ["loss", "SGD step"]:
        fwd = statistics.median(times[f"{label}|fwd"]) if times[f"{label}|fwd"] else 0.0
        bwd = statistics.median(times[f"{label}|bwd"]) if times[f"{label}|bwd"] else 0.0
        rows.append((label, fwd, bwd))
    return rows, statistics.median(totals)


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
