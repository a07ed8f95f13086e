"""A collector for benchmarks of a forwarding server: `jupyter audit collector --db` as a real
subprocess, behind a stand-in for the Hub's `/hub/api/user` (the one Hub call the collector
makes; the real Hub is what tests/e2e/test_collector_hub.py runs). `forwarding_env` is what a
spawner would put in a single-user server's environment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SERVICE_TOKEN = "bench-collector-service-token"
SERVER_TOKEN = "bench-server-token"
USER = "bench"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Hub(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.rstrip("/") != "/hub/api/user" or self.headers.get("Authorization") != (
            f"token {SERVER_TOKEN}"
        ):
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps(
            {
                "kind": "user",
                "name": USER,
                "groups": [],
                "scopes": [f"access:servers!server={USER}/", "access:services"],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def collector(directory: Path):
    """Run a collector on `directory`/collector.duckdb; yields the env for a forwarding
    server."""
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    port = _port()
    env = {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.server_address[1]}/hub/api",
        "JUPYTERHUB_SERVICE_NAME": "jupyter-audit",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
    }
    directory.mkdir(parents=True, exist_ok=True)
    log = open(directory / "collector.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_audit.cli",
            "collector",
            "--db",
            str(directory / "collector.duckdb"),
            "--state-dir",
            str(directory / "state"),
        ],
        env=env,
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "api/forward/state", timeout=2)
            except urllib.error.HTTPError:
                break  # it answers (401 without a token)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((directory / "collector.log").read_text()) from None
                time.sleep(0.2)
        yield {
            "JUPYTER_AUDIT_COLLECTOR_URL": url,
            "JUPYTERHUB_API_TOKEN": SERVER_TOKEN,
            "JUPYTERHUB_USER": USER,
        }
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        hub.shutdown()


def forwarded(directory: Path) -> int:
    """How many forwarded records the (stopped) collector's trail holds."""
    import duckdb

    con = duckdb.connect(str(directory / "collector.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT count(*) FROM events WHERE starts_with(event_id, 'fw.')"
        ).fetchone()[0]
    finally:
        con.close()
