"""Pictures of a trained checkpoint: conv1 filters, test-set confusion matrix, misclassified images.

    npalexnet-visualize --checkpoint runs/cifar10/latest/best.npz [--data-dir DIR] [--out-dir DIR]

(``python examples/visualize.py`` is the same program.) Writes three PNGs next to the checkpoint
(or into ``--out-dir``):

* ``conv1_filters.png``: the first layer's kernels, one tile each (Figure 3
  of the 2012 paper; with the paper net's ``groups=2`` the top half of the
  grid feeds conv2's first group, the bottom half its second);
* ``confusion_matrix.png``: true class against predicted class over the test split;
* ``misclassified.png``: the first misclassified test images with their
  predicted and true labels.

The model, its class names, its normalisation and its test protocol (the
views averaged, the batch size) come from the checkpoint, so the accuracy
printed is the run's own test accuracy for those weights; the test split
comes from the run's data options (``--dataset``, ``--data-dir`` change
them). The training curves are drawn by the training program itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy

from .. import viz
from ..data import load_dataset
from .checkpoint import load_checkpoint
from .cli_common import DefaultsFormatter, device_error, report
from .faults import check_writable
from .predict import Predictor
from .protocol import score_line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npalexnet-visualize", description=__doc__.split("\n")[0],
                                formatter_class=DefaultsFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint .npz written by the training program")
    p.add_argument("--dataset", default=None, help="cifar10 | fashionmnist | imagefolder (default: the run's)")
    p.add_argument("--data-dir", default=None, help="the dataset folder (default: the run's)")
    p.add_argument("--out-dir", default=None, help="where the PNGs go (default: the checkpoint's folder)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when CuPy sees a GPU")
    p.add_argument("--max-images", type=int, default=36, help="misclassified images shown")
    p.add_argument("--batch-size", type=int, default=None,
                   help="test images scored at a time (default: the run's --eval-batch-size)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average each view with its mirror image (default: as the checkpoint's run tested)")
    p.add_argument("--tta-crops", type=int, default=None, metavar="P",
                   help="the paper's five crops of the image padded by P (a paper-mode checkpoint: P > 0 the ten "
                        "patches, 0 the centre one) (default: as the checkpoint's run tested)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    problem = device_error(args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        return _visualize(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:   # noqa: BLE001 (report re-raises what is not a user's error)
        return report(exc)


def _visualize(args) -> int:
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, tta=args.tta, crops=args.tta_crops)
    config = load_checkpoint(args.checkpoint).meta.get("config") or {}
    out = check_writable(args.out_dir or Path(args.checkpoint).parent, "--out-dir")

    filters = viz.save_conv1_filters(predictor.model, out / "conv1_filters.png")
    print(f"conv1 filters: {filters}")

    name = args.dataset or config.get("dataset", "cifar10")
    data_dir = args.data_dir or config.get("data_dir")
    dataset = load_dataset(name, data_dir, root=config.get("root", "./data"), download=False,
                           image_size=predictor.image_size, channels=predictor.in_channels, rule=predictor.rule,
                           cache_dir=config.get("cache_dir"))
    test = dataset.test
    batch = args.batch_size or int(config.get("eval_batch_size", 500))
    preds = numpy.concatenate([predictor.probabilities(test.images[i:i + batch]).argmax(axis=1)
                               for i in range(0, len(test), batch)])
    cm = viz.confusion_matrix(test.labels, preds, len(predictor.classes))
    accuracy = numpy.trace(cm) / max(cm.sum(), 1)
    cm_path = viz.save_confusion_matrix(cm, predictor.classes, out / "confusion_matrix.png",
                                        title=f"Confusion matrix, {name} test set")
    mis_path, shown = viz.save_misclassified(test.images, test.labels, preds, predictor.classes,
                                             out / "misclassified.png", max_images=args.max_images)
    print(f"data: {name} from {dataset.source}")
    print(score_line(float(accuracy), None, predictor.weights, predictor.protocol, len(test)))
    print(f"confusion matrix: {cm_path}")
    print(f"misclassified images: {mis_path} ({shown} shown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
