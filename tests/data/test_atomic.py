"""Files are written whole or not at all."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.data.atomic import atomic_savez, atomic_write, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "f.txt", "old")

    def explode(f):
        f.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_savez_round_trip(tmp_path):
    path = atomic_savez(tmp_path / "sub" / "a.npz", {"x": numpy.arange(3)})
    with numpy.load(path, allow_pickle=False) as z:
        assert z["x"].tolist() == [0, 1, 2]
