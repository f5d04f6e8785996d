"""The scripts a GPU session runs (benchmarks/gpu_all.sh and what it calls), checked without a GPU.

GPU time is short and a session may get none: these make sure the script
parses, its benchmark options are accepted, the per-kernel benchmark runs
end to end (on the CPU emulator of the CUDA kernels, at toy sizes), the
summary reads what the scripts write, and the rehearsal goes through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types

import numpy
import pytest

from npalexnet import backend
from npalexnet.kernels import cuda_kernels as ck
from npalexnet.kernels import cuda_layers
from tests.benchmarks.scripts import BENCHMARKS, load
from tests.kernels import cuda_emulator



def test_gpu_all_script_parses():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_all.sh")], check=True)


def test_bench_train_accepts_cuda_and_tf32():
    bench = load("bench_train")
    args = bench.parse_args(bench.build_parser(), ["--device", "cuda", "--tf32", "--net", "paper", "--batch", "128"])
    assert (args.device, args.tf32, args.net, args.batch) == ("cuda", True, "paper", 128)
    assert (args.warmup, args.steps) == (10, 10)   # a GPU step is short: more of them per round
    args = bench.parse_args(bench.build_parser(), ["--device", "cuda"])
    assert not args.tf32 and args.batch == 128
    cpu = bench.parse_args(bench.build_parser(), ["--net", "paper"])
    assert (cpu.device, cpu.batch, cpu.warmup, cpu.steps) == ("cpu", 32, 5, 3)


@pytest.mark.parametrize("argv", [["--tf32"], ["--device", "cuda", "--steps", "0"]])
def test_bench_train_refuses_options_that_cannot_work(argv, capsys):
    bench = load("bench_train")
    with pytest.raises(SystemExit):
        bench.parse_args(bench.build_parser(), argv)
    assert "error:" in capsys.readouterr().err


def test_bench_train_times_gpu_rounds_between_synchronisations():
    bench = load("bench_train")
    calls = []
    per_round = bench.timed(lambda: calls.append("step"), 4, sync=lambda: calls.append("sync"))
    assert calls == ["sync", "step", "step", "step", "step", "sync"] and len(per_round) == 1
    assert len(bench.timed(lambda: None, 3)) == 3   # the CPU: one sample per step


class _Event:
    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


def _fake_cupy() -> types.ModuleType:
    """What bench_cuda_kernels.py takes from CuPy, on NumPy (the kernels run on the emulator)."""
    fake = types.ModuleType("cupy")
    fake.__version__ = "emulated"
    fake.asarray = numpy.asarray
    fake.random = types.SimpleNamespace(default_rng=numpy.random.default_rng)
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: None)
    fake.cuda = types.SimpleNamespace(
        Event=_Event, get_elapsed_time=lambda a, b: 1000 * (b.t - a.t) + 1e-6,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"emulator"}))
    return fake


@pytest.mark.skipif(cuda_emulator.compiler() is None, reason="no C++ compiler to emulate the CUDA kernels")
def test_bench_cuda_kernels_runs_end_to_end_on_the_emulator(tmp_path, monkeypatch):
    """Every row of the per-kernel benchmark, at toy sizes, with the kernels' CUDA source run on the CPU."""
    fake = _fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend._CuPy, "module", fake)
    monkeypatch.setattr(backend._CuPy, "checked", True)
    monkeypatch.setattr(ck, "launcher", cuda_emulator.EmulatedLauncher(block=64, max_blocks=8))
    monkeypatch.setattr(cuda_layers, "_on_gpu_float", lambda a: a.dtype.char in "fd")   # as if on a GPU
    bench = load("bench_cuda_kernels")
    monkeypatch.setattr(bench, "CONVS", [("toy conv1", (3, 11, 11), 4, 3, 2, 1, 1),
                                         ("toy conv2 g2", (4, 6, 7), 6, 3, 1, 1, 2)])
    monkeypatch.setattr(bench, "POOLS", [("toy pool", (4, 7, 7), 3, 2)])
    monkeypatch.setattr(bench, "LRNS", [("toy lrn", (6, 5, 4))])
    monkeypatch.setattr(bench, "RELU", ("toy relu", (4, 5, 5)))
    monkeypatch.setattr(bench, "DROPOUT", ("toy dropout", 16))
    out = tmp_path / "results.jsonl"
    assert bench.main(["--batch", "3", "--reps", "1", "--dtype", "float64", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "kernels" and result["batch"] == 3
    names = [r["name"] for r in result["rows"]]
    assert names == ["im2col toy conv1", "col2im toy conv1", "conv fwd+bwd toy conv1", "im2col toy conv2 g2",
                     "col2im toy conv2 g2", "conv fwd+bwd toy conv2 g2", "maxpool fwd+bwd toy pool",
                     "lrn fwd+bwd toy lrn", "toy relu", "toy dropout"]
    assert max(r["rel_err"] for r in result["rows"]) < 1e-12
    used = set(ck.launcher.calls)
    assert {"npa_im2col", "npa_col2im", "npa_maxpool_fwd", "npa_maxpool_bwd", "npa_lrn_fwd", "npa_lrn_bwd",
            "npa_relu_fwd", "npa_mask_scale"} <= used, used


def test_summary_of_a_run(tmp_path):
    """The table the session copies into RESULTS.md, from the files gpu_all.sh writes."""
    (tmp_path / "tests_off.txt").write_text("$ pytest ...\n" + "=" * 10 + " 1225 passed in 95.2s " + "=" * 10 + "\n")
    (tmp_path / "tests_on.txt").write_text("FAILED tests/x.py::test_y - TypeError\n1 failed, 1224 passed in 99.0s\n")
    versions = {"npalexnet": {"gpu": "NVIDIA H200", "cupy": "14.2.0", "cuda_kernels": True, "conv": "auto"},
                "pytorch": {"torch": "2.11.0", "cudnn": 91000}}
    bench = {"net": "cifar", "batch": 128, "tf32": False, "versions": versions,
             "train": {"npalexnet": {"images_per_s": 9000.0}, "pytorch": {"images_per_s": 10000.0}, "ratio": 0.9},
             "infer": {"ratio": 1.1},
             "gpu_memory": {"npalexnet": {"peak_in_use_mib": 300.0}, "pytorch": {"peak_in_use_mib": 250.0},
                            "ratio": 1.2}}
    paper = dict(bench, net="paper", train=dict(bench["train"], ratio=0.6))
    kernels = {"kind": "kernels", "rows": [{"name": "lrn", "array_ms": 2.0, "kernel_ms": 0.5, "speedup": 4.0,
                                             "rel_err": 1e-7}]}
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in (bench, paper, kernels)) + "\n")
    (tmp_path / "train_cuda.txt").write_text(
        "$ python3 examples/train_cifar10.py --data-dir gpu_data/cifar10-10k --epochs 3 --device cuda\n"
        "epoch 3/3: train loss 2.06 acc 22.40% | val ...\ntest accuracy: 25.10%\n--- metrics.csv\n")
    text = load("gpu_summary").summary(tmp_path)
    assert "tests, CUDA kernels off: 1225 passed in 95.2s" in text
    assert "1 failed, 1224 passed in 99.0s" in text and "FAILED tests/x.py::test_y" in text
    row = "| cifar, 128 | off | on | auto | 9000 / 10000 | 0.90x (not met: 1.0x) | 1.10x | 300 / 250 (1.20x) |"
    assert row in text
    assert "0.60x (met: 0.5x)" in text
    assert "x4.00" in text and "GPU: test accuracy: 25.10%" in text
    # the CPU run of the same command, recorded in RESULTS.md, is shown beside it
    assert "CPU, the same command (RESULTS.md): test accuracy" in text


