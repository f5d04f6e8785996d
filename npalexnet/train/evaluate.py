"""Evaluation: loss and accuracy over a split, with test-time averaging over views.

Views: the image, its mirror image (``tta``), and with ``crops`` (a shift of
P pixels) the paper's five crops (Section 4.1: "the four corner patches and
the center patch as well as their horizontal reflections (hence ten patches
in all)"), taken from the image padded by P on every side (reflect), so
that every view has the input size. The softmax outputs of the views are
averaged.
"""

from __future__ import annotations

from tqdm import tqdm

from ..backend import get_array_module
from ..data.augment import crop_flip, hflip
from ..data.loader import BatchLoader
from ..distributed import allreduce_sums
from ..nn import no_grad


def softmax(logits):
    """(N, K) logits -> (N, K) probabilities (row maximum subtracted for stability)."""
    xp = get_array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tta_views(x, tta: bool = False, crops: int = 0):
    """The views of a batch x (N, C, S, S) that :func:`predict_proba` averages (a generator).

    ``crops`` = P > 0: the centre and the four corner crops of x padded by P
    (reflect), in that order; else x itself. Each followed by its mirror
    image when ``tta``.
    """
    xp = get_array_module(x)
    n = x.shape[0]
    if crops:
        p = int(crops)
        origins = [(p, p), (0, 0), (0, 2 * p), (2 * p, 0), (2 * p, 2 * p)]
        bases = [crop_flip(x, xp.full(n, oy), xp.full(n, ox), xp.zeros(n, dtype=bool), p) for oy, ox in origins]
    else:
        bases = [x]
    for view in bases:
        yield view
        if tta:
            yield hflip(view, xp.ones(n, dtype=bool))


def predict_proba(model, x, tta: bool = False, crops: int = 0):
    """Class probabilities (N, K) of a preprocessed batch x (N, C, S, S), model in eval mode.

    The softmax outputs of :func:`tta_views` are averaged: the image and, with
    ``tta``, its mirror image; with ``crops`` = P > 0 the paper's ten views.
    Runs under :func:`~npalexnet.nn.no_grad` (nothing is kept for a backward pass).
    """
    if crops and 2 * int(crops) >= min(x.shape[2:]):
        raise ValueError(f"crops={crops}: the padding must be less than half the image size {tuple(x.shape[2:])}")
    with no_grad():
        total, count = None, 0
        for view in tta_views(x, tta, crops):
            probs = softmax(model(view))
            total = probs if total is None else total + probs
            count += 1
    return total / count


def evaluate(model, loader: BatchLoader, criterion, tta: bool = False, comm=None,
             crops: int = 0, progress: bool = False, desc: str = "evaluation") -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over every image of ``loader``.

    With ``tta`` or ``crops`` (:func:`predict_proba`) the loss is the criterion
    applied to the log of the averaged probabilities (a valid set of logits:
    softmax(log p) = p). The model is
    left in evaluation mode. In a distributed run (``comm`` given, ``loader``
    sharded by rank) the sums (loss*count, correct, count) are added over ranks.
    ``progress``: a tqdm bar over the batches (only when stderr is a terminal).
    """
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    batches = tqdm(loader.epoch(0), total=len(loader), desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                   disable=None if progress else True)
    for _, x, y in batches:
        if not y.shape[0]:   # this rank's slice of a small last batch
            continue
        xp = get_array_module(x)
        with no_grad():
            if tta or crops:
                logits = xp.log(xp.maximum(predict_proba(model, x, tta=tta, crops=crops), 1e-30))
            else:
                logits = model(x)
            # Summed on the device, in float64, and read once at the end: on a GPU each read waits
            # for the queued work.
            loss_sum = loss_sum + criterion(logits, y).astype(xp.float64) * int(y.shape[0])
        correct = correct + (logits.argmax(axis=1) == y).sum()
        seen += int(y.shape[0])
    loss_sum, correct = float(loss_sum), int(correct)
    if comm is not None:
        loss_sum, correct, seen = allreduce_sums(comm, loss_sum, correct, seen)
    return loss_sum / max(seen, 1), correct / max(seen, 1)
