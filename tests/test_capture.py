"""End to end: a real server starts a real kernel with the kernel side injected; cells run
over the websocket; SQL, shell and cell events reach the trail attributed to the identity the
server saw, linked to their cell; forged kernel submissions are refused and recorded."""

import asyncio
import getpass
import json
import sys

import pytest
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import trail_events, wait_for
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(trail_dir / "trail.duckdb")


SQL_CELL = """import sqlite3
con = sqlite3.connect(':memory:')
con.execute('CREATE TABLE loans (id INTEGER, email TEXT)')
con.execute("INSERT INTO loans VALUES (1, 'jane.doe@example.com')")
print(con.execute('SELECT count(*) FROM loans').fetchone()[0])"""


async def test_cells_and_operations_are_captured_and_attributed(
    jp_serverapp, jp_fetch, jp_ws_fetch
):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
    status, out = await client.run(SQL_CELL)
    assert (status, out.strip()) == ("ok", "1")
    status, _ = await client.run("import subprocess\nsubprocess.run(['true'])")
    assert status == "ok"
    events = await wait_for(
        audit,
        lambda ev: (
            sum(e["kind"] == "op.sql" for e in ev) >= 3
            and any(e["kind"] == "op.shell" for e in ev)
            and sum(e["kind"] == "cell.finished" for e in ev) >= 2
            # computed in the background after load, so it may come last
            and any(e["kind"] == "session.environment" for e in ev)
        ),
    )
    me = getpass.getuser()
    requested = [e for e in events if e["kind"] == "cell.requested"]
    assert len(requested) == 2
    sql_msg = requested[0]["msg_id"]
    sql = [e for e in events if e["kind"] == "op.sql"]
    assert [e["payload"]["statement"].split()[0] for e in sql[:3]] == ["CREATE", "INSERT", "SELECT"]
    # the server says what each statement is and which tables it names (DESIGN's export record)
    assert [(e["payload"]["statement_type"], e["payload"]["tables"]) for e in sql[:3]] == [
        ("CREATE", ["loans"]),
        ("INSERT", ["loans"]),
        ("SELECT", ["loans"]),
    ]
    for e in sql:
        assert e["msg_id"] == sql_msg  # linked to its cell
        assert e["identity"]["username"] == me and e["identity"]["auth_method"] == "token"
        assert e["trace_id"] == kernel_id and "unattributed" not in e["flags"]
    assert "jane.doe@example.com" not in json.dumps(events)  # masked by the server
    assert [e["op_index"] for e in sql] == sorted(e["op_index"] for e in sql)
    shell = next(e for e in events if e["kind"] == "op.shell")
    assert shell["msg_id"] == requested[1]["msg_id"] and shell["payload"]["exit_code"] == 0
    finished = [e for e in events if e["kind"] == "cell.finished"]
    assert {e["msg_id"] for e in finished} >= {r["msg_id"] for r in requested}
    env = [e for e in events if e["kind"] == "session.environment"]
    assert env and env[0]["payload"]["packages"]
    r = await jp_fetch("jupyter-audit", "api", "verify")
    assert json.loads(r.body)["ok"] is True
    client.ws.close()


async def post_events(jp_fetch, kernel_id, secret, events, claimed_kernel=None):
    return await jp_fetch(
        "jupyter-audit",
        "api",
        "kernel",
        "events",
        method="POST",
        body=json.dumps({"kernel_id": claimed_kernel or kernel_id, "events": events}),
        headers={
            "Authorization": f"JupyterAudit-Kernel {secret}",
            "X-Jupyter-Audit-Kernel": kernel_id,
        },
    )


def op(event_id, **extra):
    return {
        "event_id": event_id,
        "kind": "op.shell",
        "msg_id": None,
        "op_index": 1,
        "kernel_time": "2026-11-27T00:00:00.000000Z",
        "payload": {"command": "ls", "exit_code": 0},
        **extra,
    }


