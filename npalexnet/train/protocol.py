"""The one evaluation protocol: which views of each test image are averaged, and which weights were scored.

The training program's final test, ``--evaluate CHECKPOINT``, ``predict.py``
and ``visualize.py`` all score with a :class:`Protocol`. A run saves the one
its final test uses in every checkpoint (``meta["test_protocol"]``), so the
tools that read the checkpoint default to it, and each test line names the
weights (``last.npz, epoch 30``) and the views it averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Protocol:
    """The views of each image whose softmax outputs are averaged (:func:`npalexnet.train.predict_proba`).

    Attributes:
        tta: each view and its mirror image.
        crops: P > 0: the centre and the four corner crops of the image padded by P pixels
            (the paper's ten views with ``tta``); 0: the image itself.
    """

    tta: bool = True
    crops: int = 0

    @classmethod
    def of_run(cls, cfg) -> Protocol:
        """The final test of a run with configuration ``cfg`` (``tta``, ``tta_crops``)."""
        return cls(bool(cfg.tta), int(cfg.tta_crops))

    @classmethod
    def of_checkpoint(cls, meta: dict) -> Protocol:
        """The protocol saved in a checkpoint's meta; for older checkpoints, its run's options; else flips."""
        saved = meta.get("test_protocol")
        if isinstance(saved, dict):
            return cls(bool(saved.get("tta", True)), int(saved.get("crops", 0)))
        config = meta.get("config") or {}
        return cls(bool(config.get("tta", True)), int(config.get("tta_crops", 0)))

    def replace(self, tta: bool | None = None, crops: int | None = None) -> Protocol:
        """This protocol with the options a user gave (None: keep)."""
        return Protocol(self.tta if tta is None else bool(tta), self.crops if crops is None else int(crops))

    def to_dict(self) -> dict:
        return {"tta": self.tta, "crops": self.crops}

    def describe(self) -> str:
        """E.g. "10 views: 5 crops at +-2 px and their mirror images", "flip averaging", "the image"."""
        if self.crops:
            return f"{10 if self.tta else 5} views: 5 crops at +-{self.crops} px" + \
                (" and their mirror images" if self.tta else "")
        return "flip averaging" if self.tta else "the image"


def weights_name(path, epoch: int, partial_steps: int = 0) -> str:
    """Which weights were scored: "last.npz, epoch 30" (or "epoch 3, step 17" for a Ctrl-C checkpoint)."""
    where = f"epoch {epoch + 1}, step {partial_steps}" if partial_steps else f"epoch {epoch}"
    return f"{Path(path).name}, {where}"


def score_line(accuracy: float, loss: float | None, weights: str, protocol: Protocol, count: int | None = None) -> str:
    """The one line every tool prints for a test score, e.g. ``test accuracy: 85.16% (loss 0.8364 on
    10,000 images; weights last.npz, epoch 30; 10 views: 5 crops at +-2 px and their mirror images)``."""
    what = ([f"loss {loss:.4f}"] if loss is not None else []) + ([f"on {count:,} images"] if count is not None else [])
    return f"test accuracy: {100 * accuracy:.2f}% ({' '.join(what)}{'; ' if what else ''}weights {weights}; " \
           f"{protocol.describe()})"
