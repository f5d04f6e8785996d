"""``--evaluate CHECKPOINT``: the test of a saved run, without training (torchvision's ``--test-only``,
timm's validate.py), or with ``--split validation`` the same protocol on the images the run held out
(``--val-fraction``): a recipe compared with the final test's views without looking at the test set.

Everything comes from the checkpoint: the model, the class names, the
normalisation, the run's data options (and with them its pipeline: splits
in memory, or read from their stores on disk in paper mode), the evaluation
batch size, the label smoothing of the loss and the test protocol
(:mod:`.protocol`), so scoring a
run's ``last.npz`` on the device it trained on reproduces the test line the
run printed, to the last digit. The data's location, the device, the batch
size and the views can be given instead (:data:`OPTIONS`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from .. import backend, config, nn
from ..data import load_dataset, split_off_validation
from . import pipeline
from .checkpoint import CheckpointError, load_checkpoint, load_model_state
from .config import TrainConfig, build_model
from .evaluate import scores
from .protocol import Protocol, score_line, weights_name
from .resume import option_name

#: What ``--evaluate`` takes from the command line; every other option belongs to a run's recipe.
OPTIONS = ("data_dir", "root", "download", "download_url", "cache_dir", "workers", "device", "eval_batch_size",
           "tta", "tta_crops", "progress")
#: The images ``--evaluate`` can score: the test split, or the run's validation split (``--val-fraction``).
SPLITS = ("test", "validation")


@dataclass(frozen=True)
class EvaluateRequest:
    """What ``--evaluate CHECKPOINT [--split SPLIT]`` asks for: the file, and which of :data:`SPLITS` to score."""

    checkpoint: str
    split: str = "test"


class EvaluateOptionsError(ValueError):
    """An option given with ``--evaluate`` that belongs to a run's recipe (it would change nothing)."""


@dataclass
class TestResult:
    """A checkpoint's score: mean loss, top-1 and top-5 accuracy over ``count`` images, the weights and the views."""

    loss: float
    accuracy: float
    count: int
    weights: str
    protocol: Protocol
    top5: float | None = None


def evaluate_checkpoint(path, options: TrainConfig | None = None, given=(), log=print,
                        split: str = "test") -> TestResult:
    """Score the checkpoint at ``path`` on its run's test (or validation) split with its run's protocol.

    Args:
        options: this invocation's configuration; its fields named in ``given``
            (any of :data:`OPTIONS`) replace the run's.
        split: ``"test"``, or ``"validation"``: the images the run held out (its ``--val-fraction`` and
            ``--seed`` choose them again, the same images it validated on after every epoch).
    Raises:
        CheckpointError: a missing, corrupt or non-training checkpoint. DataError: no test data.
        EvaluateOptionsError: an option in ``given`` that a test cannot use (a recipe option), or
            ``split="validation"`` for a run that held out no images.
    """
    if split not in SPLITS:
        raise EvaluateOptionsError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    unusable = sorted(set(given) - set(OPTIONS) - {"evaluate", "config"})
    if unusable:
        names = ", ".join(map(option_name, unusable))
        raise EvaluateOptionsError(f"--evaluate scores a saved run: {names} cannot apply "
                                   f"(it takes {', '.join(map(option_name, OPTIONS))})")
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    if not isinstance(meta.get("config"), dict) or "model_kwargs" not in meta:
        raise CheckpointError(f"{ckpt.path} holds no run configuration: not a checkpoint of the training program")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in meta["config"].items() if k in known})
    if options is not None:
        cfg = dataclasses.replace(cfg, **{k: getattr(options, k) for k in given if k in OPTIONS})
    protocol = Protocol.of_checkpoint(meta).replace(tta=cfg.tta if "tta" in given else None,
                                                    crops=cfg.tta_crops if "tta_crops" in given else None)
    partial = int((meta.get("partial") or {}).get("steps", 0))
    weights = weights_name(ckpt.path, int(meta["epoch"]), partial)
    device = backend.resolve_device(cfg.device)
    if split == "validation" and not cfg.val_fraction:
        raise EvaluateOptionsError(f"--split validation: the run of {ckpt.path} held out no validation images "
                                   f"(--val-fraction 0); it can be scored on the test split only")
    log(f"evaluate: {ckpt.path} ({weights}; AlexNet {meta['variant']}, {len(meta['classes'])} classes), "
        f"device {device}")

    start = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir, root=cfg.root, download=cfg.download,
                           download_url=cfg.download_url, image_size=meta.get("image_size") or cfg.image_size,
                           channels=meta.get("in_channels"), cache_dir=cfg.cache_dir, workers=cfg.workers,
                           seed=cfg.seed, log=log, progress=cfg.progress, rule=meta.get("resize_rule", "squash"),
                           in_memory=not cfg.paper_mode)
    if list(dataset.classes) != list(meta["classes"]):
        raise CheckpointError(f"{ckpt.path} was trained on the classes {meta['classes']}, the data in "
                              f"{dataset.source} has {list(dataset.classes)}")
    images = dataset.test if split == "test" else split_off_validation(dataset.train, cfg.val_fraction, cfg.seed)[1]
    log(f"data: {dataset.name} from {dataset.source}: {len(images)} {split} images "
        f"({time.perf_counter() - start:.1f} s)")
    model = build_model(meta["model_kwargs"])
    load_model_state(model, ckpt, averaged=True)   # the weights the run scored: the moving average, if kept
    model.to(device)
    loader = pipeline.build_loader(cfg, images, cfg.eval_batch_size, pipeline.checkpoint_preprocess(meta),
                                   device, train=False)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)   # the loss the run's test reported
    with config.using(buffer_pool=True):   # the settings the run's own test ran under
        test = scores(model, loader, criterion, protocol=protocol, progress=cfg.progress, desc=split)
    top5 = test.top5 if cfg.paper_mode else None
    log(score_line(test.top1, test.loss, weights, protocol, test.count, top5=top5, split=split))
    return TestResult(test.loss, test.top1, test.count, weights, protocol, top5)
