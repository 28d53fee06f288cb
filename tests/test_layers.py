"""The core's architecture as tests: layers that point one way, no import cycles, a torch-free contract.

Every ``import`` in ``gperc_core`` (at module level or inside a function) is read from the source
with `ast`; a module may import only from its own layer or the layers below it, and the import
graph has no cycle, even through imports inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gperc_core"

# bottom-up; a module may import from its own layer and every layer before it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "errors"),
    ("config",),
    ("plugins",),
    ("io",),
    ("model",),
    ("interop",),
    ("data",),
    ("train",),
    ("parallel",),
    ("api", "models"),
    ("testing",),
    ("cli", "__main__"),
)

# Known violations still being removed; each entry is (importer, imported). Must end empty.
ALLOWED: set[tuple[str, str]] = set()


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts == ["gperc_core"]:
        return len(LAYERS)  # the package root re-exports everything (lazily)
    top = parts[1]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: belongs to no layer; add its top-level name to LAYERS in {__file__}")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every gperc_core module ``path`` imports (absolute or relative, anywhere in the file)."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "gperc_core")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "gperc_core":
                continue
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                sub = PACKAGE.parent / (mod + "." + alias.name).replace(".", "/")
                found.add(mod + "." + alias.name if sub.with_suffix(".py").is_file() or sub.is_dir() else mod)
    found.discard(me)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules}
    # guard against a typo in an import silently dropping an edge
    return graph


def test_every_module_has_a_layer() -> None:
    for name in _graph():
        _layer(name)


def test_imports_point_down_the_layers() -> None:
    bad = []
    for name, deps in sorted(_graph().items()):
        if name.split(".")[-1] == "gperc_core":
            continue
        for dep in sorted(deps):
            if dep == "gperc_core":
                bad.append(f"{name} imports the package root gperc_core (import the defining module instead)")
            elif _layer(dep) > _layer(name) and (name, dep) not in ALLOWED:
                bad.append(f"{name} (layer {LAYERS[_layer(name)]}) imports {dep} (layer {LAYERS[_layer(dep)]})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w == "gperc_core" or (v, w) in ALLOWED:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_graph_reader_sees_function_level_imports(tmp_path: Path) -> None:
    """The checker itself can fail: an import inside a function is an edge."""
    deps = _imports(PACKAGE / "models.py")
    assert "gperc_core.parallel.pipeline" in deps  # imported inside get_distributed_model


@pytest.mark.parametrize("module", ["gperc_core", "gperc_core.plugins.hookspecs", "gperc_core.plugins.specs",
                                    "gperc_core.plugins.manager", "gperc_core.testing", "gperc_core.config",
                                    "gperc_core.errors"])
def test_contract_imports_no_torch(module: str) -> None:
    code = (f"import sys, {module}\n"
            "from gperc_core import hookimpl, ModalitySpec, InputArray, PluginError\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('gperc_core.model'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} imported {out}"
