#!/usr/bin/env python
"""Paper mode's numbers: decoding into a store, the loader alone, training, memory against the number of images.

    python benchmarks/bench_paper_mode.py decode --images 2000 --workers 2
    python benchmarks/bench_paper_mode.py loader --images 2000
    python benchmarks/bench_paper_mode.py train --images 2000 --steps 6
    python benchmarks/bench_paper_mode.py memory --images 2000 20000
    python benchmarks/bench_paper_mode.py measure-memory STORE_STEM --steps 8 --batch 32 --width 0.0625

Trees come from ``benchmarks/make_imagefolder.py`` (JPEGs of 300x200 to
640x480, 10 classes) under ``--root`` (default /tmp/npalexnet-bench), one per
image count, written once; their stores go to ``ROOT/cache``. Each command
prints what it measured, one line per number, and a JSON line last.

* ``decode``: a fresh store of the tree at 256 px with ``--workers``
  processes: images/s, bytes per image, and the time 1.28 million images
  (ImageNet's training set) would take at that rate.
* ``loader``: the training loader alone (a background thread reading
  batches of 128 with pread, the paper's augmentation to 227 px on the CPU):
  images/s over whole epochs, the reading thread's own images/s. The store
  is in the page cache after its build (this measures the loader, not the disk).
* ``train``: the paper net (full width, batch 128, the recipe's update rule)
  trained from that loader: images/s, and the share of each step spent
  waiting for data.
* ``memory``: ``measure-memory`` in a fresh process for each image count
  (after one warm-up run that leaves the numba kernels compiled): peak
  resident set (VmHWM) and largest anonymous memory (RssAnon) of the same
  short training run, next to the store's size.
* ``measure-memory``: that run (also used by tests/data/test_store_memory.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def status_kib() -> dict:
    """RssAnon, RssFile and VmHWM of this process, in KiB (/proc/self/status)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmHWM", "RssFile"):
                fields[key] = int(value.split()[0])
    return fields


