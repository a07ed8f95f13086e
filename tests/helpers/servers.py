"""The repository, free ports, a jupyter_server configured with jupyter-audit, and the CLI run
as a real process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str) -> tuple[int, str, str]:
    """`jupyter audit ARGS` as a real process (the installed console script's module)."""
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
