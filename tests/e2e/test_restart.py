"""kill -9 of the server while a kernel is mid-way through a loop of queries; a new server
on the same trail: every acknowledged event is there, the spooled ones are ingested, nothing
is duplicated or missing, and the chain verifies. Real server processes, a real kernel."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from helpers.servers import free_port

TOKEN = "restart-test-token"
# long enough (about a minute) that the server is killed while it runs, however slowly the
# first operations reach the trail on a loaded machine (1,500 steps could end before that)
LOOP = """import sqlite3, time
con = sqlite3.connect(':memory:')
for i in range(15000):
    con.execute('SELECT ?', [i])
    time.sleep(0.004)
print('done')"""


def api(port, path, method="GET", body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def start_server(tmp_path, db, port):
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    (tmp_path / "root").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--allow-root",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.port_retries=0",  # this port or none: the test talks to this one
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={tmp_path / 'root'}",
            f"--AuditApp.db_path={db}",
            "--ServerApp.jpserver_extensions={'jupyter_audit': True}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"server-{port}.log", "w"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            api(port, "api/status")
            return proc
        except OSError:
            if proc.poll() is not None:  # it could not start (e.g. the port was taken)
                break
            time.sleep(0.2)
    proc.kill()
    raise AssertionError((tmp_path / f"server-{port}.log").read_text()[-3000:])


def execute(port, kernel_id, code):
    import websocket

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
        header=[f"Authorization: token {TOKEN}"],
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "channel": "shell",
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "x",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            }
        )
    )
    return ws, msg_id


def kernel_alive(kernel_id) -> bool:
    return subprocess.run(["pgrep", "-f", kernel_id], capture_output=True).returncode == 0


@pytest.mark.timeout(300)
def test_server_killed_mid_stream_loses_nothing(tmp_path):
    db = tmp_path / "audit" / "trail.duckdb"
    port = free_port()
    server = start_server(tmp_path, db, port)
    try:
        kernel_id = api(port, "api/kernels", "POST", {"name": "python3"})["id"]
        ws, msg_id = execute(port, kernel_id, LOOP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until ops are flowing into the trail
            traces = api(port, "jupyter-audit/api/traces")["traces"]
            if traces and traces[0]["operations"] >= 100:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no operations reached the trail")
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
    deadline = time.monotonic() + 60  # the orphaned kernel notices and exits, spooling
    while kernel_alive(kernel_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    spools = list((tmp_path / "runtime").glob("audit-spool-*.jsonl"))
    assert spools, "the orphaned kernel spooled nothing"

    port2 = free_port()
    server2 = start_server(tmp_path, db, port2)
    try:
        bundle = api(port2, "jupyter-audit/api/export")
        verify = api(port2, "jupyter-audit/api/verify")
    finally:
        server2.send_signal(signal.SIGTERM)
        server2.wait(timeout=60)
    assert verify["ok"], verify
    assert not list((tmp_path / "runtime").glob("audit-spool-*"))  # ingested and removed
    ops = [r for r in bundle["records"] if r["kernel_id"] == kernel_id and r["op_index"]]
    ids = [r["event_id"] for r in ops]
    assert len(ids) == len(set(ids)), "duplicates"
    indexes = sorted(r["op_index"] for r in ops)
    assert indexes == list(range(indexes[0], indexes[-1] + 1)), "a gap: events were lost"
    sql = [r for r in ops if r["kind"] == "op.sql"]
    assert len(sql) > 100
    assert any("spooled" in r["flags"] for r in sql)
    assert all(r["msg_id"] == msg_id for r in sql)
    assert all(r["identity"]["auth_method"] == "token" for r in sql)  # attributed after restart
