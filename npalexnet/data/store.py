"""A split of an ImageFolder tree decoded once into one uint8 array on disk, read back by row.

Notation: N files in the split, C channels, S the stored size, K = C + C(C+1)/2
pixel sums per image, B images of a batch.

Why: the paper's ImageNet is 1.28 million images, 250 GB at 256 x 256, far
beyond memory. One pass decodes every file (:func:`~.decode.decode_image`, in
worker processes) into row ``i`` of one ``.npy`` file; training then reads the
rows of each batch with ``pread``, so the training process holds a few batches,
never the split, and its anonymous memory does not grow with N (pages the
kernel caches for the file are reclaimable, and never counted as ``RssAnon``).

Files, in the cache folder, ``NAME = <prefix><split>-<S>px-<rule>-<C>ch-<fingerprint>``
(the fingerprint of the file list: :func:`~.tree.list_images`):

* ``NAME.npy``: (N, C, S, S) uint8, a plain ``.npy`` (``numpy.load(path, mmap_mode="r")`` reads it);
* ``NAME.index.npz``: ``labels`` (N,) int64, ``ok`` (N,) bool (False: the file
  could not be decoded; its row is all zeros and is never used),
  ``pixel_sums`` (N, K) int64, ``files`` (the relative paths, ``\\n``-joined
  UTF-8) and ``meta`` (JSON: classes, size, rule, the statistics below, the
  unreadable files and why). Written last, atomically: a store is complete
  exactly when its index exists.

While it is being built: ``NAME.npy.partial`` (the array, filled row by row
by the workers with ``pwrite``), ``NAME.progress.npy`` ((N, K+1) int64: each
row's pixel sums and state: pending, done, unreadable; written by the same
worker after its rows are on disk, ``fdatasync``-ed) and ``NAME.lock`` (one
builder at a time). An interrupted build (Ctrl-C, a crash, a killed job)
continues where it stopped: the next run decodes only the rows not marked done.

Unreadable or corrupt files are skipped, not fatal: the decode of a large tree
should not die at file 900,000 for one bad JPEG. Each is listed in the index
with Pillow's reason, the build logs how many and which, and their rows are
left out of the split (every kept row keeps its own file's label; no label
shifts). A split with no readable file is an error.

Pixel statistics (kept in the index, over the readable rows, pixels scaled
to [0, 1]): the per-channel mean and standard deviation and the PCA of the
C x C covariance of the pixel values (the eigenvectors and eigenvalues the
paper's colour augmentation uses, Section 4.1). They come from exact integer
sums per image, so :meth:`ImageStore.stats` gives them for any subset of rows
(the training split without its validation part) without reading an image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy
from tqdm import tqdm

from .atomic import NO_SPACE_ERRNOS, NoSpaceError, atomic_savez, human_bytes
from .decode import DEFAULT_RULE, RESIZE_RULES, decode_image
from .errors import DataError
from .tree import list_images

FORMAT, VERSION = "npalexnet-image-store", 1
PENDING, DONE, UNREADABLE = 0, 1, 2
#: Below this many files to decode, worker processes cost more than they save.
PARALLEL_MIN_FILES = 2000
#: Files per task handed to a worker (a few seconds of work at 256 px).
CHUNK = 256


def sum_columns(channels: int) -> int:
    """K: the C channel sums and the C(C+1)/2 distinct channel products."""
    return channels + channels * (channels + 1) // 2


def pixel_sums(image: numpy.ndarray) -> numpy.ndarray:
    """(C, S, S) uint8 -> (K,) int64: ``sum x_c`` for each c, then ``sum x_c x_d`` for c <= d (exact)."""
    x = image.reshape(image.shape[0], -1).astype(numpy.int32)   # 255 * 255 fits, the sums need int64
    c = x.shape[0]
    sums = [x[i].sum(dtype=numpy.int64) for i in range(c)]
    sums += [(x[i] * x[j]).sum(dtype=numpy.int64) for i in range(c) for j in range(i, c)]
    return numpy.asarray(sums, dtype=numpy.int64)


@dataclass
class PixelStats:
    """Statistics of the pixel values (scaled to [0, 1]) of a set of images.

    Attributes:
        mean, std: (C,) per channel.
        eigvals: (C,) eigenvalues of the C x C pixel covariance, largest first.
        eigvecs: (C, C) the matching unit eigenvectors as columns (column i for
            eigvals[i]), each signed so that its largest component is positive.
    """

    mean: tuple
    std: tuple
    eigvals: tuple
    eigvecs: tuple

    @classmethod
    def from_sums(cls, totals: numpy.ndarray, pixels: int) -> PixelStats:
        """From the (K,) column totals of :func:`pixel_sums` over images holding ``pixels`` pixels in all."""
        totals = numpy.asarray(totals, dtype=numpy.float64)
        k = totals.shape[0]
        c = int(round((-3 + (9 + 8 * k) ** 0.5) / 2))            # K = C + C(C+1)/2
        mean = totals[:c] / (pixels * 255.0)
        second = numpy.zeros((c, c))
        second[numpy.triu_indices(c)] = totals[c:] / (pixels * 255.0 ** 2)
        second = second + numpy.triu(second, 1).T                  # E[x x^T]
        cov = second - numpy.outer(mean, mean)
        eigvals, eigvecs = numpy.linalg.eigh(cov)
        eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
        signs = numpy.sign(eigvecs[numpy.argmax(numpy.abs(eigvecs), axis=0), numpy.arange(c)])
        eigvecs = eigvecs * numpy.where(signs == 0, 1.0, signs)
        std = numpy.sqrt(numpy.maximum(numpy.diag(cov), 1e-12))
        return cls(tuple(map(float, mean)), tuple(map(float, std)), tuple(map(float, numpy.maximum(eigvals, 0.0))),
                   tuple(tuple(map(float, row)) for row in eigvecs))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "eigvals": list(self.eigvals),
                "eigvecs": [list(r) for r in self.eigvecs]}


# ----------------------------------------------------------------------------
# Reading a complete store
# ----------------------------------------------------------------------------

class ImageStore:
    """A complete store, opened for reading rows (see the module doc).

    Attributes:
        stem: the path without suffix (``stem.npy``, ``stem.index.npz``).
        shape: (N, C, S, S). labels: (N,) int64. ok: (N,) bool.
        classes: the class names. meta: the index's JSON (rule, stats, skipped files, ...).
    """

    def __init__(self, stem):
        self.stem = Path(stem)
        self.path, self.index_path = _paths(self.stem)["images"], _paths(self.stem)["index"]
        try:
            with numpy.load(self.index_path, allow_pickle=False) as z:
                self.labels, self.ok = z["labels"].astype(numpy.int64), z["ok"].astype(bool)
                self.meta = json.loads(str(z["meta"]))
            header = numpy.load(self.path, mmap_mode="r")
            self.shape, self._offset = tuple(header.shape), int(header.offset)
            dtype = header.dtype
            del header                          # keep no mapping: rows are read with pread
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise DataError(f"image store {self.stem} is unreadable ({exc}); delete its files to decode again") \
                from exc
        expected = (len(self.labels), self.meta.get("channels"), self.meta.get("size"), self.meta.get("size"))
        if (self.meta.get("format") != FORMAT or dtype != numpy.uint8 or self.shape != expected
                or self.ok.shape != self.labels.shape):
            raise DataError(f"image store {self.stem} does not match its index (array {self.shape} {dtype}, "
                            f"index {expected}); delete its files to decode again")
        self.classes = list(self.meta["classes"])
        self.row_bytes = int(numpy.prod(self.shape[1:]))
        self._fd = None

    # ------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def size(self) -> int:
        return self.shape[2]

    @property
    def rule(self) -> str:
        return self.meta["rule"]

    @property
    def rows(self) -> numpy.ndarray:
        """The readable rows, (M,) int64 ascending."""
        return numpy.flatnonzero(self.ok).astype(numpy.int64)

    @property
    def skipped(self) -> list:
        """``[[relative path, reason], ...]`` of the files that could not be decoded."""
        return list(self.meta.get("skipped", []))

    @property
    def nbytes(self) -> int:
        return self._offset + len(self) * self.row_bytes

    def files(self) -> list[str]:
        """Each row's file, relative to the split's folder."""
        with numpy.load(self.index_path, allow_pickle=False) as z:
            return z["files"].tobytes().decode("utf-8").split("\n")

    def stats(self, rows=None) -> PixelStats:
        """:class:`PixelStats` of ``rows`` (default: every readable row), from the per-image sums."""
        with numpy.load(self.index_path, allow_pickle=False) as z:
            sums = z["pixel_sums"]
        rows = self.rows if rows is None else numpy.asarray(rows, dtype=numpy.int64)
        if not len(rows):
            raise DataError(f"image store {self.stem}: no rows to compute pixel statistics from")
        totals = sums[rows].sum(axis=0, dtype=numpy.int64)
        return PixelStats.from_sums(totals, len(rows) * self.size * self.size)

    # ------------------------------------------------------------------ rows
    def read(self, rows, out: numpy.ndarray | None = None) -> numpy.ndarray:
        """Rows ``rows`` ((B,) ints) -> (B, C, S, S) uint8 (into ``out`` when given), in that order.

        The rows are read in file order with ``preadv``, consecutive rows in
        one call, each straight into its place in ``out`` (no copy, no
        mapping); the GIL is released while the kernel reads.
        """
        rows = numpy.asarray(rows, dtype=numpy.int64).reshape(-1)
        if out is None:
            out = numpy.empty((len(rows),) + self.shape[1:], dtype=numpy.uint8)
        if out.shape[0] < len(rows) or out.shape[1:] != self.shape[1:] or not out.flags.c_contiguous:
            raise ValueError(f"ImageStore.read: out must be C-contiguous ({len(rows)}, ...) of {self.shape[1:]}, "
                             f"got {out.shape}")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"ImageStore.read: rows must be in [0, {len(self)}), got {rows.min()}..{rows.max()}")
        fd = self._descriptor()
        order = numpy.argsort(rows, kind="stable")
        start = 0
        while start < len(order):                 # one read per run of consecutive rows
            stop = start + 1
            while stop < len(order) and stop - start < 512 and rows[order[stop]] == rows[order[stop - 1]] + 1:
                stop += 1
            views = [memoryview(out[j]).cast("B") for j in order[start:stop]]
            offset = self._offset + int(rows[order[start]]) * self.row_bytes
            _read_exactly(fd, views, offset, self.path)
            start = stop
        return out[:len(rows)]

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def __getstate__(self):                         # a descriptor does not travel to another process
        return {**self.__dict__, "_fd": None}

    def __repr__(self) -> str:
        return f"ImageStore({self.stem}, {len(self)} x {self.shape[1:]}, {int(self.ok.sum())} readable)"


def _read_exactly(fd: int, views: list, offset: int, path: Path) -> None:
    want = sum(v.nbytes for v in views)
    if hasattr(os, "preadv"):
        got = os.preadv(fd, views, offset)
        if got == want:
            return
    else:                                          # no preadv (Windows): one pread per row
        got = 0
        for v in views:
            data = os.pread(fd, v.nbytes, offset + got) if hasattr(os, "pread") else _seek_read(fd, v.nbytes,
                                                                                                 offset + got)
            v[:len(data)] = data
            got += len(data)
        if got == want:
            return
    raise DataError(f"image store {path} is truncated (wanted {want} bytes at {offset}, got {got}); "
                    "delete its files to decode again")


def _seek_read(fd: int, count: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, count)


def _paths(stem: Path) -> dict:
    stem = Path(stem)
    return {"images": stem.with_name(stem.name + ".npy"), "index": stem.with_name(stem.name + ".index.npz"),
            "partial": stem.with_name(stem.name + ".npy.partial"),
            "progress": stem.with_name(stem.name + ".progress.npy"), "lock": stem.with_name(stem.name + ".lock")}


# ----------------------------------------------------------------------------
# Building (or finding) the store of a folder
# ----------------------------------------------------------------------------

def store_name(split: str, size: int, channels: int, rule: str, fingerprint: str) -> str:
    """The file-name stem: split, size, decode rule, channels and the tree's fingerprint."""
    return f"{split}-{size}px-{rule}-{channels}ch-{fingerprint}"


