"""One training epoch: :func:`~npalexnet.train.step.train_step` for every batch, the per-step schedule, progress.

The loader yields this process's slice of each global batch (all of it in
one process); a step's randomness (the epoch's order, each image's crop, flip
and dropout mask) depends on nothing but the seed, the epoch and which images
it trains on, so a run resumed at any step repeats an uninterrupted one
exactly, and R processes train what one does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm import tqdm

from ..data.loader import BatchLoader
from ..distributed import DataParallel
from .step import NonFiniteLossError, train_step


@dataclass
class EpochStats:
    """Running sums of one epoch, saved in a mid-epoch checkpoint to resume it exactly."""

    loss_sum: float = 0.0      # sum over images of the per-image loss
    correct: int = 0
    seen: int = 0
    steps: int = 0             # steps of this epoch done so far
    seconds: float = 0.0       # training time of the epoch so far
    interrupted: bool = False

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1)

    def to_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen,
                "steps": self.steps, "seconds": self.seconds}


def train_one_epoch(model, loader: BatchLoader, criterion, optimizer, scheduler=None, *, epoch: int,
                    seed: int, parallel: DataParallel, stats: EpochStats | None = None, should_stop=None,
                    progress: bool = True, desc: str = "", averages=(), sam_radius: float = 0.0,
                    clip_norm: float = 0.0) -> EpochStats:
    """Train ``model`` on the batches of ``epoch``, from ``stats.steps`` on.

    Args:
        model, criterion, optimizer: the run's objects (model on the loader's device).
        scheduler: stepped after every batch (a per-step schedule), or None.
        epoch: 0-based epoch index (selects the order, augmentation and dropout).
        seed: the run's seed.
        parallel: the model's :class:`~npalexnet.distributed.DataParallel` (one process: a
            single-process communicator).
        stats: the sums of the part of this epoch already done (a resumed run).
        should_stop: called after each step; True ends the epoch early
            (``stats.interrupted``), with the model, optimizer and scheduler
            in the consistent state after that step (in a distributed run it
            must give the same answer on every rank: :func:`npalexnet.distributed.any_rank`).
        progress: show a tqdm bar with loss, accuracy and images/s (only when stderr is a terminal).
        averages: weight averages (:class:`~npalexnet.optim.ExponentialMovingAverage`) updated after
            every optimizer step.
        sam_radius: sharpness-aware minimisation's radius for this epoch's steps (0: plain steps).
        clip_norm: the gradient's largest global norm (0: no clipping).
    Raises:
        NonFiniteLossError: before the backward pass of a step whose loss is NaN/inf.
    """
    stats = stats or EpochStats()
    model.train()
    bar = tqdm(total=len(loader), initial=stats.steps, desc=desc, disable=None if progress else True, leave=False,
               unit="batch", dynamic_ncols=True)
    start, images_this_call = time.perf_counter(), 0
    try:
        for step, x, y in loader.epoch(epoch, start=stats.steps):
            indices, global_n = loader.batch_indices(epoch, step)
            try:
                loss_sum, correct, n = train_step(model, criterion, optimizer, x, y, indices, seed=seed,
                                                  epoch=epoch, parallel=parallel, global_count=global_n,
                                                  sam_radius=sam_radius, clip_norm=clip_norm)
            except NonFiniteLossError as exc:
                lr = optimizer.param_groups[0]["lr"]
                raise NonFiniteLossError(f"{exc} at epoch {epoch + 1}, step {step + 1} (lr {lr:.4g})") from None
            if scheduler is not None:
                scheduler.step()
            for average in averages:
                average.update(model)
            stats.loss_sum += loss_sum
            stats.correct += correct
            stats.seen += n
            stats.steps = step + 1
            images_this_call += n
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.3f}", acc=f"{100 * stats.accuracy:.1f}%",
                            img_s=f"{images_this_call / max(time.perf_counter() - start, 1e-9):.0f}", refresh=False)
            if should_stop is not None and should_stop():
                stats.interrupted = stats.steps < len(loader)
                break
    finally:
        stats.seconds += time.perf_counter() - start
        bar.close()
    return stats
