"""Decode an ImageFolder tree into its stores before training: ``python -m npalexnet.data.prepare DIR``.

The first ``--recipe paper`` run does this itself (rank 0 of a distributed
run); running it ahead lets a cluster job start training at once, or builds
the stores on each machine of a cluster without a shared file system. An
interrupted run continues where it stopped (:mod:`.store`).

    python -m npalexnet.data.prepare /data/imagenet --workers 16
    python -m npalexnet.data.prepare /data/flowers --image-size 256 --cache-dir /scratch/stores
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .decode import DEFAULT_RULE, RESIZE_RULES
from .errors import DataError
from .imagefolder import open_imagefolder
from .store import _size_text


def main(argv=None, log: Callable = print) -> int:
    """Build (or find) the store of every split of the tree; one line per store, or one error line."""
    parser = argparse.ArgumentParser(prog="python -m npalexnet.data.prepare",
                                     description="Decode an ImageFolder tree (DIR/train/<class>/*, DIR/test/<class>/* "
                                                 "or DIR/<class>/*) into the disk-backed stores paper mode reads.")
    parser.add_argument("data_dir")
    parser.add_argument("--image-size", type=int, default=256, help="stored size (default: 256, the paper's)")
    parser.add_argument("--resize-rule", choices=RESIZE_RULES, default=DEFAULT_RULE,
                        help="crop: shorter side to the size, then the centre square (default); squash: both sides")
    parser.add_argument("--cache-dir", default=None, help="where the stores go (default: DIR/.npalexnet-cache, "
                                                          "else the user cache folder)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: every core)")
    args = parser.parse_args(argv)
    try:
        dataset = open_imagefolder(args.data_dir, args.image_size, rule=args.resize_rule, cache_dir=args.cache_dir,
                                   workers=args.workers, log=log)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue the decode", file=sys.stderr)
        return 130
    for split in (dataset.train, dataset.test):
        store = split.store
        log(f"{store.path}: {len(split)} images of {split.image_shape}, {_size_text(store.nbytes)}, "
            f"{len(store.skipped)} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
