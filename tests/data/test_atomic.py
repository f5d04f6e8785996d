"""Files are written whole or not at all."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.data.atomic import (NoSpaceError, atomic_link, atomic_savez, atomic_write, atomic_write_bytes,
                                  atomic_write_text)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "f.txt", "old")

    def explode(f):
        f.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-links-copy"])
def test_a_linked_name_keeps_the_bytes_when_the_source_is_replaced(tmp_path, monkeypatch, links):
    """``atomic_link(last, best)``: best holds last's bytes (one inode where links exist, a copy where the file
    system has none), replaces an older best whole, and keeps those bytes when last is written again."""
    import errno
    import os

    from tests.faults import no_hard_links
    last = atomic_write_bytes(tmp_path / "last.npz", b"epoch 1")
    best = atomic_write_bytes(tmp_path / "best.npz", b"an older run")
    if not links:
        no_hard_links(monkeypatch, errno.EXDEV)
    assert atomic_link(last, best) == best and best.read_bytes() == b"epoch 1"
    assert os.path.samefile(last, best) is links
    atomic_write_bytes(last, b"epoch 2")
    assert (last.read_bytes(), best.read_bytes()) == (b"epoch 2", b"epoch 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "last.npz"]   # no temporaries


def test_a_copy_that_does_not_fit_keeps_the_old_file(tmp_path, monkeypatch):
    from npalexnet.data import atomic
    from tests.faults import fill_disk, no_hard_links
    last = atomic_write_bytes(tmp_path / "last.npz", b"x" * 1000)
    best = atomic_write_bytes(tmp_path / "best.npz", b"old")
    no_hard_links(monkeypatch)
    fill_disk(monkeypatch, names=["best.npz"], after_bytes=10)
    with pytest.raises(atomic.NoSpaceError, match=f"writing {best} \\(needs 1.0 kB"):
        atomic_link(last, best)
    assert best.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "last.npz"]


@pytest.mark.parametrize("how", ["write", "link"])
def test_a_rename_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, how):
    """Writing and linking end in the same rename step; when it fails (Ctrl-C, a permission
    change), the finished temporary goes and the destination keeps its old bytes."""
    import os
    last = atomic_write_bytes(tmp_path / "last.npz", b"new")
    best = atomic_write_bytes(tmp_path / "best.npz", b"old")

    def refuse(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(best, b"new") if how == "write" else atomic_link(last, best)
    assert best.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "last.npz"]


@pytest.mark.parametrize("how", ["write", "link"])
def test_a_rename_without_room_for_the_entry_is_a_no_space_error(tmp_path, monkeypatch, how):
    """rename(2) fails with ENOSPC when the directory cannot grow: the same clear error as a full
    disk while writing, the old file kept, no temporary left."""
    import errno
    import os
    last = atomic_write_bytes(tmp_path / "last.npz", b"new")
    best = atomic_write_bytes(tmp_path / "best.npz", b"old")

    def no_room(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_room)
    with pytest.raises(NoSpaceError, match=f"no space left on device writing {best}"):
        atomic_write_bytes(best, b"new") if how == "write" else atomic_link(last, best)
    assert best.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "last.npz"]


def test_savez_round_trip(tmp_path):
    path = atomic_savez(tmp_path / "sub" / "a.npz", {"x": numpy.arange(3)})
    with numpy.load(path, allow_pickle=False) as z:
        assert z["x"].tolist() == [0, 1, 2]


def test_a_full_disk_is_a_no_space_error_naming_the_file_and_the_sizes(tmp_path, monkeypatch):
    import errno

    from npalexnet.data import atomic
    from tests.faults import fill_disk
    path = atomic_savez(tmp_path / "a.npz", {"x": numpy.zeros(10)})
    fill_disk(monkeypatch, names=["a.npz"], after_bytes=64)
    with pytest.raises(atomic.NoSpaceError) as caught:
        atomic_savez(path, {"x": numpy.zeros(250_000)})   # 2 MB of float64
    error = caught.value
    assert error.errno == errno.ENOSPC and error.path == path and error.needed > 2_000_000
    assert str(error).startswith(f"no space left on device writing {path} (needs 2.0 MB, ")
    assert error.advice == "free some space"
    with numpy.load(path) as z:   # the old file is intact
        assert z["x"].shape == (10,)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_ctrl_c_while_writing_leaves_no_temporary(tmp_path):
    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "cache.npz", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_the_kernels_file_size_limit_is_reported_with_what_was_written(tmp_path):
    """A real EFBIG: a child process limited to 1000-byte files writes 5000 bytes of unknown size."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.dont_write_bytecode = True   # a .pyc cut at the limit would break later imports
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from npalexnet.data.atomic import NoSpaceError, atomic_write
        try:
            atomic_write({str(tmp_path / "f.bin")!r}, lambda f: [f.write(b"x" * 500) for _ in range(10)])
        except NoSpaceError as exc:
            print(exc)
    """)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(root), "PATH": ""})
    assert proc.stdout.startswith(f"file too large for this process's file-size limit (ulimit -f) writing "
                                  f"{tmp_path / 'f.bin'} (needs at least "), proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
