"""Batches of a split held whole on the device, in an order derived from (seed, epoch).

Randomness is a pure function of what it is for: the epoch's order comes
from ``(seed, epoch)`` (:func:`.sampling.epoch_order`), each image's crop and
flip from ``(seed, epoch, image index)`` (:mod:`npalexnet.random_streams`).
A run resumed at any step therefore sees exactly the batches an
uninterrupted run would, with nothing to save but the step, and a run on R
ranks sees the batches of one process.
"""

from __future__ import annotations


import numpy

from .. import backend
from .augment import Preprocess
from .dataset import Split
from .mixing import Mixing
from .sampling import ShuffledBatches


class BatchLoader(ShuffledBatches):
    """Iterate over ``split`` in batches of ``batch_size`` on ``device``.

    Args:
        split: host arrays; copied once to ``device`` as uint8 (4x smaller than float).
        batch_size: images per batch; the last batch of an epoch may be smaller.
        preprocess: the run's transforms (training or evaluation per ``train``).
        device: ``"cpu"`` or ``"cuda"``.
        train: shuffle and augment (else fixed order, evaluation transform).
        seed: the run's seed.
        rank, world_size: distributed training: ``batch_size`` is the global
            batch, and this rank gets its contiguous slice of each
            (:func:`.sampling.local_slice`); the order is the same on every rank.
        mixing: training batches blended by mixup or CutMix (:class:`.mixing.Mixing`), with
            partners from the whole split; their targets are then (B, K) class probabilities.
    """

    def __init__(self, split: Split, batch_size: int, preprocess: Preprocess, device: str = "cpu",
                 *, train: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 mixing: Mixing | None = None):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
        self.rank, self.world_size = int(rank), int(world_size)
        self.device = backend.resolve_device(device)
        self.xp = backend.xp_for(self.device)
        self.images = backend.to_device(split.images, self.device)
        self.labels = backend.to_device(split.labels, self.device)
        self.batch_size, self.preprocess = int(batch_size), preprocess
        self.train, self.seed = train, int(seed)
        self.mixing = mixing if train else None

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    def batch(self, epoch: int, step: int, order: numpy.ndarray | None = None):
        """Batch ``step`` of ``epoch``: ``(x, y)`` with x (B, C, S, S) float, y (B,) int64 (with
        ``mixing``: y (B, K) class probabilities in x's dtype)."""
        indices, _ = self.batch_indices(epoch, step, order)
        index = self.xp.asarray(indices)
        images, labels = self.images[index], self.labels[index]
        if not self.train:
            return self.preprocess.eval(images), labels
        x = self.preprocess.train(images, self.seed, epoch, indices)
        if self.mixing is None:
            return x, labels
        partners = self.mixing.partners(self.seed, epoch, indices, self.num_images)
        where = self.xp.asarray(partners)
        partner_x = self.preprocess.train(self.images[where], self.seed, epoch, partners)
        blend = self.mixing.draw(self.seed, epoch, step, tuple(x.shape[2:]))
        return self.mixing(x, labels, partner_x, self.labels[where], blend)

    def epoch(self, epoch: int, start: int = 0):
        """Yield ``(step, x, y)`` for steps ``start .. len(self)-1`` of ``epoch``."""
        order = self.order(epoch)
        for step in range(start, len(self)):
            x, y = self.batch(epoch, step, order)
            yield step, x, y
