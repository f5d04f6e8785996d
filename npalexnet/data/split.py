"""Seeded, stratified index selections: train/validation split and subsets.

Stratified means each class keeps its share, so a small subset or a small
validation split still has every class. Everything is a function of
``(labels, seed)``, so a resumed run gets the same split back.
"""

from __future__ import annotations

import numpy


def _per_class_counts(class_sizes: numpy.ndarray, total: int) -> numpy.ndarray:
    """Split ``total`` across classes proportionally (largest remainders), at least 1 each."""
    share = class_sizes * (total / class_sizes.sum())
    counts = numpy.floor(share).astype(numpy.int64)
    for i in numpy.argsort(-(share - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    # every class represented (when it has images and the total allows it)
    for i in numpy.flatnonzero((counts == 0) & (class_sizes > 0)):
        donor = int(numpy.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return numpy.minimum(counts, class_sizes)


def stratified_split(labels, fraction: float, seed: int, stream: int = 1) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Indices ``(keep, held_out)`` with ``round(fraction * N)`` held out, per class in proportion.

    Args:
        labels: (N,) integer class indices.
        fraction: share held out, in [0, 1).
        seed: the split is a function of ``(labels, seed)`` only.
    Returns:
        Two sorted int64 index arrays partitioning ``range(N)``.
    """
    labels = numpy.asarray(labels)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    n = labels.shape[0]
    held = round(fraction * n)
    if held == 0:
        return numpy.arange(n), numpy.arange(0)
    held_idx = stratified_sample(labels, held, seed, stream)
    mask = numpy.ones(n, dtype=bool)
    mask[held_idx] = False
    return numpy.flatnonzero(mask), held_idx


def split_off_validation(images, fraction: float, seed: int):
    """A dataset split's ``(train, validation)`` parts: :func:`stratified_split` of its labels, taken.

    The one place a run's validation images are chosen, so the training run and a later
    ``--evaluate --split validation`` of its checkpoint hold out the same images.

    Args:
        images: a :class:`~npalexnet.data.dataset.Split` (anything with ``labels`` and ``take(indices)``).
        fraction, seed: as :func:`stratified_split`.
    Returns:
        ``(train, validation)``; ``validation`` is None when the fraction holds out no image.
    """
    keep, held = stratified_split(images.labels, fraction, seed)
    return images.take(keep), (images.take(held) if len(held) else None)


def stratified_sample(labels, count: int, seed: int, stream: int = 0) -> numpy.ndarray:
    """``count`` sorted indices drawn without replacement, each class in proportion (at least one).

    ``stream`` separates uses of one seed (the validation split, the subset).
    """
    labels = numpy.asarray(labels)
    n = labels.shape[0]
    if not 0 < count <= n:
        raise ValueError(f"cannot sample {count} of {n} images")
    classes, inverse = numpy.unique(labels, return_inverse=True)
    sizes = numpy.bincount(inverse, minlength=len(classes))
    counts = _per_class_counts(sizes, count)
    rng = numpy.random.default_rng(numpy.random.SeedSequence([seed, 0x5B1, stream]))
    chosen = [rng.choice(numpy.flatnonzero(inverse == k), size=int(c), replace=False)
              for k, c in enumerate(counts)]
    return numpy.sort(numpy.concatenate(chosen)).astype(numpy.int64)
