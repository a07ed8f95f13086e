"""Fixtures for the kernel side: a real ingest endpoint of the tests' own (http.server on
127.0.0.1 recording the batches it is sent), a real HTTP target for the HTTP capture, and
real ipykernel kernels started with ``--ext`` and the environment the server would set."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.servers import REPO, free_port

APPROVALS_PATH = "/jupyter-audit/api/kernel/approvals"


class BrokerStandIn:
    """Stands in for the server's approval broker (``kernel/approvals``, the protocol in
    docs/approvals.md): ``rules`` maps a substring of the statement/command/URL to the
    decision the policy would give (else ``default``); a ``review`` request stays pending
    until the test calls ``decide``. Records every request and call it was sent."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self.default = "allow"
        self.status = 200  # anything else: the broker answers that, without deciding
        self.refuse_executed = False  # answer 409 to every outcome report
        self.asked: list[dict] = []  # bodies of POST kernel/approvals
        self.calls: list[tuple[str, str, dict | None, dict]] = []  # method, path, body, headers
        self.requests: dict[int, dict] = {}
        self.notes: list[str] = []
        self._cond = threading.Condition()

    def _reply(self, handler, status: int, body) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler, method: str, raw: bytes) -> None:
        body = json.loads(raw) if raw else None
        with self._cond:
            self.calls.append((method, handler.path, body, dict(handler.headers)))
            self._cond.notify_all()
            status = self.status
        if status != 200:
            return self._reply(handler, status, {"message": "stand-in refuses"})
        rest = handler.path[len(APPROVALS_PATH) :]
        if method == "POST" and rest in ("", "/"):
            return self._reply(handler, 200, self._ask(body))
        if method == "GET" and rest.startswith("?asked="):
            # for a cell's thread: returns once that many requests were asked
            n = int(rest.split("=")[1])
            with self._cond:
                self._cond.wait_for(lambda: len(self.asked) >= n, timeout=30)
            return self._reply(handler, 200, {"asked": len(self.asked)})
        if method == "GET" and rest.startswith("/note"):
            with self._cond:
                self.notes.append(rest)
                self._cond.notify_all()
            return self._reply(handler, 200, {})
        rid = int(rest.strip("/").split("?")[0])
        if method == "GET":
            return self._reply(handler, 200, self._poll(rid, "wait=" in rest))
        with self._cond:
            req = self.requests[rid]
            if "cancel" in body:
                req["state"] = "cancelled"
            elif req["state"] != "approved" or req.get("executed") or self.refuse_executed:
                return self._reply(handler, 409, {"message": "not approved"})
            else:
                req["executed"] = body["executed"]
                req["state"] = "executed"
            self._cond.notify_all()
        return self._reply(handler, 200, {"id": rid, "state": req["state"]})

    def _ask(self, body: dict) -> dict:
        text = body.get("statement") or body.get("command") or body.get("url") or ""
        decision = next((d for k, d in self.rules.items() if k in text), self.default)
        reasons = [
            {"rule": "test.rule", "message": f"{decision} by the stand-in", "action": decision}
        ]
        with self._cond:
            self.asked.append(body)
            request = None
            if decision == "review":
                rid = len(self.requests) + 1
                request = {
                    "id": rid,
                    "state": "pending",
                    "expires_at": "2099-01-01T00:00:00Z",
                    "message": f"waiting for approval #{rid}: {text[:60]}",
                }
                self.requests[rid] = {"body": body, "state": "pending", "reason": None}
            self._cond.notify_all()
        return {"decision": decision, "reasons": reasons, "request": request, "min_approvals": 1}

    def _poll(self, rid: int, wait: bool) -> dict:
        with self._cond:
            req = self.requests[rid]
            if wait:
                self._cond.wait_for(lambda: req["state"] != "pending", timeout=30)
            return {
                "id": rid,
                "state": req["state"],
                "reason": req["reason"],
                "decided_by": ["bob"] if req["state"] in ("approved", "denied") else [],
                "message": f"approval #{rid}: {req['state']}",
            }

    def decide(self, rid: int, state: str, reason: str | None = None) -> None:
        with self._cond:
            self.requests[rid]["state"] = state
            self.requests[rid]["reason"] = reason
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0):
        """Wait (on the broker's own condition: no polling) until ``predicate(self)``."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout=timeout):
                raise AssertionError(f"timed out; calls: {[c[:3] for c in self.calls]}")
            return predicate(self)


class IngestServer:
    """Stands in for the server's kernel ingest endpoint: answers with ``status`` (200 with
    every event accepted unless ``reject`` names some), records what it was sent."""

    def __init__(self, port: int = 0, stale_keepalive: bool = False) -> None:
        self.batches: list[dict] = []
        self.requests: list[dict] = []  # headers of every POST, whatever the answer
        self.status = 200
        self.reject: set[str] = set()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # stale_keepalive: promise a kept-alive connection, then close it anyway, as a
            # server does with idle connections
            protocol_version = "HTTP/1.1" if stale_keepalive else "HTTP/1.0"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith(APPROVALS_PATH):
                    return outer.broker.handle(self, "POST", body)
                with outer._lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers)})
                    status = outer.status
                if status != 200:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                batch = json.loads(body)
                ids = [e["event_id"] for e in batch["events"]]
                with outer._lock:
                    outer.batches.append(batch)
                    rejected = [i for i in ids if i in outer.reject]
                reply = json.dumps(
                    {
                        "accepted": [i for i in ids if i not in outer.reject],
                        "rejected": [{"event_id": i, "error": "test rejects it"} for i in rejected],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                if stale_keepalive:
                    self.close_connection = True

            def do_GET(self):
                if self.path.startswith(APPROVALS_PATH):
                    return outer.broker.handle(self, "GET", b"")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.broker = BrokerStandIn()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}/jupyter-audit/api/kernel/events"
        self.approvals_url = f"http://127.0.0.1:{self.port}{APPROVALS_PATH}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self) -> list[dict]:
        with self._lock:
            return [e for b in self.batches for e in b["events"]]

    def wait_for(self, predicate, timeout: float = 10.0):
        """Poll until ``predicate(events)`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self.events())
            if value:
                return value
            if time.monotonic() > deadline:
                kinds = [(e["kind"], e["msg_id"]) for e in self.events()][-30:]
                raise AssertionError(f"timed out waiting for events; last seen: {kinds}")
            time.sleep(0.02)

    def cell(self, msg_id: str, timeout: float = 10.0) -> list[dict]:
        """All events of one cell, once its cell.finished arrived (ops may come from
        threads just before it: allow them a moment)."""
        self.wait_for(
            lambda evs: any(e["kind"] == "cell.finished" and e["msg_id"] == msg_id for e in evs),
            timeout,
        )
        return [e for e in self.events() if e["msg_id"] == msg_id]


class TargetServer:
    """A local HTTP service for the HTTP capture to call."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: bytes, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/redirect"):
                    self._reply(302, b"", [("Location", "/ok")])
                elif self.path.startswith("/missing"):
                    self._reply(404, b'{"error": "not here"}')
                else:
                    self._reply(200, b'{"answer": 42}')

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                data = self.rfile.read(n)
                self._reply(201, b'{"echo": ' + json.dumps(data.decode()).encode() + b"}")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Kernel:
    """A real ipykernel kernel (jupyter_client), optionally with the capture loaded."""

    def __init__(self, env: dict, ext: str | None = "jupyter_audit.kernel", pythonpath=None):
        from jupyter_client.manager import start_new_kernel

        full = dict(os.environ)
        full.update(env)
        paths = [str(p) for p in (pythonpath or [REPO])]
        full["PYTHONPATH"] = os.pathsep.join(paths + [full.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        args = [f"--ext={ext}"] if ext else []
        self.km, self.kc = start_new_kernel(extra_arguments=args, env=full, startup_timeout=60)

    def execute(
        self, code: str, *, silent: bool = False, metadata=None, timeout: float = 30, wait=True
    ):
        """Send an execute_request; return (msg_id, reply content) (reply None unless wait)."""
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.kc.session.msg("execute_request", content, metadata=metadata or {})
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        if not wait:
            return msg_id, None
        return msg_id, self.reply(msg_id, timeout)

    def reply(self, msg_id: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def run(self, code: str, **kwargs):
        """Execute and insist it succeeded; return the msg_id."""
        msg_id, reply = self.execute(code, **kwargs)
        assert reply["status"] == "ok", reply
        return msg_id

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)


def kernel_env(ingest: IngestServer | None, spool_dir, **extra) -> dict:
    env = {
        "JUPYTER_AUDIT_KERNEL_ID": extra.pop("kernel_id", "test-kernel"),
        "JUPYTER_AUDIT_KERNEL_SECRET": "kernel-secret-for-tests",
        "JUPYTER_AUDIT_SPOOL_DIR": str(spool_dir),
        "JUPYTER_AUDIT_RETRY_MAX": "0.5",
    }
    if ingest is not None:
        env["JUPYTER_AUDIT_INGEST_URL"] = ingest.url
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="session")
def http_target():
    target = TargetServer()
    yield target
    target.stop()


@pytest.fixture(scope="session")
def audited(tmp_path_factory):
    """One audited kernel shared by the capture tests, with its ingest endpoint."""
    ingest = IngestServer()
    spool = tmp_path_factory.mktemp("spool")
    kernel = Kernel(
        kernel_env(
            ingest,
            spool,
            JUPYTER_AUDIT_OUTPUT_CAP=500,
            JUPYTER_AUDIT_BODY_HOSTS="127.0.0.1",
            JUPYTER_AUDIT_BODY_CAP=64,
            JUPYTER_AUDIT_KERNELSPEC="python3",
        )
    )
    kernel.ingest = ingest
    kernel.spool = spool
    yield kernel
    kernel.shutdown()
    ingest.stop()


@pytest.fixture
def ingest_factory():
    """Start ingest servers (optionally on a given port); all stopped at the end."""
    started = []

    def make(port: int = 0, **kwargs) -> IngestServer:
        server = IngestServer(port, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def kernel_factory():
    """Start real kernels; all shut down at the end of the test."""
    started = []

    def make(env: dict, **kwargs) -> Kernel:
        kernel = Kernel(env, **kwargs)
        started.append(kernel)
        return kernel

    yield make
    for kernel in started:
        kernel.shutdown()


@pytest.fixture
def make_env():
    return kernel_env


@pytest.fixture
def port():
    return free_port()
