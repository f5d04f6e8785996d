"""benchmarks/bench_train.py: npalexnet against itself at another batch size (``--against-batch``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.benchmarks.scripts import BENCHMARKS, ROOT, load


def test_the_second_worker_is_pytorch_or_npalexnet_at_the_other_batch():
    bench = load("bench_train")
    plain = bench.parse_args(bench.build_parser(), [])
    assert bench.contenders(plain) == {"npalexnet": ("npalexnet", 128), "pytorch": ("pytorch", 128)}
    against = bench.parse_args(bench.build_parser(), ["--against-batch", "64"])
    assert bench.contenders(against) == {"npalexnet": ("npalexnet", 128),
                                         "npalexnet at batch 64": ("npalexnet", 64)}


@pytest.mark.parametrize("argv, message", [
    (["--against-batch", "0"], "--against-batch must be at least 1"),
    (["--against-batch", "64", "--memory"], "--against-batch times npalexnet against itself on the CPU"),
    (["--against-batch", "64", "--device", "cuda"], "--against-batch times npalexnet against itself on the CPU"),
])
def test_against_batch_refuses_what_it_cannot_compare(argv, message, capsys):
    bench = load("bench_train")
    with pytest.raises(SystemExit):
        bench.parse_args(bench.build_parser(), argv)
    assert message in capsys.readouterr().err


def test_two_batch_sizes_side_by_side_end_to_end(tmp_path):
    """Both workers run npalexnet, one at each batch; the ratio is per image, not per step."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_train.py"), "--batch", "4", "--against-batch",
                           "2", "--rounds", "1", "--steps", "1", "--warmup", "1", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    other = "npalexnet at batch 2"
    assert result["against"] == other and set(result["versions"]) == {"npalexnet", other}
    for kind in ("train", "infer"):
        ours, theirs = result[kind]["npalexnet"], result[kind][other]
        assert ours["images_per_s"] == pytest.approx(4000 / ours["ms_per_step"])
        assert theirs["images_per_s"] == pytest.approx(2000 / theirs["ms_per_step"])
        assert result[kind]["ratio"] == pytest.approx(ours["images_per_s"] / theirs["images_per_s"])
    assert "train  npalexnet" in proc.stdout and f"{other} " in proc.stdout
