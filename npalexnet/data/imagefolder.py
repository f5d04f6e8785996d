"""ImageFolder trees (``ROOT/<class>/*.jpg``) as a :class:`~.dataset.Dataset`, decoded once.

Layouts accepted:

* ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` (the official split, as
  in ``../shared/data/cifar10``), or ``DIR/val/<class>/*`` for the test split
  (ImageNet's layout);
* ``DIR/<class>/*`` alone (e.g. the flowers dataset): a seeded, stratified
  ``test_fraction`` of it becomes the test split.

Every image is decoded by the one rule of :mod:`.decode` (by default the
paper's: shorter side to ``image_size``, centre crop; ``rule="squash"``
resizes both sides) into a store (:mod:`.store`): one uint8 file per split,
named by the size, the rule and a fingerprint of the file list, in
``DIR/.npalexnet-cache/`` beside ``train/`` and ``test/`` (never inside a
class tree), else in the user cache folder (:func:`~.tree.cache_places`).
A second run finds it; a changed tree is decoded again; an interrupted decode
continues. Then each split is either read whole into memory (``in_memory``:
a :class:`~.dataset.Split`, for CIFAR-size trees) or left on disk and read by
batch (a :class:`~.store.StoreSplit`, for trees the size of ImageNet).
"""

from __future__ import annotations

from pathlib import Path

from .dataset import Dataset, Split
from .decode import DEFAULT_RULE
from .errors import DataError
from .split import stratified_split
from .store import StoreSplit, open_store
from .tree import (  # noqa: F401 (re-exported: the tree's helpers were defined here)
    CACHE_DIR_NAME,
    EXTENSIONS,
    cache_places,
    default_cache_dir,
    is_imagefolder,
    list_classes,
    list_images,
)

#: Folder names taken for the test split beside ``train/``, in order.
TEST_FOLDERS = ("test", "val")


def open_imagefolder(root, image_size: int, channels: int = 3, *, name: str = "imagefolder",
                     rule: str = DEFAULT_RULE, test_fraction: float = 0.1, seed: int = 0, cache_dir=None,
                     workers: int | None = None, log=None, progress: bool = True, build: bool = True,
                     in_memory: bool = False) -> Dataset:
    """An ImageFolder tree (with or without ``train/`` and ``test/``) as a :class:`Dataset`.

    Args:
        image_size, channels, rule: the decode (:func:`~.decode.decode_image`).
        test_fraction, seed: the test split of a flat tree.
        cache_dir, workers, log, progress, build: see :func:`~.store.open_store`.
        in_memory: splits as in-memory :class:`Split` arrays (else :class:`StoreSplit`).
    """
    root = Path(root)
    if not (is_imagefolder(root / "train") or is_imagefolder(root)):
        raise DataError(f"{root}: no ImageFolder tree there (looked for {root}/train/<class>/*.jpg and "
                        f"{root}/<class>/*.jpg)")

    def split_of(folder: Path, classes: list[str], part: str, places):
        store = open_store(folder, classes, part, image_size, channels=channels, rule=rule, places=places,
                           workers=workers, log=log, progress=progress, build=build)
        whole = StoreSplit(store)
        if in_memory:
            images = whole.read(range(len(whole)))
            store.close()
            return Split(images, whole.labels)
        return whole

    if is_imagefolder(root / "train"):
        classes = list_classes(root / "train")
        places = cache_places(root, cache_dir, split_layout=True)
        test_name = next((t for t in TEST_FOLDERS if is_imagefolder(root / t)), None)
        if test_name is None:
            raise DataError(f"{root}/train/ has class folders but {root}/test/ has none (nor {root}/val/): add the "
                            f"test split, or put the class folders directly under {root}")
        test_classes = list_classes(root / test_name)
        if not set(test_classes) <= set(classes):
            raise DataError(f"{root}/{test_name}/ has classes missing from {root}/train/: "
                            f"{sorted(set(test_classes) - set(classes))}")
        train = split_of(root / "train", classes, "train", places)
        test = split_of(root / test_name, classes, test_name, places)
    else:
        classes = list_classes(root)
        places = cache_places(root, cache_dir, split_layout=False)
        everything = split_of(root, classes, "all", places)
        train_idx, test_idx = stratified_split(everything.labels, test_fraction, seed)
        train, test = everything.take(train_idx), everything.take(test_idx)
    return Dataset(name, train, test, classes, source=str(root))


def load_imagefolder(root, image_size: int, channels: int = 3, **kwargs) -> Dataset:
    """:func:`open_imagefolder` with both splits read into memory."""
    return open_imagefolder(root, image_size, channels, in_memory=True, **kwargs)
