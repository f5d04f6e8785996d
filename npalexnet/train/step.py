"""One training step, the same in one process and on many: forward, loss, backward, average, update.

For a global batch of N images split over R processes (rank r holds n_r of
them; one process: R = 1, n_0 = N):

1. forward and loss on this rank's n_r images, with dropout keyed by each
   image's index (:func:`npalexnet.random_streams.sample_keys`), so a mask
   does not depend on which rank or batch position an image lands in;
2. the loss and accuracy summed over ranks, and the NaN guard on the sum
   (every rank stops together, before the backward pass of a bad step);
3. backward (the images need no gradient: ``input_grad=False``);
4. the gradients averaged over ranks by their shares n_r / N
   (:class:`npalexnet.distributed.DataParallel`; with one process nothing
   moves);
5. with sharpness-aware minimisation (``sam_radius`` > 0,
   :class:`npalexnet.optim.SharpnessPerturbation`): the weights moved to
   w + rho g / ||g|| by the averaged gradient, steps 1, 3 and 4 again there
   (the same images, the same dropout masks), the weights and BatchNorm's running
   statistics put back, so the update below uses the gradient at the perturbed
   weights;
6. with ``clip_norm`` > 0, the gradient clipped to that global norm
   (:func:`npalexnet.optim.clip_grad_norm`; after the average, so every rank clips alike);
7. the optimizer's update.

The training program calls it for every step, with a one-process
communicator when it trains alone; the README's own-loop recipe calls it too.
"""

from __future__ import annotations

import math

from .. import random_streams
from ..backend import asnumpy, get_array_module
from ..distributed import DataParallel, allreduce_sums
from ..optim import SharpnessPerturbation, clip_grad_norm


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights of this step must not be saved."""


def train_step(model, criterion, optimizer, images, labels, indices, *, seed: int, epoch: int,
               parallel: DataParallel, global_count: int | None = None, sam_radius: float = 0.0,
               clip_norm: float = 0.0):
    """One optimisation step on this rank's part of a global batch.

    Args:
        model, criterion, optimizer: the network, a mean-reduced loss, an npalexnet optimizer.
        images: (n_r, C, H, W) this rank's images, on the model's device (n_r may be 0).
        labels: (n_r,) integer class indices, or (n_r, K) class probabilities (mixup, CutMix: a
            prediction counts as correct for the class with the larger share).
        indices: (n_r,) host integer array, the images' indices in the training split (the keys of
            their dropout masks).
        seed, epoch: the run's seed and the epoch (0-based).
        parallel: the model's :class:`~npalexnet.distributed.DataParallel` (its communicator may hold
            a single process).
        global_count: N, the size of the global batch (default: n_r, one process).
        sam_radius: rho of sharpness-aware minimisation (0: a plain step; > 0 costs a
            second forward and backward pass).
        clip_norm: the largest global norm of the gradient the update uses (0: no clipping).
    Returns:
        ``(loss_sum, correct, count)`` of the global batch at the weights it started from: the
        summed per-image loss, the number of correct top-1 predictions and N, the same on every rank.
    Raises:
        NonFiniteLossError: the loss of the batch (or, with SAM, at the perturbed weights) is NaN
            or infinite (nothing was updated).
    """
    n_local = len(indices)
    global_count = n_local if global_count is None else int(global_count)
    loss_sum, correct = 0.0, 0
    if n_local:   # a rank may get no image of a last batch smaller than the number of ranks
        with random_streams.sample_keys(indices, seed, epoch):
            logits = model(images)
            loss = criterion(logits, labels)
        xp = get_array_module(logits)
        truth = labels if labels.ndim == 1 else xp.argmax(labels, axis=1)   # mixed targets: the larger share
        hits = (xp.argmax(logits, axis=1) == truth).sum()
        # Both numbers in one transfer: on a GPU each transfer waits for the queued work to finish.
        loss_mean, hits = asnumpy(xp.stack([loss.astype(xp.float64), hits.astype(xp.float64)])).tolist()
        loss_sum, correct = loss_mean * n_local, int(hits)
    loss_sum, correct, count = allreduce_sums(parallel.comm, loss_sum, correct, n_local)
    if int(count) != global_count:
        raise ValueError(f"train_step: the ranks hold {int(count)} images of a global batch of {global_count}")
    if not math.isfinite(loss_sum):
        raise NonFiniteLossError(f"the loss became {loss_sum / max(count, 1)}")
    _gradients(model, criterion, optimizer, n_local, global_count, parallel)
    if sam_radius:
        _sharpness_aware_gradients(model, criterion, optimizer, images, labels, indices, seed, epoch, parallel,
                                   global_count, sam_radius)
    if clip_norm:
        clip_grad_norm(_updated_parameters(optimizer), clip_norm)
    optimizer.step()
    return loss_sum, int(correct), int(count)


def _updated_parameters(optimizer):
    """The parameters the optimizer updates (frozen ones are not in its groups)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def _gradients(model, criterion, optimizer, n_local, global_count, parallel):
    """Steps 3 and 4: backward from the last forward pass, then the average over ranks."""
    optimizer.zero_grad()
    if n_local:
        model.backward(criterion.backward(), input_grad=False)
    parallel.synchronize(n_local, global_count)


def _sharpness_aware_gradients(model, criterion, optimizer, images, labels, indices, seed, epoch, parallel,
                               global_count, radius):
    """Step 5: leave in the parameters' ``grad`` the gradient at w + rho g / ||g||, the
    weights and the running statistics as they were."""
    n_local = len(indices)
    perturbation = SharpnessPerturbation(_updated_parameters(optimizer), radius)
    buffers = {name: array.copy() for name, array in model.named_buffers()}
    perturbation.ascend()   # every rank holds the same averaged g, so every rank moves the same way
    try:
        loss_sum = 0.0
        if n_local:
            with random_streams.sample_keys(indices, seed, epoch):   # the same keys: the same dropout masks
                loss = criterion(model(images), labels)
            loss_sum = float(asnumpy(loss)) * n_local
        (loss_sum,) = allreduce_sums(parallel.comm, loss_sum)
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(f"the loss at the sharpness-aware perturbed weights became "
                                     f"{loss_sum / global_count}")
        _gradients(model, criterion, optimizer, n_local, global_count, parallel)
    finally:
        perturbation.restore()
        if buffers:
            model.load_state_dict(buffers, strict=False)
