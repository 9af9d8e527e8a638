"""No import circles in the product or the tooling: a module never imports one that imports it
back, directly or round a loop; and the tooling's imports go down its layers (`LAYERS`).

The graph is read from the source (ast), not from running it, so an import inside a function or
under `TYPE_CHECKING` counts too: it is still a dependency of the module. Conventions (those of
import-linter): `import a.b.c` and `from a.b import c` (c a module) depend on `a.b.c` only, not on
the packages `a` and `a.b` above it; `from a.b import name` (name not a module) depends on `a.b`,
its `__init__`. Only modules of `layers/boxwatch`, `infra` and `functions` are nodes; everything
else (the standard library, boto3, moto ...) is outside the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# where each top-level package lives (the mypy_path of pyproject.toml)
SOURCE_ROOTS = (ROOT / "layers" / "boxwatch", ROOT / "infra")
FUNCTIONS = ROOT / "functions"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the product and the tooling: dotted name -> file."""
    found: dict[str, Path] = {}
    for root in SOURCE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path, root)] = path
    # a handler is loaded from its own CodeUri as a top-level module; named by its folder here
    for path in sorted(FUNCTIONS.glob("*/*.py")):
        found[f"functions.{path.parent.name}.{path.stem}"] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of `known` that module `name` (at `path`) imports."""
    known = set(known)
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()

    def add(target: str) -> None:
        if target in known and target != name:
            out.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # package-relative: one level is this package, each more one up
                base_parts = package.split(".") if package else []
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                add(sub if sub in known else base)
    return out


def graph(found: Mapping[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, path, found) for name, path in found.items()}


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a loop of
    names, smallest first: every module of a component imports every other, round some loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(components, key=lambda c: (len(c), c))


def test_the_graph_is_read_from_every_part() -> None:
    # Given the source tree
    found = modules()
    edges = graph(found)
    # Then the walk saw the product, the handlers and the tooling, and their imports
    assert "boxwatch.models" in found and "boxwatch_infra.sandbox" in found
    assert any(name.startswith("functions.") for name in found)
    assert "boxwatch.runtime" in edges["functions.alarm_ingest.app"]
    assert sum(len(v) for v in edges.values()) > 100


def test_no_module_imports_one_that_imports_it_back() -> None:
    # Given every import of layers/, functions/ and infra/
    edges = graph(modules())
    # Then no module is on a loop of imports
    assert cycles(edges) == []


# The tooling's layers, bottom first: a module imports only from its own package and from lower
# layers, never sideways (another package of its layer) or upwards. `*.cli` modules and
# `commands/` are the console command, the top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("aws",),  # the AWS emulation core
    ("sandbox", "deployed", "mqtt_broker", "dlq"),  # core + moto in-process / a deployed stack / a broker
    ("replay", "device"),  # scenarios on the sandbox; the box
    ("localcloud",),  # core + moto_server, sockets, processes (its demo drives device agents)
    ("bench",),  # measurements on the sandbox
    ("commands", "cli"),
)


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer, package) of a tooling module; None outside the tooling."""
    parts = module.split(".")
    if parts[0] != "boxwatch_infra" or len(parts) == 1:
        return None
    if parts[-1] == "cli":
        return len(LAYERS) - 1, module
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i, parts[1]
    raise AssertionError(f"{module}: a package of the tooling that LAYERS does not place")


def wrong_way(edges: Mapping[str, set[str]]) -> list[str]:
    """Imports that go up or sideways between the tooling's layers, from the product into the
    tooling, or from the AWS emulation core into the product (the core emulates AWS, whatever runs
    on it)."""
    out = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            if not a.startswith("boxwatch_infra"):
                if b.startswith("boxwatch_infra"):
                    out.append(f"{a} -> {b} (the product imports the tooling)")
                continue
            if a.startswith("boxwatch_infra.aws.") and not b.startswith("boxwatch_infra"):
                out.append(f"{a} -> {b} (the core imports the product)")
                continue
            la, lb = layer_of(a), layer_of(b)
            if la is None or lb is None or la[1] == lb[1]:
                continue
            if lb[0] > la[0]:
                out.append(f"{a} -> {b} (upwards)")
            elif lb[0] == la[0]:
                out.append(f"{a} -> {b} (sideways)")
    return out


def test_imports_go_down_the_layers() -> None:
    # Given every import of layers/, functions/ and infra/
    edges = graph(modules())
    # Then the tooling imports only downwards, and the product never imports the tooling
    assert wrong_way(edges) == []


def test_an_upward_or_sideways_import_is_found() -> None:
    # Given a seeding module importing a console command, the core importing the sandbox and the
    # product, and a handler importing the tooling
    edges = {"boxwatch_infra.localcloud.seed": {"boxwatch_infra.commands.boxes_cmd", "boxwatch_infra.aws.ports"},
             "boxwatch_infra.aws.template": {"boxwatch_infra.sandbox"},
             "boxwatch_infra.dlq": {"boxwatch_infra.sandbox"},
             "functions.presence.app": {"boxwatch.network", "boxwatch_infra.sandbox"},
             "boxwatch_infra.commands.boxes_cmd": {"boxwatch_infra.deployed"},
             "boxwatch_infra.aws.events": {"boxwatch.network"}}
    # Then each wrong-way import is reported, and none of the others
    assert wrong_way(edges) == [
        "boxwatch_infra.aws.events -> boxwatch.network (the core imports the product)",
        "boxwatch_infra.aws.template -> boxwatch_infra.sandbox (upwards)",
        "boxwatch_infra.dlq -> boxwatch_infra.sandbox (sideways)",
        "boxwatch_infra.localcloud.seed -> boxwatch_infra.commands.boxes_cmd (upwards)",
        "functions.presence.app -> boxwatch_infra.sandbox (the product imports the tooling)",
    ]


def test_a_loop_is_found(tmp_path: Path) -> None:
    # Given a synthetic package where a imports b, b imports c (relatively) and c imports a back
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""a package"""\n')
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n    return g\n")
    (pkg / "c.py").write_text("import pkg.a\n\ndef g():\n    return pkg.a\n")
    (pkg / "d.py").write_text("from pkg.a import nothing_here\n")  # imports into the loop, not on it
    found = {module_name(p, tmp_path): p for p in pkg.glob("*.py")}
    # When the graph is walked
    edges = graph(found)
    # Then the relative and function-level imports are edges, and the loop is reported
    assert edges["pkg.b"] == {"pkg.c"} and edges["pkg.d"] == {"pkg.a"}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    with pytest.raises(AssertionError):
        assert cycles(edges) == []


def test_a_package_importing_its_own_submodule_is_no_loop(tmp_path: Path) -> None:
    # Given a package whose __init__ re-exports a submodule that imports a sibling module
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.run import Run\n")
    (pkg / "run.py").write_text("from pkg.scenario import Scenario\n\nclass Run: ...\n")
    (pkg / "scenario.py").write_text("class Scenario: ...\n")
    found = {module_name(p, tmp_path): p for p in pkg.glob("*.py")}
    # When the graph is walked, Then there is no loop (submodules do not depend on their package)
    assert graph(found)["pkg"] == {"pkg.run"}
    assert cycles(graph(found)) == []
