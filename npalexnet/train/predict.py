"""Inference from a checkpoint: top-k classes of image files.

The checkpoint carries what prediction needs: the variant and model
arguments, the class names, the normalisation, the image size the model
was trained at and the decode rule, so an image is prepared exactly as the
evaluation split was (decoded by :func:`~npalexnet.data.decode.decode_image`,
normalised, resized to the model's input; a paper-mode checkpoint cuts its
centre patch, or the paper's ten, as the final test did).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy

from .. import backend
from ..data.augment import Preprocess
from ..data.decode import decode_image
from ..data.errors import DataError
from ..data.paper_augment import PaperAugment
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_model_state
from .config import build_model
from .evaluate import Views, predict_proba


@dataclass
class Predictor:
    """A model in evaluation mode with its checkpoint's preprocessing."""

    model: object
    preprocess: Preprocess
    classes: list
    image_size: int
    in_channels: int
    device: str
    tta: bool = True
    crops: int = 0
    rule: str = "squash"
    views: Views | None = None

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", tta: bool = True, crops: int = 0) -> Predictor:
        """Load ``path``; raises CheckpointError for a missing, corrupt or incomplete file."""
        ckpt: Checkpoint = load_checkpoint(path)
        meta = ckpt.meta
        needed = ("model_kwargs", "classes", "mean", "std", "image_size", "input_size", "in_channels")
        missing = [k for k in needed if k not in meta]
        if missing:
            raise CheckpointError(f"{ckpt.path} lacks {', '.join(missing)}: not a training checkpoint")
        device = backend.resolve_device(device)
        model = build_model(meta["model_kwargs"])
        load_model_state(model, ckpt)
        model.to(device).eval()
        resize_mode = meta.get("resize_mode", "bilinear")
        if meta.get("crop_size"):   # paper mode: patches of the stored image
            preprocess = PaperAugment(meta["mean"], meta["std"], meta["eigvals"], meta["eigvecs"], meta["input_size"],
                                      meta["image_size"], crop=meta["crop_size"], resize_mode=resize_mode)
            views = Views(mirror=tta, five=crops > 0, window=preprocess.crop, out_size=preprocess.out_size)
        else:
            preprocess = Preprocess(meta["mean"], meta["std"], meta["input_size"], pad=0, flip=False,
                                    resize_mode=resize_mode)
            views = Views.from_options(tta, crops)
        # Checkpoints from before the decode rule was recorded were trained on squashed images.
        return cls(model, preprocess, list(meta["classes"]), int(meta["image_size"]), int(meta["in_channels"]),
                   device, tta, crops, meta.get("resize_rule", "squash"), views)

    def probabilities(self, images) -> numpy.ndarray:
        """(N, C, H, W) uint8 images at the training size -> (N, K) probabilities (host)."""
        xp = backend.xp_for(self.device)
        x = self.preprocess.eval(xp.asarray(images))
        views = self.views or Views.from_options(self.tta, self.crops)
        return backend.asnumpy(predict_proba(self.model, x, views=views))

    def load_image(self, path) -> numpy.ndarray:
        """One image file -> (C, S, S) uint8; raises DataError when it cannot be read."""
        if not Path(path).is_file():
            raise DataError(f"cannot read image {path}: no such file")
        return decode_image(str(path), self.image_size, self.in_channels, self.rule)

    def topk(self, paths, k: int = 5) -> list[list[tuple[str, float]]]:
        """For each image file, the ``k`` most probable ``(class name, probability)`` pairs."""
        images = numpy.stack([self.load_image(p) for p in paths])
        probs = self.probabilities(images)
        k = min(k, probs.shape[1])
        order = numpy.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]
