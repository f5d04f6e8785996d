"""Evaluation: loss, top-1 and top-5 accuracy over a split, averaging the softmax over test-time views.

Views (:class:`Views`): the image, its mirror image (``tta``), and the paper's
five crops (Section 4.1: "the four corner patches and the center patch as
well as their horizontal reflections (hence ten patches in all)"). Two
geometries use the same code:

* CIFAR (``crops`` = P): the crops are as large as the image and cut from
  the image padded by P on every side (reflect), so every view has the input size;
* paper mode (``window`` = W): W x W patches of the larger stored image (227
  or 224 of 256), no padding, resized to the net's input when W differs from it.

The softmax outputs of the views are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backend import get_array_module
from ..data.augment import crop_flip, hflip, resize
from ..data.decode import centre_offset
from ..data.loader import BatchLoader
from ..distributed import allreduce_sums
from ..nn import no_grad


def softmax(logits):
    """(N, K) logits -> (N, K) probabilities (row maximum subtracted for stability)."""
    xp = get_array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Views:
    """Which views of a batch :func:`predict_proba` averages.

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
    def from_options(cls, tta: bool = False, crops: int = 0) -> Views:
        """The CIFAR views: flips (``tta``), and with ``crops`` = P the five crops of the image padded by P."""
        return cls(mirror=bool(tta), five=int(crops) > 0, pad=int(crops))

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

    def describe(self) -> str:
        """For the log line, e.g. "10 views: 5 crops of 227 px and their mirror images"."""
        if self.five:
            what = f"5 crops at +-{self.pad} px" if self.pad else f"5 crops of {self.window} px"
            return f"{self.count} views: {what}" + (" and their mirror images" if self.mirror else "")
        base = "the centre crop" if self.window else "the image"
        return f"{base} and its mirror image" if self.mirror else base


def tta_views(x, tta: bool = False, crops: int = 0, views: Views | None = None):
    """The views of a batch x (N, C, S, S) that :func:`predict_proba` averages (a generator).

    ``views`` (default ``Views.from_options(tta, crops)``): with P > 0 the
    centre and the four corner crops of x padded by P (reflect), in that
    order; else x itself; with a ``window`` the W x W crops of x. Each
    followed by its mirror image when ``mirror``.
    """
    views = views or Views.from_options(tta, crops)
    xp = get_array_module(x)
    n, size = x.shape[0], x.shape[2]
    window = views.window or size
    for oy, ox in views.origins(size):
        if views.pad == 0 and window == size:
            view = x
        else:
            view = crop_flip(x, xp.full(n, oy), xp.full(n, ox), xp.zeros(n, dtype=bool), views.pad, size=window)
        if views.out_size and views.out_size != window:
            view = resize(view, views.out_size)
        yield view
        if views.mirror:
            yield hflip(view, xp.ones(n, dtype=bool))


def predict_proba(model, x, tta: bool = False, crops: int = 0, views: Views | None = None):
    """Class probabilities (N, K) of a preprocessed batch x (N, C, S, S), model in eval mode.

    The softmax outputs of :func:`tta_views` are averaged: the image and, with
    ``tta``, its mirror image; with ``crops`` = P > 0 the paper's ten views;
    or the ``views`` given. Runs under :func:`~npalexnet.nn.no_grad` (nothing
    is kept for a backward pass).
    """
    views = views or Views.from_options(tta, crops)
    if views.pad and 2 * views.pad >= min(x.shape[2:]):
        raise ValueError(f"crops={views.pad}: the padding must be less than half the image size {tuple(x.shape[2:])}")
    with no_grad():
        total, count = None, 0
        for view in tta_views(x, views=views):
            probs = softmax(model(view))
            total = probs if total is None else total + probs
            count += 1
    return total / count


@dataclass
class Scores:
    """What an evaluation measured: mean loss, top-1 and top-5 accuracy over ``count`` images."""

    loss: float
    top1: float
    top5: float
    count: int


def scores(model, loader: BatchLoader, criterion, tta: bool = False, comm=None, crops: int = 0,
          views: Views | None = None) -> Scores:
    """Loss, top-1 and top-5 accuracy of ``model`` over every image of ``loader``.

    With views beyond the image itself (:func:`predict_proba`) the loss is the
    criterion applied to the log of the averaged probabilities (a valid set of
    logits: softmax(log p) = p). The model is left in evaluation mode. In a
    distributed run (``comm`` given, ``loader`` sharded by rank) the sums
    (loss*count, correct, correct in the top 5, count) are added over ranks.
    """
    views = views or Views.from_options(tta, crops)
    plain = views == Views()
    model.eval()
    loss_sum, correct, correct5, seen = 0.0, 0, 0, 0
    for _, x, y in loader.epoch(0):
        if not y.shape[0]:   # this rank's slice of a small last batch
            continue
        xp = get_array_module(x)
        with no_grad():
            if plain:
                logits = model(x)
            else:
                logits = xp.log(xp.maximum(predict_proba(model, x, views=views), 1e-30))
            # Summed on the device, in float64, and read once at the end: on a GPU each read waits
            # for the queued work.
            loss_sum = loss_sum + criterion(logits, y).astype(xp.float64) * int(y.shape[0])
        correct = correct + (logits.argmax(axis=1) == y).sum()
        correct5 = correct5 + (xp.argsort(logits, axis=1)[:, -5:] == y[:, None]).any(axis=1).sum()
        seen += int(y.shape[0])
    loss_sum, correct, correct5 = float(loss_sum), int(correct), int(correct5)
    if comm is not None:
        loss_sum, correct, correct5, seen = allreduce_sums(comm, loss_sum, correct, correct5, seen)
    seen = int(seen)
    return Scores(loss_sum / max(seen, 1), correct / max(seen, 1), correct5 / max(seen, 1), seen)


def evaluate(model, loader: BatchLoader, criterion, tta: bool = False, comm=None,
             crops: int = 0, views: Views | None = None) -> tuple[float, float]:
    """Mean loss and (top-1) accuracy of ``model`` over every image of ``loader`` (see :func:`scores`)."""
    result = scores(model, loader, criterion, tta, comm, crops, views)
    return result.loss, result.top1
