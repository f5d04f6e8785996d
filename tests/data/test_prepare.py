"""``python -m npalexnet.data.prepare DIR``: the stores built ahead of a run."""

import subprocess
import sys
from pathlib import Path

from npalexnet.data import prepare
from tests.fakedata import write_jpeg_tree

ROOT = Path(__file__).resolve().parents[2]


def test_builds_the_store_of_every_split(tmp_path):
    write_jpeg_tree(tmp_path / "tree", classes=2, train_per_class=3, test_per_class=2)
    lines = []
    assert prepare.main([str(tmp_path / "tree"), "--image-size", "24"], log=lines.append) == 0
    assert sum(line.endswith("0 skipped") for line in lines) == 2
    assert len(list((tmp_path / "tree" / ".npalexnet-cache").glob("*-24px-crop-3ch-*.index.npz"))) == 2


def test_a_missing_tree_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "npalexnet.data.prepare", str(tmp_path / "missing")],
                            capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no ImageFolder tree there "
                                                  f"(looked for {tmp_path / 'missing'}/train/<class>/*.jpg and "
                                                  f"{tmp_path / 'missing'}/<class>/*.jpg)"]