def open_store(folder, classes: list[str], split: str, size: int, channels: int = 3, rule: str = DEFAULT_RULE,
               places=(), workers: int | None = None, log=None, progress: bool = True,
               build: bool = True) -> ImageStore:
    """The store of ``folder/<class>/*`` at ``size`` px: found, finished, or decoded now.

    Args:
        folder: the split's folder; ``classes`` gives the label of each sub-folder.
        split: the name's first part (``"train"``, ``"test"``, ``"all"``).
        size, channels, rule: the decode (see :mod:`.decode`).
        places: ``[(folder, name prefix), ...]`` (:func:`~.tree.cache_places`),
            tried in order: the first holding a complete store is used; else
            the first writable one gets (or continues) the build.
        workers: decoding processes (default: every core).
        log: a print-like function for the few lines a build writes.
        progress: a tqdm bar (with an ETA) while decoding, when stderr is a terminal.
        build: False: never decode (a rank that is not rank 0): a missing store is an error.
    Raises:
        DataError: no images, nowhere to write, not enough disk space, no
            readable image, or (``build=False``) no store.
    """
    if rule not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {rule!r}: expected one of {', '.join(RESIZE_RULES)}")
    log = log or (lambda *a, **k: None)
    folder = Path(folder)
    paths, labels, fingerprint = list_images(folder, classes)
    if not paths:
        from .tree import EXTENSIONS
        raise DataError(f"no images ({', '.join(EXTENSIONS)}) under {folder}/<class>/")
    name = store_name(split, size, channels, rule, fingerprint)
    stems = [Path(base) / f"{prefix}{name}" for base, prefix in places]
    found = _find_complete(stems, labels, log)
    if found is not None:
        return found
    if not build:
        raise DataError(f"no decoded image store for {folder} (looked for {name} in "
                        f"{', '.join(str(s.parent) for s in stems)}): rank 0 builds it; on a machine of its own, "
                        "copy the store files there or build them with `python -m npalexnet.data.prepare`")
    errors = []
    for stem in stems:
        try:
            stem.parent.mkdir(parents=True, exist_ok=True)
            lock = _Lock(_paths(stem)["lock"], log)
        except OSError as exc:                   # not writable (or full): the next place, and say so
            errors.append(f"{stem.parent}: {exc.strerror or exc}")
            log(f"cannot write the decoded images of {folder} to {stem.parent} ({exc.strerror or exc}): "
                "trying the next cache folder")
            continue
        with lock:
            # Another process may have finished it (a damaged store here was reported above).
            found = _find_complete([stem], labels, lambda *a, **k: None)
            if found is not None:
                return found
            meta = {"format": FORMAT, "version": VERSION, "split": split, "size": int(size),
                    "channels": int(channels), "rule": rule, "fingerprint": fingerprint, "classes": list(classes),
                    "folder": str(folder.resolve())}
            _build(stem, [os.path.relpath(p, folder) for p in paths], folder, labels, meta, workers, log, progress)
        return ImageStore(stem)
    raise DataError(f"cannot write the decoded images of {folder} anywhere ({'; '.join(errors)}): "
                    "pass --cache-dir DIR or set NPALEXNET_CACHE to a writable folder")


