"""The data pipeline of a run, chosen in one place from ``cfg.augment``.

* ``"pad-crop"`` (the anchor recipe): every split held whole on the device
  (:class:`~npalexnet.data.BatchLoader`), CIFAR's padded random crops and
  flips (:class:`~npalexnet.data.Preprocess`), views of the padded image at test time.
* ``"paper"`` (``--recipe paper``): splits left in their stores on disk and
  read ahead by a thread (:class:`~npalexnet.data.store_loader.StoreLoader`),
  the paper's patches, reflections and colour augmentation
  (:class:`~npalexnet.data.paper_augment.PaperAugment`), the centre patch
  (validation) or the paper's ten patches (test).

The test protocol (:class:`~.protocol.Protocol`) follows from the same choice
(:func:`protocol`); a checkpoint's transforms are rebuilt from its meta
(:func:`checkpoint_preprocess`) by ``--evaluate``, ``predict`` and ``visualize``.

Both loaders have one interface (``len``, ``num_images``, ``batch_indices``,
``epoch``), so the loop and the evaluation do not know which one runs.
"""

from __future__ import annotations

from ..data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, Mixing, Preprocess, channel_stats
from ..data.paper_augment import PaperAugment
from ..data.store_loader import StoreLoader
from .config import TrainConfig
from .protocol import Protocol

#: The paper's inputs are grey levels minus the training mean, not divided by anything (Section 2).
PAPER_STD = 1.0 / 255.0


def normalisation(cfg: TrainConfig, dataset, train_split) -> dict:
    """The numbers the transforms need, computed from the training split (saved in checkpoints).

    ``{"mean", "std"}`` per channel for pixels in [0, 1]; in paper mode also
    ``"eigvals"``, ``"eigvecs"`` (the PCA of the training pixels, from the store's sums).
    """
    if cfg.paper_mode:
        stats = train_split.stats()
        return {"mean": list(stats.mean), "std": [PAPER_STD] * len(stats.mean), "eigvals": list(stats.eigvals),
                "eigvecs": [list(row) for row in stats.eigvecs]}
    if dataset.name == "cifar10" and dataset.in_channels == 3:
        return {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
    mean, std = channel_stats(train_split.images)
    return {"mean": list(mean), "std": list(std)}


def build_preprocess(cfg: TrainConfig, norm: dict, input_size: int, image_size: int):
    """The run's transforms: :class:`PaperAugment` in paper mode, else :class:`Preprocess`."""
    if cfg.paper_mode:
        return PaperAugment(norm["mean"], norm["std"], norm["eigvals"], norm["eigvecs"], input_size, image_size,
                            crop=cfg.crop_size, flip=cfg.flip, flip_schedule=cfg.flip_schedule, lighting=cfg.lighting,
                            resize_mode=cfg.resize_mode)
    return Preprocess(norm["mean"], norm["std"], input_size, pad=cfg.pad, padding=cfg.padding, flip=cfg.flip,
                      flip_schedule=cfg.flip_schedule, resize_mode=cfg.resize_mode, erase=cfg.random_erase)


def build_loader(cfg: TrainConfig, split, batch_size: int, preprocess, device: str, *, train: bool,
                 rank: int = 0, world_size: int = 1, num_classes: int | None = None):
    """A :class:`StoreLoader` over a split on disk, a :class:`BatchLoader` over one in memory (training
    batches blended by mixup or CutMix when the run asks: ``num_classes`` is then the targets' width)."""
    if cfg.paper_mode:
        return StoreLoader(split, batch_size, preprocess, device, train=train, seed=cfg.seed, rank=rank,
                           world_size=world_size)
    mixing = None
    if train and (cfg.mixup_alpha or cfg.cutmix_alpha):
        if num_classes is None:
            raise ValueError("build_loader: mixup and CutMix need num_classes, the width of the targets")
        mixing = Mixing(num_classes, cfg.mixup_alpha, cfg.cutmix_alpha)
    return BatchLoader(split, batch_size, preprocess, device, train=train, seed=cfg.seed, rank=rank,
                       world_size=world_size, mixing=mixing)


def protocol(cfg: TrainConfig, preprocess, final: bool) -> Protocol:
    """The test-time views: validation after each epoch (``final=False``) or the final test (saved in
    checkpoints as the run's test protocol).

    Paper mode: the centre patch (with its reflection when ``cfg.tta``), and
    for the final test the paper's ten patches (``cfg.tta_crops`` > 0). Else
    flips (``cfg.tta``), and for the final test the five crops of the image
    padded by ``cfg.tta_crops`` pixels.
    """
    if isinstance(preprocess, PaperAugment):
        return Protocol(mirror=cfg.tta, five=final and cfg.tta_crops > 0, window=preprocess.crop,
                        out_size=preprocess.out_size)
    return Protocol.of_options(cfg.tta, cfg.tta_crops if final else 0)


#: The normalisation numbers a checkpoint keeps (:func:`normalisation`).
NORMALISATION_KEYS = ("mean", "std", "eigvals", "eigvecs")


def saved_normalisation(meta: dict) -> dict:
    """The :func:`normalisation` a checkpoint was trained with."""
    return {k: meta[k] for k in NORMALISATION_KEYS if k in meta}


def checkpoint_preprocess(meta: dict):
    """The test-time transforms of a checkpoint (its ``eval``): a paper-mode checkpoint (``crop_size``)
    normalises the whole stored image (its protocol cuts the patches), any other one resizes to the input."""
    resize_mode = meta.get("resize_mode", "bilinear")
    if meta.get("crop_size"):
        return PaperAugment(meta["mean"], meta["std"], meta["eigvals"], meta["eigvecs"], meta["input_size"],
                            meta["image_size"], crop=meta["crop_size"], resize_mode=resize_mode)
    return Preprocess(meta["mean"], meta["std"], meta["input_size"], pad=0, flip=False, resize_mode=resize_mode)
