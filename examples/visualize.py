#!/usr/bin/env python
"""Pictures of a trained checkpoint: conv1 filters, test-set confusion matrix, misclassified images.

    python examples/visualize.py --checkpoint runs/cifar10/latest/best.npz [--data-dir DIR] [--out-dir DIR]

The program is ``npalexnet.train.visualize_cli`` (installed as ``npalexnet-visualize``); this script
runs it from a checkout without installing. ``--help`` lists the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import npalexnet  # noqa: F401
except ImportError:   # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npalexnet.train.visualize_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
