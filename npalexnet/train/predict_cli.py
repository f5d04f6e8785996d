"""Top-5 classes of images, from a checkpoint written by the training program.

    npalexnet-predict --checkpoint runs/cifar10/latest/best.npz cat.jpg ship.png
    npalexnet-predict --checkpoint runs/cifar10/latest/best.npz photos/      # every image under a folder

(``python examples/predict.py`` is the same program.) First a line naming the weights and the
views averaged, then for each image its path and the most probable classes with their
probabilities. The class names, the normalisation, the image size and the views (the run's
test protocol) come from the checkpoint; images are read and scored in batches.
Errors (missing or corrupt checkpoint, unreadable image) are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..data import DataError
from ..data.imagefolder import EXTENSIONS
from .cli_common import DefaultsFormatter, device_error, report
from .predict import Predictor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npalexnet-predict", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsFormatter)
    p.add_argument("--checkpoint", required=True, help="a .npz written by the training program (last.npz, best.npz)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help=f"image files, or folders: every {'/'.join(EXTENSIONS[:3])}... file under them, sorted")
    p.add_argument("--top", type=int, default=5, help="classes to show per image")
    p.add_argument("--batch-size", type=int, default=64, help="images decoded and scored at a time")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when CuPy sees a GPU")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average each view with its mirror image (default: as the checkpoint's run tested)")
    p.add_argument("--tta-crops", type=int, default=None, metavar="P",
                   help="also average the paper's five crops (centre and corners of the image padded by P; 0: off; "
                        "a paper-mode checkpoint: P > 0 the ten patches, 0 the centre one) (default: as the "
                        "checkpoint's run tested)")
    return p


def image_files(names) -> list[str]:
    """Each name as given, or the image files under it when it is a folder (sorted); a DataError for names
    that do not exist and folders without images."""
    files = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(str(Path(root) / f) for root, _, fs in os.walk(path) for f in fs
                           if f.lower().endswith(EXTENSIONS) and not f.startswith("."))
            if not found:
                raise DataError(f"no images ({', '.join(EXTENSIONS)}) under the folder {path}")
            files += found
        elif path.exists():
            files.append(str(path))
        else:
            raise DataError(f"cannot read image {path}: no such file or folder")
    return files


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for option, value in (("--top", args.top), ("--batch-size", args.batch_size)):
        if value < 1:
            build_parser().error(f"{option} must be >= 1, got {value}")
    problem = device_error(args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        files = image_files(args.images)
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, tta=args.tta,
                                              crops=args.tta_crops)
        print(f"{args.checkpoint}: weights {predictor.weights}; {predictor.protocol.describe()}; "
              f"device {predictor.device}")
        for path, top in predictor.iter_topk(files, k=args.top, batch_size=args.batch_size):
            print(path)
            for name, prob in top:
                print(f"  {100 * prob:6.2f}%  {name}")
    except (Exception, KeyboardInterrupt) as exc:   # noqa: BLE001 (report re-raises what is not a user's error)
        if isinstance(exc, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            return 130
        return report(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
