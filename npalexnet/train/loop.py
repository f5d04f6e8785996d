"""One training epoch: forward, loss, backward, optimizer step, per-step schedule.

Dropout masks, like the loader's order and augmentation, are keyed by
(seed, epoch, image index) (:mod:`npalexnet.random_streams`), so a step's
randomness depends on nothing but which images it trains on: a run resumed
at any step repeats an uninterrupted one exactly.

Distributed (``parallel`` given): the loader yields this rank's slice of each
global batch, the loss, accuracy and image count are summed over ranks before
the NaN check (so every rank stops together), and the gradients are averaged
by share of the batch before the optimizer step. The result does not depend
on the number of ranks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from tqdm import tqdm

from .. import random_streams
from ..data.loader import BatchLoader
from ..distributed import DataParallel, allreduce_sums


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights of this step must not be saved."""


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
                    seed: int, stats: EpochStats | None = None, should_stop=None, progress: bool = True,
                    desc: str = "", parallel: DataParallel | None = None) -> EpochStats:
    """Train ``model`` on the batches of ``epoch``, from ``stats.steps`` on.

    Args:
        model, criterion, optimizer: the run's objects (model on the loader's device).
        scheduler: stepped after every batch (a per-step schedule), or None.
        epoch: 0-based epoch index (selects the order, augmentation and dropout).
        seed: the run's seed.
        stats: the sums of the part of this epoch already done (a resumed run).
        should_stop: called after each step; True ends the epoch early
            (``stats.interrupted``), with the model, optimizer and scheduler
            in the consistent state after that step.
        progress: show a tqdm bar with loss, accuracy and images/s.
        parallel: the model's :class:`~npalexnet.distributed.DataParallel`
            state in a distributed run (``should_stop`` must then give the same
            answer on every rank: see :func:`npalexnet.distributed.any_rank`).
    Raises:
        NonFiniteLossError: before the backward pass of a step whose loss is NaN/inf.
    """
    stats = stats or EpochStats()
    model.train()
    bar = tqdm(total=len(loader), initial=stats.steps, desc=desc, disable=not progress, leave=False,
               unit="batch", dynamic_ncols=True)
    start, images_this_call = time.perf_counter(), 0
    try:
        for step, x, y in loader.epoch(epoch, start=stats.steps):
            n = local_n = int(y.shape[0])
            indices, global_n = loader.batch_indices(epoch, step)
            value, correct = 0.0, 0
            if local_n:   # a rank may get no image of a last batch smaller than the world
                with random_streams.sample_keys(indices, seed, epoch):
                    logits = model(x)
                    loss = criterion(logits, y)
                value = float(loss)
                correct = int((logits.argmax(axis=1) == y).sum())
            if parallel is not None:   # the global batch's numbers, the same on every rank
                loss_sum, correct, n = allreduce_sums(parallel.comm, value * local_n, correct, local_n)
                value, correct, n = loss_sum / n, int(correct), int(n)
            if not math.isfinite(value):
                lr = optimizer.param_groups[0]["lr"]
                raise NonFiniteLossError(f"the loss became {value} at epoch {epoch + 1}, step {step + 1} "
                                         f"(lr {lr:.4g})")
            optimizer.zero_grad()
            if local_n:
                model.backward(criterion.backward(), input_grad=False)   # the images need no gradient
            if parallel is not None:
                parallel.synchronize(local_n, global_n)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            stats.loss_sum += value * n
            stats.correct += correct
            stats.seen += n
            stats.steps = step + 1
            images_this_call += n
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.3f}", acc=f"{100 * stats.accuracy:.1f}%",
                            img_s=f"{images_this_call / max(elapsed, 1e-9):.0f}", refresh=False)
            if should_stop is not None and should_stop():
                stats.interrupted = stats.steps < len(loader)
                break
    finally:
        stats.seconds += time.perf_counter() - start
        bar.close()
    return stats
