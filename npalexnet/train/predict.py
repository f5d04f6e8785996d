"""Inference from a checkpoint: top-k classes of image files.

The checkpoint carries what prediction needs: the variant and model
arguments, the class names, the normalisation, the image size the model
was trained at, the decode rule and its run's test protocol
(:mod:`.protocol`: the views averaged), so an image is prepared and scored
exactly as the run's test split was (decoded by
:func:`~npalexnet.data.decode.decode_image`, normalised, its views averaged:
flips and crops of the image, or a paper-mode checkpoint's centre patch or
the paper's ten patches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy

from .. import backend
from ..data.decode import decode_image
from ..data.errors import DataError
from . import pipeline
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_model_state
from .config import build_model
from .evaluate import predict_proba
from .protocol import Protocol, weights_name


@dataclass
class Predictor:
    """A model in evaluation mode with its checkpoint's preprocessing and test protocol."""

    model: object
    preprocess: object   # Preprocess, or PaperAugment for a paper-mode checkpoint (pipeline.checkpoint_preprocess)
    classes: list
    image_size: int
    in_channels: int
    device: str
    protocol: Protocol = Protocol(mirror=True)
    rule: str = "squash"
    weights: str = ""   # which weights, e.g. "best.npz, epoch 28"

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", tta: bool | None = None, crops: int | None = None
                        ) -> Predictor:
        """Load ``path``; ``tta``/``crops`` None: the views of the checkpoint's own test protocol
        (:meth:`Protocol.replace` for what they change).

        Raises CheckpointError for a missing, corrupt or incomplete file."""
        ckpt: Checkpoint = load_checkpoint(path)
        meta = ckpt.meta
        needed = ("model_kwargs", "classes", "mean", "std", "image_size", "input_size", "in_channels")
        missing = [k for k in needed if k not in meta]
        if missing:
            raise CheckpointError(f"{ckpt.path} lacks {', '.join(missing)}: not a training checkpoint")
        device = backend.resolve_device(device)
        model = build_model(meta["model_kwargs"])
        load_model_state(model, ckpt, averaged=True)   # the weights the run scored: the moving average, if kept
        model.to(device).eval()
        protocol = Protocol.of_checkpoint(meta).replace(tta, crops)
        weights = weights_name(ckpt.path, int(meta.get("epoch", 0)), int((meta.get("partial") or {}).get("steps", 0)))
        # Checkpoints from before the decode rule was recorded were trained on squashed images.
        return cls(model, pipeline.checkpoint_preprocess(meta), list(meta["classes"]), int(meta["image_size"]),
                   int(meta["in_channels"]), device, protocol, meta.get("resize_rule", "squash"), weights)

    def probabilities(self, images) -> numpy.ndarray:
        """(N, C, H, W) uint8 images at the training size -> (N, K) probabilities (host)."""
        xp = backend.xp_for(self.device)
        x = self.preprocess.eval(xp.asarray(images))
        return backend.asnumpy(predict_proba(self.model, x, protocol=self.protocol))

    def load_image(self, path) -> numpy.ndarray:
        """One image file -> (C, S, S) uint8; raises DataError when it cannot be read."""
        if not Path(path).is_file():
            raise DataError(f"cannot read image {path}: no such file")
        return decode_image(str(path), self.image_size, self.in_channels, self.rule)

    def topk(self, paths, k: int = 5, batch_size: int = 64) -> list[list[tuple[str, float]]]:
        """For each image file, the ``k`` most probable ``(class name, probability)`` pairs."""
        return [top for _, top in self.iter_topk(paths, k, batch_size)]

    def iter_topk(self, paths, k: int = 5, batch_size: int = 64):
        """``(path, top-k pairs)`` for each image file, decoded and scored ``batch_size`` at a time
        (a generator: the first results come before the last files are read)."""
        paths = list(paths)
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            probs = self.probabilities(numpy.stack([self.load_image(p) for p in chunk]))
            top = min(k, probs.shape[1])
            order = numpy.argsort(-probs, axis=1, kind="stable")[:, :top]
            for path, row, idx in zip(chunk, probs, order):
                yield path, [(self.classes[j], float(row[j])) for j in idx]
