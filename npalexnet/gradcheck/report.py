"""The gradient-check run: every layer type, checked three ways, as one table.

``python -m npalexnet.gradcheck`` (or ``examples/gradcheck.py``) runs, for
each representative layer configuration and each device (CPU, and the GPU
when CuPy sees one):

* ``finite-diff f64``: the layer's backward against central differences in
  float64 (:func:`npalexnet.gradcheck.check_module`: element-wise for small
  arrays, along directions for large ones). Needs nothing but NumPy.
* ``torch f64`` and ``torch f32`` (when torch is installed): output, input
  gradient and every parameter gradient against PyTorch's autograd on the
  same weights, input and random upstream gradient
  (:func:`npalexnet.gradcheck.torch_compare.check_against_torch`).

On a GPU every check runs twice: ``cuda`` (the CuPy array code, the same
source as the CPU's) and ``cuda+kernels`` (with the hand-written CUDA
kernels switched on (the ``cuda_kernels`` setting of :mod:`npalexnet.config`)).

Each row gives the largest relative error ``max|a-b| / max(|a|+|b|)`` over
all compared arrays, the array where it occurred, and the tolerance it must
pass. The tolerances are the library's own, defined once:
:data:`~npalexnet.gradcheck.TOLERANCE` (1e-7 per layer) and
:data:`~npalexnet.gradcheck.TOLERANCE_NETWORK` (1e-5 for the whole network)
for finite differences, :data:`npalexnet.gradcheck.torch_compare.TOLERANCES`
against torch (float64 1e-10; float32 1e-5 for outputs, 5e-5 for gradients;
a bias gradient whose terms cancel is held to the bound of a sum instead,
shown as ``+ sum bound``); the derivations are in those modules.

The exit status is non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy

from .. import backend, config, nn, random_streams
from .finite_differences import TOLERANCE, TOLERANCE_NETWORK, check_module, tie_free


def _bn_eval():
    bn = nn.BatchNorm2d(3).eval()
    rng = numpy.random.default_rng(1)
    bn.running_mean = rng.standard_normal(3).astype(numpy.float32)
    bn.running_var = rng.uniform(0.5, 2.0, 3).astype(numpy.float32)
    bn.weight.data = rng.uniform(0.5, 1.5, 3).astype(numpy.float32)
    bn.bias.data = rng.standard_normal(3).astype(numpy.float32)
    return bn


def _whole_net():
    from ..models import alexnet
    return alexnet("cifar", width=0.125)


@dataclass
class Case:
    """One layer configuration: how to build it and the input it is checked on.

    ``whole_net``: a Gaussian input and directional finite differences at the network tolerance;
    ``targets``: a loss, called as ``module(x, targets)`` with random ``"indices"`` (N,) or
    ``"probabilities"`` (N, K): positive weights whose rows need not sum to one (torch's soft targets).
    """

    layer: str
    config: str
    make: object
    shape: tuple
    whole_net: bool = False
    targets: str = ""

    def inputs(self, seed=0):
        """``(x, targets)``: the float64 host input and, for a loss, its targets (None otherwise)."""
        if self.whole_net:
            x = numpy.random.default_rng(seed).standard_normal(self.shape)
        else:
            x = tie_free(self.shape, seed)
        rng = numpy.random.default_rng((seed, 7))
        if self.targets == "indices":
            return x, rng.integers(0, self.shape[1], self.shape[0])
        if self.targets == "probabilities":
            return x, rng.uniform(0.1, 1.0, self.shape)
        return x, None


CASES = [
    Case("Conv2d", "3->4, k3 s2 p1", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 6)),
    Case("Conv2d", "3->4, k5 s3 (conv1-like stride)", lambda: nn.Conv2d(3, 4, 5, stride=3), (1, 3, 11, 11)),
    Case("Conv2d", "4->6, k5 p2 groups=2 (conv2-like)", lambda: nn.Conv2d(4, 6, 5, padding=2, groups=2),
         (1, 4, 5, 5)),
    Case("Conv2d", "4->4, k(3,2) s(1,2) groups=2, no bias",
         lambda: nn.Conv2d(4, 4, (3, 2), stride=(1, 2), groups=2, bias=False), (2, 4, 5, 6)),
    Case("MaxPool2d", "k3 s2 (overlapping, Sec. 3.4)", lambda: nn.MaxPool2d(3, 2), (2, 2, 7, 7)),
    Case("MaxPool2d", "k3 s2 p1", lambda: nn.MaxPool2d(3, 2, padding=1), (1, 2, 6, 6)),
    Case("MaxPool2d", "k2 s2", lambda: nn.MaxPool2d(2), (2, 2, 6, 4)),
    Case("LocalResponseNorm", "paper: n=5 alpha=1e-4 beta=0.75 k=2", lambda: nn.LocalResponseNorm.from_paper(),
         (2, 7, 3, 3)),
    Case("LocalResponseNorm", "n=5 alpha=0.1 beta=0.75 k=2 (strong)",
         lambda: nn.LocalResponseNorm(5, alpha=0.1, beta=0.75, k=2.0), (2, 7, 3, 3)),
    Case("LocalResponseNorm", "n=4 alpha=0.2, 3 channels (window > C)",
         lambda: nn.LocalResponseNorm(4, alpha=0.2), (2, 3, 2, 2)),
    Case("ReLU", "", lambda: nn.ReLU(), (3, 7)),
    Case("Dropout", "p=0.5, seed=3 (training)", lambda: nn.Dropout(0.5, seed=3), (4, 6)),
    Case("Linear", "6->3", lambda: nn.Linear(6, 3), (4, 6)),
    Case("Flatten", "(N,C,H,W)->(N,CHW)", lambda: nn.Flatten(), (2, 3, 2, 2)),
    Case("BatchNorm2d", "training (batch statistics)", lambda: nn.BatchNorm2d(3), (3, 3, 2, 3)),
    Case("BatchNorm2d", "eval (running statistics)", _bn_eval, (3, 3, 2, 3)),
    Case("AdaptiveAvgPool2d", "(7,5)->(3,2), overlapping windows", lambda: nn.AdaptiveAvgPool2d((3, 2)),
         (2, 2, 7, 5)),
    Case("CrossEntropyLoss", "label_smoothing=0", lambda: nn.CrossEntropyLoss(), (4, 5), targets="indices"),
    Case("CrossEntropyLoss", "label_smoothing=0.1", lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
         (4, 5), targets="indices"),
    Case("CrossEntropyLoss", "class probabilities, label_smoothing=0.1",
         lambda: nn.CrossEntropyLoss(label_smoothing=0.1), (4, 5), targets="probabilities"),
    Case("AlexNet", "cifar, width=1/8, dropout on (directions)", _whole_net, (2, 3, 32, 32), whole_net=True),
]


@dataclass
class Result:
    """One row of the table."""

    layer: str
    config: str
    device: str
    check: str
    error: float
    worst: str
    tolerance: str
    passed: bool
    seconds: float


def _check_fd(case, device, seed=0):
    """Finite differences in float64 on ``device``: ``({array name: error}, tolerance)``."""
    xp = backend.xp_for(device)
    module = case.make().astype("float64").to(device)
    x, t = case.inputs(seed)
    x, t = xp.asarray(x), (None if t is None else xp.asarray(t))
    if case.whole_net:
        tol = TOLERANCE_NETWORK
        errors = check_module(module, x, targets=t, max_elements=0, directions=2, tolerance=tol, seed=seed)
    else:
        tol = TOLERANCE
        errors = check_module(module, x, targets=t, tolerance=tol, seed=seed)
    return errors, tol


def _check_torch(case, device, dtype, seed=0):
    """Against torch autograd (:func:`~npalexnet.gradcheck.torch_compare.check_against_torch`): a Comparison."""
    from .torch_compare import check_against_torch
    from .torch_twin import to_torch

    module = case.make().astype(dtype)
    x, t = case.inputs(seed)
    random_streams.manual_seed(seed)    # the same dropout mask in every run of the report
    return check_against_torch(module, to_torch(module), x, xp=backend.xp_for(device), dtype=dtype,
                               targets=t, seed=seed, check=False)


def run_case(case, device, check, seed=0) -> Result:
    """One row; ``device`` is ``cpu``, ``cuda`` or ``cuda+kernels``."""
    if device.endswith("+kernels"):
        with config.using(cuda_kernels=True):
            result = run_case(case, device.split("+")[0], check, seed)
        result.device = device
        return result
    t0 = time.perf_counter()
    if check == "finite-diff f64":
        errors, tol = _check_fd(case, device, seed)
        worst = max(errors, key=errors.get)
        err = errors[worst]
        passed = all(e <= tol for e in errors.values())
        tol_text = f"{tol:.0e}"
    else:
        dtype = "float64" if check.endswith("f64") else "float32"
        comparison = _check_torch(case, device, dtype, seed)
        worst, err = comparison.worst
        passed = comparison.passed
        tol_text = "/".join(f"{t:.0e}" for t in sorted(set(comparison.tolerances.values())))
        if comparison.within_sum_bound:
            tol_text += " + sum bound"
    return Result(case.layer, case.config, device, check, err, worst, tol_text, passed,
                  time.perf_counter() - t0)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def default_devices() -> list[str]:
    """``cpu``, plus ``cuda`` and ``cuda+kernels`` when CuPy sees a GPU."""
    return ["cpu"] + (["cuda", "cuda+kernels"] if backend.cupy_available() else [])


def run(devices=None, checks=None, cases=None, seed=0, progress=None) -> list[Result]:
    """Run the checks; returns the rows. ``progress(result)`` is called after each."""
    if devices is None:
        devices = default_devices()
    if checks is None:
        checks = ["finite-diff f64"] + (["torch f64", "torch f32"] if _torch_available() else [])
    results = []
    for case in cases or CASES:
        for device in devices:
            for check in checks:
                try:
                    r = run_case(case, device, check, seed)
                except Exception as exc:   # noqa: BLE001 (a crash is a failed row with its reason)
                    r = Result(case.layer, case.config, device, check, float("nan"),
                               f"{type(exc).__name__}: {exc}", "-", False, 0.0)
                results.append(r)
                if progress:
                    progress(r)
    return results


def format_table(results) -> str:
    header = ("Layer", "Configuration", "Device", "Check", "Max rel. error", "Worst array", "Tolerance", "")
    rows = [(r.layer, r.config, r.device, r.check, f"{r.error:.2e}", r.worst, r.tolerance,
             "ok" if r.passed else "FAIL") for r in results]
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'>' if i == 4 else '<'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header).rstrip(), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    previous = None
    for r, row in zip(results, rows):
        if previous is not None and (r.layer, r.config) != previous:
            lines.append("")
        previous = (r.layer, r.config)
        lines.append(fmt.format(*row).rstrip())
    failed = sum(not r.passed for r in results)
    lines.append("")
    lines.append(f"{len(results) - failed} of {len(results)} checks passed"
                 + (f", {failed} FAILED" if failed else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m npalexnet.gradcheck",
        description="Layer-by-layer gradient checks: finite differences (float64) and PyTorch's "
                    "autograd (float64, float32), on the CPU and on the GPU when CuPy sees one.")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="devices to check (default: cpu, plus cuda with and without the CUDA kernels "
                             "when a GPU is available)")
    parser.add_argument("--no-torch", action="store_true", help="finite differences only")
    parser.add_argument("--layer", action="append", default=None,
                        help="only this layer type (repeatable), e.g. --layer Conv2d")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    devices = {"all": None, "cpu": ["cpu"], "cuda": ["cuda", "cuda+kernels"]}[args.device]
    if args.device == "cuda" and not backend.cupy_available():
        print("no GPU: CuPy is missing or sees no CUDA device", file=sys.stderr)
        return 2
    checks = ["finite-diff f64"] if args.no_torch else None
    cases = CASES
    if args.layer:
        wanted = {s.lower() for s in args.layer}
        cases = [c for c in CASES if c.layer.lower() in wanted]
        if not cases:
            print(f"no layer among {sorted({c.layer for c in CASES})} matches {args.layer}", file=sys.stderr)
            return 2
    used_devices = devices or default_devices()
    notes = []
    if "cuda" not in used_devices:
        notes.append("GPU: skipped (CuPy is missing or sees no CUDA device)")
    if not args.no_torch and not _torch_available():
        notes.append("PyTorch: not installed, comparisons skipped (pip install -e \".[test]\")")
    t0 = time.perf_counter()
    results = run(devices, checks, cases, args.seed)
    print(format_table(results))
    for note in notes:
        print(note)
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0 if all(r.passed for r in results) else 1