async def test_egress_no_capture_path_saw_is_a_flagged_gap_in_the_trail(
    jp_serverapp, jp_fetch, jp_ws_fetch
):
    """A raw socket to a host (here: one nobody listens on) is recorded as op.uncaptured,
    attributed to its cell and flagged capture_gap, its destination masked like any field."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
    code = (
        "import socket\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.1', 9))\n"
        "except OSError:\n    pass"
    )
    assert (await client.run(code))[0] == "ok"
    events = await wait_for(audit, lambda ev: any(e["kind"] == "op.uncaptured" for e in ev))
    [gap] = [e for e in events if e["kind"] == "op.uncaptured"]
    [cell] = [e for e in events if e["kind"] == "cell.requested"]
    assert gap["msg_id"] == cell["msg_id"] and gap["identity"]["username"] == getpass.getuser()
    assert gap["flags"] == ["capture_gap"]
    assert (gap["payload"]["what"], gap["payload"]["port"]) == ("socket.connect", 9)


async def test_a_statement_too_big_for_one_post_still_reaches_the_trail(
    jp_serverapp, jp_fetch, jp_ws_fetch
):
    """An executemany of ~20 MB of parameters: more than the server takes in one request.
    It used to be refused (413) and retried for ever, holding back the kernel's later
    reports; now it is posted shrunk (its parameters' size and sha256 kept) and what
    follows arrives as usual."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch)
    code = (
        "import sqlite3\ncon = sqlite3.connect(':memory:')\n"
        "cols = ', '.join(f'c{i}' for i in range(100))\n"
        "con.execute(f'CREATE TABLE t ({cols})')\n"
        "rows = [tuple('x' * 1000 for _ in range(100))] * 100\n"
        "marks = ', '.join(['?'] * 100)\n"
        "for _ in range(2):\n"
        "    con.executemany(f'INSERT INTO t VALUES ({marks})', rows)"
    )
    assert (await client.run(code, timeout=120))[0] == "ok"
    assert (await client.run("print('after')"))[0] == "ok"
    events = await wait_for(
        audit, lambda ev: sum(e["kind"] == "cell.finished" for e in ev) >= 2, timeout=120
    )
    big = [e for e in events if e["kind"] == "op.sql" and "INSERT" in e["payload"]["statement"]]
    assert len(big) == 2
    for e in big:
        assert e["payload"]["kernel_capped"] == ["params"]
        assert "not sent by the kernel" in json.dumps(e["payload"]["params"])
        assert "unattributed" not in e["flags"]


async def test_forged_submissions_are_refused_and_recorded(jp_serverapp, jp_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    kid_a, kid_b = "kernel-aaaa", "kernel-bbbb"
    secret_a = audit.kernel_secrets.issue(kid_a)
    audit.kernel_secrets.issue(kid_b)
    # wrong secret
    with pytest.raises(HTTPClientError) as e:
        await post_events(jp_fetch, kid_a, "guess", [op("e" * 32)])
    assert e.value.code == 403
    # another kernel's id with this kernel's secret
    with pytest.raises(HTTPClientError) as e:
        await post_events(jp_fetch, kid_b, secret_a, [op("f" * 32)])
    assert e.value.code == 403
    with pytest.raises(HTTPClientError) as e:
        await post_events(jp_fetch, kid_a, secret_a, [op("f" * 32)], claimed_kernel=kid_b)
    assert e.value.code == 403
    # an identity claimed inside an event; a good event beside it is still stored
    r = await post_events(
        jp_fetch,
        kid_a,
        secret_a,
        [op("a" * 32, identity={"username": "ceo"}), op("b" * 32)],
    )
    body = json.loads(r.body)
    assert body["accepted"] == ["b" * 32]
    assert body["rejected"][0]["event_id"] == "a" * 32
    assert "identity" in body["rejected"][0]["error"]
    # a retried batch is stored once
    r = await post_events(jp_fetch, kid_a, secret_a, [op("b" * 32)])
    assert json.loads(r.body)["accepted"] == ["b" * 32]
    events = trail_events(audit)
    stored = [e for e in events if e["event_id"] == "b" * 32]
    assert len(stored) == 1
    assert stored[0]["kind"] == "op.unattributed" and stored[0]["flags"] == ["unattributed"]
    assert stored[0]["identity"] is None
    assert not any(e["event_id"] in ("a" * 32, "e" * 32, "f" * 32) for e in events)
    rejected = [e["payload"]["reason"] for e in events if e["kind"] == "security.rejected"]
    assert len(rejected) == 4
    assert any("secret" in r for r in rejected) and any("identity" in r for r in rejected)


async def test_a_big_batch_is_prepared_by_workers_with_the_same_verdicts(jp_serverapp, jp_fetch):
    """A backlog-sized batch goes to the prepare workers: every good event is stored, masked
    and in order; malformed and forged ones are refused at their own place in the batch."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    kid = "kernel-cccc"
    secret = audit.kernel_secrets.issue(kid)
    batch = []
    for i in range(300):
        event_id = f"{i:032x}"
        if i == 7:
            batch.append(op(event_id, identity={"username": "ceo"}))  # forged
        elif i == 150:
            batch.append({**op(event_id), "payload": {"command": "ls \ud800"}})  # malformed
        else:
            batch.append(
                {**op(event_id), "op_index": i, "payload": {"command": f"mail x{i}@corp.example"}}
            )
    r = await post_events(jp_fetch, kid, secret, batch)
    body = json.loads(r.body)
    good = [e["event_id"] for i, e in enumerate(batch) if i not in (7, 150)]
    assert body["accepted"] == good
    assert [x["event_id"] for x in body["rejected"]] == [f"{7:032x}", f"{150:032x}"]
    assert "identity" in body["rejected"][0]["error"]
    assert "not valid UTF-8" in body["rejected"][1]["error"]
    assert audit.writer.pool._executor is not None, "the batch went to a worker process"
    stored = [e for e in trail_events(audit) if e.get("kernel_id") == kid and e["event_id"] in good]
    assert [e["event_id"] for e in stored] == good
    assert not any("corp.example" in json.dumps(e) for e in stored)
    assert all(e["payload"]["command"].startswith("mail ‹EMAIL:") for e in stored)


class TestCaptureGaps:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(trail_dir / "trail.duckdb", unreported_after=1.0)

    async def test_a_cell_the_kernel_never_reports_becomes_cell_unreported(
        self, jp_serverapp, jp_fetch, jp_ws_fetch
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        _, client = await open_kernel(jp_fetch, jp_ws_fetch)
        assert (await client.run("a = 1"))[0] == "ok"
        assert (await client.run("%unload_ext jupyter_audit_kernel"))[0] == "ok"
        assert (await client.run("b = 2"))[0] == "ok"
        events = await wait_for(audit, lambda ev: any(e["kind"] == "cell.unreported" for e in ev))
        await asyncio.sleep(2.5)  # a normal cell must not be flagged, even late
        events = trail_events(audit)
        by_msg = {e["msg_id"]: e for e in events if e["kind"] == "cell.requested"}
        gaps = [e for e in events if e["kind"] == "cell.unreported"]
        flagged_code = [by_msg[g["msg_id"]]["payload"]["code"] for g in gaps]
        assert "b = 2" in flagged_code and "a = 1" not in flagged_code
        gap = next(g for g in gaps if by_msg[g["msg_id"]]["payload"]["code"] == "b = 2")
        assert gap["identity"]["username"] == getpass.getuser()
        assert gap["flags"] == ["capture_gap"]
        client.ws.close()


BLOCKED_ENV_KERNEL = (
    "import sys; sys.modules['jupyter_audit'] = None; "  # as if it were not installed
    "from ipykernel import kernelapp; kernelapp.launch_new_instance()"
)


async def test_a_python_environment_without_jupyter_audit_is_captured(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_data_dir
):
    """The server injects its own copy of the kernel side; the kernel's environment does
    not need jupyter_audit (importing it there fails)."""
    spec = jp_data_dir / "kernels" / "bare"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", BLOCKED_ENV_KERNEL, "-f", "{connection_file}"],
                "display_name": "Python without jupyter_audit",
                "language": "python",
            }
        )
    )
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "bare"}))
    kernel_id = json.loads(r.body)["id"]
    _, client = await open_kernel(jp_fetch, jp_ws_fetch, kernel_id=kernel_id)
    code = "import sqlite3\nsqlite3.connect(':memory:').execute('SELECT 42').fetchone()"
    assert (await client.run(code))[0] == "ok"
    events = await wait_for(
        audit, lambda ev: any(e["kind"] == "op.sql" and e["kernel_id"] == kernel_id for e in ev)
    )
    sql = next(e for e in events if e["kind"] == "op.sql" and e["kernel_id"] == kernel_id)
    assert sql["payload"]["statement"] == "SELECT 42"
    assert sql["identity"]["username"] == getpass.getuser()
    client.ws.close()


class TestHttpBodies:
    @pytest.fixture
    def echo_server(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Echo(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"score": 0.7, "contact": "risk-team@example.org"}' + body[:0])

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()

    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(trail_dir / "trail.duckdb", capture_body_hosts=["127.0.0.1"])

    async def test_http_calls_with_bodies_for_configured_hosts(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, echo_server
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        _, client = await open_kernel(jp_fetch, jp_ws_fetch)
        code = (
            "import requests\n"
            f"r = requests.post('http://127.0.0.1:{echo_server}/score?api_key=s3cr3t-k3y',\n"
            "                  json={'applicant': 'jane.doe@example.com', 'amount': 1200})\n"
            "print(r.status_code)"
        )
        status, out = await client.run(code)
        assert (status, out.strip()) == ("ok", "200")
        events = await wait_for(audit, lambda ev: any(e["kind"] == "op.http" for e in ev))
        http = next(e for e in events if e["kind"] == "op.http")
        p = http["payload"]
        assert (p["method"], p["status"]) == ("POST", 200)
        assert "s3cr3t-k3y" not in p["url"] and "/score" in p["url"]
        assert "‹EMAIL:" in p["request_body"] and "jane.doe" not in json.dumps(http)
        assert "risk-team@example.org" not in json.dumps(http) and "score" in p["response_body"]
        assert http["identity"]["username"] == getpass.getuser()
        client.ws.close()
