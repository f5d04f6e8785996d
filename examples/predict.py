#!/usr/bin/env python
"""Top-5 classes of images, from a checkpoint written by train_cifar10.py.

    python examples/predict.py --checkpoint runs/cifar10/best.npz cat.jpg ship.png

For each image, prints its path and the five most probable classes with
their probabilities. The class names, normalisation and image size come
from the checkpoint. Errors (missing or corrupt checkpoint, unreadable image)
are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import npalexnet  # noqa: F401
except ImportError:   # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npalexnet.data import DataError
from npalexnet.train import CheckpointError, Predictor


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a .npz written by train_cifar10.py (last.npz or best.npz)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5, help="classes to show per image")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--no-tta", dest="tta", action="store_false", help="no flip averaging")
    p.add_argument("--tta-crops", type=int, default=0, metavar="P",
                   help="also average the paper's five crops (centre and corners of the image padded by P)")
    args = p.parse_args(argv)
    try:
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, tta=args.tta, crops=args.tta_crops)
        results = predictor.topk(args.images, k=args.top)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path, top in zip(args.images, results):
        print(path)
        for name, prob in top:
            print(f"  {100 * prob:6.2f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
