"""The layout's rules (docs/architecture.md), kept by a test: packages only at the top, no
module over 900 lines, no import cycle at module level, none at all inside `store/` (where
what reads never imports what writes), domain packages free of tornado and jupyter_server,
the CLI apart from the server, and the public import paths working."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "jupyter_audit"
MAX_LINES = 900
DOMAIN = ("store", "masking", "events", "policy", "approvals")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (build output aside)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        if "labextension" in rel.parts:
            continue
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def module_level_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules `name` imports when it is imported (not inside functions, not
    under `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(stmts) -> None:
        for node in stmts:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    visit(block)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    mod = ".".join(parts + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for alias in node.names:
                    # `from .pkg import sub` needs the submodule; `from .pkg import name`
                    # needs what pkg/__init__.py defines
                    sub = f"{mod}.{alias.name}"
                    found.add(sub if sub in known else mod)

    visit(tree.body)
    # a module's own parent packages are imported before it, whatever it imports: they are
    # not dependencies of its own
    return {dep for dep in found if dep in known and not name.startswith(dep + ".") and dep != name}


def test_the_package_holds_only_packages_and_its_entry_modules():
    loose = sorted(
        p.name
        for p in PKG.iterdir()
        if p.suffix == ".py" and p.name not in ("__init__.py", "_version.py")
    )
    assert loose == [], f"modules beside the packages: {loose}"


def test_no_module_is_over_900_lines():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle_at_module_level():
    known = modules()
    graph = {name: module_level_imports(name, path, known) for name, path in known.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def strongconnect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    assert cycles == [], f"import cycles: {cycles}"


def test_domain_packages_never_import_the_server():
    names = [
        n
        for n in modules()
        if n.split(".")[1:2] and n.split(".")[1] in DOMAIN or n == "jupyter_audit.identity.snapshot"
    ]
    code = (
        "import importlib, json, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tornado', 'jupyter_server', 'jupyter_client', 'zmq'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [], f"the domain packages pulled in: {json.loads(out)[:5]}"


def test_the_cli_never_imports_the_server():
    for name, path in modules().items():
        if not name.startswith("jupyter_audit.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not (node.level and module.split(".")[0] == "server"), name
                assert not module.startswith("jupyter_audit.server"), name


def test_the_public_import_paths_work():
    code = (
        "from jupyter_audit.identity import OIDCIdentityProvider\n"
        "from jupyter_audit.identity.hub import auth_state_hook\n"
        "from jupyter_audit.cli import main\n"
        "import jupyter_audit\n"
        "[point] = jupyter_audit._jupyter_server_extension_points()\n"
        "assert point['app'].__name__ == 'AuditApp'\n"
        "assert jupyter_audit._jupyter_labextension_paths()[0]['dest'] == 'jupyter-audit'\n"
        "assert callable(auth_state_hook) and callable(main)\n"
        "assert OIDCIdentityProvider.__name__ == 'OIDCIdentityProvider'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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
