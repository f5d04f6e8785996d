"""python -m npalexnet.gradcheck (npalexnet.gradcheck.report): exit status, table content, a broken layer is caught."""

import os
import subprocess
import sys

import numpy

from npalexnet import nn
from npalexnet.gradcheck import report as gradcheck_report
from npalexnet.gradcheck.report import CASES, Case, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINEAR = next(c for c in CASES if c.layer == "Linear")


def test_module_entry_point_exits_zero_with_a_table():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "npalexnet.gradcheck", "--layer", "LocalResponseNorm"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for text in ("Layer", "Tolerance", "finite-diff f64", "torch f64", "torch f32", "paper: n=5", "checks passed"):
        assert text in out
    assert "FAIL" not in out


def test_every_layer_type_and_check_passes(capsys):
    assert main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    layers = {"Conv2d", "MaxPool2d", "LocalResponseNorm", "ReLU", "Dropout", "Linear", "Flatten", "BatchNorm2d",
              "AdaptiveAvgPool2d", "CrossEntropyLoss", "AlexNet"}
    assert layers == {c.layer for c in CASES}
    assert all(layer in out for layer in layers)
    assert "groups=2" in out and "k3 s2 (overlapping" in out and "label_smoothing=0.1" in out
    assert "eval (running statistics)" in out and "seed=3" in out
    assert f"{3 * len(CASES)} of {3 * len(CASES)} checks passed" in out


def test_a_wrong_gradient_fails_with_exit_status_one(monkeypatch, capsys):
    class WrongLinear(nn.Linear):
        def backward(self, grad_out):
            return super().backward(grad_out) * 1.001

    monkeypatch.setattr(gradcheck_report, "CASES", [Case("Linear", "wrong", lambda: WrongLinear(6, 3), (4, 6))])
    assert main([]) == 1
    out = capsys.readouterr().out
    assert sum(line.endswith("FAIL") for line in out.splitlines()) == 3
    assert "0 of 3 checks passed, 3 FAILED" in out


def test_finite_differences_only_and_bad_arguments(capsys):
    assert main(["--no-torch", "--layer", "relu"]) == 0
    out = capsys.readouterr().out
    assert "finite-diff f64" in out and "torch f32" not in out
    assert main(["--layer", "nosuchlayer"]) == 2


def test_results_hold_errors_and_tolerances():
    results = gradcheck_report.run(["cpu"], ["finite-diff f64", "torch f64"], [CASES[0]])
    fd, tf64 = results
    assert fd.passed and fd.error < 1e-7 and fd.tolerance == "1e-07"
    assert tf64.passed and tf64.error < 1e-10
    assert numpy.isfinite(fd.seconds)


def test_gpu_rows_only_with_a_gpu():
    from npalexnet import backend
    devices = gradcheck_report.default_devices()
    if backend.cupy_available():
        assert devices == ["cpu", "cuda", "cuda+kernels"]
    else:
        assert devices == ["cpu"]
        assert main(["--device", "cuda"]) == 2


def test_the_report_holds_torch_rows_to_the_one_table(monkeypatch):
    from npalexnet.gradcheck import TOLERANCE
    from npalexnet.gradcheck.torch_compare import TOLERANCES

    fd, f64, f32 = gradcheck_report.run(["cpu"], ["finite-diff f64", "torch f64", "torch f32"], [LINEAR])
    assert (fd.tolerance, f64.tolerance, f32.tolerance) == (f"{TOLERANCE:.0e}", "1e-10", "1e-05/5e-05")
    assert f32.passed and f32.error > 1e-9        # float32 rounding, within the table
    monkeypatch.setitem(TOLERANCES, numpy.float32, (1e-12, 1e-12))
    _, f64, f32 = gradcheck_report.run(["cpu"], ["finite-diff f64", "torch f64", "torch f32"], [LINEAR])
    assert f64.passed and not f32.passed and f32.tolerance == "1e-12"
