"""Which samples a step sees: the one epoch shuffle, its batches, and each rank's slice of a batch.

Notation: ``count`` samples in the split, N samples in a (global) batch, R ranks, rank r.

The order of an epoch is a pure function of ``(seed, epoch)``, drawn from the
library's one random scheme (:func:`npalexnet.random_streams.permutation`),
so every process, every rank and a resumed run see the same order, and the
README's own-loop recipe sees the batches the training program trains on.

``batch_size`` is the global batch: under data-parallel training every rank
cuts the same batches and keeps its contiguous slice of each: the first
``N mod R`` ranks take ``ceil(N/R)`` samples, the others ``floor(N/R)``.
Concatenating the slices in rank order gives the global batch back, so R
ranks see exactly the batches one process would.
"""

from __future__ import annotations

import numpy

from .. import random_streams


def epoch_order(count: int, seed: int, epoch: int) -> numpy.ndarray:
    """The order of the ``count`` training samples in ``epoch``: (count,) host int64, a permutation."""
    return random_streams.permutation(seed, epoch, count, random_streams.ORDER_STREAM)


def global_batches(count: int, batch_size: int, seed: int, epoch: int, drop_last: bool = False):
    """The epoch's batches of sample indices, in order (the last one may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"global_batches: batch_size must be >= 1, got {batch_size}")
    order = epoch_order(count, seed, epoch)
    stop = count - count % batch_size if drop_last else count
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def shard_bounds(count: int, rank: int, size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s slice of ``count`` items split over ``size`` ranks."""
    if size < 1 or not 0 <= rank < size or count < 0:
        raise ValueError(f"shard_bounds: need count >= 0, size >= 1, 0 <= rank < size; got "
                         f"count={count}, rank={rank}, size={size}")
    base, extra = divmod(int(count), int(size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_counts(count: int, size: int) -> list[int]:
    """Every rank's number of items (sums to ``count``)."""
    return [b - a for a, b in (shard_bounds(count, r, size) for r in range(size))]


def local_slice(global_batch, rank: int, size: int):
    """This rank's part of a global batch (an array of sample indices, or anything sliceable)."""
    start, stop = shard_bounds(len(global_batch), rank, size)
    return global_batch[start:stop]


class ShuffledBatches:
    """The batches of one loader: the epoch's order (the one shuffle in training, the split's order
    otherwise) cut into batches of ``batch_size``, this rank's slice of each.

    A loader that holds ``num_images``, ``batch_size``, ``train``, ``seed``, ``rank`` and
    ``world_size`` inherits ``__len__``, :meth:`order` and :meth:`batch_indices` from it.
    """

    _order_cache = None

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.num_images // self.batch_size)

    def order(self, epoch: int) -> numpy.ndarray:
        """The epoch's image order (host int64): a seeded permutation in training."""
        if not self.train:
            return numpy.arange(self.num_images)
        if self._order_cache is None or self._order_cache[0] != epoch:   # asked once per step
            self._order_cache = (epoch, epoch_order(self.num_images, self.seed, epoch))
        return self._order_cache[1]

    def batch_indices(self, epoch: int, step: int, order: numpy.ndarray | None = None):
        """``(indices, global_count)``: this rank's image indices (host) of batch ``step``, and
        the size of the whole (global) batch."""
        order = self.order(epoch) if order is None else order
        batch = order[step * self.batch_size:(step + 1) * self.batch_size]
        if self.world_size == 1:
            return batch, len(batch)
        return local_slice(batch, self.rank, self.world_size), len(batch)
