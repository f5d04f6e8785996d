"""The package's floors: imports flow one way, with no cycle, and no module reaches into another package's
private names (docs/architecture.md). Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "npalexnet"

#: Lower floors never import higher ones. Within a floor, modules may import each other, without cycles.
FLOORS = [
    {"config"},
    {"backend", "random_streams"},
    {"kernels"},
    {"nn"},
    {"models", "optim", "gradcheck"},
    {"data"},
    {"distributed"},
    {"inspect", "viz"},
    {"train"},
    {"export"},
]
FLOOR_OF = {name: level for level, names in enumerate(FLOORS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def resolve(importer: str, node) -> list[tuple[str, str | None]]:
    """(imported npalexnet module, imported name or None) for an Import/ImportFrom node."""
    is_package = MODULES.get(importer, Path()).name == "__init__.py"
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "npalexnet"]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "npalexnet":
        return []
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append((sub, None) if sub in MODULES else (target, alias.name))
    return out


def edges():
    """Every (importer, imported module, imported name, line) in the package."""
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, imported in resolve(name, node):
                    found.append((name, target, imported, node.lineno))
    return found


EDGES = edges()


def floor(module: str) -> int | None:
    """The floor of ``npalexnet.<top>...``; None for the package's own __init__ and __main__ scripts."""
    parts = module.split(".")
    if len(parts) == 1 or parts[-1] == "__main__":
        return None
    return FLOOR_OF.get(parts[1])


def test_every_part_of_the_package_has_a_floor():
    tops = {m.split(".")[1] for m in MODULES if "." in m}
    assert tops <= set(FLOOR_OF), f"modules without a floor in FLOORS: {sorted(tops - set(FLOOR_OF))}"


def test_no_lower_floor_imports_a_higher_one():
    back_edges = [f"{a}:{line} imports {b} (floor {floor(a)} -> {floor(b)})" for a, b, _, line in EDGES
                  if floor(a) is not None and floor(b) is not None and floor(b) > floor(a)]
    assert not back_edges, "\n".join(back_edges)


def test_there_is_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b, _, _ in EDGES:
        if b in graph and a != b:
            graph[a].add(b)
    # Tarjan's strongly connected components, iteratively
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def strongconnect(root):
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            strongconnect(module)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_imports_another_packages_private_names():
    def package(module):
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else ""

    reaches = [f"{a}:{line} imports {b}.{n}" for a, b, n, line in EDGES
               if n and n.startswith("_") and not n.startswith("__") and package(a) != package(b)]
    assert not reaches, "\n".join(reaches)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("npalexnet.nn.")))
def test_the_layers_hold_no_machinery(name):
    """nn/ is the math: no environment reads, no numba or CUDA, no buffer pool, no device branches."""
    source = MODULES[name].read_text()
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"os", "numba", "cupy"} & {i.split(".")[0] for i in imported}, imported
    for word in ("os.environ", "memory.empty", "numba_kernels", "cuda_kernels", "is_cupy_array", "cupy"):
        assert word not in source, f"{name} mentions {word}"
