"""One training epoch: forward, loss, backward, optimizer step, per-step schedule.

Dropout draws from the library generator, which is reseeded from
``(seed, epoch, step)`` before every step; with the loader's order and
augmentation derived the same way, a step's randomness depends on nothing
but its coordinates, so a run resumed at any step repeats an uninterrupted
one exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from tqdm import tqdm

from .. import backend
from ..data.loader import DROPOUT, BatchLoader, derived_seed


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
                    desc: str = "") -> EpochStats:
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
            backend.manual_seed(derived_seed(seed, DROPOUT, epoch, step))
            logits = model(x)
            loss = criterion(logits, y)
            value = float(loss)
            if not math.isfinite(value):
                lr = optimizer.param_groups[0]["lr"]
                raise NonFiniteLossError(f"the loss became {value} at epoch {epoch + 1}, step {step + 1} "
                                         f"(lr {lr:.4g})")
            optimizer.zero_grad()
            model.backward(criterion.backward())
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            n = int(y.shape[0])
            stats.loss_sum += value * n
            stats.correct += int((logits.argmax(axis=1) == y).sum())
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