def _find_complete(stems, labels, log) -> ImageStore | None:
    for stem in stems:
        if not _paths(stem)["index"].is_file():
            continue
        try:
            store = ImageStore(stem)
        except DataError as exc:
            log(f"ignoring a damaged image store: {exc}")
            continue
        if len(store) == len(labels) and numpy.array_equal(store.labels, labels):
            return store
    return None


class _Lock:
    """An exclusive ``flock`` on ``path`` while building (a second builder waits; nothing on Windows).

    The empty lock file stays: removing it would let a third process lock a
    new file while a second one holds the old one.
    """

    def __init__(self, path: Path, log):
        self.path, self.log = path, log
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.log(f"waiting for another process that is decoding into {self.path.with_suffix('')} ...")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)                          # releases the lock


def _build(stem: Path, files: list[str], folder: Path, labels, meta: dict, workers, log, progress: bool) -> None:
    """Decode every pending row of ``stem`` (resuming its partial files), then commit the index."""
    p = _paths(stem)
    n, c, s = len(files), meta["channels"], meta["size"]
    if p["images"].exists() and p["progress"].exists():   # stopped between the rename and the index
        os.replace(p["images"], p["partial"])
    state = _resume_state(p, (n, c, s, s), (n, sum_columns(c) + 1))
    if state is None:
        _create_partial(p, (n, c, s, s))
        state = numpy.zeros(n, numpy.int64)
    else:
        log(f"continuing the decode of {folder}: {int((state == DONE).sum())} of {n} images already done")
    pending = numpy.flatnonzero(state != DONE)
    offsets = (_data_offset(p["partial"]), _data_offset(p["progress"]))
    tasks = [(start, [str(folder / f) for f in files[start:stop]], str(p["partial"]), str(p["progress"]), offsets,
              s, c, meta["rule"]) for start, stop in _runs(pending, CHUNK)]
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if len(pending) < PARALLEL_MIN_FILES:
        workers = 1
    failures: dict[int, str] = {}
    start_time = time.perf_counter()
    bar = tqdm(total=n, initial=n - len(pending), desc=f"decoding {folder.name or folder}", unit="img",
               disable=True if not progress else None, dynamic_ncols=True, smoothing=0.1)
    # Without a terminal (a batch job's log) the bar is off: a line at every tenth instead.
    lines, tenths, done = progress and bar.disable, 0, 0
    try:
        with contextlib.closing(_run_tasks(tasks, workers)) as results:
            for _, count, failed in results:
                failures.update(failed)
                bar.update(count)
                done += count
                if lines and 10 * done // len(pending) > tenths:
                    tenths = 10 * done // len(pending)
                    rate = done / max(time.perf_counter() - start_time, 1e-9)
                    log(f"decoding {folder}: {done} of {len(pending)} images ({rate:.0f} images/s, "
                        f"{tqdm.format_interval((len(pending) - done) / rate)} left)")
    except KeyboardInterrupt:
        log(f"decode interrupted: the images done so far are kept in {p['partial']}; the next run continues")
        raise
    except OSError as exc:                        # a full disk, a vanished folder
        if exc.errno in NO_SPACE_ERRNOS:
            row_bytes = c * s * s + (sum_columns(c) + 1) * 8
            raise _no_space(p["partial"], (len(pending) - done) * row_bytes, exc, n - len(pending) + done) from exc
        raise DataError(f"writing the decoded images of {folder} to {p['partial']} failed: {exc}") from exc
    finally:
        bar.close()
    seconds = time.perf_counter() - start_time
    try:
        meta = _commit(p, files, labels, {**meta, "seconds": round(seconds, 1), "workers": workers}, failures,
                       folder)
    except NoSpaceError as exc:                   # the index: every image is decoded, the commit waits for room
        raise _no_space(exc.path, exc.needed, exc, n) from exc
    if len(pending):
        rate = len(pending) / max(seconds, 1e-9)
        log(f"decoded {len(pending)} images of {folder} in {seconds:.1f} s ({rate:.0f} images/s, {workers} "
            f"process{'es' if workers > 1 else ''}) into {p['images']} ({_size_text(p['images'].stat().st_size)})")
    skipped = meta["skipped"]
    if skipped:
        shown = "; ".join(f"{f} ({why})" for f, why in skipped[:10])
        more = f"; and {len(skipped) - 10} more (listed in {p['index'].name})" if len(skipped) > 10 else ""
        log(f"warning: skipped {len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} of {folder}: "
            f"{shown}{more}")


