"""The README's main job on a machine without torch: a fresh venv, `pip install -e .`, the training
program, CIFAR-10 downloaded from a local server (its archive published under a test checksum)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fakedata import cifar_archive
from tests.fileserver import FileServer, md5

ROOT = Path(__file__).resolve().parents[1]

#: Runs in the fresh venv: the published checksum becomes the test archive's, then the training
#: program runs exactly as `python examples/train_cifar10.py ARGS` would.
DRIVER = textwrap.dedent("""
    import importlib.util, runpy, sys
    assert importlib.util.find_spec("torch") is None, "torch is installed in the fresh venv"
    from npalexnet.data import cifar_pickle, download
    archive = download.RemoteFile(cifar_pickle.ARCHIVE.name, sys.argv[1])
    cifar_pickle.ARCHIVE = archive
    cifar_pickle.REMOTE = download.Remote("CIFAR-10", cifar_pickle.REMOTE.url, (archive,))
    sys.argv = [sys.argv[2], *sys.argv[3:]]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        print("torch imported:", "torch" in sys.modules)
""")


@pytest.mark.slow
def test_fresh_venv_without_torch_downloads_and_trains(tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NPALEXNET_DOWNLOAD_URL")}
    env["NPALEXNET_CACHE"] = str(tmp_path / "cache")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-e", str(ROOT)], capture_output=True, text=True,
                             env=env, timeout=600, check=False)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    archive = cifar_archive(per_batch=8, test=8)
    (tmp_path / "driver.py").write_text(DRIVER)
    with FileServer({"cifar-10-python.tar.gz": archive}) as server:
        args = ["--download-url", server.url, "--epochs", "1", "--width", "0.125", "--batch-size", "8",
                "--device", "cpu", "--no-progress"]
        run = subprocess.run([python, str(tmp_path / "driver.py"), md5(archive),
                              str(ROOT / "examples" / "train_cifar10.py"), *args],
                             cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert server.requests == ["cifar-10-python.tar.gz"]
    assert f"download: CIFAR-10 from {server.url}cifar-10-python.tar.gz into data" in run.stdout
    assert "data: cifar10 from data/cifar-10-batches-py: 40 train, 0 validation, 8 test images" in run.stdout
    assert "test accuracy: " in run.stdout and "torch imported: False" in run.stdout
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar-10-batches-py"]
    # the console entry points: an installed package needs no checkout
    for program in ("npalexnet-train", "npalexnet-predict", "npalexnet-visualize", "npalexnet-export",
                    "npalexnet-gradcheck"):
        helped = subprocess.run([str(venv / "bin" / program), "--help"], cwd=tmp_path, capture_output=True,
                                text=True, env=env, timeout=300, check=False)
        assert helped.returncode == 0 and "usage:" in helped.stdout, program + helped.stderr[-2000:]
    run_dir = next((tmp_path / "runs" / "cifar10").glob("20*"))
    evaluated = subprocess.run([str(venv / "bin" / "npalexnet-train"), "--evaluate", str(run_dir / "last.npz")],
                               cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert evaluated.stdout.splitlines()[-1] == run.stdout.splitlines()[-2], evaluated.stderr[-2000:]
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.npz", "config.json", "curves.png", "last.npz",
                                                          "log.txt", "metrics.csv"]
