"""Evaluation: loss, top-1 and top-5 accuracy over a split, averaging the softmax over test-time views.

Which views (the image, its mirror image, the paper's five crops or patches)
is a :class:`~.protocol.Protocol`; ``tta``/``crops`` are the short form of
CIFAR's (:meth:`Protocol.of_options`). The softmax outputs of the views are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from ..backend import get_array_module
from ..data.augment import crop_flip, hflip, resize
from ..data.loader import BatchLoader
from ..distributed import allreduce_sums
from ..nn import no_grad
from .protocol import Protocol


def softmax(logits):
    """(N, K) logits -> (N, K) probabilities (row maximum subtracted for stability)."""
    xp = get_array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tta_views(x, tta: bool = False, crops: int = 0, protocol: Protocol | None = None):
    """The views of a batch x (N, C, S, S) that :func:`predict_proba` averages (a generator).

    ``protocol`` (default ``Protocol.of_options(tta, crops)``): with ``pad`` = P
    > 0 the centre and the four corner crops of x padded by P (reflect), in
    that order; else x itself; with a ``window`` the W x W crops of x (resized
    to ``out_size``). Each followed by its mirror image when ``mirror``.
    """
    protocol = protocol or Protocol.of_options(tta, crops)
    xp = get_array_module(x)
    n, size = x.shape[0], x.shape[2]
    window = protocol.window or size
    for oy, ox in protocol.origins(size):
        if protocol.pad == 0 and window == size:
            view = x
        else:
            view = crop_flip(x, xp.full(n, oy), xp.full(n, ox), xp.zeros(n, dtype=bool), protocol.pad, size=window)
        if protocol.out_size and protocol.out_size != window:
            view = resize(view, protocol.out_size)
        yield view
        if protocol.mirror:
            yield hflip(view, xp.ones(n, dtype=bool))


def predict_proba(model, x, tta: bool = False, crops: int = 0, protocol: Protocol | None = None):
    """Class probabilities (N, K) of a preprocessed batch x (N, C, S, S), model in eval mode.

    The softmax outputs of :func:`tta_views` are averaged: the image and, with
    ``tta``, its mirror image; with ``crops`` = P > 0 the paper's ten views;
    or the views of the ``protocol`` given. Runs under
    :func:`~npalexnet.nn.no_grad` (nothing is kept for a backward pass).
    """
    protocol = protocol or Protocol.of_options(tta, crops)
    if protocol.pad and 2 * protocol.pad >= min(x.shape[2:]):
        raise ValueError(f"crops={protocol.pad}: the padding must be less than half the image size "
                         f"{tuple(x.shape[2:])}")
    with no_grad():
        total, count = None, 0
        for view in tta_views(x, protocol=protocol):
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
           protocol: Protocol | None = None, progress: bool = False, desc: str = "evaluation") -> Scores:
    """Loss, top-1 and top-5 accuracy of ``model`` over every image of ``loader``.

    With views beyond the image itself (:func:`predict_proba`) the loss is the
    criterion applied to the log of the averaged probabilities (a valid set of
    logits: softmax(log p) = p). The model is left in evaluation mode. In a
    distributed run (``comm`` given, ``loader`` sharded by rank) the sums
    (loss*count, correct, correct in the top 5, count) are added over ranks.
    ``progress``: a tqdm bar over the batches (only when stderr is a terminal).
    """
    protocol = protocol or Protocol.of_options(tta, crops)
    plain = protocol == Protocol()
    model.eval()
    loss_sum, correct, correct5, seen = 0.0, 0, 0, 0
    batches = loader.epoch(0)
    if progress:   # tqdm switches itself off when stderr is not a terminal (disable=None)
        batches = tqdm(batches, total=len(loader), desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                       disable=None)
    for _, x, y in batches:
        if not y.shape[0]:   # this rank's slice of a small last batch
            continue
        xp = get_array_module(x)
        with no_grad():
            if plain:
                logits = model(x)
            else:
                logits = xp.log(xp.maximum(predict_proba(model, x, protocol=protocol), 1e-30))
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


def evaluate(model, loader: BatchLoader, criterion, tta: bool = False, comm=None, crops: int = 0,
             protocol: Protocol | None = None, progress: bool = False,
             desc: str = "evaluation") -> tuple[float, float]:
    """Mean loss and (top-1) accuracy of ``model`` over every image of ``loader`` (see :func:`scores`)."""
    result = scores(model, loader, criterion, tta, comm, crops, protocol, progress, desc)
    return result.loss, result.top1
