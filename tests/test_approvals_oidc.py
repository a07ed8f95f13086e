"""Approvals with people signed in through a real OIDC provider over HTTP
(oidc-provider-mock): alice, a reviewer and an admin, runs a risky statement from her own
cell over the kernel websocket; she cannot approve it herself; bob, a reviewer, can."""

import asyncio
import json

import pytest
from helpers.kernels import open_kernel
from helpers.oidc import CLIENT, oidc_config, provider_fixture
from helpers.trail import trail_events
from tornado.httpclient import HTTPClientError

ALICE = {
    "preferred_username": "alice",
    "email": "alice@example.org",
    "groups": ["audit-reviewers", "audit-admins"],
}
BOB = {"preferred_username": "bob", "email": "bob@example.org", "groups": ["audit-reviewers"]}

provider = provider_fixture({"alice-sub": ALICE, "bob-sub": BOB})


@pytest.fixture
def jp_server_config(trail_dir, provider):
    return oidc_config(trail_dir, provider.issuer)


async def test_alice_cannot_approve_her_own_request_bob_can(
    jp_serverapp, jp_fetch, jp_ws_fetch, provider
):
    alice = await asyncio.to_thread(provider.tokens, "alice-sub", CLIENT)
    bob = await asyncio.to_thread(provider.tokens, "bob-sub", CLIENT)
    as_alice = {"Authorization": f"Bearer {alice['id_token']}"}
    as_bob = {"Authorization": f"Bearer {bob['id_token']}"}
    me = json.loads((await jp_fetch("jupyter-audit", "api", "me", headers=as_alice)).body)
    assert {"reviewer", "admin"} <= set(me["roles"])

    kid, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=as_alice)
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    msg_id = client.send_execute("import time\nfor _ in range(600): time.sleep(0.1)")
    while audit.cells.lookup(msg_id) is None:  # the gateway forwards alice's cell
        await asyncio.sleep(0.05)
    kernel = {
        "Authorization": f"JupyterAudit-Kernel {audit.kernel_secrets.secret_of(kid)}",
        "X-Jupyter-Audit-Kernel": kid,
    }
    body = {"kind": "sql", "statement": "DELETE FROM customers", "msg_id": msg_id}
    r = await jp_fetch(
        "jupyter-audit",
        "api",
        "kernel",
        "approvals",
        method="POST",
        body=json.dumps(body),
        headers=kernel,
    )
    answer = json.loads(r.body)
    assert answer["decision"] == "review", answer
    rid = str(answer["request"]["id"])

    decision = json.dumps({"decision": "approve", "reason": "mine, trust me"})
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(
            "jupyter-audit",
            "api",
            "approvals",
            rid,
            method="POST",
            body=decision,
            headers=as_alice,
        )
    assert e.value.code == 403
    assert "your own" in json.loads(e.value.response.body)["message"]

    r = await jp_fetch(
        "jupyter-audit",
        "api",
        "approvals",
        rid,
        method="POST",
        body=json.dumps({"decision": "approve", "reason": "reviewed"}),
        headers=as_bob,
    )
    assert json.loads(r.body)["state"] == "approved"
    r = await jp_fetch(
        "jupyter-audit", "api", "kernel", "approvals", rid, params={"wait": "5"}, headers=kernel
    )
    assert json.loads(r.body)["decided_by"] == ["bob"]
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="", headers=as_alice)

    events = [e for e in trail_events(audit) if e["kind"].startswith("approval.")]
    requested, approved = events[0], events[1]
    assert (requested["identity"]["subject"], requested["identity"]["issuer"]) == (
        "alice-sub",
        provider.issuer,
    )
    assert approved["identity"]["subject"] == "bob-sub"
    assert approved["payload"]["decision"] == "approve"
    assert [e["kind"] for e in events][:2] == ["approval.requested", "approval.decided"]