def _no_space(path: Path, needed: int | None, cause: OSError, done: int) -> DataError:
    """A full disk while decoding, as one line: the file, the space, what is kept, what to do."""
    full = cause if isinstance(cause, NoSpaceError) else NoSpaceError(path, needed, cause, at_least=True)
    return DataError(f"{full}: the {done} images decoded so far are kept and the next run continues from them; "
                     "free some space, or pass --cache-dir DIR (or set NPALEXNET_CACHE) to a folder with room")


def _create_partial(p: dict, shape: tuple) -> None:
    """Fresh ``.npy.partial`` (sparse: no bytes written yet) and ``.progress.npy`` (every row pending)."""
    n, c = shape[0], shape[1]
    k = sum_columns(c)
    _check_space(p["partial"].parent, int(numpy.prod(shape)) + n * (k + 1) * 8)
    for key in ("images", "partial", "progress"):
        with contextlib.suppress(FileNotFoundError):
            p[key].unlink()
    numpy.lib.format.open_memmap(p["partial"], "w+", numpy.uint8, shape).flush()
    numpy.lib.format.open_memmap(p["progress"], "w+", numpy.int64, (n, k + 1)).flush()


def _commit(p: dict, files: list[str], labels, meta: dict, failures: dict, what) -> dict:
    """Every row done: the statistics, the rename to ``.npy``, then the index (the commit). Returns the meta."""
    table = numpy.load(p["progress"])
    k = table.shape[1] - 1
    if not numpy.isin(table[:, k], (DONE, UNREADABLE)).all():
        raise DataError(f"decoding {what} left rows undone ({p['progress']}): run again to finish it")
    ok = table[:, k] == DONE
    if not ok.any():
        first = next(iter(failures.values()), "")
        raise DataError(f"none of the {len(ok)} images under {what} could be decoded ({first})")
    size = meta["size"]
    stats = PixelStats.from_sums(table[ok, :k].sum(axis=0, dtype=numpy.int64), int(ok.sum()) * size * size)
    skipped = [[files[r], failures.get(int(r), "unreadable")] for r in numpy.flatnonzero(~ok)]
    meta = {**meta, "count": len(ok), "readable": int(ok.sum()), "stats": stats.to_dict(), "skipped": skipped}
    _fsync(p["partial"])
    os.replace(p["partial"], p["images"])
    atomic_savez(p["index"], {"labels": numpy.asarray(labels, numpy.int64), "ok": ok, "pixel_sums": table[:, :k],
                              "files": numpy.frombuffer("\n".join(files).encode("utf-8"), dtype=numpy.uint8),
                              "meta": numpy.asarray(json.dumps(meta))})
    p["progress"].unlink()
    return meta