def tree_for(root: Path, images: int, classes: int = 10, workers: int = 2) -> Path:
    """``root/tree-<images>`` (train/ only, ``images`` JPEGs), written on first use."""
    from make_imagefolder import write_tree

    tree = root / f"tree-{images}"
    if not (tree / "train").is_dir():
        start = time.perf_counter()
        write_tree(tree, classes, images // classes, 0, seed=images, workers=workers, progress=sys.stderr.isatty())
        print(f"wrote {images} JPEGs into {tree} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return tree / "train"


def store_for(root: Path, images: int, size: int = 256, workers: int = 2, fresh: bool = False, log=None):
    """The store of ``tree-<images>`` at ``size`` px (decoded now when ``fresh`` or missing)."""
    from npalexnet.data.store import open_store
    from npalexnet.data.tree import list_classes

    folder = tree_for(root, images, workers=workers)
    cache = root / "cache" / f"{images}-{size}"
    if fresh and cache.exists():
        for path in cache.iterdir():
            path.unlink()
    return open_store(folder, list_classes(folder), "train", size, places=[(cache, "")], workers=workers, log=log,
                      progress=sys.stderr.isatty())


def paper_augment(split, out_size: int = 227):
    from npalexnet.data.paper_augment import PaperAugment

    stats = split.stats()
    return PaperAugment(stats.mean, (1 / 255,) * 3, stats.eigvals, stats.eigvecs, out_size, split.image_shape[1])


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the decoding workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def decode(args) -> dict:
    lines = []
    tree_for(args.root, args.images[0], workers=args.workers)
    start, cpu = time.perf_counter(), cpu_seconds()
    store = store_for(args.root, args.images[0], workers=args.workers, fresh=True, log=lines.append)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    rate = len(store) / seconds
    index = store.index_path.stat().st_size
    result = {"images": len(store), "workers": args.workers, "seconds": round(seconds, 1),
              "images_per_s": round(rate, 1), "images_per_cpu_s": round(len(store) / cpu, 1),
              "bytes_per_image": round((store.nbytes + index) / len(store)),
              "imagenet_hours": round(1_281_167 / rate / 3600, 2),
              "imagenet_cpu_hours": round(1_281_167 / (len(store) / cpu) / 3600, 2)}
    print(f"decode: {len(store)} JPEGs -> 256 px store in {seconds:.1f} s with {args.workers} processes: "
          f"{rate:.0f} images/s; {result['images_per_cpu_s']:.0f} images per CPU-second (all processes)")
    print(f"store: {result['bytes_per_image']} bytes per image (array {store.row_bytes} + index and header)")
    print(f"1.28 million images at this rate: {result['imagenet_hours']:.2f} h; "
          f"{result['imagenet_cpu_hours']:.1f} CPU-hours in all")
    return result


def loader(args) -> dict:
    from npalexnet.data.store import StoreSplit
    from npalexnet.data.store_loader import StoreLoader

    split = StoreSplit(store_for(args.root, args.images[0], workers=args.workers))
    loader = StoreLoader(split, 128, paper_augment(split), "cpu", train=True, seed=0)
    for _ in loader.epoch(0):      # warm: the page cache, the thread, the first allocations
        pass
    images, seconds, reads, cpu = 0, 0.0, 0.0, time.process_time()
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        for _, x, _ in loader.epoch(epoch):
            images += x.shape[0]
        seconds += time.perf_counter() - start
        reads += loader.timing.read_seconds
    cpu = time.process_time() - cpu
    result = {"images": images, "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 1),
              "read_images_per_s": round(images / reads, 1), "images_per_cpu_s": round(images / cpu, 1)}
    print(f"loader alone: {result['images_per_s']:.0f} images/s, {result['images_per_cpu_s']:.0f} images per "
          f"CPU-second (batches of 128, 256 -> 227 px patches, reflections, colour augmentation, normalisation); "
          f"the reading thread alone: {result['read_images_per_s']:.0f} images/s")
    return result


def train(args) -> dict:
    from npalexnet import config, distributed, nn, optim, random_streams
    from npalexnet.data.store import StoreSplit
    from npalexnet.data.store_loader import StoreLoader
    from npalexnet.models import alexnet
    from npalexnet.train.loop import train_one_epoch

    split = StoreSplit(store_for(args.root, args.images[0], workers=args.workers))
    loader = StoreLoader(split, args.batch, paper_augment(split), "cpu", train=True, seed=0)
    random_streams.manual_seed(0)
    model = alexnet("paper", len(split.store.classes), width=args.width, init="paper")
    optimizer = optim.PaperSGD(model.parameters(), lr=0.01)
    parallel = distributed.DataParallel(model, distributed.SingleProcessCommunicator())
    marks = []

    def after_step() -> bool:
        marks.append((time.perf_counter(), loader.timing.wait_seconds, loader.timing.images, time.process_time()))
        return len(marks) >= args.warmup + args.steps

    with config.using(buffer_pool=True):
        train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, epoch=0, seed=0, parallel=parallel,
                        should_stop=after_step, progress=False)
    (t0, w0, n0, c0), (t1, w1, n1, c1) = marks[args.warmup - 1], marks[-1]
    result = {"batch": args.batch, "width": args.width, "steps": args.steps,
              "images_per_s": round((n1 - n0) / (t1 - t0), 2), "images_per_cpu_s": round((n1 - n0) / (c1 - c0), 2),
              "seconds_per_step": round((t1 - t0) / args.steps, 3), "wait_fraction": round((w1 - w0) / (t1 - t0), 5)}
    print(f"training (paper net, width {args.width}, batch {args.batch}): {result['images_per_s']:.1f} images/s, "
          f"{result['images_per_cpu_s']:.1f} images per CPU-second, {result['seconds_per_step']:.2f} s per step; "
          f"waiting for data: {100 * result['wait_fraction']:.2f}% of the step time")
    return result


def measure_memory(args) -> dict:
    """A short training run from a store; its peak memory (the process must be fresh)."""
    import numpy

    from npalexnet import config, distributed, nn, optim, random_streams
    from npalexnet.data.store import ImageStore, StoreSplit
    from npalexnet.data.store_loader import StoreLoader
    from npalexnet.models import alexnet
    from npalexnet.train.loop import train_one_epoch

    split = StoreSplit(ImageStore(args.stem))
    loader = StoreLoader(split, args.batch, paper_augment(split), "cpu", train=True, seed=0)
    random_streams.manual_seed(0)
    model = alexnet("paper", len(split.store.classes), width=args.width, init="paper")
    optimizer = optim.PaperSGD(model.parameters(), lr=0.01)
    parallel = distributed.DataParallel(model, distributed.SingleProcessCommunicator())
    anon = []

    def after_step() -> bool:
        anon.append(status_kib()["RssAnon"])
        return len(anon) >= args.steps

    with config.using(buffer_pool=True):   # as fit trains
        train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, epoch=0, seed=0, parallel=parallel,
                        should_stop=after_step, progress=False)
    if len(anon) != args.steps or not all(numpy.isfinite(p.data).all() for p in model.parameters()):
        raise SystemExit(f"the run did not train {args.steps} finite steps")
    return {"vmhwm_kib": status_kib()["VmHWM"], "rss_anon_kib": max(anon), "store_bytes": split.store.nbytes,
            "images": len(split)}


def memory(args) -> dict:
    results = {}
    for count in args.images:
        store = store_for(args.root, count, workers=args.workers)
        command = [sys.executable, str(Path(__file__).resolve()), "measure-memory", str(store.stem), "--steps",
                   str(args.steps), "--batch", str(args.batch), "--width", str(args.width)]
        if not results:   # leaves the numba kernels compiled in their cache (compiling holds LLVM's memory)
            subprocess.run(command[:-6] + ["--steps", "1", "--batch", str(args.batch), "--width", str(args.width)],
                           check=True, capture_output=True)
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[count] = json.loads(out.strip().splitlines()[-1])
        r = results[count]
        print(f"memory, {count} images (store {r['store_bytes'] / 2**30:.2f} GiB): peak resident "
              f"{r['vmhwm_kib'] / 1024:.0f} MiB, largest anonymous {r['rss_anon_kib'] / 1024:.0f} MiB")
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("decode", "loader", "train", "memory", "measure-memory"))
    p.add_argument("stem", nargs="?", help="measure-memory: the store (path without .npy)")
    p.add_argument("--root", type=Path, default=Path("/tmp/npalexnet-bench"))
    p.add_argument("--images", type=int, nargs="+", default=[2000])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="loader: epochs timed")
    p.add_argument("--steps", type=int, default=6, help="train, memory: steps timed or run")
    p.add_argument("--warmup", type=int, default=2, help="train: steps before the timing")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    args = p.parse_args(argv)
    os.environ.setdefault("NPALEXNET_DEVICE", "cpu")
    if args.what == "measure-memory":
        print(json.dumps(measure_memory(args)))
        return 0
    result = {"decode": decode, "loader": loader, "train": train, "memory": memory}[args.what](args)
    print(json.dumps({args.what: result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
