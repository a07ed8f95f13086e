"""The kernel side must work as a copy under another top-level name in an environment
without jupyter_audit: relative imports only, standard library and IPython only."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

KERNEL_PKG = Path(__file__).resolve().parents[2] / "jupyter_audit" / "kernel"

# imported lazily, inside functions, only once the user has imported that driver
LAZY_OPTIONAL = {"sqlalchemy", "psycopg2"}


def copy_as(tmp_path: Path, name: str = "jupyter_audit_kernel") -> Path:
    shutil.copytree(KERNEL_PKG, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_imports_are_stdlib_ipython_or_relative():
    for path in KERNEL_PKG.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # relative: inside kernel/
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top != "jupyter_audit", f"{path.name}: absolute import of {name}"
                allowed = top in sys.stdlib_module_names or top == "IPython"
                in_function = node.col_offset > 0
                assert allowed or (top in LAZY_OPTIONAL and in_function), (
                    f"{path.name}:{node.lineno} imports {name}"
                )


def test_copy_imports_without_the_full_package(tmp_path):
    root = copy_as(tmp_path)
    code = (
        "import sys, jupyter_audit_kernel\n"
        "from jupyter_audit_kernel.capture import sql, http, shell\n"
        "assert callable(jupyter_audit_kernel.load_ipython_extension)\n"
        "assert callable(jupyter_audit_kernel.unload_ipython_extension)\n"
        "bad = sorted(m for m in sys.modules if m == 'jupyter_audit' or m.startswith('jupyter_audit.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=root
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_copy_loads_in_a_kernel(kernel_factory, ingest_factory, make_env, tmp_path):
    root = copy_as(tmp_path / "inject")
    ingest = ingest_factory()
    kernel = kernel_factory(
        make_env(ingest, tmp_path, kernel_id="foreign"),
        ext="jupyter_audit_kernel",
        pythonpath=[root],
    )
    msg_id = kernel.run(
        "import sys, sqlite3\n"
        "sqlite3.connect(':memory:').execute('select 1')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'jupyter_audit'], 'full package imported'\n"
        "assert 'jupyter_audit_kernel' in sys.modules"
    )
    kinds = sorted(e["kind"] for e in ingest.cell(msg_id))
    assert kinds == ["cell.finished", "cell.started", "op.sql"]


def test_load_and_unload_in_a_kernel(kernel_factory, ingest_factory, make_env, tmp_path):
    ingest = ingest_factory()
    kernel = kernel_factory(make_env(ingest, tmp_path, kernel_id="loader"), ext=None)
    kernel.run("%load_ext jupyter_audit.kernel")
    kernel.run("%load_ext jupyter_audit.kernel")  # twice: still one capture
    first = kernel.run("import sqlite3; sqlite3.connect(':memory:').execute('select 1')")
    assert [e["kind"] for e in ingest.cell(first)].count("op.sql") == 1
    kernel.run("%unload_ext jupyter_audit.kernel")
    kernel.run(
        "import subprocess, threading, sqlite3\n"
        "assert not hasattr(subprocess.Popen.__init__, '__jupyter_audit_wrapped__')\n"
        "assert not hasattr(threading.Thread.start, '__jupyter_audit_wrapped__')\n"
        "assert not hasattr(sqlite3.connect, '__jupyter_audit_wrapped__')\n"
        "sqlite3.connect(':memory:').execute('select 2')"
    )
    n = len(ingest.events())
    kernel.run("1")
    assert len(ingest.events()) == n
    assert not [e for e in ingest.events() if e["payload"].get("statement") == "select 2"]