def write_store(stem, chunks, labels, classes: list[str], files: list[str] | None = None) -> ImageStore:
    """A store from arrays already decoded: ``chunks`` yields (n_i, C, S, S) uint8 in row order.

    For data that is not an ImageFolder tree (and for tests that need a large
    store without decoding it): the same files, statistics and commit as a
    decode. ``files`` names the rows (default ``row-<i>``).
    """
    p = _paths(Path(stem))
    labels = numpy.asarray(labels, dtype=numpy.int64)
    n, row, meta = len(labels), 0, None
    for chunk in chunks:
        chunk = numpy.ascontiguousarray(chunk, dtype=numpy.uint8)
        if meta is None:
            c, s = chunk.shape[1], chunk.shape[2]
            p["partial"].parent.mkdir(parents=True, exist_ok=True)
            _create_partial(p, (n, c, s, s))
            offsets = (_data_offset(p["partial"]), _data_offset(p["progress"]))
            meta = {"format": FORMAT, "version": VERSION, "split": "arrays", "size": s, "channels": c,
                    "rule": "given", "fingerprint": "", "classes": list(classes), "folder": ""}
        if chunk.shape[1:] != (meta["channels"], meta["size"], meta["size"]) or row + len(chunk) > n:
            raise ValueError(f"write_store: chunk of shape {chunk.shape} does not fit rows {row}.. of "
                             f"({n}, {meta['channels']}, {meta['size']}, {meta['size']})")
        table = numpy.zeros((len(chunk), sum_columns(meta["channels"]) + 1), dtype=numpy.int64)
        for i, image in enumerate(chunk):
            table[i, :-1] = pixel_sums(image)
        table[:, -1] = DONE
        _pwrite_all(str(p["partial"]), chunk, offsets[0] + row * chunk[0].nbytes)
        _pwrite_all(str(p["progress"]), table, offsets[1] + row * table[0].nbytes)
        row += len(chunk)
    if meta is None or row != n:
        raise ValueError(f"write_store: {row} images written for {n} labels")
    _commit(p, files or [f"row-{i}" for i in range(n)], labels, meta, {}, stem)
    return ImageStore(stem)


