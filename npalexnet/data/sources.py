"""Find a dataset: a local copy in one of the known layouts, else the published files, downloaded.

``load_dataset`` is the one entry point the training program calls. Where it
looks, in order:

* ``--data-dir DIR`` given: ``DIR/train.npz`` + ``DIR/test.npz``, decoded
  uint8 arrays (:mod:`.arrays`, any dataset); ``DIR`` (or
  ``DIR/cifar-10-batches-py``) with CIFAR-10's pickled batches; an ImageFolder tree
  ``DIR/train/<class>/*`` + ``DIR/test/<class>/*`` or ``DIR/<class>/*``;
  for FashionMNIST, the four idx files in ``DIR`` or ``DIR/FashionMNIST/raw``.
  Never downloads.
* no ``--data-dir``: ``./data`` (``root``): an existing
  ``cifar-10-batches-py`` or ``FashionMNIST/raw`` (torchvision's layouts) is
  read directly; otherwise the official files are downloaded there with the
  standard library, MD5-checked and unpacked (:mod:`.download`), from
  ``download_url`` or ``$NPALEXNET_DOWNLOAD_URL`` when given (a mirror).
"""

from __future__ import annotations

from pathlib import Path

from .arrays import TEST_FILE, TRAIN_FILE, find_arrays_dir, load_arrays
from .cifar_pickle import download_cifar10, find_batches_dir, load_cifar_batches
from .dataset import Dataset
from .errors import DataNotFoundError
from .fashionmnist import download_fashionmnist, find_raw_dir, load_fashionmnist
from .imagefolder import EXTENSIONS, is_imagefolder, load_imagefolder

DATASETS = ("cifar10", "fashionmnist", "imagefolder")
DEFAULT_ROOT = "./data"

HINT = ("point --data-dir at a local copy: a folder holding cifar-10-batches-py/ (the official archive, "
        "unpacked), an ImageFolder tree DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg, or decoded "
        "arrays DIR/train.npz and DIR/test.npz")

#: name -> (find a local copy under a folder, download into a folder, read the copy found)
PUBLISHED = {
    "cifar10": (find_batches_dir, download_cifar10, load_cifar_batches),
    "fashionmnist": (find_raw_dir, download_fashionmnist, load_fashionmnist),
}


def load_dataset(name: str = "cifar10", data_dir=None, *, root=DEFAULT_ROOT, download: bool = True,
                 download_url: str | None = None, image_size: int | None = None, channels: int | None = None,
                 cache_dir=None, workers: int | None = None, seed: int = 0, log=None,
                 progress: bool = True) -> Dataset:
    """The train and test splits of ``name`` as uint8 arrays on the host.

    Args:
        name: ``"cifar10"``, ``"fashionmnist"`` or ``"imagefolder"``.
        data_dir: a local copy (any layout above); required for ``"imagefolder"``.
        root, download: where the published files are kept (and downloaded to, unless ``download`` is False).
        download_url: a mirror of the published files (a folder URL or path; default
            ``$NPALEXNET_DOWNLOAD_URL``, else the official location).
        image_size: decode size for ImageFolder trees (default 32, CIFAR's).
        channels: 3 (RGB) or 1 (grey) for ImageFolder trees (default 3; 1 for FashionMNIST).
        cache_dir: where ImageFolder decodes are cached (default next to the data).
        workers: decoding processes (default: every core).
        seed: the test split of an ImageFolder tree without ``test/``.
        log: called with one line per step that takes time (a download, a decoding).
        progress: a download shows a tqdm bar (when stderr is a terminal).
    Raises:
        DataNotFoundError: nothing found and no download; the message lists where it looked.
        DownloadError: the download failed; nothing of it was kept.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    channels = channels or (1 if name == "fashionmnist" else 3)
    image_size = image_size or (28 if name == "fashionmnist" else 32)
    if data_dir is None:
        if name == "imagefolder":
            raise DataNotFoundError("--dataset imagefolder needs --data-dir DIR with DIR/<class>/*.jpg "
                                    "(or DIR/train/<class>/ and DIR/test/<class>/)")
        find, download_to, read = PUBLISHED[name]
        local = find(root)
        if local is None and not download:
            raise DataNotFoundError(f"no {name} data in {Path(root).resolve()} and downloading is off "
                                    f"(--no-download); {HINT}")
        if local is None:
            local = download_to(root, download_url, log=log, progress=progress)
        return read(local)

    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataNotFoundError(f"--data-dir {data_dir}: no such directory; {HINT}")
    if find_arrays_dir(data_dir) is not None:
        return load_arrays(data_dir, name)
    if name in PUBLISHED:
        find, _, read = PUBLISHED[name]
        local = find(data_dir)
        if local is not None:
            return read(local)
    if is_imagefolder(data_dir / "train") or is_imagefolder(data_dir):
        return load_imagefolder(data_dir, image_size, channels, name=name, seed=seed,
                                cache_dir=cache_dir, workers=workers, log=log)
    looked = [f"{data_dir}/{TRAIN_FILE} + {TEST_FILE}",
              f"{data_dir}/train/<class>/*{{{','.join(EXTENSIONS[:2])},...}}", f"{data_dir}/<class>/*"]
    if name == "cifar10":
        looked.insert(0, f"{data_dir}/cifar-10-batches-py/data_batch_1..5 + test_batch")
    if name == "fashionmnist":
        looked.insert(0, f"{data_dir}/FashionMNIST/raw/{{train,t10k}}-{{images,labels}}-idx*-ubyte[.gz]")
    raise DataNotFoundError(f"no {name} data found in {data_dir} (looked for {'; '.join(looked)}); {HINT}")
