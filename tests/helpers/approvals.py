"""Approvals under test: people who sign in with groups (`GroupsIdentityProvider`: the
user named by a header, or by `Authorization: token as-NAME` for the CLI), a kernel id with
its secret issued and the cells the gateway would have forwarded to it (`FakeKernel`), and
REST calls as a person (`as_user`), and a webhook receiver (`Receiver`)."""

import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from tornado.httpclient import HTTPClientError

DIRECTORY = {
    "alice": ["data-science", "audit-reviewers", "audit-admins"],
    "bob": ["audit-reviewers"],
    "carol": ["audit-reviewers"],
    "dave": ["data-science"],
    "erin": ["break-glass"],
}


class GroupsIdentityProvider(IdentityProvider):
    """The user named by X-Test-User (or by `Authorization: token as-NAME`, for the CLI), with
    groups, as an organisation's sign-in gives them."""

    async def get_user(self, handler):
        name = handler.request.headers.get("X-Test-User")
        auth = handler.request.headers.get("Authorization", "")
        if auth.startswith("token as-"):
            name = auth.removeprefix("token as-")
        if name not in DIRECTORY:
            return None
        handler._token_authenticated = True  # a header, not a cookie: no XSRF involved
        user = User(username=name, name=name, display_name=name.title())
        user.audit_identity = {
            "username": name,
            "email": f"{name}@example.org",
            "subject": f"sub-{name}",
            "issuer": "https://idp.test",
            "groups": DIRECTORY[name],
            "auth_method": "oidc",
        }
        return user


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class FakeKernel:
    """A kernel id with its secret issued, and cells the gateway forwarded to it."""

    def __init__(self, serverapp, jp_fetch, kernel_id=None):
        self.audit = serverapp.web_app.settings["jupyter_audit"]
        self.fetch = jp_fetch
        self.id = kernel_id or f"k-{uuid.uuid4().hex[:8]}"
        self.secret = self.audit.kernel_secrets.issue(self.id)

    def cell(self, who: str, code: str = "run it") -> str:
        """A cell `who` asked for, forwarded to this kernel (as the gateway records it)."""
        msg_id = uuid.uuid4().hex
        self.audit.request_cell(
            {
                "kind": "cell.requested",
                "identity": {
                    "username": who,
                    "email": f"{who}@example.org",
                    "subject": f"sub-{who}",
                    "issuer": "https://idp.test",
                    "groups": DIRECTORY.get(who, []),
                    "auth_method": "oidc",
                },
                "trace_id": self.id,
                "kernel_id": self.id,
                "session_id": None,
                "notebook": "work/cleanup.ipynb",
                "msg_id": msg_id,
                "payload": {"code": code, "cell_id": None, "silent": False},
            },
            uuid.uuid4().hex,
        )
        return msg_id

    def headers(self, secret=None):
        return {
            "Authorization": f"JupyterAudit-Kernel {secret or self.secret}",
            "X-Jupyter-Audit-Kernel": self.id,
        }

    async def call(self, *parts, method="GET", body=None, secret=None, params=None):
        r = await self.fetch(
            "jupyter-audit",
            "api",
            "kernel",
            "approvals",
            *parts,
            method=method,
            body=None if body is None else json.dumps(body),
            headers=self.headers(secret),
            params=params,
        )
        return json.loads(r.body)

    async def ask(self, msg_id, statement="DELETE FROM customers", params_sha256=None):
        return await self.call(
            method="POST",
            body={
                "kind": "sql",
                "statement": statement,
                "params_sha256": params_sha256,
                "driver": "sqlite3",
                "database": "shop.db",
                "msg_id": msg_id,
            },
        )


async def as_user(jp_fetch, who, *parts, method="GET", body=None, params=None):
    r = await jp_fetch(
        "jupyter-audit",
        "api",
        *parts,
        method=method,
        body=None if body is None else json.dumps(body),
        headers={"X-Test-User": who},
        params=params,
    )
    return json.loads(r.body)


async def refused(coro) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as e:
        await coro
    return e.value.code, json.loads(e.value.response.body)["message"]


class Receiver:
    """A local HTTP server that keeps what it is sent; the first `fail` POSTs get a 500."""

    def __init__(self, fail: int = 0):
        self.received: list[tuple[str, dict, bytes]] = []
        self.fail = fail
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    if receiver.fail > 0:
                        receiver.fail -= 1
                        self.send_response(500)
                    else:
                        receiver.received.append((self.path, dict(self.headers), body))
                        self.send_response(200)
                    self.end_headers()
                    receiver.arrived.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 60) -> list:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= n, timeout)
            return list(self.received)

    def stop(self):
        self.server.shutdown()


def hub_question(statement: str = "DELETE FROM customers", **more) -> dict:
    """A server's question to the collector's `api/approvals/requests`, as a server whose
    policy decided `review` sends it (kernel k-1, trace k-1)."""
    return {
        "kind": "sql",
        "statement": statement,
        "msg_id": uuid.uuid4().hex,
        "kernel_id": "k-1",
        "trace_id": "k-1",
        "decision": {
            "decision": "review",
            "reasons": [{"rule": "statement.where-required", "message": "m", "action": "review"}],
            "min_approvals": 1,
        },
        **more,
    }
