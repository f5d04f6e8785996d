"""A short paper-mode training run from a store, reporting its memory (run by test_store_memory.py).

    python tests/data/memory_worker.py STORE_STEM STEPS BATCH

Prints one JSON line: the peak resident set (VmHWM), the largest anonymous
resident memory (RssAnon) seen after any step, and the store's size in bytes.
The store is read with pread (no mapping), so its pages are never part of this
process's resident set: VmHWM is the anonymous peak plus the mapped libraries.
"""

from __future__ import annotations

import json
import sys

import numpy


def status_kib() -> dict:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmHWM", "RssFile"):
                fields[key] = int(value.split()[0])
    return fields


def main(stem: str, steps: int, batch: int) -> None:
    from npalexnet import config, distributed, nn, optim
    from npalexnet.data.paper_augment import PaperAugment
    from npalexnet.data.store import ImageStore, StoreSplit
    from npalexnet.data.store_loader import StoreLoader
    from npalexnet.models import alexnet
    from npalexnet.train.loop import train_one_epoch

    split = StoreSplit(ImageStore(stem))
    stats = split.stats()
    augment = PaperAugment(stats.mean, (1 / 255,) * 3, stats.eigvals, stats.eigvecs, 227, split.image_shape[1])
    loader = StoreLoader(split, batch, augment, "cpu", train=True, seed=0)
    model = alexnet("paper", len(split.store.classes), width=0.0625, init="paper")
    optimizer = optim.PaperSGD(model.parameters(), lr=0.01)
    anon = []

    def after_step() -> bool:
        anon.append(status_kib()["RssAnon"])
        return len(anon) >= steps

    parallel = distributed.DataParallel(model, distributed.SingleProcessCommunicator())
    with config.using(buffer_pool=True):   # as fit trains
        train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, epoch=0, seed=0, parallel=parallel,
                        should_stop=after_step, progress=False)
    assert len(anon) == steps and numpy.isfinite([p.data.sum() for p in model.parameters()]).all()
    print(json.dumps({"vmhwm_kib": status_kib()["VmHWM"], "rss_anon_kib": max(anon),
                      "rss_anon_first_kib": anon[0], "store_bytes": split.store.nbytes,
                      "images": len(split)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
