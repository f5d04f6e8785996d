"""Find a dataset: a local copy in one of the known layouts, else a torchvision download.

``load_dataset`` is the one entry point the training program calls. Where it
looks, in order:

* ``--data-dir DIR`` given: ``DIR`` (or ``DIR/cifar-10-batches-py``) with
  torchvision's pickled CIFAR-10 batches; an ImageFolder tree
  ``DIR/train/<class>/*`` + ``DIR/test/<class>/*`` or ``DIR/<class>/*``;
  for FashionMNIST, torchvision's raw files under ``DIR`` (no download).
* no ``--data-dir``: ``./data`` (``root``) through torchvision with
  ``download=True``, as the tutorials do; a ``./data/cifar-10-batches-py``
  already there is read directly, without torch.
"""

from __future__ import annotations

from pathlib import Path

from .cifar_pickle import find_batches_dir, load_cifar_batches
from .dataset import Dataset
from .errors import DataError, DataNotFoundError
from .decode import DEFAULT_RULE
from .imagefolder import EXTENSIONS, is_imagefolder, open_imagefolder
from .torchvision_source import load_torchvision

DATASETS = ("cifar10", "fashionmnist", "imagefolder")
DEFAULT_ROOT = "./data"

HINT = ("point --data-dir at a local copy: a folder holding cifar-10-batches-py/ (torchvision's "
        "download), or an ImageFolder tree DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg")


def load_dataset(name: str = "cifar10", data_dir=None, *, root=DEFAULT_ROOT, download: bool = True,
                 image_size: int | None = None, channels: int | None = None, cache_dir=None,
                 workers: int | None = None, seed: int = 0, log=None, rule: str = DEFAULT_RULE,
                 in_memory: bool = True, progress: bool = True, build: bool = True) -> Dataset:
    """The train and test splits of ``name`` as uint8 arrays on the host (or, for an ImageFolder
    tree with ``in_memory=False``, as stores on disk).

    Args:
        name: ``"cifar10"``, ``"fashionmnist"`` or ``"imagefolder"``.
        data_dir: a local copy (any layout above); required for ``"imagefolder"``.
        root, download: where torchvision keeps (and downloads) its copy.
        image_size: decode size for ImageFolder trees (default 32, CIFAR's).
        channels: 3 (RGB) or 1 (grey) for ImageFolder trees (default 3; 1 for FashionMNIST).
        cache_dir: where ImageFolder decodes are cached (default next to the data).
        workers: decoding processes (default: every core).
        seed: the test split of an ImageFolder tree without ``test/``.
        rule: how ImageFolder images are fitted to ``image_size`` (:mod:`.decode`: ``"crop"``
            the shorter side then the centre, or ``"squash"``).
        in_memory, progress, build: see :func:`.imagefolder.open_imagefolder`.
    Raises:
        DataNotFoundError: nothing found and no download; the message lists where it looked.
        DataError: ``in_memory=False`` for data that is not an ImageFolder tree.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    channels = channels or (1 if name == "fashionmnist" else 3)
    image_size = image_size or (28 if name == "fashionmnist" else 32)
    if data_dir is None:
        if name == "imagefolder":
            raise DataNotFoundError("--dataset imagefolder needs --data-dir DIR with DIR/<class>/*.jpg "
                                    "(or DIR/train/<class>/ and DIR/test/<class>/)")
        if name == "cifar10":
            local = find_batches_dir(root)
            if local is not None:
                return load_cifar_batches(local)
        try:
            return load_torchvision(name, root, download)
        except DataNotFoundError as exc:
            raise DataNotFoundError(f"{exc}; {HINT}") from exc

    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataNotFoundError(f"--data-dir {data_dir}: no such directory; {HINT}")
    if in_memory and name == "cifar10":
        batches = find_batches_dir(data_dir)
        if batches is not None:
            return load_cifar_batches(batches)
    if in_memory and name == "fashionmnist" and (data_dir / "FashionMNIST" / "raw").is_dir():
        return load_torchvision(name, data_dir, download=False)
    if is_imagefolder(data_dir / "train") or is_imagefolder(data_dir):
        return open_imagefolder(data_dir, image_size, channels, name=name, seed=seed, cache_dir=cache_dir,
                                workers=workers, log=log, rule=rule, in_memory=in_memory, progress=progress,
                                build=build)
    if not in_memory:
        raise DataError(f"--data-dir {data_dir}: images read from disk (paper mode) need an ImageFolder tree "
                        "DIR/train/<class>/*.jpg + DIR/test/<class>/*.jpg, or DIR/<class>/*.jpg")
    looked = [f"{data_dir}/train/<class>/*{{{','.join(EXTENSIONS[:2])},...}}", f"{data_dir}/<class>/*"]
    if name == "cifar10":
        looked.insert(0, f"{data_dir}/cifar-10-batches-py/data_batch_1..5 + test_batch")
    if name == "fashionmnist":
        looked.insert(0, f"{data_dir}/FashionMNIST/raw/")
    raise DataNotFoundError(f"no {name} data found in {data_dir} (looked for {'; '.join(looked)}); {HINT}")
