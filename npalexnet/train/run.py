"""``fit``: a whole run from a :class:`TrainConfig`: data, model, epochs, checkpoints, test.

Files in ``cfg.out``: ``last.npz`` (after every epoch, or at Ctrl-C),
``best.npz`` (the epoch of best validation accuracy), ``metrics.csv`` and
``curves.png``. ``cfg.resume`` continues from ``last.npz`` up to
``cfg.epochs`` epochs in total.

Distributed (``fit(cfg, comm=...)`` with a communicator from
:func:`npalexnet.distributed.init`): rank 0 opens the run (checkpoint, the
overwrite guard) and broadcasts what it found; rank 0 prepares the data first
(a download), then the others; the ranks check they agree on versions and
data; every rank trains on its slice of each global batch of
``cfg.batch_size``; only rank 0 logs, shows progress and writes checkpoints,
metrics and plots. An error in any of these steps is raised on every rank.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

from .. import __version__, backend, distributed, models, nn, random_streams
from ..data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BatchLoader,
    Preprocess,
    channel_stats,
    load_dataset,
    stratified_sample,
    stratified_split,
)
from ..inspect import parameter_norms
from ..viz import save_norm_curves
from .checkpoint import BEST, LAST, CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from .config import (
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    input_size,
    merge_for_resume,
    model_kwargs,
)
from .evaluate import evaluate
from .history import (
    CURVES_PNG,
    METRICS_CSV,
    NORMS_PNG,
    norm_columns,
    norms_from_history,
    plot_curves,
    write_metrics_csv,
)
from .interrupt import GracefulInterrupt
from .loop import EpochStats, NonFiniteLossError, train_one_epoch


class TrainingInterrupted(Exception):
    """Ctrl-C: a checkpoint was saved; ``--resume`` continues from it."""


@dataclass
class FitResult:
    """What a finished run reports."""

    model: nn.Module
    history: list
    test_loss: float
    test_accuracy: float
    out: Path
    config: TrainConfig


def _is_finite_model(model) -> bool:
    return all(bool(backend.get_array_module(p.data).isfinite(p.data).all()) for p in model.parameters())


def prepare_data(cfg: TrainConfig, log=print):
    """Load the dataset, split off validation, take the subset; the host splits and class names."""
    start = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir, root=cfg.root, download=cfg.download,
                           image_size=cfg.image_size, cache_dir=cfg.cache_dir, workers=cfg.workers,
                           seed=cfg.seed, log=log)
    train_idx, val_idx = stratified_split(dataset.train.labels, cfg.val_fraction, cfg.seed)
    train, val = dataset.train.take(train_idx), (dataset.train.take(val_idx) if len(val_idx) else None)
    if cfg.subset is not None and cfg.subset < len(train):
        train = train.take(stratified_sample(train.labels, cfg.subset, cfg.seed, stream=2))
    log(f"data: {dataset.name} from {dataset.source}: {len(train)} train, {len(val) if val else 0} validation, "
        f"{len(dataset.test)} test images of {dataset.in_channels}x{dataset.image_size}x{dataset.image_size}, "
        f"{len(dataset.classes)} classes ({time.perf_counter() - start:.1f} s)")
    return dataset, train, val


def _silent(*args, **kwargs) -> None:
    """The log of the ranks other than 0."""


def _open_run(cfg: TrainConfig, out: Path, log):
    """The checkpoint to resume from (or None) and the run's configuration."""
    ckpt = None
    if cfg.resume and (out / LAST).exists():
        ckpt = load_checkpoint(out / LAST)
        cfg = merge_for_resume(ckpt.meta["config"], cfg)
    elif cfg.resume:
        log(f"resume: no checkpoint in {out}, starting a new run")
    elif (out / LAST).exists() and not cfg.overwrite:
        raise CheckpointError(f"{out} already holds a run ({out / LAST}): pass --resume to continue it, "
                              "--overwrite to replace it, or choose another --out")
    return ckpt, cfg


def _check_same_run(comm, cfg: TrainConfig) -> None:
    """Same code and same command line on every rank, else the same DistributedSetupError on all."""
    data_path = cfg.data_dir if cfg.data_dir is not None else cfg.root
    distributed.check_consistent(comm, npalexnet=__version__, numpy=numpy.__version__,
                                 python=platform.python_version(), data_path=os.path.abspath(data_path),
                                 **{f"--{k.replace('_', '-')}": v for k, v in cfg.to_dict().items()})


