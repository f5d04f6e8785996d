"""The one test protocol: which views of each image are averaged, and which weights were scored.

The training program's validation and final test, ``--evaluate CHECKPOINT``,
``predict.py`` and ``visualize.py`` all score with a :class:`Protocol`. A run
saves the one its final test uses in every checkpoint
(``meta["test_protocol"]``), so the tools that read the checkpoint default to
it, and each test line names the weights (``last.npz, epoch 30``) and the
views it averaged.

The views: the image, its mirror image, and the paper's five crops (Section
4.1: "the four corner patches and the center patch as well as their
horizontal reflections (hence ten patches in all)"). Two geometries:

* CIFAR (``pad`` = P): the crops are as large as the image and cut from the
  image padded by P on every side (reflect), so every view has the input size;
* paper mode (``window`` = W): W x W patches of the larger stored image (227
  or 224 of 256), no padding, resized to the net's input (``out_size``) when W
  differs from it; without ``five``, the centre patch alone.

:func:`npalexnet.train.evaluate.tta_views` cuts the views; which ones a run
uses is chosen in :func:`npalexnet.train.pipeline.protocol`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..data.decode import centre_offset


@dataclass(frozen=True)
class Protocol:
    """The views of each image whose softmax outputs are averaged (:func:`npalexnet.train.predict_proba`).

    Attributes:
        mirror: each view followed by its mirror image.
        five: the centre and the four corner crops (Section 4.1), else the centre one only.
        pad: P, reflect padding of the image before cropping (CIFAR's crops).
        window: the crops' side W (default: the image's own side).
        out_size: the net's input; each view is resized to it when W differs.
    """

    mirror: bool = False
    five: bool = False
    pad: int = 0
    window: int | None = None
    out_size: int | None = None

    @classmethod
    def of_options(cls, tta: bool = False, crops: int = 0) -> Protocol:
        """The CIFAR views: flips (``tta``), and with ``crops`` = P > 0 the five crops of the image padded by P."""
        return cls(mirror=bool(tta), five=int(crops) > 0, pad=int(crops))

    @classmethod
    def from_dict(cls, saved: dict) -> Protocol:
        """The inverse of :meth:`to_dict` (also reads the ``{"tta", "crops"}`` form of earlier checkpoints)."""
        if "mirror" not in saved:
            return cls.of_options(bool(saved.get("tta", True)), int(saved.get("crops", 0)))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    @classmethod
    def of_checkpoint(cls, meta: dict) -> Protocol:
        """The protocol saved in a checkpoint's meta; for older checkpoints, its run's options (a paper-mode
        checkpoint's patches from its ``crop_size``); else flip averaging."""
        saved = meta.get("test_protocol")
        if isinstance(saved, dict):
            return cls.from_dict(saved)
        config = meta.get("config") or {}
        tta, crops = bool(config.get("tta", True)), int(config.get("tta_crops", 0))
        if meta.get("crop_size"):   # paper mode: patches of the stored image
            return cls(mirror=tta, five=crops > 0, window=int(meta["crop_size"]), out_size=int(meta["input_size"]))
        return cls.of_options(tta, crops)

    def replace(self, tta: bool | None = None, crops: int | None = None) -> Protocol:
        """This protocol with the options a user gave (None: keep): ``--tta``, and ``--tta-crops P``
        (paper patches: P > 0 the ten patches, 0 the centre one; else the crops of the image padded by P)."""
        mirror = self.mirror if tta is None else bool(tta)
        if crops is None:
            five, pad = self.five, self.pad
        elif self.window is not None:
            five, pad = int(crops) > 0, 0
        else:
            five, pad = int(crops) > 0, int(crops)
        return Protocol(mirror, five, pad, self.window, self.out_size)

    @property
    def count(self) -> int:
        return (5 if self.five else 1) * (2 if self.mirror else 1)

    def origins(self, size: int) -> list[tuple[int, int]]:
        """Crop origins in the padded image of side ``size + 2P``: the centre, then (``five``) the
        corners top-left, top-right, bottom-left, bottom-right."""
        window = self.window or size
        span = size + 2 * self.pad - window
        if span < 0:
            raise ValueError(f"views: a {window}-pixel window does not fit a {size}-pixel image padded by {self.pad}")
        centre = centre_offset(size + 2 * self.pad, window)
        return [(centre, centre)] + ([(0, 0), (0, span), (span, 0), (span, span)] if self.five else [])

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """For the log line, e.g. "10 views: 5 crops at +-2 px and their mirror images", "10 views: 5 crops of
        227 px and their mirror images", "the centre crop", "the image and its mirror image"."""
        if self.five:
            what = f"5 crops at +-{self.pad} px" if self.pad else f"5 crops of {self.window} px"
            return f"{self.count} views: {what}" + (" and their mirror images" if self.mirror else "")
        base = "the centre crop" if self.window else "the image"
        return f"{base} and its mirror image" if self.mirror else base


def weights_name(path, epoch: int, partial_steps: int = 0) -> str:
    """Which weights were scored: "last.npz, epoch 30" (or "epoch 3, step 17" for a Ctrl-C checkpoint)."""
    where = f"epoch {epoch + 1}, step {partial_steps}" if partial_steps else f"epoch {epoch}"
    return f"{Path(path).name}, {where}"


def score_line(accuracy: float, loss: float | None, weights: str, protocol: Protocol, count: int | None = None,
               top5: float | None = None, split: str = "test") -> str:
    """The one line every tool prints for a test score, e.g. ``test accuracy: 85.16% (loss 0.8364 on
    10,000 images; weights last.npz, epoch 30; 10 views: 5 crops at +-2 px and their mirror images)``.

    ``top5`` (paper mode) adds the error rates the paper's tables give: ``test accuracy: 58.80% (top-1
    error 41.20%, top-5 error 16.90%; loss ...)``. ``split`` names the images scored (``validation
    accuracy: ...`` for ``--evaluate --split validation``).
    """
    errors = [f"top-1 error {100 * (1 - accuracy):.2f}%, top-5 error {100 * (1 - top5):.2f}%"] if top5 is not None \
        else []
    what = ([f"loss {loss:.4f}"] if loss is not None else []) + ([f"on {count:,} images"] if count is not None else [])
    parts = errors + ([" ".join(what)] if what else []) + [f"weights {weights}", protocol.describe()]
    return f"{split} accuracy: {100 * accuracy:.2f}% ({'; '.join(parts)})"
