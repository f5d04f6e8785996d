#!/usr/bin/env python
"""Top-5 classes of images, from a checkpoint written by train_cifar10.py.

    python examples/predict.py --checkpoint runs/cifar10/latest/best.npz cat.jpg ship.png photos/

The program is ``npalexnet.train.predict_cli`` (installed as ``npalexnet-predict``); this script
runs it from a checkout without installing. ``--help`` lists the options and their defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import npalexnet  # noqa: F401
except ImportError:   # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npalexnet.train.predict_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
