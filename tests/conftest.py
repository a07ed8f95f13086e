import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def trail_dir(tmp_path) -> Path:
    d = tmp_path / "audit"
    d.mkdir()
    return d


@pytest.fixture
def make_writer(trail_dir):
    """Writers on a real DuckDB file in a temporary directory, with the real masking
    engine and a real signing key; closed at the end of the test."""
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    opened = []

    def make(**kwargs):
        masker = MaskingEngine(load_or_create_key(trail_dir / "masking.key"))
        key = SigningKey.load_or_create(trail_dir / "signing-key.pem")
        w = Writer(trail_dir / "trail.duckdb", masker, key, **kwargs).open()
        opened.append(w)
        return w

    yield make
    for w in opened:
        w.close()


ALICE = {"username": "alice", "auth_method": "token", "email": "alice@example.org"}
BOB = {"username": "bob", "auth_method": "token"}


def sql_event(i: int, trace: str = "trace-1", who=None) -> dict:
    return {
        "kind": "op.sql",
        "identity": who or ALICE,
        "trace_id": trace,
        "kernel_id": "kernel-1",
        "notebook": "analysis.ipynb",
        "msg_id": f"msg-{i // 3}",
        "op_index": i,
        "payload": {
            "driver": "sqlite3",
            "database": "loans.db",
            "statement": f"SELECT * FROM loans WHERE id = {i}",
            "params": [i],
            "rowcount": 1,
            "duration_us": 100 + i,
        },
    }


def run_cli(*args: str) -> tuple[int, str, str]:
    """`jupyter audit ARGS` as a real process (the installed console script's module)."""
    import subprocess

    p = subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    return p.returncode, p.stdout, p.stderr


def server_config(db, *, server=None, **audit) -> dict:
    """jp_server_config for a server with jupyter-audit on the trail `db` (a path), every
    endpoint requiring credentials; `server` adds ServerApp settings, `audit` AuditApp ones."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_audit": True},
            "allow_unauthenticated_access": False,
            **(server or {}),
        },
        "AuditApp": {"db_path": str(db), **audit},
    }
