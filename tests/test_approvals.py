"""The approval broker in a real jupyter_server on a real trail: kernels ask (per-kernel
secret), people decide over REST, and every step is in the trail.

People sign in through a header identity provider with groups (tests/helpers/identity.py's
pattern; the OIDC provider has its own tests); kernels are the server's own kernels where
the test is about the kernel's cell, and a kernel id with an issued secret plus a cell the
gateway would have remembered where it is about the broker's rules.
"""

import hashlib
import json
import uuid

import pytest
from helpers.servers import server_config
from helpers.trail import trail_events
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
    """The user named by X-Test-User, with groups, as an organisation's sign-in gives them."""

    async def get_user(self, handler):
        name = handler.request.headers.get("X-Test-User")
        if name not in DIRECTORY:
            return None
        handler._token_authenticated = True  # a header, not a cookie: no XSRF involved
        user = User(username=name, name=name, display_name=name.title())
        user.audit_identity = {
            "username": name,
            "subject": f"sub-{name}",
            "issuer": "https://idp.test",
            "groups": DIRECTORY[name],
            "auth_method": "oidc",
        }
        return user


@pytest.fixture
def audit_config():
    return {"break_glass_groups": ["break-glass"]}


@pytest.fixture
def jp_server_config(trail_dir, audit_config):
    return server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": GroupsIdentityProvider},
        **audit_config,
    )


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


async def test_a_risky_statement_waits_then_bob_approves_and_it_runs_once(jp_serverapp, jp_fetch):
    kernel = FakeKernel(jp_serverapp, jp_fetch)
    msg_id = kernel.cell("alice", "cur.execute('DELETE FROM customers')")
    answer = await kernel.ask(msg_id)
    assert answer["decision"] == "review"
    assert answer["reasons"][0]["rule"] == "statement.where-required"
    request = answer["request"]
    assert request["state"] == "pending"
    assert request["message"].startswith(f"waiting for approval #{request['id']}: ")
    assert request["message"].endswith("by alice")
    rid = request["id"]

    status = await kernel.call(str(rid), params={"wait": "0"})
    assert status["state"] == "pending" and status["decided_by"] == []

    decided = await as_user(
        jp_fetch, "bob", "approvals", str(rid), method="POST", body={"decision": "approve"}
    )
    assert decided["state"] == "approved"
    status = await kernel.call(str(rid), params={"wait": "5"})
    assert status["state"] == "approved" and status["decided_by"] == ["bob"]

    report = {"statement_sha256": sha("DELETE FROM customers"), "rowcount": 3, "error": None}
    done = await kernel.call(str(rid), method="POST", body={"executed": report})
    assert done["state"] == "executed"
    code, message = await refused(kernel.call(str(rid), method="POST", body={"executed": report}))
    assert code == 409 and "executed" in message

    events = [e for e in trail_events(kernel.audit) if e["kind"].startswith("approval.")]
    assert [e["kind"] for e in events] == [
        "approval.requested",
        "approval.decided",
        "approval.executed",
    ]
    requested, decision, executed = events
    assert requested["identity"]["username"] == "alice"
    assert requested["msg_id"] == msg_id and requested["kernel_id"] == kernel.id
    assert requested["payload"]["statement_sha256"] == sha("DELETE FROM customers")
    assert requested["payload"]["rules"] == ["statement.where-required"]
    assert decision["identity"]["username"] == "bob"
    assert decision["payload"]["decision"] == "approve"
    assert executed["payload"]["rowcount"] == 3
