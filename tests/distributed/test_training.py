"""The training program under --distributed: sharded loader, 2 ranks = 1 rank, resume, errors.

The script runs under ``mpiexec`` in a subprocess with a hard timeout
(skipped without mpi4py/mpiexec); the models are tiny and the data fake.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy
import pytest

from npalexnet.data import BatchLoader, Preprocess
from npalexnet.data.dataset import Split
from npalexnet.gradcheck import relative_error
from tests.fakedata import fake_images, write_cifar_batches

from .helpers import checkpoint_weights as _weights, ROOT, mpirun

TRAIN = ROOT / "examples" / "train_cifar10.py"
TINY = ["--width", "0.125", "--batch-size", "30", "--eval-batch-size", "25", "--no-progress", "--device", "cpu",
        "--val-fraction", "0.1"]


def _split(n=23):
    images, labels = fake_images(n)
    return Split(images.transpose(0, 3, 1, 2).copy(), labels)


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_keyed_batches_concatenate_to_the_one_process_batch(world):
    split, pre = _split(), Preprocess((0.5,) * 3, (0.25,) * 3, 32, pad=4)
    whole = BatchLoader(split, 10, pre, train=True, seed=3)
    parts = [BatchLoader(split, 10, pre, train=True, seed=3, rank=r, world_size=world)
             for r in range(world)]
    assert len(whole) == len(parts[0]) == 3
    for epoch in (0, 1):
        for step in range(3):
            x, y = whole.batch(epoch, step)
            xs, ys = zip(*(p.batch(epoch, step) for p in parts))
            numpy.testing.assert_array_equal(numpy.concatenate(xs), x)
            numpy.testing.assert_array_equal(numpy.concatenate(ys), y)
            indices, count = parts[-1].batch_indices(epoch, step)
            assert count == len(y) and len(indices) == len(ys[-1])


def test_keyed_augmentation_does_not_depend_on_the_batch_size():
    split, pre = _split(), Preprocess((0.5,) * 3, (0.25,) * 3, 32, pad=4)
    small, large = (BatchLoader(split, b, pre, train=True, seed=1) for b in (5, 23))
    x_large, _ = large.batch(0, 0)
    order = large.order(0)
    x_small, _ = small.batch(0, 1)
    numpy.testing.assert_array_equal(x_small, x_large[5:10])
    assert numpy.array_equal(small.order(0), order)


def test_a_rank_outside_the_world_is_an_error():
    with pytest.raises(ValueError, match="rank 2"):
        BatchLoader(_split(), 4, Preprocess((0.5,) * 3, (0.25,) * 3, 32), rank=2, world_size=2)


def _train(tmp_path, ranks, out, *extra, epochs=2, timeout=240, env_extra=None):
    result, _ = mpirun(["-n", ranks, sys.executable, TRAIN, "--data-dir", tmp_path / "data", "--out", out,
                        "--epochs", epochs, "--distributed", *TINY, *extra], timeout=timeout, cwd=tmp_path,
                       env_extra=env_extra)
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dist")
    write_cifar_batches(tmp_path / "data", per_batch=40, test=40)
    one = _train(tmp_path, 1, tmp_path / "one")
    two = _train(tmp_path, 2, tmp_path / "two")
    # A constant learning rate: the one-cycle schedule is sized by --epochs, which the resume changes.
    straight = _train(tmp_path, 2, tmp_path / "straight", "--schedule", "constant")
    first = _train(tmp_path, 2, tmp_path / "resumed", "--schedule", "constant", epochs=1)
    resumed = _train(tmp_path, 2, tmp_path / "resumed", "--schedule", "constant", "--resume")
    for result in (one, two, straight, first, resumed):
        assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path, one, two, resumed


@pytest.mark.slow
def test_two_ranks_train_the_model_one_rank_does(runs):
    tmp_path, one, two, _ = runs
    a, b = _weights(tmp_path / "one" / "last.npz"), _weights(tmp_path / "two" / "last.npz")
    assert max(relative_error(a[k], b[k]) for k in a) < 1e-5     # float32: sums in another order
    accuracy = [p.stdout.splitlines()[-1].split(" (")[0] for p in (one, two)]
    assert accuracy[0] == accuracy[1] and accuracy[0].startswith("test accuracy: ")   # the same test accuracy


@pytest.mark.slow
def test_two_ranks_blend_mixup_and_cutmix_as_one_rank_does(runs):
    """Each image's partner is keyed by the image, the blend by the step: the same training on any number of
    ranks. On the reference convolutions (im2col), whose float32 sums do not depend on the batch's size: the
    Winograd tiles' larger rounding differs between a batch of 30 and two of 15 enough to flip a ReLU
    near zero here (relative error 7e-5 in features.8's bias after two epochs, 8e-8 with im2col)."""
    tmp_path, _, _, _ = runs
    mixing = ("--mixup-alpha", "0.4", "--cutmix-alpha", "1.0")
    for ranks, out in ((1, "mix_one"), (2, "mix_two")):
        result = _train(tmp_path, ranks, tmp_path / out, *mixing, env_extra={"NPALEXNET_CONV": "im2col"})
        assert result.returncode == 0, result.stdout + result.stderr
    a, b = _weights(tmp_path / "mix_one" / "last.npz"), _weights(tmp_path / "mix_two" / "last.npz")
    assert max(relative_error(a[k], b[k]) for k in a) < 1e-5
    plain = _weights(tmp_path / "one" / "last.npz")
    assert max(relative_error(a[k], plain[k]) for k in a) > 1e-2   # and the blending changed the training


@pytest.mark.slow
def test_only_rank_0_prints_and_writes(runs):
    tmp_path, _, two, _ = runs
    assert two.stdout.count("test accuracy:") == 1 and two.stdout.count("epoch 2/2:") == 1
    assert "2 processes (mpi); batch 30 is the global batch" in two.stdout
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.npz", "config.json", "curves.png",
                                                                    "last.npz", "log.txt", "metrics.csv"]
    assert (tmp_path / "two" / "log.txt").read_text().count("epoch 2/2:") == 1   # rank 0's lines only


