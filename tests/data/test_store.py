"""The disk-backed image store: rows are the decoded files, statistics, reuse, resume, atomic commit, bad files."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy
import pytest

from npalexnet.data import DataError
from npalexnet.data import store as store_module
from npalexnet.data.decode import decode_image
from npalexnet.data.store import ImageStore, StoreSplit, open_store, write_store
from npalexnet.data.tree import default_cache_dir, list_classes, list_images
from tests.fakedata import write_jpeg_tree

ROOT = Path(__file__).resolve().parents[2]


def build(folder, cache, size=20, **kwargs):
    classes = list_classes(folder)
    return open_store(folder, classes, "train", size, places=[(cache, "")], **kwargs)


@pytest.fixture
def tree(tmp_path):
    return write_jpeg_tree(tmp_path / "tree", classes=3, train_per_class=5, test_per_class=0) / "train"


def test_rows_are_the_decoded_files_with_their_labels(tree, tmp_path):
    store = build(tree, tmp_path / "cache")
    paths, labels, _ = list_images(tree, list_classes(tree))
    assert store.shape == (15, 3, 20, 20) and store.rule == "crop" and store.classes == ["c000", "c001", "c002"]
    numpy.testing.assert_array_equal(store.labels, labels)
    assert store.files() == [os.path.relpath(p, tree) for p in paths]
    expected = numpy.stack([decode_image(p, 20) for p in paths])
    numpy.testing.assert_array_equal(store.read(numpy.arange(15)), expected)
    on_disk = numpy.load(store.path, mmap_mode="r")                       # a plain .npy
    numpy.testing.assert_array_equal(on_disk, expected)
    assert store.path.name.startswith("train-20px-crop-3ch-") and store.nbytes == store.path.stat().st_size


def test_read_gives_the_rows_asked_for_in_that_order_into_a_buffer(tree, tmp_path):
    store = build(tree, tmp_path / "cache")
    everything = store.read(numpy.arange(len(store)))
    rows = numpy.array([7, 2, 3, 4, 14, 0, 3])                          # runs, repeats, any order
    out = numpy.full((10, 3, 20, 20), 255, dtype=numpy.uint8)
    got = store.read(rows, out)
    assert got.base is out or got is out
    numpy.testing.assert_array_equal(out[:7], everything[rows])
    with pytest.raises(IndexError):
        store.read([15])


def test_pixel_statistics_are_the_mean_std_and_pca_of_the_training_pixels(tree, tmp_path):
    """Section 4.1: "PCA on the set of RGB pixel values throughout the ImageNet training set"."""
    store = build(tree, tmp_path / "cache")
    for rows in (numpy.arange(len(store)), numpy.array([0, 3, 4, 9, 12])):
        pixels = store.read(rows).transpose(0, 2, 3, 1).reshape(-1, 3).astype(numpy.float64) / 255
        cov = numpy.cov(pixels, rowvar=False, bias=True)
        eigvals, eigvecs = numpy.linalg.eigh(cov)
        stats = store.stats(rows)
        numpy.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=1e-12)
        numpy.testing.assert_allclose(stats.std, pixels.std(axis=0), rtol=1e-9)
        numpy.testing.assert_allclose(stats.eigvals, eigvals[::-1], rtol=1e-8, atol=1e-14)
        ours = numpy.asarray(stats.eigvecs)
        numpy.testing.assert_allclose(numpy.abs((ours * eigvecs[:, ::-1]).sum(axis=0)), 1.0, rtol=1e-8)
        numpy.testing.assert_allclose(cov @ ours, ours * numpy.asarray(stats.eigvals), atol=1e-12)
    assert store.meta["stats"]["eigvals"] == pytest.approx(list(store.stats().eigvals))


def test_a_second_open_reuses_the_store_and_a_changed_tree_is_decoded_again(tree, tmp_path, monkeypatch):
    first = build(tree, tmp_path / "cache")

    def no_decoding(*args):
        raise AssertionError("decoded again although the tree is unchanged")

    with monkeypatch.context() as m:
        m.setattr(store_module, "_decode_task", no_decoding)
        again = build(tree, tmp_path / "cache")
    assert again.stem == first.stem
    (tree / "c001" / "00002.jpg").unlink()
    changed = build(tree, tmp_path / "cache")
    assert changed.stem != first.stem and len(changed) == 14


def interrupt_after(monkeypatch, calls):
    """decode_image raising KeyboardInterrupt (Ctrl-C) on its call number ``calls``; returns the call counter."""
    count = {"n": 0}

    def decode(*args):
        count["n"] += 1
        if count["n"] == calls:
            raise KeyboardInterrupt
        return decode_image(*args)

    monkeypatch.setattr(store_module, "decode_image", decode)
    return count


def test_an_interrupted_decode_continues_where_it_stopped(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "CHUNK", 4)
    with monkeypatch.context() as m:
        interrupt_after(m, 10)                             # rows 0-7 (two tasks) on disk, the third interrupted
        with pytest.raises(KeyboardInterrupt):
            build(tree, tmp_path / "cache", workers=1)
    cache = tmp_path / "cache"
    assert not list(cache.glob("*.index.npz")) and len(list(cache.glob("*.npy.partial"))) == 1
    progress = numpy.load(next(cache.glob("*.progress.npy")))
    assert (progress[:, -1] == store_module.DONE).tolist() == [True] * 8 + [False] * 7
    count, lines = interrupt_after(monkeypatch, -1), []
    resumed = build(tree, cache, workers=1, log=lines.append)
    assert count["n"] == 7 and any("8 of 15 images already done" in line for line in lines)
    fresh = build(tree, tmp_path / "fresh", workers=1)
    numpy.testing.assert_array_equal(resumed.read(numpy.arange(15)), fresh.read(numpy.arange(15)))
    assert resumed.stats() == fresh.stats()
    assert sorted(p.name.split(".", 1)[1] for p in cache.iterdir()) == ["index.npz", "lock", "npy"]


def test_a_decode_killed_in_its_worker_processes_continues(tmp_path):
    """SIGKILL to the whole process group while two workers decode; the next run decodes only the rest."""
    tree = write_jpeg_tree(tmp_path / "tree", classes=2, train_per_class=60, test_per_class=0) / "train"
    script = textwrap.dedent(f"""
        import time
        from npalexnet.data import store
        from npalexnet.data.decode import decode_image
        store.PARALLEL_MIN_FILES, store.CHUNK = 0, 8
        def slow(*args):
            time.sleep(0.02)
            return decode_image(*args)
        store.decode_image = slow                      # the forked workers inherit it
        store.open_store({str(tree)!r}, ["c000", "c001"], "train", 20, places=[({str(tmp_path / 'cache')!r}, "")],
                         workers=2, progress=False)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline and done < 16:
        time.sleep(0.02)
        progress = list((tmp_path / "cache").glob("*.progress.npy"))
        if progress:
            try:
                done = int((numpy.load(progress[0], mmap_mode="r")[:, -1] == store_module.DONE).sum())
            except (ValueError, OSError):
                pass
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert 16 <= done < 120, f"{done} rows done when killed"
    assert not list((tmp_path / "cache").glob("*.index.npz"))
    remaining = 120 - int((numpy.load(next((tmp_path / "cache").glob("*.progress.npy")))[:, -1]
                           == store_module.DONE).sum())
    calls = []
    resumed = build(tree, tmp_path / "cache", workers=1, log=calls.append)
    assert any("already done" in line for line in calls)
    assert f"decoded {remaining} images" in " ".join(calls)
    fresh = build(tree, tmp_path / "fresh", workers=1)
    numpy.testing.assert_array_equal(resumed.read(numpy.arange(120)), fresh.read(numpy.arange(120)))


