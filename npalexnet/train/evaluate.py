"""Evaluation: loss and accuracy over a split, with optional test-time flip averaging."""

from __future__ import annotations

from ..backend import get_array_module
from ..data.augment import hflip
from ..data.loader import BatchLoader
from ..distributed import allreduce_sums
from ..nn import no_grad


def softmax(logits):
    """(N, K) logits -> (N, K) probabilities (row maximum subtracted for stability)."""
    xp = get_array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(model, x, tta: bool = False):
    """Class probabilities (N, K) of a preprocessed batch x (N, C, S, S), model in eval mode.

    With ``tta`` the probabilities of the image and of its mirror image are averaged.
    Runs under :func:`~npalexnet.nn.no_grad` (nothing is kept for a backward pass).
    """
    with no_grad():
        probs = softmax(model(x))
        if tta:
            xp = get_array_module(x)
            probs = (probs + softmax(model(hflip(x, xp.ones(x.shape[0], dtype=bool))))) / 2
    return probs


def evaluate(model, loader: BatchLoader, criterion, tta: bool = False, comm=None) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over every image of ``loader``.

    With ``tta`` the loss is the criterion applied to the log of the averaged
    probabilities (a valid set of logits: softmax(log p) = p). The model is
    left in evaluation mode. In a distributed run (``comm`` given, ``loader``
    sharded by rank) the sums (loss*count, correct, count) are added over ranks.
    """
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for _, x, y in loader.epoch(0):
        if not y.shape[0]:   # this rank's slice of a small last batch
            continue
        with no_grad():
            if tta:
                xp = get_array_module(x)
                logits = xp.log(xp.maximum(predict_proba(model, x, tta=True), 1e-30))
            else:
                logits = model(x)
            loss_sum += float(criterion(logits, y)) * int(y.shape[0])
        correct += int((logits.argmax(axis=1) == y).sum())
        seen += int(y.shape[0])
    if comm is not None:
        loss_sum, correct, seen = allreduce_sums(comm, loss_sum, correct, seen)
    return loss_sum / max(seen, 1), correct / max(seen, 1)
