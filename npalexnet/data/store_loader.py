"""Batches of a split kept on disk (:class:`~.store.StoreSplit`), read ahead by a thread, augmented on the device.

The interface is :class:`~.loader.BatchLoader`'s (``len``, ``num_images``,
``order``, ``batch_indices``, ``batch``, ``epoch``), so the training loop and
the evaluation take either. The order is the one shuffle
(:func:`~.sampling.epoch_order` of (seed, epoch)), each rank keeps its slice
of every global batch (:func:`~.sampling.local_slice`), and the augmentation's
random numbers are keyed by the image's index in the split: R ranks reading
their slices of one store see exactly the batches one process would.

Per step the training process holds ``depth`` uint8 host buffers of the
local batch (2 x 128 x 196 KB = 50 MB at 256 px) plus the batch on the
device; nothing grows with the number of images in the split (the labels
and the order, 16 bytes an image, excepted).

Notation: B images of a (local) batch, C channels, S the stored size, O the net's input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy

from .. import backend
from .readahead import ReadAhead
from .sampling import ShuffledBatches
from .store import StoreSplit


@dataclass
class LoaderTiming:
    """Where the time of an epoch went, from the loader's side.

    Attributes:
        images: images delivered. elapsed: seconds from the epoch's first request to its end.
        read_seconds: the reading thread's time in ``pread`` (its own images/s: ``images / read_seconds``).
        wait_seconds: the consumer blocked for a batch not yet read (the data stall).
        prepare_seconds: the copy to the device and the augmentation, in the consumer.
    """

    images: int = 0
    elapsed: float = 0.0
    read_seconds: float = 0.0
    wait_seconds: float = 0.0
    prepare_seconds: float = 0.0

    @property
    def wait_fraction(self) -> float:
        return self.wait_seconds / self.elapsed if self.elapsed > 0 else 0.0

    def describe(self) -> str:
        read_rate = self.images / self.read_seconds if self.read_seconds > 0 else float("inf")
        return (f"data: read {read_rate:.0f} images/s in the background; the steps waited "
                f"{100 * self.wait_fraction:.1f}% of the time for data, augmentation took "
                f"{100 * self.prepare_seconds / max(self.elapsed, 1e-9):.1f}%")


def host_buffer(shape: tuple, device: str) -> numpy.ndarray:
    """A uint8 host array; page-locked on a GPU machine, so the copy to the device runs at full speed."""
    count = int(numpy.prod(shape))
    if device == "cuda":
        import cupy

        return numpy.frombuffer(cupy.cuda.alloc_pinned_memory(max(count, 1)), numpy.uint8, count).reshape(shape)
    return numpy.empty(shape, dtype=numpy.uint8)


class StoreLoader(ShuffledBatches):
    """Iterate over a :class:`StoreSplit` in batches of ``batch_size`` on ``device``.

    Args:
        split: the images on disk and their labels.
        batch_size: images per (global) batch; the last batch of an epoch may be smaller.
        preprocess: the run's transforms (:class:`~.paper_augment.PaperAugment` or
            :class:`~.augment.Preprocess`): ``train(images, seed, epoch, indices)`` and ``eval(images)``.
        device: ``"cpu"`` or ``"cuda"``.
        train: shuffle and augment (else fixed order, evaluation transform).
        seed: the run's seed.
        rank, world_size: this rank's slice of each global batch.
        depth: host buffers read ahead (2: double buffering).
    """

    def __init__(self, split: StoreSplit, batch_size: int, preprocess, device: str = "cpu", *, train: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, depth: int = 2):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
        if depth < 1:
            raise ValueError(f"read-ahead depth must be >= 1, got {depth}")
        self.split, self.batch_size, self.preprocess = split, int(batch_size), preprocess
        self.device = backend.resolve_device(device)
        self.xp = backend.xp_for(self.device)
        self.train, self.seed = bool(train), int(seed)
        self.rank, self.world_size, self.depth = int(rank), int(world_size), int(depth)
        self.timing = LoaderTiming()          # of the last (or current) epoch
        self._buffers = None

    @property
    def num_images(self) -> int:
        return len(self.split)

    def _prepare(self, epoch: int, indices, images: numpy.ndarray):
        """Host uint8 (B, C, S, S) -> ``(x, y)`` on the device, augmented (training) or normalised."""
        x = backend.to_device(images, self.device)
        y = backend.to_device(self.split.labels[indices], self.device)
        if self.train:
            return self.preprocess.train(x, self.seed, epoch, indices), y
        return self.preprocess.eval(x), y

    def batch(self, epoch: int, step: int, order: numpy.ndarray | None = None):
        """Batch ``step`` of ``epoch``, read now: ``(x, y)`` with x (B, C, O, O) float, y (B,) int64."""
        indices, _ = self.batch_indices(epoch, step, order)
        return self._prepare(epoch, indices, self.split.read(indices))

    def _ring(self) -> list:
        if self._buffers is None:
            rows = -(-self.batch_size // self.world_size)
            shape = (min(rows, max(self.num_images, 1)),) + tuple(self.split.image_shape)
            self._buffers = [host_buffer(shape, self.device) for _ in range(self.depth)]
        return self._buffers

    def epoch(self, epoch: int, start: int = 0):
        """Yield ``(step, x, y)`` for steps ``start .. len(self)-1``, the reads ``depth`` steps ahead.

        :attr:`timing` holds the epoch's :class:`LoaderTiming` (updated as it goes).
        """
        order = self.order(epoch)
        steps = range(start, len(self))
        jobs = ((step, self.batch_indices(epoch, step, order)[0]) for step in steps)
        timing = self.timing = LoaderTiming()
        began = time.perf_counter()

        def read(job, buffer):
            return self.split.read(job[1], buffer[:len(job[1])])

        with ReadAhead(read, jobs, self._ring()) as ahead:
            for (step, indices), images, buffer in ahead:
                t = time.perf_counter()
                x, y = self._prepare(epoch, indices, images)
                ahead.release(buffer)                 # x no longer refers to it: the next read may start
                timing.prepare_seconds += time.perf_counter() - t
                timing.images += len(indices)
                timing.read_seconds, timing.wait_seconds = ahead.read_seconds, ahead.wait_seconds
                timing.elapsed = time.perf_counter() - began
                yield step, x, y
            timing.read_seconds, timing.wait_seconds = ahead.read_seconds, ahead.wait_seconds
        timing.elapsed = time.perf_counter() - began