def _size_text(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _resume_state(p: dict, image_shape: tuple, progress_shape: tuple):
    """The per-row states of a partial build that matches, or None (start afresh)."""
    if not (p["partial"].exists() and p["progress"].exists()):
        return None
    try:
        images = numpy.load(p["partial"], mmap_mode="r")
        table = numpy.load(p["progress"], mmap_mode="r")
        if images.shape != image_shape or images.dtype != numpy.uint8 or table.shape != progress_shape:
            return None
        return numpy.array(table[:, -1])
    except (OSError, ValueError, EOFError):
        return None


def _runs(rows: numpy.ndarray, chunk: int):
    """``(start, stop)`` of runs of consecutive ``rows``, cut to at most ``chunk`` rows each."""
    if not len(rows):
        return
    breaks = numpy.flatnonzero(numpy.diff(rows) != 1) + 1
    for run in numpy.split(rows, breaks):
        for i in range(0, len(run), chunk):
            yield int(run[i]), int(run[min(i + chunk, len(run)) - 1]) + 1


def _run_tasks(tasks: list, workers: int):
    """Yield each task's result as it finishes (in this process when ``workers`` is 1)."""
    if workers <= 1:
        for task in tasks:
            yield _decode_task(task)
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    try:
        futures = [pool.submit(_decode_task, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        # Ctrl-C or a failure: let the running tasks finish (their rows are recorded), drop the rest.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops handing out tasks and waits for theirs."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_task(task):
    """Decode files into consecutive rows ``start ..``; write them, then their sums and states.

    Returns ``(start, count, {row: reason})`` for the files that could not be decoded.
    """
    start, paths, image_path, progress_path, (image_offset, table_offset), size, channels, rule = task
    n = len(paths)
    images = numpy.zeros((n, channels, size, size), dtype=numpy.uint8)
    table = numpy.zeros((n, sum_columns(channels) + 1), dtype=numpy.int64)
    failed = {}
    for i, path in enumerate(paths):
        try:
            images[i] = decode_image(path, size, channels, rule)
        except DataError as exc:
            table[i, -1] = UNREADABLE
            failed[start + i] = str(exc.__cause__ or exc)
            continue
        table[i, :-1] = pixel_sums(images[i])
        table[i, -1] = DONE
    # The pixels reach the disk before the progress table says they are there.
    _pwrite_all(image_path, images, image_offset + start * images[0].nbytes)
    _pwrite_all(progress_path, table, table_offset + start * table[0].nbytes)
    return start, n, failed


def _pwrite_all(path: str, array: numpy.ndarray, offset: int) -> None:
    data = memoryview(numpy.ascontiguousarray(array)).cast("B")
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    try:
        done = 0
        while done < len(data):
            if hasattr(os, "pwrite"):
                done += os.pwrite(fd, data[done:], offset + done)
            else:
                os.lseek(fd, offset + done, os.SEEK_SET)
                done += os.write(fd, data[done:])
        getattr(os, "fdatasync", os.fsync)(fd)
    finally:
        os.close(fd)


def _data_offset(path: Path) -> int:
    array = numpy.load(path, mmap_mode="r")
    offset = int(array.offset)
    del array
    return offset


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.02:
        raise DataError(f"decoding needs {human_bytes(needed)} in {folder}, which has {human_bytes(free)} free: "
                        "pass --cache-dir DIR (or set NPALEXNET_CACHE) to a folder with room")


# ----------------------------------------------------------------------------
# A split whose images stay in a store
# ----------------------------------------------------------------------------

class StoreSplit:
    """The images of a store at some of its rows, with their labels: a split read from disk.

    Sample ``i`` of the split is store row ``rows[i]``. The interface is
    :class:`~.dataset.Split`'s minus ``images``: ``len``, ``labels``,
    ``take``, ``image_shape``, ``digest``, plus :meth:`read`.
    """

    def __init__(self, store: ImageStore, rows=None):
        self.store = store
        self.rows = store.rows if rows is None else numpy.asarray(rows, dtype=numpy.int64)
        self.labels = store.labels[self.rows]

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def image_shape(self) -> tuple:
        return self.store.shape[1:]

    def take(self, indices) -> StoreSplit:
        """Samples ``indices`` of this split (no image is read)."""
        return StoreSplit(self.store, self.rows[numpy.asarray(indices, dtype=numpy.int64)])

    def read(self, indices, out=None) -> numpy.ndarray:
        """Samples ``indices`` -> (B, C, S, S) uint8 host array (see :meth:`ImageStore.read`)."""
        return self.store.read(self.rows[numpy.asarray(indices, dtype=numpy.int64)], out)

    def stats(self) -> PixelStats:
        """Pixel statistics of exactly this split's images."""
        return self.store.stats(self.rows)

    def digest(self) -> str:
        """Names what this split holds: the store (its tree's fingerprint) and the rows."""
        return hashlib.sha1(self.store.stem.name.encode() + self.rows.tobytes() + self.labels.tobytes()).hexdigest()
