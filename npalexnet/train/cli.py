"""Train AlexNet on CIFAR-10 (or FashionMNIST, or any ImageFolder tree) with npalexnet.

    npalexnet-train                                           # the default recipe, 30 epochs, in a new folder
    npalexnet-train --data-dir ../shared/data/cifar10 --subset 5000 --epochs 2   # a quick look
    npalexnet-train --resume last                             # continue the latest run (or --resume RUN_FOLDER)
    npalexnet-train --evaluate runs/cifar10/latest/best.npz   # the test of a saved checkpoint, nothing trained
    npalexnet-train --config runs/cifar10/latest/config.json --lr 0.1   # a new run from a run's recipe
    npalexnet-train --dataset imagefolder --data-dir flowers --variant paper --width 0.5
    npalexnet-train --recipe paper --data-dir /data/imagenet  # the 2012 paper's procedure, runs/paper/<date_time>
    mpiexec -n 2 python -m mpi4py -m npalexnet.train --distributed --device cpu   # data-parallel

(``python -m npalexnet.train`` and ``python examples/train_cifar10.py`` are the same program.)
Names the run's folder first, then prints a progress bar per epoch, a summary line per epoch and,
last, ``test accuracy: NN.NN% (...)`` (not with ``--no-test``). Writes config.json, log.txt, last.npz,
best.npz, metrics.csv and curves.png into the run's folder. The work happens in ``npalexnet.train.fit``.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .. import backend, distributed
from ..data import DATASETS
from ..data.decode import RESIZE_RULES
from ..models import INITS, VARIANTS
from ..random_streams import FLIP_SCHEDULES
from .cli_common import DefaultsFormatter, device_error, error_line, report
from .config import AUGMENTS, OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig
from .evaluate_only import SPLITS, EvaluateOptionsError, EvaluateRequest, evaluate_checkpoint
from .interrupt import exit_status
from .run import TrainingInterrupted, fit
from .runlog import ConfigFileError, read_config_file


def build_parser(D: TrainConfig | None) -> argparse.ArgumentParser:
    """The training program's options with ``D``'s values as defaults (the ``--recipe``'s, overridden by a
    --config file's; ``--recipe paper --help`` shows the paper recipe's).

    ``D=None``: no defaults at all, so that parsing yields only the options the command line names.
    """
    dflt = (lambda name: getattr(D, name)) if D is not None else (lambda name: argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="npalexnet-train", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsFormatter, add_help=D is not None,
                                argument_default=None if D is not None else argparse.SUPPRESS)
    p.add_argument("--recipe", choices=RECIPES, default=dflt("recipe"),
                   help="default: the anchor CIFAR recipe; paper: Krizhevsky et al. 2012 on an ImageFolder tree "
                        "(images stored at 256 px on disk, random 227 patches, reflections, PCA colour "
                        "augmentation, the paper's init and update rule, lr 0.01 /10 on plateaus, 90 epochs, "
                        "top-1/top-5 errors, ten test patches; runs in runs/paper/<date_time>); the options "
                        "below override it")
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="start from the options in FILE (a run's config.json, or a JSON object of options); "
                        "the command line overrides them")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=dflt("dataset"), help="what to train on")
    g.add_argument("--data-dir", default=dflt("data_dir"),
                   help="local copy: a folder with cifar-10-batches-py/, or DIR/train/<class>/*.jpg + "
                        "DIR/test/<class>/*.jpg, or DIR/<class>/*.jpg (default: the official files, downloaded "
                        "into --root)")
    g.add_argument("--root", default=dflt("root"), help="where the downloaded datasets are kept")
    g.add_argument("--no-download", dest="download", action="store_false", default=dflt("download"),
                   help="never download")
    g.add_argument("--download-url", default=dflt("download_url"), metavar="URL",
                   help="a mirror holding the published files under their names (an http(s):// or file:// "
                        "folder URL, or a local folder), e.g. behind a proxy (default: $NPALEXNET_DOWNLOAD_URL, "
                        "else the official location)")
    g.add_argument("--cache-dir", default=dflt("cache_dir"), help="where decoded ImageFolder trees are cached "
                                                                  "(default: DIR/.npalexnet-cache, else "
                                                                  "~/.cache/npalexnet)")
    g.add_argument("--workers", type=int, default=dflt("workers"),
                   help="image decoding processes (default: all cores)")
    size = D.image_size if D is not None else None
    g.add_argument("--image-size", type=int, default=dflt("image_size"),
                   help=f"decode size of ImageFolder images (default: {size or '32; 28 for FashionMNIST'})")
    g.add_argument("--resize-rule", choices=RESIZE_RULES, default=dflt("resize_rule"),
                   help="how ImageFolder images become squares: crop = shorter side to --image-size, then the "
                        "centre (the paper's and torchvision's); squash = both sides")
    g.add_argument("--val-fraction", type=float, default=dflt("val_fraction"), help="seeded validation split")
    g.add_argument("--subset", type=int, default=dflt("subset"),
                   help="train on N training images (stratified, seeded)")
    g = p.add_argument_group("augmentation")
    g.add_argument("--augment", choices=AUGMENTS, default=dflt("augment"),
                   help="pad-crop: splits in memory, padded random crops; paper: splits on disk, the paper's "
                        "random patches and PCA colour augmentation (ImageFolder data)")
    g.add_argument("--crop-size", type=int, default=dflt("crop_size"),
                   help="--augment paper: the random patch (default: the net's input, 227; smaller stored images: "
                        "224/256 of them, resized to the input)")
    g.add_argument("--lighting", type=float, default=dflt("lighting"),
                   help="--augment paper: standard deviation of the PCA colour augmentation's alpha (0: off)")
    g.add_argument("--pad", type=int, default=dflt("pad"), help="random-crop padding (0: no crop)")
    g.add_argument("--padding", choices=("reflect", "zero"), default=dflt("padding"), help="how the crop pads")
    g.add_argument("--no-flip", dest="flip", action="store_false", default=dflt("flip"),
                   help="no random horizontal flips")
    g.add_argument("--flip-schedule", choices=FLIP_SCHEDULES, default=dflt("flip_schedule"),
                   help="random: each image flipped with probability 1/2 in every epoch; alternating: a random "
                        "half in the first epoch, then every image the other way round from the epoch before")
    g.add_argument("--random-erase", type=float, default=dflt("random_erase"), metavar="P",
                   help="random erasing (Zhong et al. 2020; torchvision's RandomErasing and --random-erase): with "
                        "probability P a box of 2-33%% of the image, aspect ratio 0.3-3.3, set to the mean; 0: off")
    g.add_argument("--mixup-alpha", type=float, default=dflt("mixup_alpha"), metavar="ALPHA",
                   help="mixup (Zhang et al. 2018): each training image and its target blended with a partner's, "
                        "weight ~ Beta(ALPHA, ALPHA) per step (e.g. 0.2; torchvision's --mixup-alpha); 0: off")
    g.add_argument("--cutmix-alpha", type=float, default=dflt("cutmix_alpha"), metavar="ALPHA",
                   help="CutMix (Yun et al. 2019): a box of a partner image pasted in, the targets weighted by "
                        "area, box size from Beta(ALPHA, ALPHA) per step (e.g. 1.0); with --mixup-alpha one of "
                        "the two per step; 0: off")
    g.add_argument("--no-tta", dest="tta", action="store_false", default=dflt("tta"),
                   help="no test-time flip averaging")
    g.add_argument("--tta-crops", type=int, default=dflt("tta_crops"), metavar="P",
                   help="the final test also averages the paper's five crops (centre and corners of the image "
                        "padded by P pixels; with --augment paper, P > 0: the corner and centre patches), ten "
                        "views with the flips; 0: off")
    g.add_argument("--resize-mode", choices=("bilinear", "nearest"), default=dflt("resize_mode"),
                   help="how images are resized to the model's input (227 for the paper variants)")
    g = p.add_argument_group("model")
    g.add_argument("--variant", choices=VARIANTS, default=dflt("variant"),
                   help="which AlexNet (npalexnet.models.alexnet)")
    g.add_argument("--width", type=float, default=dflt("width"), help="multiplier of every layer's width")
    g.add_argument("--lrn", action=argparse.BooleanOptionalAction, default=dflt("lrn"),
                   help="LRN after conv1/conv2 (default: the variant's)")
    g.add_argument("--dropout", type=float, default=dflt("dropout"),
                   help="dropout probability of the hidden FC layers")
    g.add_argument("--init", choices=INITS, default=dflt("init"),
                   help="weight initialisation: PyTorch's defaults, the paper's N(0, 0.01), or He et al.'s "
                        "N(0, 2/fan_in) for ReLU nets")
    g.add_argument("--paper-bias", type=float, default=dflt("paper_bias"),
                   help="--init paper: bias of conv2, conv4, conv5 and the hidden FC layers (the paper's 1; Caffe's "
                        "reference model used 0.1 where 1 left the loss flat)")
    g.add_argument("--init-from", default=dflt("init_from"), metavar="FILE",
                   help="start from these weights: a torch state_dict (.pth/.pt, e.g. torchvision's ImageNet "
                        "AlexNet with --variant torchvision), a .safetensors file or an npalexnet checkpoint "
                        "(.npz); the last layer is re-initialised when the class count differs")
    g.add_argument("--freeze", default=dflt("freeze"), metavar="PARTS",
                   help="keep these leading stages fixed: 'features' trains the classifier only")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=dflt("epochs"), help="total epochs (also with --resume)")
    g.add_argument("--batch-size", type=int, default=dflt("batch_size"), help="training images per step")
    g.add_argument("--eval-batch-size", type=int, default=dflt("eval_batch_size"),
                   help="images per evaluation pass")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=dflt("optimizer"),
                   help="update rule (sgd-paper: the paper's form of momentum and weight decay, Section 5; adam: "
                        "--weight-decay as L2 in the gradient; adamw: decoupled, p <- p (1 - lr wd), "
                        "torch.optim.AdamW)")
    g.add_argument("--lr", type=float, default=dflt("lr"), help="peak learning rate")
    g.add_argument("--sam", type=float, default=dflt("sam"), metavar="RHO",
                   help="sharpness-aware minimisation: each step takes the gradient at the weights moved by RHO "
                        "along the batch's gradient (Foret et al. 2021); a SAM step costs two forward and backward "
                        "passes; 0: off")
    g.add_argument("--sam-epochs", type=int, default=dflt("sam_epochs"), metavar="K",
                   help="--sam in the last K epochs only (late SAM, Zhou et al. 2024; default: every epoch)")
    g.add_argument("--clip-grad-norm", type=float, default=dflt("clip_grad_norm"), metavar="MAX",
                   help="scale each step's gradient down to this global L2 norm when it is larger "
                        "(torch.nn.utils.clip_grad_norm_; torchvision's --clip-grad-norm); 0: off")
    g.add_argument("--momentum", type=float, default=dflt("momentum"), help="SGD momentum")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=dflt("nesterov"),
                   help="Nesterov momentum (sgd)")
    g.add_argument("--weight-decay", type=float, default=dflt("weight_decay"),
                   help="on every parameter, as torch's SGD (see --no-bias-decay)")
    g.add_argument("--bias-decay", action=argparse.BooleanOptionalAction, default=dflt("bias_decay"),
                   help="weight decay on biases (and BatchNorm's scale and shift) too; --no-bias-decay: on the "
                        "conv and linear weights only")
    g.add_argument("--label-smoothing", type=float, default=dflt("label_smoothing"),
                   help="weight of the uniform target")
    g.add_argument("--schedule", choices=SCHEDULES, default=dflt("schedule"),
                   help="onecycle = warmup-linear: linear warm-up then linear decay to 0, per step; "
                        "warmup-cosine: the same warm-up, then a half cosine to 0; cosine: no warm-up")
    g.add_argument("--warmup", type=float, default=dflt("warmup"),
                   help="onecycle/warmup-linear/warmup-cosine: warm-up fraction of all steps (or a step count)")
    g.add_argument("--ema", type=float, default=dflt("ema"), metavar="DECAY",
                   help="validation, the test, best.npz and predictions use an exponential moving average of "
                        "the weights with this decay per step (e.g. 0.999); 0: off")
    g.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=dflt("ema_warmup"),
                   help="--ema: decay min(DECAY, (1+t)/(10+t)) at step t, so the first weights fade fast")
    g.add_argument("--ema-every", type=int, default=dflt("ema_every"), metavar="K",
                   help="--ema: average at every K-th step only (decay DECAY^K), K times less work")
    g.add_argument("--swa", type=float, default=dflt("swa"), metavar="START",
                   help="stochastic weight averaging (Izmailov et al. 2018): from this fraction of the steps on, "
                        "the learning rate is held at --swa-lr (the warm-up schedule decays to it there instead "
                        "of to 0) and evaluation uses the plain mean of the weights since then (sampled every "
                        "--ema-every steps) instead of the moving average; 0: off")
    g.add_argument("--swa-lr", type=float, default=dflt("swa_lr"), metavar="FRACTION",
                   help="--swa: the rate held to the end, a fraction of the peak --lr")
    g.add_argument("--step-epochs", type=int, default=dflt("step_epochs"), help="--schedule step: epochs per decay")
    g.add_argument("--gamma", type=float, default=dflt("gamma"), help="--schedule step/plateau: lr factor")
    g.add_argument("--patience", type=int, default=dflt("patience"), help="--schedule plateau: epochs without gain")
    g.add_argument("--max-lr-drops", type=int, default=dflt("max_lr_drops"),
                   help="--schedule plateau: divide the learning rate at most this many times (default: no limit)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=dflt("seed"),
                   help="seeds the split, weights, order, augmentation, dropout")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=dflt("device"),
                   help="auto: CUDA when CuPy sees a GPU")
    g.add_argument("--out", default=dflt("out"), metavar="DIR",
                   help="the run's folder, used exactly (default: a new runs/<dataset>/<date_time> for every run; "
                        "runs/paper/<date_time> with --recipe paper)")
    g.add_argument("--resume", nargs="?", const="last", default=dflt("resume"), metavar="RUN",
                   help="continue a run up to --epochs: a run folder, a checkpoint file, or 'last' (the default: "
                        "the latest run under runs/<dataset> or runs/paper, or --out); the saved recipe is kept")
    g.add_argument("--override", action="store_true", default=dflt("override"),
                   help="with --resume: train on with the recipe options given here instead of the saved ones "
                        "(without it, a difference stops the resume and names each)")
    g.add_argument("--overwrite", action="store_true", default=dflt("overwrite"),
                   help="start afresh even if --out holds a run")
    g.add_argument("--evaluate", metavar="CHECKPOINT", default=argparse.SUPPRESS,
                   help="no training: score CHECKPOINT on its run's test split (or --split validation) with its "
                        "run's protocol (data location, --device, --eval-batch-size, --no-tta and --tta-crops may be "
                        "given)")
    g.add_argument("--split", choices=SPLITS, default=argparse.SUPPRESS,
                   help="with --evaluate: the images to score: test (the default), or validation: the images the "
                        "run held out (its --val-fraction and --seed), to compare recipes with the final test's "
                        "views without looking at the test set")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=dflt("progress"),
                   help="no progress bars (they are off anyway when stderr is not a terminal)")
    g.add_argument("--no-test", dest="test", action="store_false", default=dflt("test"),
                   help="no final test: the run ends after its last epoch and never scores the test split "
                        "(a run that compares recipes on --val-fraction; --evaluate RUN/last.npz tests it later)")
    g.add_argument("--save-every", type=int, default=dflt("save_every"), metavar="N",
                   help="also keep the checkpoint of every N-th epoch as epoch_NNN.npz in the run's folder (to "
                        "evaluate, or to --resume a branch from); 0: last.npz and best.npz only")
    g.add_argument("--log-grad-norms", action="store_true", default=dflt("log_grad_norms"),
                   help="per-layer gradient and weight norms each epoch into metrics.csv, plotted in norms.png")
    g.add_argument("--distributed", action="store_true", default=dflt("distributed"),
                   help="data-parallel over the processes mpiexec starts (one per GPU with --device cuda); "
                        "--batch-size is then the global batch, split across them (README: Distributed training)")
    return p


def parse_args(argv=None) -> tuple[TrainConfig, set[str], EvaluateRequest | None]:
    """The run's configuration, the options the command line (or --config file) set, and what --evaluate
    asks for (None: a training run).

    Defaults, lowest first: the ``--recipe``'s (the command line's, else the --config file's, else
    ``default``), the --config file's options, then the command line's.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    typed = vars(build_parser(None).parse_known_args(argv)[0])   # only what the command line names
    file_options = {}
    if "config" in typed:
        try:
            file_options = read_config_file(typed["config"])
        except ConfigFileError as exc:
            build_parser(TrainConfig()).error(str(exc))
    recipe = typed.get("recipe", file_options.get("recipe", "default"))
    parser = build_parser(TrainConfig.from_recipe(recipe, **{k: v for k, v in file_options.items() if k != "recipe"}))
    args = vars(parser.parse_args(argv))
    args.pop("config", None)
    evaluate, split = args.pop("evaluate", None), args.pop("split", None)
    if split is not None and evaluate is None:
        parser.error("--split chooses the images --evaluate scores; a training run validates on its "
                     "--val-fraction split and tests on the test split")
    if evaluate is not None:
        evaluate = EvaluateRequest(evaluate, split or "test")
    given = (set(typed) | set(file_options)) - {"config", "evaluate", "split"}
    if {"flip", "flip_schedule"} <= set(typed) and not args["flip"]:
        parser.error("--flip-schedule with --no-flip: without flips there is nothing to schedule; give one of them")
    try:
        return TrainConfig.from_recipe(args.pop("recipe"), **args).validate(), given, evaluate
    except ValueError as exc:
        parser.error(str(exc))