def _check_same_data(comm, dataset, train_split) -> None:
    """The same training images on every rank (a digest of the labels and a sample of the pixels)."""
    step = max(1, len(train_split) // 64)
    digest = hashlib.sha1(train_split.labels.tobytes() + train_split.images[::step].tobytes()).hexdigest()
    distributed.check_consistent(comm, dataset=f"{dataset.name} ({dataset.source})",
                                 train_images=len(train_split), train_digest=digest)


def fit(cfg: TrainConfig, log=print, comm=None) -> FitResult:
    """Train (or resume), checkpoint every epoch, evaluate on the test split.

    ``comm`` (a distributed communicator) makes this rank one of a data-parallel
    run (see the module doc); None trains in this process alone.

    Raises:
        DataError: no usable data. CheckpointError: a bad checkpoint, or one in
        the way of a fresh run. NonFiniteLossError: the loss diverged (the last
        good checkpoint is kept). TrainingInterrupted: Ctrl-C (a checkpoint was saved).
    """
    cfg.validate()
    parallel_run = comm is not None
    comm = comm if parallel_run else distributed.SingleProcessCommunicator()
    if not comm.is_root:
        log = _silent
    if parallel_run:
        _check_same_run(comm, cfg)
    out = Path(cfg.out)
    ckpt, cfg = distributed.on_root(comm, _open_run, cfg, out, log)   # rank 0 reads, all get it
    device = backend.resolve_device(cfg.device)
    dataset, train_split, val_split = distributed.root_first(comm, prepare_data, cfg, log)
    if parallel_run:
        _check_same_data(comm, dataset, train_split)
    shard = {"rank": comm.rank, "world_size": comm.size}
    eval_comm = comm if parallel_run else None   # evaluation sums over ranks

    if ckpt is not None:
        kwargs, mean, std = ckpt.meta["model_kwargs"], ckpt.meta["mean"], ckpt.meta["std"]
    else:
        kwargs = model_kwargs(cfg, len(dataset.classes), dataset.in_channels)
        if dataset.name == "cifar10" and dataset.in_channels == 3:
            mean, std = CIFAR10_MEAN, CIFAR10_STD
        else:
            mean, std = channel_stats(train_split.images)
    random_streams.manual_seed(cfg.seed)   # the initial weights
    model = build_model(kwargs)
    if cfg.init_from and ckpt is None:   # fine-tuning: start from these weights (a resume has its own)
        log(str(models.load_pretrained(model, cfg.init_from)))
    if cfg.freeze:
        log(models.freeze(model, cfg.freeze))   # build_optimizer then takes the trainable parameters only
    size = input_size(kwargs["variant"])
    preprocess = Preprocess(mean, std, size, pad=cfg.pad, padding=cfg.padding, flip=cfg.flip,
                            resize_mode=cfg.resize_mode)
    train_loader = BatchLoader(train_split, cfg.batch_size, preprocess, device, train=True, seed=cfg.seed,
                               **shard)
    val_loader = (BatchLoader(val_split, cfg.eval_batch_size, preprocess, device, train=False, **shard)
                  if val_split is not None else None)
    optimizer = build_optimizer(cfg, model)
    scheduler, per_step = build_scheduler(cfg, optimizer, len(train_loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    history, best_acc, start_epoch, partial = [], -1.0, 0, EpochStats()
    if ckpt is not None:
        load_model_state(model, ckpt)
        model.to(device)
        optimizer.load_state_dict(ckpt.optimizer_state())
        saved_sched = ckpt.meta.get("scheduler") or {}
        if per_step:
            # Keep the schedule sized for the new --epochs; only the step count comes from the checkpoint.
            scheduler.set_step(int(saved_sched.get("last_epoch", 0)))
        else:
            scheduler.load_state_dict(saved_sched)
        random_streams.set_state(json.loads(ckpt.meta["rng_state"]))
        history, best_acc = list(ckpt.meta.get("history", [])), float(ckpt.meta.get("best_val_acc", -1.0))
        start_epoch = int(ckpt.meta["epoch"])
        partial = EpochStats(**ckpt.meta.get("partial", {}))
        where = (f"epoch {start_epoch + 1}, step {partial.steps} of {len(train_loader)}" if partial.steps
                 else f"end of epoch {start_epoch}")
        log(f"resumed from {ckpt.path} ({where}), continuing to epoch {cfg.epochs}")
    else:
        model.to(device)
    parallel = None
    if parallel_run:
        parallel = distributed.DataParallel(model, comm)
        parallel.broadcast_initial_state()   # rank 0's weights (fresh or resumed) on every rank
        log(f"distributed: {comm.size} processes ({comm.name}); batch {cfg.batch_size} is the global batch, "
            f"{-(-cfg.batch_size // comm.size)} or fewer images per process")
    log(f"model: AlexNet {kwargs['variant']} (width {kwargs['width']}), "
        f"{sum(p.size for p in model.parameters()):,} parameters, {size}x{size} input, device {device}; "
        f"{cfg.optimizer} lr {cfg.lr} ({cfg.schedule}), batch {cfg.batch_size}, {len(train_loader)} steps/epoch")
    log(model.summary((cfg.batch_size, dataset.in_channels, size, size)))

    def meta(epoch: int, stats: EpochStats) -> dict:
        return {"epoch": epoch, "partial": stats.to_dict(), "model_kwargs": kwargs, "variant": kwargs["variant"],
                "classes": list(dataset.classes), "mean": list(mean), "std": list(std),
                "image_size": dataset.image_size, "input_size": size, "in_channels": dataset.in_channels,
                "resize_mode": cfg.resize_mode, "scheduler": scheduler.state_dict(),
                "rng_state": json.dumps(random_streams.get_state()), "config": cfg.to_dict(),
                "history": history, "best_val_acc": best_acc}

    def save(path: Path, epoch: int, stats: EpochStats) -> None:
        if not _is_finite_model(model):   # never replace a good checkpoint with NaN weights
            raise NonFiniteLossError(f"the weights became NaN or infinite during epoch {epoch + 1}")
        if comm.is_root:
            save_checkpoint(path, model, optimizer, meta(epoch, stats))

    if comm.is_root:
        out.mkdir(parents=True, exist_ok=True)
    try:
        with GracefulInterrupt(log) as local_stop:
            # A Ctrl-C seen by any rank stops all of them at the same step.
            stop = (lambda: distributed.any_rank(comm, local_stop())) if parallel_run else local_stop
            for epoch in range(start_epoch, cfg.epochs):
                stats = train_one_epoch(model, train_loader, criterion, optimizer, scheduler if per_step else None,
                                        epoch=epoch, seed=cfg.seed, stats=partial, should_stop=stop,
                                        progress=cfg.progress and comm.is_root,
                                        desc=f"epoch {epoch + 1}/{cfg.epochs}", parallel=parallel)
                partial = EpochStats()
                if stats.interrupted:
                    save(out / LAST, epoch, stats)
                    raise TrainingInterrupted(f"interrupted at epoch {epoch + 1}, step {stats.steps}: saved "
                                              f"{out / LAST}; continue with --resume --out {out}")
                eval_start = time.perf_counter()
                val_loss, val_acc = (evaluate(model, val_loader, criterion, cfg.tta, comm=eval_comm)
                                     if val_loader else (None, None))
                if not per_step:
                    scheduler.step(val_acc if val_acc is not None else stats.accuracy)
                seconds = stats.seconds + time.perf_counter() - eval_start
                history.append({"epoch": epoch + 1, "train_loss": stats.loss, "train_acc": stats.accuracy,
                                "val_loss": val_loss, "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"],
                                "epoch_seconds": round(seconds, 2),
                                "images_per_s": round(stats.seen / max(stats.seconds, 1e-9), 1)})
                if cfg.log_grad_norms:   # the gradient of the epoch's last step, the weights at its end
                    history[-1].update(norm_columns(parameter_norms(model)))
                score = val_acc if val_acc is not None else stats.accuracy
                improved = score > best_acc
                best_acc = max(best_acc, score)
                save(out / LAST, epoch + 1, EpochStats())
                if improved:
                    save(out / BEST, epoch + 1, EpochStats())
                if comm.is_root:
                    write_metrics_csv(out / METRICS_CSV, history)
                    plot_curves(out / CURVES_PNG, history, title=f"AlexNet {kwargs['variant']} on {dataset.name}")
                    if cfg.log_grad_norms:
                        save_norm_curves(norms_from_history(history), out / NORMS_PNG)
                val_text = (f"val loss {val_loss:.4f} acc {100 * val_acc:.2f}%" if val_acc is not None
                            else "no validation split")
                log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {stats.loss:.4f} acc {100 * stats.accuracy:.2f}%"
                    f" | {val_text} | lr {history[-1]['lr']:.5f} | {seconds:.1f} s "
                    f"({history[-1]['images_per_s']:.0f} img/s){' *best*' if improved else ''}")
                if stop():
                    raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}: saved {out / LAST}; "
                                              f"continue with --resume --out {out}")
    except NonFiniteLossError as exc:
        kept = (f"the last good checkpoint {out / LAST} (epoch {history[-1]['epoch']}) is kept"
                if (out / LAST).exists() and history else "no checkpoint was written")
        raise NonFiniteLossError(f"{exc}: training stopped; {kept}. Try a lower --lr or more --warmup") from exc

    test_loader = BatchLoader(dataset.test, cfg.eval_batch_size, preprocess, device, train=False, **shard)
    test_loss, test_acc = evaluate(model, test_loader, criterion, cfg.tta, comm=eval_comm, crops=cfg.tta_crops)
    views = ("the image" if not cfg.tta else "flip averaging") if not cfg.tta_crops else \
        f"{10 if cfg.tta else 5} views: 5 crops at +-{cfg.tta_crops} px" + (" and their mirror images" if cfg.tta else "")
    log(f"test loss {test_loss:.4f} ({views})")
    return FitResult(model, history, test_loss, test_acc, out, cfg)