def test_the_index_is_the_commit(tree, tmp_path, monkeypatch):
    """A crash after the array's rename but before the index: the next open finishes without decoding."""
    def crash(*args, **kwargs):
        raise OSError("disk unplugged")

    with monkeypatch.context() as m:
        m.setattr(store_module, "atomic_savez", crash)
        with pytest.raises(OSError, match="unplugged"):
            build(tree, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.index.npz"))
    monkeypatch.setattr(store_module, "_decode_task", lambda task: pytest.fail("decoded again"))
    store = build(tree, tmp_path / "cache")
    assert store.ok.all() and len(store) == 15


def test_a_damaged_index_is_decoded_again(tree, tmp_path):
    store = build(tree, tmp_path / "cache")
    store.index_path.write_bytes(store.index_path.read_bytes()[:100])
    lines = []
    again = build(tree, tmp_path / "cache", log=lines.append)
    assert any("ignoring a damaged image store" in line for line in lines)
    assert again.ok.all() and any(line.startswith("decoded 15 images") for line in lines)


def test_a_truncated_array_is_a_clear_error(tree, tmp_path):
    store = build(tree, tmp_path / "cache")
    with open(store.path, "r+b") as f:
        f.truncate(store.nbytes - 100)
    with pytest.raises(DataError, match="delete its files"):
        ImageStore(store.stem)


def test_unreadable_files_are_skipped_listed_and_never_shift_a_label(tree, tmp_path):
    (tree / "c000" / "00001.jpg").write_bytes(b"")                             # empty
    jpeg = (tree / "c002" / "00003.jpg").read_bytes()
    (tree / "c002" / "00003.jpg").write_bytes(jpeg[:len(jpeg) // 3])           # truncated
    lines = []
    store = build(tree, tmp_path / "cache", log=lines.append)
    bad = [1, 13]
    assert numpy.flatnonzero(~store.ok).tolist() == bad
    assert [name for name, _ in store.skipped] == ["c000/00001.jpg", "c002/00003.jpg"]
    warning, = [line for line in lines if line.startswith("warning:")]
    assert "skipped 2 unreadable images" in warning and "c000/00001.jpg" in warning and "c002/00003.jpg" in warning
    split = StoreSplit(store)
    assert len(split) == 13 and bad[0] not in split.rows and bad[1] not in split.rows
    paths, labels, _ = list_images(tree, list_classes(tree))
    for i, row in enumerate(split.rows):                                        # every kept row: its own file
        assert split.labels[i] == labels[row]
        numpy.testing.assert_array_equal(split.read([i])[0], decode_image(paths[row], 20))


def test_a_place_that_cannot_be_written_is_passed_over(tree, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    store = open_store(tree, list_classes(tree), "train", 20, places=[(blocked, ""), (tmp_path / "cache", "t-")])
    assert store.stem.parent == tmp_path / "cache" and store.stem.name.startswith("t-train-")
    with pytest.raises(DataError, match="cannot write the decoded images.*--cache-dir"):
        open_store(tree, list_classes(tree), "train", 16, places=[(blocked, "")])


def test_not_enough_disk_space_is_one_clear_error(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    with pytest.raises(DataError, match=r"needs [\d.]+ kB in .* which has 1.0 kB free: pass --cache-dir"):
        build(tree, tmp_path / "cache")


@pytest.mark.parametrize("where", ["rows", "index"])
def test_a_disk_that_fills_up_while_decoding_is_one_line_and_the_decode_continues_later(tree, tmp_path,
                                                                                        monkeypatch, where):
    """ENOSPC in the middle of the rows (the third task's write) or in the index written last: one line naming the
    file, the space, what is kept and what to do; a later run with room finishes the store from where it stopped."""
    import errno

    from tests.faults import fill_disk
    monkeypatch.setattr(store_module, "CHUNK", 4)
    with monkeypatch.context() as m:
        if where == "rows":
            real, calls = store_module._pwrite_all, {"n": 0}

            def pwrite(path, array, offset):
                calls["n"] += 1
                if calls["n"] == 5:                          # task 3's rows (each task writes rows, then states)
                    raise OSError(errno.ENOSPC, "No space left on device", path)
                return real(path, array, offset)

            m.setattr(store_module, "_pwrite_all", pwrite)
            pattern = r"no space left on device writing .*\.npy\.partial \(needs at least [\d.]+ kB, .* free\): the 8 "
        else:
            fingerprint = list_images(tree, list_classes(tree))[2]
            fill_disk(m, names=[store_module.store_name("train", 20, 3, "crop", fingerprint) + ".index.npz"])
            pattern = r"no space left on device writing .*\.index\.npz \(needs [\d.]+ kB, .* free\): the 15 "
        with pytest.raises(DataError, match=pattern + r"images decoded so far are kept and the next run continues "
                                                      r"from them; free some space, or pass --cache-dir DIR") as caught:
            build(tree, tmp_path / "cache", workers=1)
    assert "\n" not in str(caught.value) and not list((tmp_path / "cache").glob("*.index.npz"))
    lines = []
    store = build(tree, tmp_path / "cache", workers=1, log=lines.append)
    fresh = build(tree, tmp_path / "fresh", workers=1)
    numpy.testing.assert_array_equal(store.read(numpy.arange(15)), fresh.read(numpy.arange(15)))
    done = 8 if where == "rows" else 15
    assert any(f"{done} of 15 images already done" in line for line in lines), lines


def test_without_build_a_missing_store_is_an_error_never_a_decode(tree, tmp_path):
    with pytest.raises(DataError, match="rank 0 builds it"):
        build(tree, tmp_path / "cache", build=False)
    built = build(tree, tmp_path / "cache")
    assert build(tree, tmp_path / "cache", build=False).stem == built.stem


def test_write_store_from_arrays_and_store_splits(tmp_path):
    rng = numpy.random.default_rng(0)
    images = rng.integers(0, 256, (10, 3, 8, 8), dtype=numpy.uint8)
    store = write_store(tmp_path / "s", [images[:4], images[4:]], numpy.arange(10) % 2, ["a", "b"])
    numpy.testing.assert_array_equal(store.read(numpy.arange(10)), images)
    split = StoreSplit(store).take([9, 2, 5])
    numpy.testing.assert_array_equal(split.read([0, 1, 2]), images[[9, 2, 5]])
    assert split.labels.tolist() == [1, 0, 1] and split.image_shape == (3, 8, 8)
    assert split.digest() != StoreSplit(store).take([9, 2, 4]).digest()
    with pytest.raises(ValueError, match="images written for 11 labels"):
        write_store(tmp_path / "t", [images], numpy.arange(11) % 2, ["a", "b"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME is the Linux convention")
def test_the_default_cache_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("NPALEXNET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "npalexnet"
    monkeypatch.setenv("NPALEXNET_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