def start_distributed(cfg: TrainConfig):
    """The communicator of a --distributed run (None otherwise); an uncaught error on any rank aborts all."""
    if not cfg.distributed:
        return None
    try:
        device = backend.resolve_device(cfg.device)
    except RuntimeError as exc:   # --device cuda without a usable GPU: the same on every rank
        raise distributed.DistributedSetupError(str(exc)) from exc
    comm = distributed.init(True, device)
    distributed.install_abort_on_exception(comm)
    return comm


def main(argv=None) -> int:
    """The training program; returns its exit status (0, 1 for an error, 2 for bad options, 130/143 when
    interrupted by Ctrl-C/SIGTERM after saving a checkpoint)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg, given, evaluate = parse_args(argv)
    problem = None if cfg.distributed else device_error(cfg.device)   # --distributed: every rank says so
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if evaluate is not None:
        try:
            evaluate_checkpoint(evaluate.checkpoint, cfg, given, split=evaluate.split)
        except EvaluateOptionsError as exc:   # a recipe option given with --evaluate
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:   # noqa: BLE001 (report re-raises what is not a user's error)
            return report(exc)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        return 0
    comm = None
    try:
        comm = start_distributed(cfg)
        fit(cfg, comm=comm, command=[sys.argv[0], *argv], given=given)
    except distributed.DistributedSetupError as exc:   # raised on every rank: all exit together
        return distributed.report_setup_error(exc, comm)
    except TrainingInterrupted as exc:
        if comm is None or comm.is_root:
            print(str(exc), file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:   # a second Ctrl-C: the last checkpoint on disk is whole
        print("interrupted", file=sys.stderr)
        return exit_status(signal.SIGINT)
    except Exception as exc:   # noqa: BLE001 (raised on every rank; report re-raises what is not a user's error)
        if comm is None or comm.is_root:
            return report(exc)
        if error_line(exc) is None:
            raise
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
