"""A run's configuration, its defaults (the anchor recipe), and the objects built from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import nn, optim
from ..data.decode import RESIZE_RULES
from ..models import INPUT_SIZE, alexnet, trainable_parameters
from ..random_streams import BETA_MAX, FLIP_SCHEDULES

SCHEDULES = ("onecycle", "warmup-linear", "warmup-cosine", "cosine", "step", "plateau", "constant")
#: The schedules ``--swa`` can end in its constant rate: a warm-up, then a decay to the rate.
SWA_SCHEDULES = ("onecycle", "warmup-linear", "warmup-cosine")
OPTIMIZERS = ("sgd", "sgd-paper", "adam", "adamw")
#: ``pad-crop``: splits in memory, CIFAR's padded random crops; ``paper``: splits on disk, Section 4.1.
AUGMENTS = ("pad-crop", "paper")


@dataclass
class TrainConfig:
    """Everything that defines a run. The defaults are the CIFAR-10 recipe:
    the CIFAR AlexNet (no BatchNorm, no LRN, dropout 0.3 on the inputs of
    the two hidden FC layers), batch 128, SGD with Nesterov momentum 0.9,
    peak lr 0.05 after a linear warm-up over 15% of the steps then a linear
    decay to zero, weight decay 5e-4 on every parameter (biases included,
    as torch's SGD does), label smoothing 0.1, 4-pixel reflect-pad random
    crop and horizontal flip; 30 epochs on all the training images
    (``val_fraction=0``; 0.1 holds out a validation split to watch).
    Evaluation scores an exponential moving average of the weights
    (``ema=0.997``, updated every 4th step), and the final test averages the
    paper's ten views (``tta_crops=2``: the centre and four corner crops of
    the image padded by 2 pixels, and their mirror images; Section 4.1).
    The average, the ten views and the dropout rate were chosen on the
    validation split; training on all the images is the final step once the
    recipe is fixed. benchmarks/RESULTS.md ("Issue 15") has the ranking that
    led to it.
    """

    # data
    dataset: str = "cifar10"
    data_dir: str | None = None
    root: str = "./data"
    download: bool = True
    download_url: str | None = None   # a mirror of the published files (else $NPALEXNET_DOWNLOAD_URL, else official)
    cache_dir: str | None = None
    workers: int | None = None
    image_size: int | None = None
    resize_rule: str = "crop"   # ImageFolder images: shorter side to image_size, then the centre
    val_fraction: float = 0.0     # train on all training images (issue 15); 0.1: hold out a validation split
    subset: int | None = None
    # augmentation
    augment: str = "pad-crop"
    crop_size: int | None = None   # paper: the patch (default: the net's input)
    lighting: float = 0.1          # paper: std of the PCA colour augmentation's alpha
    pad: int = 4
    padding: str = "reflect"
    flip: bool = True
    flip_schedule: str = "random"   # "alternating": each image the other way round from the epoch before
    random_erase: float = 0.0   # random erasing: the probability an image gets a box set to zero; 0: off
    mixup_alpha: float = 0.0    # mixup: images and targets blended with Beta(alpha, alpha) weights; 0: off
    cutmix_alpha: float = 0.0   # CutMix: a box of a partner image pasted in; 0: off (both: one per step)
    tta: bool = True
    tta_crops: int = 2          # the final test averages the paper's ten views (crops of the image padded by 2)
    resize_mode: str = "bilinear"
    # model
    variant: str = "cifar"
    width: float = 1.0
    lrn: bool | None = None
    dropout: float = 0.3        # not the paper's 0.5: chosen on the validation split (RESULTS.md, issue 15)
    init: str = "torch"
    paper_bias: float = 1.0     # init="paper": bias of conv2, conv4, conv5 and the hidden FC layers
    init_from: str | None = None   # weights to start from (torch .pth/.pt, .safetensors, npalexnet .npz)
    freeze: str | None = None      # leading stages to keep fixed ("features": train the classifier only)
    # optimisation
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 500
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    bias_decay: bool = True     # False: weight decay on conv/linear weights only (not biases, BatchNorm)
    label_smoothing: float = 0.1
    schedule: str = "onecycle"
    warmup: float = 0.15
    step_epochs: int = 10
    gamma: float = 0.1
    patience: int = 2
    max_lr_drops: int | None = None   # plateau: divide at most this many times
    ema: float = 0.997          # decay of the weights' moving average that evaluation scores; 0: off
    ema_warmup: bool = True     # decay min(ema, (1+t)/(10+t)) at step t
    ema_every: int = 4          # average at every k-th step (with decay^k)
    sam: float = 0.0            # radius rho of sharpness-aware minimisation; 0: off
    sam_epochs: int | None = None   # SAM in the last K epochs only (None: every epoch)
    clip_grad_norm: float = 0.0   # the gradient's largest global norm (torch.nn.utils.clip_grad_norm_); 0: off
    swa: float = 0.0            # stochastic weight averaging from this fraction of the steps on; 0: off
    swa_lr: float = 0.2         # --swa: the rate held from then on, a fraction of the peak lr
    # run
    seed: int = 0
    device: str = "auto"
    out: str | None = None        # None: a new folder runs/<runs_name>/<date_time> (train.runs)
    resume: bool | str | None = None   # a run folder, a checkpoint file, or "last" (True: the same)
    overwrite: bool = False
    override: bool = False        # a resume takes the recipe options given instead of the saved ones
    progress: bool = True
    test: bool = True             # the final test on the test split (off: a run that chooses a recipe never sees it)
    distributed: bool = False
    log_grad_norms: bool = False
    save_every: int = 0           # also keep epoch_NNN.npz every N epochs (0: last.npz and best.npz only)
    recipe: str = "default"

    @classmethod
    def from_recipe(cls, recipe: str = "default", **options) -> TrainConfig:
        """The configuration of ``recipe`` (:data:`RECIPES`) with ``options`` overriding its defaults."""
        if recipe not in RECIPES:
            raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        return cls(**{**RECIPES[recipe], **options, "recipe": recipe})

    def sam_radius(self, epoch: int) -> float:
        """The SAM radius of 0-based ``epoch``: ``sam`` in the last ``sam_epochs`` epochs (all when
        None), else 0 (a plain step)."""
        if self.sam_epochs is not None and epoch < self.epochs - self.sam_epochs:
            return 0.0
        return float(self.sam)

    @property
    def runs_name(self) -> str:
        """The folder under ``runs/`` where a run without ``--out`` gets its own: the dataset's
        (``runs/cifar10``), or a recipe's other than the default (``runs/paper``)."""
        return self.dataset if self.recipe == "default" else self.recipe

    @property
    def paper_mode(self) -> bool:
        """Images read from disk and augmented as in the paper (``augment="paper"``)."""
        return self.augment == "paper"

    def validate(self) -> TrainConfig:
        """Raise ValueError with the option's name for values that cannot work."""
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (0.0 <= self.ema < 1.0, f"--ema must be a decay in [0, 1) (0: off), got {self.ema}"),
            (self.ema_every >= 1, f"--ema-every must be >= 1 step, got {self.ema_every}"),
            (self.sam >= 0, f"--sam must be a radius >= 0 (0: off), got {self.sam}"),
            (self.sam_epochs is None or self.sam_epochs >= 1, f"--sam-epochs must be >= 1, got {self.sam_epochs}"),
            (self.clip_grad_norm >= 0, f"--clip-grad-norm must be >= 0 (0: off), got {self.clip_grad_norm}"),
            (0.0 <= self.swa < 1.0, f"--swa must be a fraction of the steps in [0, 1) (0: off), got {self.swa}"),
            (0.0 < self.swa_lr <= 1.0, f"--swa-lr must be a fraction of the peak lr in (0, 1], got {self.swa_lr}"),
            (not self.swa or self.schedule in SWA_SCHEDULES,
             f"--swa needs a warm-up schedule that decays to its rate ({', '.join(SWA_SCHEDULES)}), got "
             f"--schedule {self.schedule}"),
            (not self.swa or self.ema > 0,
             "--swa turns the weights' moving average into the uniform mean at its start: give --ema > 0 "
             "(the default 0.997 is what evaluation scores before the start)"),
            (not self.swa or self.warmup >= 1 or self.warmup < self.swa,
             f"--swa {self.swa} must start after the warm-up (--warmup {self.warmup})"),
            (self.subset is None or self.subset >= 1, f"--subset must be >= 1, got {self.subset}"),
            (self.save_every >= 0, f"--save-every must be >= 0 epochs (0: off), got {self.save_every}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.optimizer in OPTIMIZERS,
             f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (0.0 <= self.label_smoothing < 1.0, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0.0 <= self.warmup < 1.0 or float(self.warmup).is_integer(),
             f"--warmup must be a fraction in [0, 1) or a whole number of steps, got {self.warmup}"),
            (self.tta_crops >= 0, f"--tta-crops must be >= 0 pixels, got {self.tta_crops}"),
            (self.augment in AUGMENTS, f"--augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}"),
            (self.resize_rule in RESIZE_RULES,
             f"--resize-rule must be one of {', '.join(RESIZE_RULES)}, got {self.resize_rule!r}"),
            (self.crop_size is None or self.crop_size >= 1, f"--crop-size must be >= 1, got {self.crop_size}"),
            (self.lighting >= 0, f"--lighting must be >= 0, got {self.lighting}"),
            (0.0 <= self.mixup_alpha <= BETA_MAX,
             f"--mixup-alpha must be in [0, {BETA_MAX:g}] (0: off), got {self.mixup_alpha}"),
            (0.0 <= self.cutmix_alpha <= BETA_MAX,
             f"--cutmix-alpha must be in [0, {BETA_MAX:g}] (0: off), got {self.cutmix_alpha}"),
            (0.0 <= self.random_erase <= 1.0,
             f"--random-erase must be a probability in [0, 1] (0: off), got {self.random_erase}"),
            (not self.random_erase or not self.paper_mode,
             "--random-erase works with --augment pad-crop; --augment paper has the paper's own augmentation"),
            (not (self.mixup_alpha or self.cutmix_alpha) or not self.paper_mode,
             "--mixup-alpha and --cutmix-alpha blend the splits held in memory (--augment pad-crop); "
             "--augment paper reads its images from disk"),
            (self.flip_schedule in FLIP_SCHEDULES,
             f"--flip-schedule must be one of {', '.join(FLIP_SCHEDULES)}, got {self.flip_schedule!r}"),
            (self.max_lr_drops is None or self.max_lr_drops >= 0,
             f"--max-lr-drops must be >= 0, got {self.max_lr_drops}"),
            (self.recipe in RECIPES, f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Each recipe's defaults, where they differ from :class:`TrainConfig`'s (the anchor recipe).
#: ``paper``: Krizhevsky et al. (2012) on an ImageFolder tree. Images stored at 256 px
#: (shorter side, centre crop: Section 2) and read from disk; random patches of the net's
#: input with reflections and the PCA colour augmentation (Section 4.1); the ``paper``
#: net with its initialisation (N(0, 0.01) weights, bias 1 in conv2, conv4, conv5 and the
#: hidden FC layers; Section 5) and dropout 0.5 (Section 4.2); the update rule of Section 5
#: (momentum 0.9, weight decay 0.0005, :class:`~npalexnet.optim.PaperSGD`), batch 128, lr
#: 0.01 divided by 10 when the validation error stops improving (after 5 epochs without a
#: gain here), three times at most, 90 epochs; validation on the centre patch and its
#: reflection, the final test on the paper's ten patches; top-1 and top-5 errors reported.
#: Its runs get their folders under ``runs/paper`` (:attr:`TrainConfig.runs_name`).
RECIPES = {
    "default": {},
    "paper": dict(dataset="imagefolder", image_size=256, augment="paper", variant="paper", init="paper",
                  dropout=0.5, paper_bias=1.0, optimizer="sgd-paper", lr=0.01, momentum=0.9, nesterov=False,
                  weight_decay=5e-4, label_smoothing=0.0, schedule="plateau", gamma=0.1, patience=5,
                  max_lr_drops=3, epochs=90, batch_size=128, eval_batch_size=128, tta=True, tta_crops=1,
                  val_fraction=0.1, ema=0.0, ema_every=1),
}

#: Fields a resumed run takes from the command line; the rest come from the checkpoint
#: (a command line that sets them differently stops the resume: train.resume).
RUNTIME_FIELDS = ("tta_crops", "epochs", "data_dir", "root", "download", "download_url", "cache_dir", "workers",
                  "device", "out", "resume", "overwrite", "override", "progress", "test", "eval_batch_size",
                  "distributed", "log_grad_norms", "save_every")

#: Runtime fields that describe one invocation, never a run: where it writes (out, overwrite), how it
#: was asked to continue (resume, override), what it shows (progress), how it was launched
#: (distributed) and whether it ends with the test. A resume always takes them from its own command
#: line (train.resume), and a new run started from a run's config.json (``--config``) leaves them
#: out (train.runlog): it gets a folder of its own, and the final run of a recipe chosen by a
#: ``--no-test`` run is tested.
INVOCATION_FIELDS = ("out", "resume", "overwrite", "override", "progress", "test", "distributed")


def merge_for_resume(saved: dict, current: TrainConfig) -> TrainConfig:
    """The saved run's configuration with ``current``'s runtime fields."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    merged = {k: v for k, v in saved.items() if k in known}
    merged.update({k: getattr(current, k) for k in RUNTIME_FIELDS})
    return TrainConfig(**merged)


def model_kwargs(cfg: TrainConfig, num_classes: int, in_channels: int) -> dict:
    """The keyword arguments of :func:`npalexnet.models.alexnet` for this run (saved in checkpoints)."""
    kwargs = {"variant": cfg.variant, "num_classes": int(num_classes), "in_channels": int(in_channels),
              "width": float(cfg.width), "lrn": cfg.lrn, "dropout": float(cfg.dropout), "init": cfg.init}
    if cfg.init == "paper":
        kwargs["paper_bias"] = float(cfg.paper_bias)
    return kwargs


def build_model(kwargs: dict) -> nn.Module:
    """The model from saved keyword arguments (on the CPU, float32)."""
    kwargs = dict(kwargs)
    return alexnet(kwargs.pop("variant"), **kwargs)


def input_size(variant: str) -> int:
    return INPUT_SIZE[variant]


def parameter_groups(model: nn.Module, bias_decay: bool = True) -> list:
    """The optimizer's parameter groups over the parameters that are not frozen
    (:func:`npalexnet.models.freeze`): one group, or without ``bias_decay`` two.

    Without bias decay the conv and linear weights (every parameter of two or
    more dimensions) keep the run's weight decay and the rest (biases,
    BatchNorm's scale and shift) get none: decaying a bias pulls a unit's
    offset towards zero without limiting the function's complexity, which is
    what the decay is there for.
    """
    params = trainable_parameters(model)
    if bias_decay:
        return [{"params": params}]
    return [group for group in ({"params": [p for p in params if p.data.ndim > 1]},
                                {"params": [p for p in params if p.data.ndim <= 1], "weight_decay": 0.0})
            if group["params"]]


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> optim.Optimizer:
    """SGD (weight decay on every parameter, as torch's SGD in the recipe, or with ``bias_decay`` False
    on the weights only), the paper's SGD, Adam (L2 decay) or AdamW (decoupled decay) (:func:`parameter_groups`)."""
    params = parameter_groups(model, cfg.bias_decay)
    if cfg.optimizer == "adam":
        return optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd-paper":
        return optim.PaperSGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                     nesterov=cfg.nesterov and cfg.momentum > 0)


class ScheduleError(ValueError):
    """An option that does not fit the run's length, known only once the data's size is (one-line message)."""


def build_scheduler(cfg: TrainConfig, optimizer: optim.Optimizer, steps_per_epoch: int):
    """The learning-rate schedule; all but ``plateau`` step once per batch.

    Returns:
        ``(scheduler, per_step)``: ``per_step`` False for ``plateau``, which
        steps once per epoch on the validation accuracy.
    """
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule in ("onecycle", "warmup-linear", "warmup-cosine"):
        warmup = cfg.warmup if cfg.warmup < 1 else int(cfg.warmup)
        if warmup > total:   # a fraction always fits (TrainConfig.validate); a step count may not
            raise ScheduleError(f"--warmup {warmup}: a warm-up of {warmup} steps does not fit in this run's {total} "
                                f"({cfg.epochs} epochs of {steps_per_epoch} steps); give a fraction in [0, 1) or "
                                f"at most {total} steps")
        shape = optim.WarmupCosineLR if cfg.schedule == "warmup-cosine" else optim.WarmupLinearLR
        if not cfg.swa:
            return shape(optimizer, total, warmup=warmup), True
        start = swa_start_step(cfg, steps_per_epoch)
        # A warm-up given as a fraction was checked against --swa in validate(); one given in steps can be
        # compared with the start only now that the run's length is known.
        if isinstance(warmup, int) and start < warmup:
            raise ScheduleError(f"--swa {cfg.swa} starts at step {start}, inside the warm-up of {warmup} steps: "
                                f"start it later or shorten the warm-up")
        return shape(optimizer, total, warmup=warmup, floor=cfg.swa_lr, decay_end=start), True
    if cfg.schedule == "cosine":
        return optim.CosineAnnealingLR(optimizer, total), True
    if cfg.schedule == "step":
        return optim.StepLR(optimizer, cfg.step_epochs * steps_per_epoch, cfg.gamma), True
    if cfg.schedule == "plateau":
        return optim.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.gamma, patience=cfg.patience,
                                       max_reductions=cfg.max_lr_drops), False
    return optim.ConstantLR(optimizer), True


def swa_start_step(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The optimizer step where ``--swa`` holds the rate and starts the uniform average."""
    return int(round(cfg.swa * cfg.epochs * steps_per_epoch))


def build_ema(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int) -> optim.ExponentialMovingAverage | None:
    """The weights' average that evaluation scores, from the model's current weights: the moving
    average (``cfg.ema`` > 0), which ``--swa`` turns into the uniform mean at its start; None
    without ``--ema``."""
    if not cfg.ema:
        return None
    uniform_from = swa_start_step(cfg, steps_per_epoch) if cfg.swa else None
    return optim.ExponentialMovingAverage(model, cfg.ema, warmup=cfg.ema_warmup, every=cfg.ema_every,
                                          uniform_from=uniform_from)
