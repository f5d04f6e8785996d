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

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

from .. import __version__, backend, config, distributed, models, nn, random_streams
from ..data import load_dataset, stratified_sample, stratified_split
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
from . import pipeline
from .evaluate import scores
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
from .loop import EpochStats, train_one_epoch
from .step import NonFiniteLossError


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
    test_top5: float | None = None


def _is_finite_model(model) -> bool:
    return all(bool(backend.get_array_module(p.data).isfinite(p.data).all()) for p in model.parameters())


def prepare_data(cfg: TrainConfig, log=print, build: bool = True):
    """Load the dataset, split off validation, take the subset; the host splits and class names.

    In paper mode the splits stay in their stores on disk; ``build=False`` (the
    ranks after rank 0) only opens the stores rank 0 built, never decodes.
    """
    start = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir, root=cfg.root, download=cfg.download,
                           download_url=cfg.download_url, image_size=cfg.image_size, cache_dir=cfg.cache_dir,
                           workers=cfg.workers, seed=cfg.seed, log=log, progress=cfg.progress and build,
                           rule=cfg.resize_rule, in_memory=not cfg.paper_mode, build=build)
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
    """The same training images on every rank (a digest of the labels and the images or their store)."""
    distributed.check_consistent(comm, dataset=f"{dataset.name} ({dataset.source})",
                                 train_images=len(train_split), train_digest=train_split.digest())


def fit(cfg: TrainConfig, log=print, comm=None) -> FitResult:
    """Train (or resume), checkpoint every epoch, evaluate on the test split.

    ``comm`` (a distributed communicator) makes this rank one of a data-parallel
    run (see the module doc); None trains in this process alone (through the
    same step, with a one-process communicator).

    Raises:
        DataError: no usable data. CheckpointError: a bad checkpoint, or one in
        the way of a fresh run. NonFiniteLossError: the loss diverged (the last
        good checkpoint is kept). TrainingInterrupted: Ctrl-C (a checkpoint was saved).
    """
    run = _Run.open(cfg.validate(), log, comm)
    with config.using(buffer_pool=True):   # training recycles its large arrays (npalexnet.kernels.memory)
        run.train()
        return run.test()


