"""The gradcheck floor: what it may import, and that torch stays off the library's main path.

gradcheck sits beside models and optim: it imports backend, config, random_streams, kernels, nn,
models, optim and itself, never data, distributed, inspect, viz or train (lazy imports included),
so no cycle can run through it. Only its torch modules import torch, and nothing else loads them.
"""

import ast
import os
import subprocess
import sys

import pytest

import npalexnet

PACKAGE = os.path.dirname(npalexnet.__file__)
ALLOWED = {"backend", "config", "random_streams", "kernels", "nn", "models", "optim", "gradcheck"}


def npalexnet_imports(source: str, module: str):
    """(line, top-level npalexnet subpackage) of every import in ``source``, the text of the dotted
    ``module`` (e.g. ``npalexnet.gradcheck.report``), at any depth: lazy imports count too."""
    package = module.split(".")[:-1]          # a package's __init__ resolves against the package itself
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            names = [target] if node.module else [target + [a.name] for a in node.names]
        else:
            continue
        found += [(node.lineno, name[1]) for name in names if name[0] == "npalexnet" and len(name) > 1]
    return found


FILES = sorted(f for f in os.listdir(os.path.join(PACKAGE, "gradcheck")) if f.endswith(".py"))


@pytest.mark.parametrize("filename", FILES)
def test_gradcheck_imports_only_its_floor_and_below(filename):
    with open(os.path.join(PACKAGE, "gradcheck", filename)) as f:
        found = npalexnet_imports(f.read(), f"npalexnet.gradcheck.{filename[:-3]}")
    assert found, "the parser found no npalexnet import at all"
    assert not [(line, name) for line, name in found if name not in ALLOWED]


def test_the_import_parser_sees_relative_absolute_and_lazy_imports():
    source = ("from .. import backend, nn\nfrom . import report\nfrom ..data import x\n\n"
              "def f():\n    from ..inspect.batch import y\n    import npalexnet.train\n")
    found = [name for _, name in npalexnet_imports(source, "npalexnet.gradcheck.probe")]
    assert found == ["backend", "nn", "gradcheck", "data", "inspect", "train"]


def test_torch_is_not_imported_on_the_main_path():
    code = ("import sys, npalexnet, npalexnet.gradcheck, npalexnet.gradcheck.report, npalexnet.models, "
            "npalexnet.optim, npalexnet.inspect, npalexnet.inspect.batch, npalexnet.viz; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('npalexnet.gradcheck.torch')))")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(PACKAGE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=True)
    assert done.stdout.strip() == "[]"
