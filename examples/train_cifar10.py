#!/usr/bin/env python
"""Train AlexNet on CIFAR-10 (or FashionMNIST, or any ImageFolder tree) with npalexnet.

    python examples/train_cifar10.py                                  # the default recipe, 30 epochs
    python examples/train_cifar10.py --data-dir ../shared/data/cifar10 --subset 5000 --epochs 2
    python examples/train_cifar10.py --resume last                    # continue the latest run
    python examples/train_cifar10.py --evaluate runs/cifar10/latest/best.npz
    python examples/train_cifar10.py --recipe paper --data-dir /data/imagenet   # the 2012 paper's procedure
    mpiexec -n 2 python -m mpi4py examples/train_cifar10.py --distributed --device cpu   # data-parallel

The program is ``npalexnet.train.cli`` (installed as ``npalexnet-train``, or ``python -m
npalexnet.train``); this script runs it from a checkout without installing. ``--help`` lists the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import npalexnet  # noqa: F401
except ImportError:   # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npalexnet.train.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
