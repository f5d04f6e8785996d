"""The data pipeline: find and decode a dataset once, keep each split as one
uint8 array on the device, and augment batches there in array code.

* :mod:`.sources`: ``load_dataset`` (local copies in several layouts, or the published files downloaded)
* :mod:`.cifar_pickle`, :mod:`.fashionmnist`, :mod:`.imagefolder`, :mod:`.arrays`: the readers
* :mod:`.download`: published files fetched with urllib, MD5-checked, unpacked whole or not at all
* :mod:`.split`: seeded stratified validation split and subsets
* :mod:`.augment`: crop/flip/normalise/resize on NumPy or CuPy
* :mod:`.mixing`: mixup and CutMix, each image blended with a partner from the split
* :mod:`.sampling`: the one epoch shuffle, its batches, each rank's slice
* :mod:`.loader`: batches of a split held on the device, in that order
* :mod:`.atomic`: files written whole or not at all
"""

from .augment import CIFAR10_MEAN, CIFAR10_STD, Preprocess, channel_stats, crop_flip, hflip, normalize, resize
from .cifar_pickle import CLASSES as CIFAR10_CLASSES
from .dataset import Dataset, Split
from .download import DownloadError
from .errors import DataError, DataNotFoundError
from .loader import BatchLoader
from .mixing import Mixing
from .sampling import epoch_order, global_batches, local_slice
from .sources import DATASETS, load_dataset
from .split import split_off_validation, stratified_sample, stratified_split

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "BatchLoader",
    "DataError",
    "DataNotFoundError",
    "DownloadError",
    "Mixing",
    "Dataset",
    "Preprocess",
    "Split",
    "channel_stats",
    "crop_flip",
    "epoch_order",
    "global_batches",
    "hflip",
    "load_dataset",
    "local_slice",
    "normalize",
    "resize",
    "split_off_validation",
    "stratified_sample",
    "stratified_split",
]
