"""``fit``: a whole run from a :class:`TrainConfig`: data, model, epochs, checkpoints, test.

The run's folder (:mod:`.runs`: ``cfg.out``, or a new ``runs/<dataset>/<date_time>``;
``runs/paper/<date_time>`` for ``--recipe paper``) is named first; files in it:
``config.json`` and ``log.txt`` (:mod:`.runlog`), ``last.npz`` (after every
epoch, or at Ctrl-C/SIGTERM), ``best.npz`` (the epoch of best validation
accuracy), ``epoch_NNN.npz`` (every ``cfg.save_every``-th epoch, kept; these
two are the epoch's ``last.npz`` under another name), ``metrics.csv`` and
``curves.png``. ``cfg.overwrite`` replaces another run's files in ``cfg.out``
at this run's first checkpoint. ``cfg.resume`` (a run folder, a
checkpoint, or "last") continues a run up to ``cfg.epochs`` epochs in total,
with its saved recipe (:mod:`.resume`). The data pipeline (splits in memory
or in stores on disk, the transforms, the test-time views) is chosen in
:mod:`.pipeline`. The final test scores the last weights with the run's
:class:`~.protocol.Protocol` (saved in every checkpoint) and names both. A
full disk or too little memory stops the run with a :class:`~.faults.RunError`
naming the checkpoint that is kept.

Distributed (``fit(cfg, comm=...)`` with a communicator from
:func:`npalexnet.distributed.init`): rank 0 opens the run (its folder, the
checkpoint, the overwrite guard) and broadcasts what it found; rank 0 prepares
the data first (a download, a decode), then the others; the ranks check they
agree on versions and data; every rank trains on its slice of each global
batch of ``cfg.batch_size``; only rank 0 logs, shows progress and writes
checkpoints, metrics and plots. An error in any of these steps is raised on every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

from .. import __version__, backend, config, distributed, models, nn, random_streams
from ..data import load_dataset, split_off_validation, stratified_sample
from ..data.atomic import NoSpaceError
from ..inspect import parameter_norms
from ..viz import save_norm_curves
from . import pipeline
from .checkpoint import (
    BEST,
    EPOCH_CHECKPOINTS,
    LAST,
    CheckpointError,
    copy_checkpoint,
    epoch_checkpoint,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from .config import (
    TrainConfig,
    build_ema,
    build_model,
    build_optimizer,
    build_scheduler,
    input_size,
    model_kwargs,
)
from .evaluate import scores
from .faults import RunError, check_writable, is_out_of_memory, out_of_memory_message
from .history import (
    CURVES_PNG,
    METRICS_CSV,
    NORMS_PNG,
    norm_columns,
    norms_from_history,
    plot_curves,
    write_metrics_csv,
)
from .interrupt import SIGNALS, GracefulInterrupt, exit_status
from .loop import EpochStats, train_one_epoch
from .protocol import Protocol, score_line, weights_name
from .resume import merge_resumed, option_name
from .runlog import RunLog, config_record, write_config_json
from .runs import mark_latest, resolve_run
from .step import NonFiniteLossError


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: a checkpoint was saved; ``--resume`` continues from it.

    ``exit_status``: what the program exits with (128 + the signal's number: 130, 143).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum
        self.exit_status = exit_status(signum)


@dataclass
class FitResult:
    """What a finished run reports (``test_loss`` and ``test_accuracy`` None: a run with ``test=False``)."""

    model: nn.Module
    history: list
    test_loss: float | None
    test_accuracy: float | None
    out: Path
    config: TrainConfig
    weights: str = ""                        # which weights the test scored, e.g. "last.npz, epoch 30"
    protocol: Protocol = Protocol()          # the views it averaged
    test_top5: float | None = None


def _is_finite_model(model) -> bool:
    return all(bool(backend.get_array_module(p.data).isfinite(p.data).all()) for p in model.parameters())


def _selection_score(val_acc: float | None, train_acc: float) -> float:
    """The accuracy that picks ``best.npz`` and steps a plateau schedule: the validation split's, or the
    training accuracy when the run holds out none."""
    return val_acc if val_acc is not None else train_acc


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
    train, val = split_off_validation(dataset.train, cfg.val_fraction, cfg.seed)
    if cfg.subset is not None and cfg.subset < len(train):
        train = train.take(stratified_sample(train.labels, cfg.subset, cfg.seed, stream=2))
    log(f"data: {dataset.name} from {dataset.source}: {len(train)} train, {len(val) if val else 0} validation, "
        f"{len(dataset.test)} test images of {dataset.in_channels}x{dataset.image_size}x{dataset.image_size}, "
        f"{len(dataset.classes)} classes ({time.perf_counter() - start:.1f} s)")
    return dataset, train, val


def _continues(out: Path, ckpt) -> bool:
    """Whether ``ckpt`` is the run in ``out`` (its ``last.npz``): a resume, not a new run or a branch."""
    return ckpt is not None and Path(ckpt.path).resolve() == (out / LAST).resolve()


def _holds_another_run(out: Path, ckpt) -> bool:
    """Whether ``out`` holds a run (its ``last.npz``) that this one replaces (``--overwrite``)."""
    return (out / LAST).is_file() and not _continues(out, ckpt)


def _outputs_of_another_run(out: Path, ckpt) -> list[Path]:
    """The files in ``out`` that a run writes besides ``last.npz`` (which its first save replaces) and
    ``config.json`` (rewritten then): the other checkpoints, metrics and plots, when they are not the run that
    ``ckpt`` continues (a new run, or a branch into an ``--out`` that held another run)."""
    if not out.is_dir() or _continues(out, ckpt):
        return []
    names = {BEST, METRICS_CSV, CURVES_PNG, NORMS_PNG}
    return sorted(path for path in out.iterdir()
                  if path.is_file() and (path.name in names or path.match(EPOCH_CHECKPOINTS)))


def _silent(*args, **kwargs) -> None:
    """The log of the ranks other than 0."""


def _open_run(cfg: TrainConfig, log, command, given):
    """The run's folder (named first), the checkpoint to resume from (or None), the run's configuration and
    its ``config.json`` record when that waits for the first checkpoint (else None: written here).

    Everything that can fail without costing training time fails here: no checkpoint where
    ``--resume`` points, a recipe changed on resume, an unwritable ``--out`` or ``--cache-dir``.
    """
    ckpt_path, out = resolve_run(cfg.resume, cfg.out, cfg.runs_name, cfg.overwrite)
    log(f"run: {out}")
    check_writable(out, "--out")
    if isinstance(log, RunLog):
        log.attach(out)
    ckpt = None
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        if not isinstance(ckpt.meta.get("config"), dict):
            raise CheckpointError(f"{ckpt_path} holds no run configuration: not a training checkpoint")
        partial = int((ckpt.meta.get("partial") or {}).get("steps", 0))
        cfg, changed = merge_resumed(ckpt.meta["config"], cfg, given, partial)
        for name, saved, new in changed:
            log(f"override: {option_name(name)} {saved!r} -> {new!r} (saved in {ckpt_path.name})")
    if cfg.cache_dir is not None:
        check_writable(cfg.cache_dir, "--cache-dir")
    cfg = dataclasses.replace(cfg, out=str(out))
    record = config_record(cfg, command)
    if _holds_another_run(out, ckpt):   # --overwrite: its config.json stays beside its checkpoints until this
        return ckpt, cfg, record        # run's first one (_Run._replace_other_run)
    write_config_json(out, record)
    return ckpt, cfg, None


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


def fit(cfg: TrainConfig, log=print, comm=None, command: list[str] | None = None, given=None) -> FitResult:
    """Train (or resume), checkpoint every epoch, evaluate on the test split.

    ``comm`` (a distributed communicator) makes this rank one of a data-parallel
    run (see the module doc); None trains in this process alone (through the
    same step, with a one-process communicator). ``log`` gets every line the
    run prints (they also go to the run's log.txt); ``command`` (the command
    line, for config.json) and ``given`` (the options it set; None: those
    that differ from the defaults) come from the training program.

    Raises:
        DataError: no usable data. CheckpointError: a bad checkpoint, nothing to
        resume, a changed recipe on resume, or a run in the way of a new one.
        NonFiniteLossError: the loss diverged (the last good checkpoint is kept).
        RunError: a full disk, an unwritable folder, too little memory (the last
        checkpoint is kept). TrainingInterrupted: Ctrl-C or SIGTERM (a checkpoint was saved).
    """
    record = RunLog(log)   # every line also into the run's log.txt (rank 0)
    try:
        run = _Run.open(cfg.validate(), record, comm, command, given)
        with config.using(buffer_pool=True):   # training recycles its large arrays (npalexnet.kernels.memory)
            try:
                run.train()
                return run.test() if run.cfg.test else run.untested()
            except Exception as exc:   # noqa: BLE001 (re-raised, as the one-line error it stands for)
                explained = run.explain(exc)
                if explained is exc:
                    raise
                raise explained from exc
    except Exception as exc:
        record.record(str(exc) if isinstance(exc, TrainingInterrupted) else f"error: {exc}")
        raise
    except BaseException as exc:   # a second Ctrl-C or SIGTERM: the checkpoints on disk are whole
        record.record(f"stopped at once ({type(exc).__name__})")
        raise
    finally:
        record.close()


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
    protocol: Protocol = None      # the final test's views (pipeline.protocol), saved in every checkpoint
    ema: object = None             # the weights' moving average (--ema) that evaluation scores, or None
    saved: tuple | None = None     # (path, epoch) of the newest checkpoint on disk that this run can go on from
    replaced: list = dataclasses.field(default_factory=list)   # another run's files in out (--overwrite), removed
                                                              # when this run's first last.npz replaces that run's
    pending_config: dict | None = None   # the config.json record, held back while out holds another run
    phase: str = "setting up"      # what the run is doing (for an out-of-memory message)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, cfg: TrainConfig, log, comm, command=None, given=None) -> "_Run":
        """The run's folder and the checkpoint to resume (rank 0), the data (rank 0 first), the model and
        its optimizer."""
        parallel_run = comm is not None
        comm = comm if parallel_run else distributed.SingleProcessCommunicator()
        log = log if comm.is_root else _silent
        if parallel_run:
            _check_same_run(comm, cfg)
        ckpt, cfg, pending_config = distributed.on_root(comm, _open_run, cfg, log, command, given)
        out = Path(cfg.out)
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
                                             num_classes=len(dataset.classes), **shard)
        val_loader = (pipeline.build_loader(cfg, val_split, cfg.eval_batch_size, preprocess, device, train=False,
                                            **shard) if val_split is not None else None)
        optimizer = build_optimizer(cfg, model)
        scheduler, per_step = build_scheduler(cfg, optimizer, len(train_loader))
        # The labels were checked once, when the dataset was loaded (Dataset): no check (on a GPU, no
        # wait for the device) in every step.
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, check_targets=False)
        run = cls(cfg, log, comm, out, dataset, kwargs, norm, preprocess, model, None, optimizer, scheduler,
                  per_step, criterion, train_loader, val_loader, [], partial=EpochStats(),
                  protocol=pipeline.protocol(cfg, preprocess, final=True))
        if ckpt is not None:
            run._resume_from(ckpt)
        run.pending_config = pending_config
        if cfg.overwrite and comm.is_root:
            run.replaced = _outputs_of_another_run(out, ckpt)
        model.to(device)
        run.ema = build_ema(cfg, model, len(train_loader))   # from the (resumed) weights, on the device
        if run.ema is not None and ckpt is not None and ckpt.ema_state() is not None:
            run.ema.load_state_dict(ckpt.ema_state())
        run.parallel = distributed.DataParallel(model, comm)
        run.parallel.broadcast_initial_state()   # rank 0's weights (fresh or resumed) on every rank
        run._log_start(parallel_run, device, size)
        return run

    def _resume_from(self, ckpt) -> None:
        load_model_state(self.model, ckpt)
        self.optimizer.load_state_dict(ckpt.optimizer_state())
        saved_schedule = ckpt.meta.get("scheduler") or {}
        if self.per_step:   # the schedule stays sized for the new --epochs; only the step count is restored
            step = int(saved_schedule.get("last_epoch", 0))
            if ckpt.meta["config"].get("batch_size") != self.cfg.batch_size:   # an --override of the batch size:
                step = int(ckpt.meta["epoch"]) * len(self.train_loader)         # the same epoch, in the new steps
            self.scheduler.set_step(step)
        else:
            self.scheduler.load_state_dict(saved_schedule)
        random_streams.set_state(json.loads(ckpt.meta["rng_state"]))
        self.history = list(ckpt.meta.get("history", []))
        self.best_acc = float(ckpt.meta.get("best_val_acc", -1.0))
        self.start_epoch = int(ckpt.meta["epoch"])
        self.partial = EpochStats(**ckpt.meta.get("partial", {}))
        self.saved = (ckpt.path, self.start_epoch)
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
                    self.phase = "a training step"
                    stats = train_one_epoch(self.model, self.train_loader, self.criterion, self.optimizer,
                                            self.scheduler if self.per_step else None, epoch=epoch, seed=cfg.seed,
                                            parallel=self.parallel, stats=self.partial, should_stop=stop,
                                            progress=cfg.progress and self.comm.is_root,
                                            desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                            averages=[self.ema] if self.ema is not None else (),
                                            sam_radius=cfg.sam_radius(epoch), clip_norm=cfg.clip_grad_norm)
                    self.partial = EpochStats()
                    if stats.interrupted:
                        self._save_last(epoch, stats)
                        raise self._interrupted(local_stop, f"at epoch {epoch + 1}, step {stats.steps}")
                    self._end_of_epoch(epoch, stats)
                    if stop():
                        raise self._interrupted(local_stop, f"after epoch {epoch + 1}")
                self._log_best()
        except NonFiniteLossError as exc:
            kept = (f"the last good checkpoint {out / LAST} (epoch {self.history[-1]['epoch']}) is kept"
                    if (out / LAST).exists() and self.history else "no checkpoint was written")
            raise NonFiniteLossError(f"{exc}: training stopped; {kept}. Try a lower --lr or more --warmup") from exc

    def _interrupted(self, local_stop, where: str) -> TrainingInterrupted:
        """Ctrl-C or SIGTERM: the checkpoint is saved; the message says where and how to go on."""
        signum = getattr(local_stop, "signum", signal.SIGINT)
        return TrainingInterrupted(f"interrupted ({SIGNALS.get(signum, signum)}) {where}: saved {self.out / LAST}; "
                                   f"continue with --resume {self.out}", signum)

    def _end_of_epoch(self, epoch: int, stats: EpochStats) -> None:
        """Validate, step a per-epoch schedule, record the epoch, save last (and best), plot, log."""
        cfg, out = self.cfg, self.out
        eval_start = time.perf_counter()
        self.phase = "validation"
        with self._scored_weights():
            val = (scores(self.model, self.val_loader, self.criterion, comm=self.comm,
                          protocol=pipeline.protocol(cfg, self.preprocess, final=False),
                          progress=cfg.progress and self.comm.is_root, desc="validation")
                   if self.val_loader else None)
        val_loss, val_acc, val_top5 = (val.loss, val.top1, val.top5) if val else (None, None, None)
        score = _selection_score(val_acc, stats.accuracy)
        if not self.per_step:
            self.scheduler.step(score)
        row = {"epoch": epoch + 1, "train_loss": stats.loss, "train_acc": stats.accuracy, "val_loss": val_loss,
               "val_acc": val_acc, "val_top5": val_top5, "lr": self.optimizer.param_groups[0]["lr"],
               "epoch_seconds": round(stats.seconds + time.perf_counter() - eval_start, 2),
               "images_per_s": round(stats.seen / max(stats.seconds, 1e-9), 1)}
        if cfg.log_grad_norms:   # the gradient of the epoch's last step, the weights at its end
            row.update(norm_columns(parameter_norms(self.model)))
        self.history.append(row)
        improved = score > self.best_acc
        self.best_acc = max(self.best_acc, score)
        self._save_last(epoch + 1, EpochStats())
        if self.comm.is_root:   # best and the kept epochs are this last.npz: given its bytes, not serialised again
            if improved:
                copy_checkpoint(out / LAST, out / BEST)
            if cfg.save_every and (epoch + 1) % cfg.save_every == 0:   # kept: a later epoch never replaces it
                copy_checkpoint(out / LAST, out / epoch_checkpoint(epoch + 1))
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
                 f"{val_text} | lr {row['lr']:.5f} | {row['epoch_seconds']:.1f} s ({row['images_per_s']:.0f} img/s) "
                 f"| eta {self._eta(epoch)}{' *best*' if improved else ''}")
        if cfg.paper_mode:
            self.log(self.train_loader.timing.describe())

    def _save_last(self, epoch: int, stats: EpochStats) -> None:
        """Write ``last.npz`` (the one checkpoint serialised; best.npz and the kept epochs are linked to it)."""
        if not _is_finite_model(self.model):   # never replace a good checkpoint with NaN weights
            raise NonFiniteLossError(f"the weights became NaN or infinite during epoch {epoch + 1}")
        path = self.out / LAST
        if self.comm.is_root:
            save_checkpoint(path, self.model, self.optimizer, self._meta(epoch, stats), ema=self.ema)
            mark_latest(self.out, self.cfg.runs_name)   # runs/<name>/latest: the run saved last
            self._replace_other_run()
        self.saved = (path, epoch)

    def _replace_other_run(self) -> None:
        """The run this one --overwrite-s lost its last.npz just now: its config.json is rewritten and its
        other files go, so that none of them (an epoch_NNN.npz, a norms.png) is taken for this run's. Until
        then they were all kept: a run that fails before its first checkpoint leaves the old run whole."""
        if self.pending_config is not None:
            write_config_json(self.out, self.pending_config)
            self.pending_config = None
            if isinstance(self.log, RunLog):   # its log.txt lines too: the file is this run's record from now on
                failed = self.log.drop_earlier()
                if failed:
                    self.log(f"warning: log.txt keeps the replaced run's lines (it could not be rewritten: {failed})")
        gone = [path for path in self.replaced if path.exists()]
        for path in gone:
            path.unlink()
        if gone:
            self.log(f"overwrite: removed the replaced run's {', '.join(path.name for path in gone)}")
        self.replaced = []

    def _meta(self, epoch: int, stats: EpochStats) -> dict:
        return {"epoch": epoch, "partial": stats.to_dict(), "model_kwargs": self.kwargs,
                "variant": self.kwargs["variant"], "classes": list(self.dataset.classes), **self.norm,
                "crop_size": getattr(self.preprocess, "crop", None), "resize_rule": self.cfg.resize_rule,
                "image_size": self.dataset.image_size,
                "input_size": input_size(self.kwargs["variant"]), "in_channels": self.dataset.in_channels,
                "resize_mode": self.cfg.resize_mode, "scheduler": self.scheduler.state_dict(),
                "rng_state": json.dumps(random_streams.get_state()), "config": self.cfg.to_dict(),
                "history": self.history, "best_val_acc": self.best_acc, "test_protocol": self.protocol.to_dict()}

    def _scored_weights(self):
        """What evaluation scores: the weights' moving average within the block (--ema), or the weights."""
        return self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ the test
    def test(self) -> FitResult:
        """The final test: the last weights on the test split, with the run's protocol; the line names both
        (and, in paper mode, the top-1 and top-5 error rates)."""
        cfg = self.cfg
        self.phase = "the test"
        loader = pipeline.build_loader(cfg, self.dataset.test, cfg.eval_batch_size, self.preprocess,
                                       self.train_loader.device, train=False, rank=self.comm.rank,
                                       world_size=self.comm.size)
        weights = self._final_weights()
        test = scores(self.model, loader, self.criterion, comm=self.comm, protocol=self.protocol,
                      progress=cfg.progress and self.comm.is_root, desc="test")
        self.log(score_line(test.top1, test.loss, weights, self.protocol, test.count,
                            top5=test.top5 if cfg.paper_mode else None))
        return FitResult(self.model, self.history, test.loss, test.top1, self.out, cfg, weights, self.protocol,
                         test.top5)

    def untested(self) -> FitResult:
        """The end of a run without its test (``--no-test``): the model returned is the one the test would
        score, and the log says how to test it later."""
        weights = self._final_weights()
        also = ("; --split validation scores them on the validation images with the test's views"
                if self.val_loader is not None else "")
        self.log(f"test: skipped (--no-test); --evaluate {self.out / LAST} tests these weights ({weights}){also}")
        return FitResult(self.model, self.history, None, None, self.out, self.cfg, weights, self.protocol)

    def _final_weights(self) -> str:
        """Put the weights the test scores into the model (the average with --ema: the test, and the model
        a run returns, use it) and name them ("last.npz, epoch 30")."""
        if self.ema is not None:
            self.ema.copy_to(self.model)
        epoch = self.history[-1]["epoch"] if self.history else self.start_epoch
        return weights_name(self.out / LAST, epoch)

    # ------------------------------------------------------------------ what the log says besides
    def _eta(self, epoch: int) -> str:
        """The time the remaining epochs take at the mean pace of the epochs so far (the test not included)."""
        seconds = [row["epoch_seconds"] for row in self.history if row.get("epoch_seconds")]
        remaining = (self.cfg.epochs - epoch - 1) * (sum(seconds) / max(len(seconds), 1))
        return format_duration(remaining)

    def _log_best(self) -> None:
        """Which epoch ``best.npz`` holds (the test scores the last weights: ``--evaluate`` scores best.npz)."""
        scored = [(_selection_score(row.get("val_acc"), row["train_acc"]), row["epoch"]) for row in self.history]
        if scored:
            best, epoch = max(scored, key=lambda pair: (pair[0], -pair[1]))
            what = "validation" if self.val_loader is not None else "training"
            self.log(f"best {what} accuracy {100 * best:.2f}% at epoch {epoch}: {self.out / BEST}")

    def explain(self, exc: Exception) -> Exception:
        """A full disk or an allocation that failed as a one-line :class:`RunError` naming what is kept."""
        if self.saved is not None and Path(self.saved[0]).is_file():
            kept = f"the checkpoint {self.saved[0]} (epoch {self.saved[1]}) is kept"
            then = f"continue with --resume {self.saved[0] if Path(self.saved[0]).parent != self.out else self.out}"
        else:
            kept, then = "no checkpoint was written", "start again"
        if isinstance(exc, NoSpaceError):
            return RunError(f"{exc}: {kept}; {exc.advice}, then {then}")
        if is_out_of_memory(exc):
            option, size = (("--batch-size", self.cfg.batch_size) if self.phase == "a training step"
                            else ("--eval-batch-size", self.cfg.eval_batch_size))
            smaller = max(1, size // 2)
            also = f" {option} {smaller}" + (" --override" if option == "--batch-size" else "")
            return RunError(f"{out_of_memory_message(exc, self.phase, size, self.train_loader.device, option)}: "
                            f"{kept}; {then}{also if self.saved is not None else ''}")
        return exc


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m', 754 -> '12m34s', 42 -> '42s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _model_and_normalisation(cfg: TrainConfig, ckpt, dataset, train_split):
    """The model's keyword arguments and the input normalisation (:func:`pipeline.normalisation`):
    the checkpoint's, or new ones."""
    if ckpt is not None:
        return ckpt.meta["model_kwargs"], pipeline.saved_normalisation(ckpt.meta)
    return model_kwargs(cfg, len(dataset.classes), dataset.in_channels), pipeline.normalisation(cfg, dataset,
                                                                                                 train_split)