@dataclass
class _Run:
    """Everything one run holds, built by :meth:`open`; the steps of :func:`fit` are its methods."""

    cfg: TrainConfig
    log: object
    comm: object
    out: Path
    dataset: object
    kwargs: dict
    norm: dict
    preprocess: object
    model: nn.Module
    parallel: distributed.DataParallel
    optimizer: object
    scheduler: object
    per_step: bool
    criterion: nn.Module
    train_loader: object
    val_loader: object
    history: list
    best_acc: float = -1.0
    start_epoch: int = 0
    partial: EpochStats = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, cfg: TrainConfig, log, comm) -> "_Run":
        """The checkpoint to resume (rank 0 reads it), the data (rank 0 first), the model and its optimizer."""
        parallel_run = comm is not None
        comm = comm if parallel_run else distributed.SingleProcessCommunicator()
        log = log if comm.is_root else _silent
        if parallel_run:
            _check_same_run(comm, cfg)
        out = Path(cfg.out)
        ckpt, cfg = distributed.on_root(comm, _open_run, cfg, out, log)
        device = backend.resolve_device(cfg.device)
        # Paper mode: rank 0 decodes the stores, the others only open them (nothing is decoded twice).
        build = comm.is_root or not cfg.paper_mode
        dataset, train_split, val_split = distributed.root_first(comm, prepare_data, cfg, log, build)
        if parallel_run:
            _check_same_data(comm, dataset, train_split)
        kwargs, norm = _model_and_normalisation(cfg, ckpt, dataset, train_split)
        random_streams.manual_seed(cfg.seed)   # the initial weights
        model = build_model(kwargs)
        if cfg.init_from and ckpt is None:   # fine-tuning: start from these weights (a resume has its own)
            log(str(models.load_pretrained(model, cfg.init_from)))
        if cfg.freeze:
            log(models.freeze(model, cfg.freeze))   # build_optimizer then takes the trainable parameters only
        size = input_size(kwargs["variant"])
        preprocess = pipeline.build_preprocess(cfg, norm, size, dataset.image_size)
        shard = {"rank": comm.rank, "world_size": comm.size}
        train_loader = pipeline.build_loader(cfg, train_split, cfg.batch_size, preprocess, device, train=True,
                                             **shard)
        val_loader = (pipeline.build_loader(cfg, val_split, cfg.eval_batch_size, preprocess, device, train=False,
                                            **shard) if val_split is not None else None)
        optimizer = build_optimizer(cfg, model)
        scheduler, per_step = build_scheduler(cfg, optimizer, len(train_loader))
        # The labels were checked once, when the dataset was loaded (Dataset): no check (on a GPU, no
        # wait for the device) in every step.
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, check_targets=False)
        run = cls(cfg, log, comm, out, dataset, kwargs, norm, preprocess, model, None, optimizer, scheduler,
                  per_step, criterion, train_loader, val_loader, [], partial=EpochStats())
        if ckpt is not None:
            run._resume_from(ckpt)
        model.to(device)
        run.parallel = distributed.DataParallel(model, comm)
        run.parallel.broadcast_initial_state()   # rank 0's weights (fresh or resumed) on every rank
        run._log_start(parallel_run, device, size)
        return run

    def _resume_from(self, ckpt) -> None:
        load_model_state(self.model, ckpt)
        self.optimizer.load_state_dict(ckpt.optimizer_state())
        saved_schedule = ckpt.meta.get("scheduler") or {}
        if self.per_step:   # the schedule stays sized for the new --epochs; only the step count is restored
            self.scheduler.set_step(int(saved_schedule.get("last_epoch", 0)))
        else:
            self.scheduler.load_state_dict(saved_schedule)
        random_streams.set_state(json.loads(ckpt.meta["rng_state"]))
        self.history = list(ckpt.meta.get("history", []))
        self.best_acc = float(ckpt.meta.get("best_val_acc", -1.0))
        self.start_epoch = int(ckpt.meta["epoch"])
        self.partial = EpochStats(**ckpt.meta.get("partial", {}))
        where = (f"epoch {self.start_epoch + 1}, step {self.partial.steps} of {len(self.train_loader)}"
                 if self.partial.steps else f"end of epoch {self.start_epoch}")
        self.log(f"resumed from {ckpt.path} ({where}), continuing to epoch {self.cfg.epochs}")

    def _log_start(self, parallel_run: bool, device: str, size: int) -> None:
        cfg, comm = self.cfg, self.comm
        if parallel_run:
            self.log(f"distributed: {comm.size} processes ({comm.name}); batch {cfg.batch_size} is the global "
                     f"batch, {-(-cfg.batch_size // comm.size)} or fewer images per process")
        self.log(f"model: AlexNet {self.kwargs['variant']} (width {self.kwargs['width']}), "
                 f"{sum(p.size for p in self.model.parameters()):,} parameters, {size}x{size} input, device "
                 f"{device}; {cfg.optimizer} lr {cfg.lr} ({cfg.schedule}), batch {cfg.batch_size}, "
                 f"{len(self.train_loader)} steps/epoch")
        self.log(self.model.summary((cfg.batch_size, self.dataset.in_channels, size, size)))

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        """Every remaining epoch: train, validate, checkpoint, write the metrics, log a line."""
        cfg, out = self.cfg, self.out
        if self.comm.is_root:
            out.mkdir(parents=True, exist_ok=True)
        try:
            with GracefulInterrupt(self.log) as local_stop:
                # A Ctrl-C seen by any rank stops all of them at the same step.
                stop = (lambda: distributed.any_rank(self.comm, local_stop())) if self.comm.size > 1 else local_stop
                for epoch in range(self.start_epoch, cfg.epochs):
                    stats = train_one_epoch(self.model, self.train_loader, self.criterion, self.optimizer,
                                            self.scheduler if self.per_step else None, epoch=epoch, seed=cfg.seed,
                                            parallel=self.parallel, stats=self.partial, should_stop=stop,
                                            progress=cfg.progress and self.comm.is_root,
                                            desc=f"epoch {epoch + 1}/{cfg.epochs}")
                    self.partial = EpochStats()
                    if stats.interrupted:
                        self._save(out / LAST, epoch, stats)
                        raise TrainingInterrupted(f"interrupted at epoch {epoch + 1}, step {stats.steps}: saved "
                                                  f"{out / LAST}; continue with --resume --out {out}")
                    self._end_of_epoch(epoch, stats)
                    if stop():
                        raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}: saved {out / LAST}; "
                                                  f"continue with --resume --out {out}")
        except NonFiniteLossError as exc:
            kept = (f"the last good checkpoint {out / LAST} (epoch {self.history[-1]['epoch']}) is kept"
                    if (out / LAST).exists() and self.history else "no checkpoint was written")
            raise NonFiniteLossError(f"{exc}: training stopped; {kept}. Try a lower --lr or more --warmup") from exc

    def _end_of_epoch(self, epoch: int, stats: EpochStats) -> None:
        """Validate, step a per-epoch schedule, record the epoch, save last (and best), plot, log."""
        cfg, out = self.cfg, self.out
        eval_start = time.perf_counter()
        val = (scores(self.model, self.val_loader, self.criterion, comm=self.comm,
                      views=pipeline.views(cfg, self.preprocess, final=False)) if self.val_loader else None)
        val_loss, val_acc, val_top5 = (val.loss, val.top1, val.top5) if val else (None, None, None)
        if not self.per_step:
            self.scheduler.step(val_acc if val_acc is not None else stats.accuracy)
        row = {"epoch": epoch + 1, "train_loss": stats.loss, "train_acc": stats.accuracy, "val_loss": val_loss,
               "val_acc": val_acc, "val_top5": val_top5, "lr": self.optimizer.param_groups[0]["lr"],
               "epoch_seconds": round(stats.seconds + time.perf_counter() - eval_start, 2),
               "images_per_s": round(stats.seen / max(stats.seconds, 1e-9), 1)}
        if cfg.log_grad_norms:   # the gradient of the epoch's last step, the weights at its end
            row.update(norm_columns(parameter_norms(self.model)))
        self.history.append(row)
        score = val_acc if val_acc is not None else stats.accuracy
        improved = score > self.best_acc
        self.best_acc = max(self.best_acc, score)
        self._save(out / LAST, epoch + 1, EpochStats())
        if improved:
            self._save(out / BEST, epoch + 1, EpochStats())
        if self.comm.is_root:
            write_metrics_csv(out / METRICS_CSV, self.history)
            title = f"AlexNet {self.kwargs['variant']} on {self.dataset.name}"
            plot_curves(out / CURVES_PNG, self.history, title=title)
            if cfg.log_grad_norms:
                save_norm_curves(norms_from_history(self.history), out / NORMS_PNG)
        if val_acc is None:
            val_text = "no validation split"
        elif cfg.paper_mode:   # the paper's tables: top-1 and top-5 error rates
            val_text = (f"val loss {val_loss:.4f} top-1 error {100 * (1 - val_acc):.2f}% "
                        f"top-5 error {100 * (1 - val_top5):.2f}%")
        else:
            val_text = f"val loss {val_loss:.4f} acc {100 * val_acc:.2f}%"
        self.log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {stats.loss:.4f} acc {100 * stats.accuracy:.2f}% | "
                 f"{val_text} | lr {row['lr']:.5f} | {row['epoch_seconds']:.1f} s ({row['images_per_s']:.0f} img/s)"
                 f"{' *best*' if improved else ''}")
        if cfg.paper_mode:
            self.log(self.train_loader.timing.describe())

    def _save(self, path: Path, epoch: int, stats: EpochStats) -> None:
        if not _is_finite_model(self.model):   # never replace a good checkpoint with NaN weights
            raise NonFiniteLossError(f"the weights became NaN or infinite during epoch {epoch + 1}")
        if self.comm.is_root:
            save_checkpoint(path, self.model, self.optimizer, self._meta(epoch, stats))

    def _meta(self, epoch: int, stats: EpochStats) -> dict:
        return {"epoch": epoch, "partial": stats.to_dict(), "model_kwargs": self.kwargs,
                "variant": self.kwargs["variant"], "classes": list(self.dataset.classes), **self.norm,
                "crop_size": getattr(self.preprocess, "crop", None), "resize_rule": self.cfg.resize_rule,
                "image_size": self.dataset.image_size,
                "input_size": input_size(self.kwargs["variant"]), "in_channels": self.dataset.in_channels,
                "resize_mode": self.cfg.resize_mode, "scheduler": self.scheduler.state_dict(),
                "rng_state": json.dumps(random_streams.get_state()), "config": self.cfg.to_dict(),
                "history": self.history, "best_val_acc": self.best_acc}

    # ------------------------------------------------------------------ the test
    def test(self) -> FitResult:
        """The final test: the trained weights on the test split, with the run's test-time views."""
        cfg = self.cfg
        loader = pipeline.build_loader(cfg, self.dataset.test, cfg.eval_batch_size, self.preprocess,
                                       self.train_loader.device, train=False, rank=self.comm.rank,
                                       world_size=self.comm.size)
        views = pipeline.views(cfg, self.preprocess, final=True)
        test = scores(self.model, loader, self.criterion, comm=self.comm, views=views)
        self.log(f"test loss {test.loss:.4f} ({views.describe()})")
        if cfg.paper_mode:
            self.log(f"test top-1 error {100 * (1 - test.top1):.2f}%, top-5 error {100 * (1 - test.top5):.2f}%")
        return FitResult(self.model, self.history, test.loss, test.top1, self.out, cfg, test.top5)


def _model_and_normalisation(cfg: TrainConfig, ckpt, dataset, train_split):
    """The model's keyword arguments and the input normalisation (:func:`pipeline.normalisation`):
    the checkpoint's, or new ones."""
    if ckpt is not None:
        norm = {k: ckpt.meta[k] for k in ("mean", "std", "eigvals", "eigvecs") if k in ckpt.meta}
        return ckpt.meta["model_kwargs"], norm
    return model_kwargs(cfg, len(dataset.classes), dataset.in_channels), pipeline.normalisation(cfg, dataset,
                                                                                                 train_split)
