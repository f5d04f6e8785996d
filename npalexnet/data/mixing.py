"""Mixup and CutMix: each training image blended with a partner image, and its target with the partner's.

Notation: a batch of B images x (B, C, S, S) with labels y, K classes, t = one-hot(y) (B, K).

* mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018):
  ``x' = lam x + (1 - lam) x_p``, ``t' = lam t + (1 - lam) t_p``;
* CutMix (Yun et al., ICCV 2019): a box of the partner pasted into the image, ``x' = M x + (1 - M) x_p``
  with M zero inside the box, and ``t' = lam' t + (1 - lam') t_p`` where ``lam'`` is the share of the
  image left outside the box. The box has sides of about ``S sqrt(1 - lam)`` around a uniform centre, clipped
  at the edges (so ``lam'`` >= ``lam``).

``lam ~ Beta(alpha, alpha)`` once per step, as the papers and torchvision's ``MixUp``/``CutMix`` draw it;
with both enabled each step uses one of the two with probability 1/2 (torchvision's ``RandomChoice``).
The targets ``t'`` are class probabilities, which :class:`~npalexnet.nn.CrossEntropyLoss` takes as
they are (label smoothing then applies to them).

Where the partner comes from: torchvision pairs each image with its neighbour in the batch, so the
pairs depend on how a batch is split over processes. Here image i's partner is an image of the whole
training split drawn from (seed, epoch, i), augmented by its own crop and flip of the epoch, and the
weight and box come from (seed, epoch, step): one process and R processes blend every image the same
way, and a resumed run blends as an uninterrupted one. A random partner from the split has the
distribution of a random partner from a random batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from .. import random_streams
from ..backend import get_array_module

#: What a step can do.
KINDS = ("mixup", "cutmix")


@dataclass(frozen=True)
class Blend:
    """One step's draw: ``kind`` (of :data:`KINDS`), the Beta draw ``lam``, the own image's share of the
    target ``weight`` (``lam`` for mixup; for CutMix the share of the image outside the box) and, for
    CutMix, the box ``(y0, y1, x0, x1)``: rows ``[y0, y1)`` and columns ``[x0, x1)`` come from the partner."""

    kind: str
    lam: float
    weight: float
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Mixing:
    """The blending of a training run: mixup with ``mixup_alpha`` > 0, CutMix with ``cutmix_alpha`` > 0.

    Args:
        num_classes: K, the width of the targets.
        mixup_alpha, cutmix_alpha: the Beta parameters, in [0, :data:`~npalexnet.random_streams.BETA_MAX`]
            (0: off; not both 0).
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    def __post_init__(self):
        top = random_streams.BETA_MAX
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if not 0.0 <= value <= top:
                raise ValueError(f"Mixing: {name} must be in [0, {top:g}] (0: off), got {value}")
        if not (self.mixup_alpha or self.cutmix_alpha):
            raise ValueError("Mixing: give mixup_alpha or cutmix_alpha (both are 0: nothing to blend)")
        if self.num_classes < 2:
            raise ValueError(f"Mixing: num_classes must be >= 2, got {self.num_classes}")

    def partners(self, seed: int, epoch: int, indices, count: int) -> numpy.ndarray:
        """(n,) host int64: the partner of each image ``indices`` among the ``count`` images of the split."""
        return random_streams.integers(seed, epoch, numpy.asarray(indices), random_streams.MIX_PARTNER_STREAM,
                                       count)

    def draw(self, seed: int, epoch: int, step: int, size: tuple[int, int]) -> Blend:
        """The blend of step ``step`` of ``epoch`` for images of ``size`` = (H, W)."""
        key = numpy.array([step])
        kind = "mixup" if self.mixup_alpha else "cutmix"
        if self.mixup_alpha and self.cutmix_alpha:
            coin = random_streams.uniform(seed, epoch, key, random_streams.MIX_CHOICE_STREAM)[0]
            kind = "mixup" if coin < 0.5 else "cutmix"
        alpha = self.mixup_alpha if kind == "mixup" else self.cutmix_alpha
        lam = float(random_streams.beta(seed, epoch, key, random_streams.MIX_WEIGHT_STREAM, alpha, alpha)[0])
        if kind == "mixup":
            return Blend(kind, lam, lam)
        height, width = size
        centre = random_streams.uniform(seed, epoch, key, random_streams.MIX_BOX_STREAM, (2,))[0]
        cy, cx = min(int(centre[0] * height), height - 1), min(int(centre[1] * width), width - 1)
        half_h, half_w = int(height * math.sqrt(1.0 - lam)) // 2, int(width * math.sqrt(1.0 - lam)) // 2
        y0, y1 = max(cy - half_h, 0), min(cy + half_h, height)
        x0, x1 = max(cx - half_w, 0), min(cx + half_w, width)
        return Blend(kind, lam, 1.0 - (y1 - y0) * (x1 - x0) / (height * width), (y0, y1, x0, x1))

    def __call__(self, x, labels, partner_x, partner_labels, blend: Blend):
        """Blend a batch with its partners.

        Args:
            x, partner_x: (B, C, H, W) float, the batch and its partners, augmented.
            labels, partner_labels: (B,) int class indices.
            blend: the step's :meth:`draw`.
        Returns:
            ``(x', t')``: (B, C, H, W) in x's dtype, and (B, K) class probabilities in x's dtype.
        """
        xp = get_array_module(x)
        if blend.box is None:
            lam = x.dtype.type(blend.lam)
            mixed = lam * x + (x.dtype.type(1) - lam) * partner_x
        else:
            y0, y1, x0, x1 = blend.box
            mixed = x.copy()
            mixed[:, :, y0:y1, x0:x1] = partner_x[:, :, y0:y1, x0:x1]
        weight = blend.weight
        rows = xp.arange(x.shape[0])
        targets = xp.zeros((x.shape[0], self.num_classes), dtype=x.dtype)
        targets[rows, labels] = weight
        targets[rows, partner_labels] += 1.0 - weight   # += : an image's partner may share its class
        return mixed, targets