@pytest.mark.slow
def test_a_distributed_resume_continues_the_same_run(runs):
    tmp_path, _, _, resumed = runs
    assert "resumed from" in resumed.stdout
    a, b = _weights(tmp_path / "straight" / "last.npz"), _weights(tmp_path / "resumed" / "last.npz")
    assert max(relative_error(a[k], b[k]) for k in a) == 0.0   # bit-identical


@pytest.mark.slow
def test_ranks_with_different_data_paths_stop_with_one_message(tmp_path):
    write_cifar_batches(tmp_path / "a", per_batch=10, test=10)
    write_cifar_batches(tmp_path / "b", per_batch=10, test=10)
    rank = [sys.executable, TRAIN, "--out", tmp_path / "run", "--epochs", "1", "--distributed", *TINY]
    result, _ = mpirun(["-n", 1, *rank, "--data-dir", tmp_path / "a", ":", "-n", 1, *rank, "--data-dir",
                        tmp_path / "b"], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("error: the ranks disagree") == 1 and "--data-dir: rank 0 has" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_distributed_without_mpi4py_is_one_clear_error(tmp_path):
    block = ("import runpy, sys; sys.modules['mpi4py'] = None; sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")
    result, _ = mpirun(["-n", 2, sys.executable, "-c", block, TRAIN, "--distributed", "--out", tmp_path / "run",
                        *TINY], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("error: --distributed needs mpi4py") == 1
    assert "Traceback" not in result.stderr


def test_distributed_without_mpi4py_and_without_mpiexec(tmp_path):
    """Runs everywhere (mpi4py blocked in the child): one error line, exit status 2, no traceback."""
    block = ("import runpy, sys; sys.modules['mpi4py'] = None; sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", block, str(TRAIN), "--distributed", "--out", str(tmp_path / "run"),
                             *TINY], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: --distributed needs mpi4py") and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