@pytest.mark.slow
def test_rehearsal_goes_through_without_a_gpu(tmp_path):
    """NPA_REHEARSAL=1: the CPU parts run, every GPU step says what it would run, at most 8 files."""
    env = dict(os.environ, NPA_REHEARSAL="1", OUT=str(tmp_path / "out"), NPA_WORK=str(tmp_path / "work"),
               NPA_GPU_DATA=str(tmp_path / "no-data"), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_all.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "tests_collect: rc=0" in summary and "tests collected" in summary
    for would in ("NPALEXNET_CUDA_KERNELS=0", "NPALEXNET_CUDA_KERNELS=1", "bench_train.py --device cuda",
                  "--tf32", "bench_cuda_kernels.py", "NPALEXNET_CONV=winograd"):
        assert would in summary, would
    assert summary.count("_options: rc=0") == 8
    assert "train_cuda: skipped" in summary
    assert len(list((tmp_path / "out").iterdir())) <= 8


def test_gpu_ruler_script_parses():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_ruler.sh")], check=True)


def _ruler(tmp_path, *recipes, archive=None, **env):
    env = dict(os.environ, OUT=str(tmp_path / "out"), NPA_WORK=str(tmp_path / "work"), PYTHON=sys.executable,
               NPA_RULER_ARCHIVE=str(archive or tmp_path / "none.tgz"), NPA_RULER_DEVICE="cpu",
               NPA_RULER_POLL_S="1", **env)
    return subprocess.run(["bash", str(BENCHMARKS / "gpu_ruler.sh"), *recipes], env=env, capture_output=True,
                          text=True, timeout=600)


def test_gpu_ruler_refuses_a_missing_archive_or_a_recipe_without_a_name(tmp_path):
    done = _ruler(tmp_path, "ref:")
    assert done.returncode == 2 and "none.tgz is missing: tar czf" in done.stderr
    (tmp_path / "none.tgz").write_bytes(b"")
    done = _ruler(tmp_path, "--dropout 0.4")
    assert done.returncode == 2 and "'--dropout 0.4' is not NAME:OPTIONS" in done.stderr


@pytest.mark.slow
def test_gpu_ruler_runs_every_recipe_at_every_seed_side_by_side_and_summarises(tmp_path):
    """On the CPU, on a tiny ImageFolder tree packed as the script expects: every run's metrics come back in
    one file, and the summary has one line per run."""
    import tarfile

    from tests.fakedata import write_imagefolder
    write_imagefolder(tmp_path / "tree" / "cifar10", per_class=10)
    with tarfile.open(tmp_path / "cifar10-jpeg.tgz", "w:gz") as tar:
        tar.add(tmp_path / "tree" / "cifar10", arcname="cifar10")
    done = _ruler(tmp_path, "ref:", "drop:--dropout 0.4", archive=tmp_path / "cifar10-jpeg.tgz",
                  NPA_RULER_SEEDS="0 1", NPA_RULER_EPOCHS="1",
                  NPA_RULER_EXTRA="--width 0.125 --batch-size 8 --eval-batch-size 16 --workers 1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = (tmp_path / "out" / "ruler_summary.txt").read_text()
    for run in ("ref-s0", "ref-s1", "drop-s0", "drop-s1"):
        line = next(line.split() for line in summary.splitlines() if line.split()[:2] == [run, "1/1"])
        scored = (tmp_path / "work" / "runs" / f"{run}.views10").read_text().splitlines()
        assert scored[-1].startswith(f"validation accuracy: {line[-1]} (") and "10 views" in scored[-1], scored
    metrics = (tmp_path / "out" / "ruler_metrics.txt").read_text()
    assert metrics.count("epoch,train_loss") == 4 and "== drop-s1" in metrics
    config = json.loads((tmp_path / "work" / "runs" / "drop-s1" / "config.json").read_text())["config"]
    assert (config["dropout"], config["seed"], config["val_fraction"]) == (0.4, 1, 0.1)
