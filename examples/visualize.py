"""Pictures of a trained checkpoint: conv1 filters, test-set confusion matrix, misclassified images.

    python examples/visualize.py --checkpoint runs/cifar10/best.npz [--data-dir DIR] [--out-dir DIR]

Writes three PNGs next to the checkpoint (or into ``--out-dir``):

* ``conv1_filters.png``: the first layer's kernels, one tile each (Figure 3
  of the 2012 paper; with the paper net's ``groups=2`` the top half of the
  grid feeds conv2's first group, the bottom half its second);
* ``confusion_matrix.png``: true class against predicted class over the test split;
* ``misclassified.png``: the first misclassified test images with their
  predicted and true labels.

The model, its class names and its normalisation come from the checkpoint;
the test split from the same data options as the training program
(``--dataset``, ``--data-dir``; by default the ones the run was trained with).
The training curves are drawn by the training program itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy

from npalexnet import viz
from npalexnet.data import load_dataset
from npalexnet.train.predict import Predictor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint .npz written by the training program")
    parser.add_argument("--dataset", default=None, help="cifar10 | fashionmnist | imagefolder (default: the run's)")
    parser.add_argument("--data-dir", default=None, help="the dataset folder (default: the run's)")
    parser.add_argument("--out-dir", default=None, help="where the PNGs go (default: the checkpoint's folder)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--max-images", type=int, default=36, help="misclassified images shown")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)

    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, tta=False)
    ckpt_meta = _meta(args.checkpoint)
    config = ckpt_meta.get("config") or {}
    out = Path(args.out_dir or Path(args.checkpoint).parent)
    out.mkdir(parents=True, exist_ok=True)

    filters = viz.save_conv1_filters(predictor.model, out / "conv1_filters.png")
    print(f"conv1 filters: {filters}")

    name = args.dataset or config.get("dataset", "cifar10")
    data_dir = args.data_dir or config.get("data_dir")
    dataset = load_dataset(name, data_dir, root=config.get("root", "./data"), download=False,
                           image_size=predictor.image_size, channels=predictor.in_channels, rule=predictor.rule)
    test = dataset.test
    preds = numpy.concatenate([predictor.probabilities(test.images[i:i + args.batch_size]).argmax(axis=1)
                               for i in range(0, len(test), args.batch_size)])
    cm = viz.confusion_matrix(test.labels, preds, len(predictor.classes))
    accuracy = numpy.trace(cm) / max(cm.sum(), 1)
    cm_path = viz.save_confusion_matrix(cm, predictor.classes, out / "confusion_matrix.png",
                                        title=f"Confusion matrix, {name} test set")
    mis_path, shown = viz.save_misclassified(test.images, test.labels, preds, predictor.classes,
                                             out / "misclassified.png", max_images=args.max_images)
    print(f"test accuracy {accuracy:.2%} on {len(test)} images ({dataset.source})")
    print(f"confusion matrix: {cm_path}")
    print(f"misclassified images: {mis_path} ({shown} shown)")
    return 0


def _meta(path) -> dict:
    from npalexnet.train.checkpoint import load_checkpoint
    return load_checkpoint(path).meta


if __name__ == "__main__":
    sys.exit(main())
