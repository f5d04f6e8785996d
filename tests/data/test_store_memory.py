"""Training from a store: the process's memory does not grow with the number of images (issue 14).

The same short paper-mode run (a narrow paper net, 8 steps of 32 images
read from the store, augmented, trained) on stores of 2,000 and 20,000
images: the peak resident set (VmHWM) and the largest anonymous memory
(RssAnon) after any step agree within 3%, while the larger store is bigger
than that peak, so it cannot have been loaded. Stores of 96 px written from
arrays (:func:`~npalexnet.data.store.write_store`) keep it fast; each run is
a fresh process (``benchmarks/bench_paper_mode.py measure-memory``, the
benchmark's own measurement), /proc/self/status read inside it,
after a first run that leaves the numba kernels compiled in their cache (a
process that compiles them holds LLVM's memory too).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from npalexnet.data.store import write_store

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_paper_mode.py"


def synthetic_store(stem, count, size=96, classes=10):
    rng = numpy.random.default_rng(0)
    base = rng.integers(0, 256, (50, 3, size, size), dtype=numpy.uint8)
    chunks = (numpy.resize(base, (min(2000, count - start), 3, size, size)) for start in range(0, count, 2000))
    return write_store(stem, chunks, numpy.arange(count) % classes, [f"c{i}" for i in range(classes)])


def peak_memory(stem, steps=8):
    command = [sys.executable, str(BENCH), "measure-memory", str(stem), "--steps", str(steps), "--batch", "32",
               "--width", "0.0625"]
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                              "OPENBLAS_NUM_THREADS": "1", "NPALEXNET_DEVICE": "cpu"}, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")
def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    small_store = synthetic_store(tmp_path / "small", 2_000)
    peak_memory(small_store.stem, steps=1)   # compiles and caches the numba kernels (LLVM's memory), not measured
    small = peak_memory(small_store.stem)
    large = peak_memory(synthetic_store(tmp_path / "large", 20_000).stem)
    assert (small["images"], large["images"]) == (2_000, 20_000)
    assert large["store_bytes"] > 1024 * large["vmhwm_kib"]          # the store is larger than the peak
    assert abs(large["vmhwm_kib"] - small["vmhwm_kib"]) < 0.03 * small["vmhwm_kib"], (small, large)
    assert abs(large["rss_anon_kib"] - small["rss_anon_kib"]) < 0.03 * small["rss_anon_kib"], (small, large)
