#!/usr/bin/env python
"""A CIFAR-10 subset small enough to travel with the repository to a GPU machine.

    python benchmarks/make_gpu_data.py --data-dir ../shared/data/cifar10          # -> gpu_data/cifar10-10k
    python examples/train_cifar10.py --data-dir gpu_data/cifar10-10k --epochs 3    # reads it like any layout

Takes a stratified, seeded sample of the training and test splits (default
10,000 and 2,000 images: 1,000 and 200 per class) and writes it as decoded
uint8 arrays, ``train.npz`` and ``test.npz`` (:mod:`npalexnet.data.arrays`),
about 35 MiB together. ``gpu_data/`` is git-ignored: the device call names
it in ``carry`` (benchmarks/RESULTS.md, GPU section). The same folder gives
the CPU run and the GPU run the same images, bit for bit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout without `pip install -e .`

from npalexnet.data import DataError, Dataset, load_dataset, stratified_sample  # noqa: E402
from npalexnet.data.arrays import save_arrays  # noqa: E402

DEFAULT_OUT = ROOT / "gpu_data" / "cifar10-10k"


def subset(dataset: Dataset, train: int, test: int, seed: int) -> Dataset:
    """``train`` and ``test`` images of ``dataset``, each class in proportion (seeded)."""
    if train > len(dataset.train) or test > len(dataset.test):
        raise DataError(f"asked for {train} training and {test} test images; {dataset.source} has "
                        f"{len(dataset.train)} and {len(dataset.test)}")
    pick_train = stratified_sample(dataset.train.labels, train, seed, stream=11)
    pick_test = stratified_sample(dataset.test.labels, test, seed, stream=12)
    return Dataset(dataset.name, dataset.train.take(pick_train), dataset.test.take(pick_test),
                   list(dataset.classes), source=f"{dataset.source} (subset)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="CIFAR-10 in any layout --data-dir reads")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="the folder to write train.npz and test.npz into")
    p.add_argument("--train", type=int, default=10_000, help="training images")
    p.add_argument("--test", type=int, default=2_000, help="test images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        dataset = load_dataset("cifar10", args.data_dir, download=False, log=print)
        small = subset(dataset, args.train, args.test, args.seed)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = save_arrays(args.out, small)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {len(small.train)} training and {len(small.test)} test images to {out} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
