#!/usr/bin/env python
"""Train AlexNet on CIFAR-10 (or FashionMNIST, or any ImageFolder tree) with npalexnet.

    python examples/train_cifar10.py                                  # the default recipe, 30 epochs
    python examples/train_cifar10.py --data-dir ../shared/data/cifar10 --subset 5000 --epochs 2
    python examples/train_cifar10.py --resume --out runs/cifar10       # continue an interrupted run
    python examples/train_cifar10.py --dataset imagefolder --data-dir flowers --variant paper --width 0.5
    python examples/train_cifar10.py --recipe paper --data-dir /data/imagenet   # the 2012 paper's procedure
    mpiexec -n 2 python -m mpi4py examples/train_cifar10.py --distributed --device cpu   # data-parallel

Prints a progress bar per epoch, a summary line per epoch and, last,
``test accuracy: NN.NN%``. Writes last.npz, best.npz, metrics.csv and
curves.png into --out. The work happens in ``npalexnet.train.fit``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import npalexnet  # noqa: F401
except ImportError:   # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npalexnet import backend, distributed
from npalexnet.data import DATASETS, DataError
from npalexnet.data.decode import RESIZE_RULES
from npalexnet.models import VARIANTS, FreezeError, PretrainedError
from npalexnet.train import SCHEDULES, CheckpointError, NonFiniteLossError, TrainConfig, TrainingInterrupted, fit
from npalexnet.train.config import AUGMENTS, OPTIMIZERS, RECIPES


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` where the help does not already say it; on/off flags get none."""

    def _get_help_string(self, action):
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if "default" in text or flag or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def parse_args(argv=None) -> TrainConfig:
    """The command line on top of the chosen ``--recipe``'s defaults (shown by ``--recipe paper --help``)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--recipe", choices=RECIPES, default="default")
    recipe = first.parse_known_args(argv)[0].recipe
    D = TrainConfig.from_recipe(recipe)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_DefaultsFormatter)
    p.add_argument("--recipe", choices=RECIPES, default=recipe,
                   help="default: the anchor CIFAR recipe; paper: Krizhevsky et al. 2012 on an ImageFolder tree "
                        "(images stored at 256 px on disk, random 227 patches, reflections, PCA colour "
                        "augmentation, the paper's init and update rule, lr 0.01 /10 on plateaus, 90 epochs, "
                        "top-1/top-5 errors, ten test patches); the options below override it")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=D.dataset, help="what to train on")
    g.add_argument("--data-dir", default=None,
                   help="local copy: a folder with cifar-10-batches-py/, or DIR/train/<class>/*.jpg + "
                        "DIR/test/<class>/*.jpg, or DIR/<class>/*.jpg (default: the official files, downloaded "
                        "into --root)")
    g.add_argument("--root", default=D.root, help="where the downloaded datasets are kept")
    g.add_argument("--no-download", dest="download", action="store_false", default=D.download,
                   help="never download")
    g.add_argument("--download-url", default=None, metavar="URL",
                   help="a mirror holding the published files under their names (an http(s):// or file:// "
                        "folder URL, or a local folder), e.g. behind a proxy (default: $NPALEXNET_DOWNLOAD_URL, "
                        "else the official location)")
    g.add_argument("--cache-dir", default=None, help="where decoded ImageFolder trees are cached "
                                                     "(default: DIR/.npalexnet-cache, else ~/.cache/npalexnet)")
    g.add_argument("--workers", type=int, default=None, help="image decoding processes (default: all cores)")
    g.add_argument("--image-size", type=int, default=D.image_size,
                   help="decode size of ImageFolder images (default: " + (str(D.image_size) if D.image_size else
                                                                           "32; 28 for FashionMNIST") + ")")
    g.add_argument("--resize-rule", choices=RESIZE_RULES, default=D.resize_rule,
                   help="how ImageFolder images become squares: crop = shorter side to --image-size, then the "
                        "centre (the paper's and torchvision's); squash = both sides")
    g.add_argument("--val-fraction", type=float, default=D.val_fraction, help="seeded validation split")
    g.add_argument("--subset", type=int, default=None, help="train on N training images (stratified, seeded)")
    g = p.add_argument_group("augmentation")
    g.add_argument("--augment", choices=AUGMENTS, default=D.augment,
                   help="pad-crop: splits in memory, padded random crops; paper: splits on disk, the paper's "
                        "random patches and PCA colour augmentation (ImageFolder data)")
    g.add_argument("--crop-size", type=int, default=D.crop_size,
                   help="--augment paper: the random patch (default: the net's input, 227; smaller stored images: "
                        "224/256 of them, resized to the input)")
    g.add_argument("--lighting", type=float, default=D.lighting,
                   help="--augment paper: standard deviation of the PCA colour augmentation's alpha (0: off)")
    g.add_argument("--pad", type=int, default=D.pad, help="random-crop padding (0: no crop)")
    g.add_argument("--padding", choices=("reflect", "zero"), default=D.padding, help="how the crop pads")
    g.add_argument("--no-flip", dest="flip", action="store_false", default=D.flip, help="no random horizontal flips")
    g.add_argument("--no-tta", dest="tta", action="store_false", default=D.tta, help="no test-time flip averaging")
    g.add_argument("--tta-crops", type=int, default=D.tta_crops, metavar="P",
                   help="the final test also averages the paper's five crops (centre and corners of the image "
                        "padded by P pixels; with --augment paper, P > 0: the corner and centre patches), ten "
                        "views with the flips; 0: off")
    g.add_argument("--resize-mode", choices=("bilinear", "nearest"), default=D.resize_mode,
                   help="how images are resized to the model's input (227 for the paper variants)")
    g = p.add_argument_group("model")
    g.add_argument("--variant", choices=VARIANTS, default=D.variant, help="which AlexNet (npalexnet.models.alexnet)")
    g.add_argument("--width", type=float, default=D.width, help="multiplier of every layer's width")
    g.add_argument("--lrn", action=argparse.BooleanOptionalAction, default=None,
                   help="LRN after conv1/conv2 (default: the variant's)")
    g.add_argument("--dropout", type=float, default=D.dropout, help="dropout probability of the hidden FC layers")
    g.add_argument("--init", choices=("torch", "paper"), default=D.init, help="weight initialisation")
    g.add_argument("--paper-bias", type=float, default=D.paper_bias,
                   help="--init paper: bias of conv2, conv4, conv5 and the hidden FC layers (the paper's 1; Caffe's "
                        "reference model used 0.1 where 1 left the loss flat)")
    g.add_argument("--init-from", default=None, metavar="FILE",
                   help="start from these weights: a torch state_dict (.pth/.pt, e.g. torchvision's ImageNet "
                        "AlexNet with --variant torchvision), a .safetensors file or an npalexnet checkpoint "
                        "(.npz); the last layer is re-initialised when the class count differs")
    g.add_argument("--freeze", default=None, metavar="PARTS",
                   help="keep these leading stages fixed: 'features' trains the classifier only")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=D.epochs, help="total epochs (also with --resume)")
    g.add_argument("--batch-size", type=int, default=D.batch_size, help="training images per step")
    g.add_argument("--eval-batch-size", type=int, default=D.eval_batch_size, help="images per evaluation pass")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer,
                   help="update rule (sgd-paper: the paper's form of momentum and weight decay, Section 5)")
    g.add_argument("--lr", type=float, default=D.lr, help="peak learning rate")
    g.add_argument("--momentum", type=float, default=D.momentum, help="SGD momentum")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=D.nesterov,
                   help="Nesterov momentum (sgd)")
    g.add_argument("--weight-decay", type=float, default=D.weight_decay, help="on every parameter, as torch's SGD")
    g.add_argument("--label-smoothing", type=float, default=D.label_smoothing, help="weight of the uniform target")
    g.add_argument("--schedule", choices=SCHEDULES, default=D.schedule,
                   help="onecycle = warmup-linear: linear warm-up then linear decay to 0, per step")
    g.add_argument("--warmup", type=float, default=D.warmup, help="warm-up fraction of all steps (or a step count)")
    g.add_argument("--step-epochs", type=int, default=D.step_epochs, help="--schedule step: epochs per decay")
    g.add_argument("--gamma", type=float, default=D.gamma, help="--schedule step/plateau: lr factor")
    g.add_argument("--patience", type=int, default=D.patience, help="--schedule plateau: epochs without gain")
    g.add_argument("--max-lr-drops", type=int, default=D.max_lr_drops,
                   help="--schedule plateau: divide the learning rate at most this many times (default: no limit)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=D.seed, help="seeds the split, weights, order, augmentation, dropout")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=D.device,
                   help="auto: CUDA when CuPy sees a GPU")
    g.add_argument("--out", default=D.out, help="output folder (checkpoints, metrics.csv, curves.png)")
    g.add_argument("--resume", action="store_true", help="continue from --out/last.npz up to --epochs")
    g.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=D.progress,
                   help="no progress bars")
    g.add_argument("--log-grad-norms", action="store_true",
                   help="per-layer gradient and weight norms each epoch into metrics.csv, plotted in norms.png")
    g.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes mpiexec starts (one per GPU with --device cuda); "
                        "--batch-size is then the global batch, split across them (README: Distributed training)")
    args = vars(p.parse_args(argv))
    cfg = TrainConfig.from_recipe(args.pop("recipe"), **args)
    try:
        return cfg.validate()
    except ValueError as exc:
        p.error(str(exc))


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
    cfg = parse_args(argv)
    comm = None
    try:
        comm = start_distributed(cfg)
        result = fit(cfg, comm=comm)
    except distributed.DistributedSetupError as exc:   # raised on every rank: all exit together
        return distributed.report_setup_error(exc, comm)
    except (DataError, CheckpointError, NonFiniteLossError, PretrainedError, FreezeError) as exc:   # on every rank
        if comm is None or comm.is_root:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        if comm is None or comm.is_root:
            print(str(exc), file=sys.stderr)
        return 130
    except KeyboardInterrupt:   # a second Ctrl-C: the last checkpoint on disk is whole
        print("interrupted", file=sys.stderr)
        return 130
    if comm is None or comm.is_root:
        print(f"test accuracy: {100 * result.test_accuracy:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
