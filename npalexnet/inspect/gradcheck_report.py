"""The gradient-check run: every layer type, checked three ways, as one table.

``python -m npalexnet.gradcheck`` (or ``examples/gradcheck.py``) runs, for
each representative layer configuration and each device (CPU, and the GPU
when CuPy sees one):

* ``finite-diff f64``: the layer's backward against central differences in
  float64 (:func:`npalexnet.gradcheck.check_module`: element-wise for small
  arrays, along random directions for large ones). Needs nothing but NumPy.
* ``torch f64`` and ``torch f32`` (when torch is installed): output, input
  gradient and every parameter gradient against PyTorch's autograd on the
  same weights, input and random upstream gradient.

On a GPU every check runs twice: ``cuda`` (the CuPy array code, the same
source as the CPU's) and ``cuda+kernels`` (with the hand-written CUDA
kernels switched on (the ``cuda_kernels`` setting of :mod:`npalexnet.config`)).

Each row gives the largest relative error ``max|a-b| / max(|a|+|b|)`` over
all compared arrays, the array where it occurred, and the tolerance it must
pass. In float32 an array whose absolute differences all stay below 1e-6
passes whatever its relative error (a gradient that is zero in exact
arithmetic is rounding noise in both libraries).

Tolerances: float64 against torch 1e-10 (both compute the same formula up
to summation order); finite differences 1e-7 per layer (the truncation error
of a central difference with h = 1e-6 is about h^2 times the third
derivative, the rounding error about 1e-16/h), 1e-5 for the whole network
(a few of its thousands of ReLU and max-pool kinks fall within h); float32
against torch 1e-5 for outputs, 5e-5 for gradients (float32 rounding is
6e-8 per operation, and a gradient sums over up to N*OH*OW terms).

The exit status is non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy

from .. import backend, config, gradcheck, nn, random_streams

#: (output, gradients) tolerance and absolute floor of the torch comparisons, per dtype.
TORCH_TOLERANCES = {"float64": ((1e-10, 1e-10), 1e-12), "float32": ((1e-5, 5e-5), 1e-6)}
FD_TOLERANCE = 1e-7
FD_TOLERANCE_WHOLE_NET = 1e-5


def tie_free(shape, seed=0):
    """Distinct values in [-2, 2): no ties for max-pool, no exact zeros for ReLU."""
    rng = numpy.random.default_rng(seed)
    size = int(numpy.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5) * 4


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
    """One layer configuration: how to build it and the input it is checked on."""

    layer: str
    config: str
    make: object
    shape: tuple
    whole_net: bool = False


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
    Case("CrossEntropyLoss", "label_smoothing=0", lambda: nn.CrossEntropyLoss(), (4, 5)),
    Case("CrossEntropyLoss", "label_smoothing=0.1", lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
         (4, 5)),
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


def _targets(n, k, seed=0):
    return numpy.random.default_rng((seed, 7)).integers(0, k, n)


def _check_fd(case, device, seed=0):
    """Finite differences in float64 on ``device``: {array name: error}, tolerance."""
    xp = backend.xp_for(device)
    module = case.make().astype("float64").to(device)
    x = xp.asarray(tie_free(case.shape, seed))
    if isinstance(module, nn.CrossEntropyLoss):
        t = xp.asarray(_targets(*case.shape, seed))
        module(x, t)
        analytic = module.backward()
        numeric = gradcheck.numerical_gradient(lambda: module(x, t), x)
        return {"input": gradcheck.relative_error(analytic, numeric)}, FD_TOLERANCE
    if case.whole_net:
        x = xp.asarray(numpy.random.default_rng(seed).standard_normal(case.shape))
        return gradcheck.check_module(module, x, max_elements=0, directions=2, seed=seed), FD_TOLERANCE_WHOLE_NET
    return gradcheck.check_module(module, x, seed=seed), FD_TOLERANCE


def _check_torch(case, device, dtype, seed=0):
    """Against torch autograd: {array name: (error, max abs difference)}, tolerances, floor."""
    import torch

    from .torch_twin import to_tensor, to_torch
    xp = backend.xp_for(device)
    (tol_value, tol_grad), floor = TORCH_TOLERANCES[dtype]
    module = case.make().astype(dtype).to(device)
    x_host = (numpy.random.default_rng(seed).standard_normal(case.shape) if case.whole_net
              else tie_free(case.shape, seed)).astype(dtype)
    x = xp.asarray(x_host)
    twin = to_torch(module)
    tx = to_tensor(x_host, requires_grad=True)
    rng = numpy.random.default_rng((seed, 0x5EED))
    if isinstance(module, nn.CrossEntropyLoss):
        t_host = _targets(*case.shape, seed)
        y = module(x, xp.asarray(t_host))
        g = float(rng.standard_normal())
        dx = module.backward(g)
        ty = twin(tx, torch.from_numpy(t_host))
        ty.backward(torch.tensor(g, dtype=ty.dtype))
    else:
        module.zero_grad()
        random_streams.manual_seed(seed)
        y = module(x)                 # first: the twin's dropout replays this mask
        ty = twin(tx)
        g_host = rng.standard_normal(ty.shape).astype(dtype)
        dx = module.backward(xp.asarray(g_host))
        ty.backward(to_tensor(g_host))
    pairs = {"output": (y, ty.detach()), "input": (dx, tx.grad)}
    theirs = dict(twin.named_parameters())
    for name, p in module.named_parameters():
        pairs[name] = (p.grad, theirs[name].grad)
    errors = {}
    for name, (a, b) in pairs.items():
        a = backend.asnumpy(a).astype(numpy.float64)
        b = backend.asnumpy(b).astype(numpy.float64)
        diff = float(numpy.max(numpy.abs(a - b))) if a.size else 0.0
        tol = tol_value if name == "output" else tol_grad
        errors[name] = (gradcheck.relative_error(a, b), diff, tol)
    return errors, floor


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
        errors, floor = _check_torch(case, device, dtype, seed)
        worst = max(errors, key=lambda k: errors[k][0])
        err = errors[worst][0]
        passed = all(e <= tol or diff <= floor for e, diff, tol in errors.values())
        tols = sorted({tol for _, _, tol in errors.values()})
        tol_text = "/".join(f"{t:.0e}" for t in tols)
        if dtype == "float32":
            tol_text += f" (|diff|<{floor:.0e})"
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
