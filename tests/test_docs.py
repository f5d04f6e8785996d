"""The docs name only what exists: file paths, classes' attributes, and the code they quote.

docs/backprop.md is read next to the code, so it goes stale silently when the code moves. Three checks
over docs/backprop.md, docs/architecture.md and README.md:

* paths: every backticked word ending in .py or .md (``npalexnet/nn/conv.py``, ``examples/predict.py``,
  also inside a command) and every relative link target exists;
* names: every backticked ``Class.attr`` (or ``Class.attr()``, ``nn.Class.attr``, ``Class.attr = ...``)
  whose Class is a class exported by an npalexnet module resolves;
* quotations: a ```python block of docs/backprop.md whose first line is a comment naming a file
  (``# npalexnet/nn/linear.py, Linear.backprop``) quotes it: every other line, whitespace-normalised
  and without its trailing comment, is a line of that file (of that function, when one is named);
  ``...`` stands for lines left out. Code from inside a class (a line with ``self.``) must be marked.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import npalexnet

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["docs/backprop.md", "docs/architecture.md", "README.md"]
#: Where a bare file name (``conv.py``, ``predict.py``) may live.
SOURCE_DIRS = ["npalexnet", "tests", "examples", "benchmarks", "docs"]
#: Files of other projects the docs name (README: "timm's `validate.py`").
FOREIGN_FILES = {"validate.py"}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SPAN = re.compile(r"`([^`]+)`")                       # inline code; may wrap onto the next line
LINK = re.compile(r"\]\(([^)\s#]+)\)")                # [text](target)
PATH = re.compile(r"^[\w./-]+\.(py|md)$")
#: ``Class.attr`` at the start of a span, after an optional module prefix (``nn.``; not ``torch.``).
DOTTED = re.compile(r"^(?!torch\.)(?:[a-z_]\w*\.)*([A-Z]\w*)\.(\w+)(?:\(\))?(?:\s*=.*)?$")
QUOTE_MARK = re.compile(r"^#\s*([\w./-]+\.py)(?:\s*[,:]\s*([\w.]+))?")


def read(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def prose(text: str) -> str:
    """The text without its fenced blocks (inline spans are then paired as markdown pairs them)."""
    return FENCE.sub("", text)


def spans(doc: str) -> list[str]:
    return [" ".join(s.split()) for s in SPAN.findall(prose(read(doc)))]


def python_blocks(doc: str) -> list[str]:
    return [body for lang, body in FENCE.findall(read(doc)) if lang == "python"]


def normalised(line: str) -> str:
    """The code of a line: its trailing comment removed (a '#' after whitespace), spaces collapsed."""
    return " ".join(re.sub(r"\s#.*$", "", line).split())


# ------------------------------------------------------------------------------------------------ paths
def path_exists(path: str) -> bool:
    if path in FOREIGN_FILES:
        return True
    if "/" in path:   # from the repository root, or inside the package (``models/alexnet.py``)
        return (ROOT / path).exists() or (ROOT / "npalexnet" / path).exists()
    return any(any((ROOT / d).rglob(path)) for d in SOURCE_DIRS)


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_file_exists(doc):
    words = [w.strip("()[],;:") for s in spans(doc) for w in s.split()]
    named = {w for w in words if PATH.match(w) and "<" not in w}
    named |= {t for t in LINK.findall(prose(read(doc))) if "://" not in t}
    missing = sorted(p for p in named if not path_exists(p))
    assert not missing, f"{doc} names files that do not exist: {missing}"


# ------------------------------------------------------------------------------------------------ names
@functools.cache
def exported_classes() -> dict[str, type]:
    """Public classes of every module directly under npalexnet (its subpackages' exports)."""
    classes = {}
    for info in pkgutil.iter_modules(npalexnet.__path__):
        module = importlib.import_module(f"npalexnet.{info.name}")
        for name, value in vars(module).items():
            if inspect.isclass(value) and not name.startswith("_") and value.__module__.startswith("npalexnet"):
                classes[name] = value
    return classes


def has_attribute(cls: type, attr: str) -> bool:
    """A class attribute, method or property; or an instance attribute, which a class sets in its own code
    (every layer sets its ``saved_for_backward`` names in ``__init__``): found as ``self.attr`` in the
    source of the class or of a base. Building an instance would need each class's arguments."""
    if hasattr(cls, attr):
        return True
    uses = re.compile(rf"\bself\.{re.escape(attr)}\b")
    return any(uses.search(inspect.getsource(c)) for c in cls.__mro__ if c.__module__.startswith("npalexnet"))


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_class_attribute_exists(doc):
    classes = exported_classes()
    named = {(m[1], m[2]) for m in map(DOTTED.match, spans(doc)) if m and m[1] in classes}
    missing = sorted(f"{c}.{a}" for c, a in named if not has_attribute(classes[c], a))
    assert not missing, f"{doc} names attributes that do not exist: {missing}"


def test_the_class_names_are_found():
    """The check above is not vacuous: the names the contract is explained with are seen and resolve."""
    named = {m[0] for m in map(DOTTED.match, spans("docs/backprop.md")) if m}
    assert {"Module.backward", "Sequential.backprop", "Parameter.accumulate_grad"} <= named
    assert has_attribute(exported_classes()["ReLU"], "mask")
    assert not has_attribute(exported_classes()["Dropout"], "_apply_mask")


# ------------------------------------------------------------------------------------------------ quotations
def quoted_source(path: str, qualname: str | None) -> str:
    """The text of ``path``, or of the function ``qualname`` in it (``Linear.backprop``)."""
    if qualname is None:
        return (ROOT / path).read_text(encoding="utf-8")
    obj = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def quotations() -> list[tuple[str, str | None, list[str]]]:
    quotes = []
    for body in python_blocks("docs/backprop.md"):
        first, *rest = body.splitlines()
        mark = QUOTE_MARK.match(first.strip())
        if mark:
            quotes.append((mark[1], mark[2], rest))
        else:
            assert "self." not in body, f"code from a class, quoted without naming its file:\n{body}"
    return quotes


def test_backprop_md_quotes_the_code_as_it_is():
    quotes = quotations()
    assert len(quotes) >= 5, "docs/backprop.md quotes the layers' code in marked ```python blocks"
    for path, qualname, lines in quotes:
        assert (ROOT / path).is_file(), f"docs/backprop.md quotes {path}, which does not exist"
        source = {normalised(line) for line in quoted_source(path, qualname).splitlines()}
        stale = [line.strip() for line in lines if normalised(line) not in source | {"", "..."}]
        assert not stale, f"docs/backprop.md quotes lines that are not in {qualname or path}: {stale}"
