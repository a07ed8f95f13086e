"""Break-glass approvals at the Hub's collector (`c.CollectorApp.break_glass_groups`,
collector/approvals.py): a real jupyter_server asking the collector's web app in this process
(`CollectorWeb` over DuckDB, then PostgreSQL with JUPYTER_AUDIT_TEST_PG_DSN), real kernels
deleting from a real SQLite table, the CLI as a real process, a real webhook receiver. Only
the Hub's token check stands in (`HubStandIn`).

The collector names no reviewer groups at all: `break-glass` is the only Hub group that
decides. alice owns the server and is in it too (she still never decides her own request);
erin and frank are break-glass members; dave is in no group.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers import hub_approvals
from helpers.approvals import Receiver, hub_question
from helpers.collector import (
    ALICE_SERVER,
    ALICE_SERVER_TOKEN,
    CollectorWeb,
    HubStandIn,
    owners_server_config,
    personal_token_user,
    server_token_user,
    session_cookie,
)
from helpers.hub_approvals import (
    DELETE,
    HubUserProvider,
    at_hub,
    collector_events,
    in_browser,
    pending_request,
    rejections,
    rows,
    start_cell,
    wait_collector,
)
from helpers.servers import run_cli

from jupyter_audit.collector.app import CollectorApp, Context
from jupyter_audit.collector.approvals import hub_broker
from jupyter_audit.collector.service import Collector, hub_identity
from jupyter_audit.server.recorder import Recorder

GLASS = ["break-glass"]
USERS = {
    ALICE_SERVER_TOKEN: ALICE_SERVER,
    "alice-token": personal_token_user("alice", GLASS),
    "erin-token": personal_token_user("erin", GLASS),
    "frank-token": personal_token_user("frank", GLASS),
    "dave-token": personal_token_user("dave", []),
    # erin's server's own token (every kernel of her server holds it), and the token the
    # collector's OAuth got for her browser session
    "erin-server-token": server_token_user("erin", GLASS),
    "erin-session-token": personal_token_user("erin", GLASS),
}
collector_store = hub_approvals.collector_store
shop = hub_approvals.shop


@pytest.fixture
def hub(collector_store):
    collector = Collector(collector_store, Recorder(collector_store))
    web_ = CollectorWeb(
        collector,
        HubStandIn(dict(USERS)),
        oauth=True,
        reviewer_groups=(),
        break_glass_groups=GLASS,
    )
    web_.start()
    yield web_
    web_.close()


@pytest.fixture
def jp_server_config(trail_dir, hub, monkeypatch):
    return owners_server_config(trail_dir, monkeypatch, hub.url, HubUserProvider)


def decided(events) -> list[dict]:
    return [e for e in events if e["kind"] == "approval.decided" and not e.get("origin")]


async def test_a_break_glass_member_approves_alone_with_a_reason_and_it_is_flagged(
    hub, jp_fetch, jp_ws_fetch, shop
):
    _kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
    # erin reviews nothing, yet sees every server's requests (dave sees none of alice's)
    request = await pending_request(hub, "erin-token")
    rid = request["id"]
    path = f"jupyter-audit/api/approvals/{rid}"
    assert request["requester"] == "alice" and request["statement"] == DELETE
    # no reviewer groups, but break-glass ones: someone can decide it
    assert "no one here can decide" not in request["message"]
    code, body = await at_hub(hub, "dave-token", "GET", "jupyter-audit/api/approvals")
    assert code == 200 and body["approvals"] == []
    code, body = await at_hub(hub, "erin-token", "GET", path)
    assert code == 200 and body["state"] == "pending"
    code, me = await at_hub(hub, "erin-token", "GET", "jupyter-audit/api/me")
    assert code == 200 and "break-glass" in me["roles"] and "reviewer" not in me["roles"]
    code, me = await at_hub(hub, "dave-token", "GET", "jupyter-audit/api/me")
    assert "break-glass" not in me["roles"]

    # without a reason, a blank one or one that draws nothing (zero-width, bidi controls):
    # a clear 400, nothing decided
    for body_ in (
        {"decision": "approve"},
        {"decision": "approve", "reason": " \n\t"},
        {"decision": "approve", "reason": "\u200b\u2060\u202e\u3000"},
        {"decision": "approve", "reason": None},
    ):
        code, body = await at_hub(hub, "erin-token", "POST", path, body_)
        assert code == 400 and "break-glass decision needs a reason" in body["message"]
    # dave is in no group: 403, naming both settings
    code, body = await at_hub(hub, "dave-token", "POST", path, {"decision": "approve"})
    assert code == 403 and "c.CollectorApp.break_glass_groups" in body["message"]
    # alice is a break-glass member too: never her own request
    code, body = await at_hub(
        hub, "alice-token", "POST", path, {"decision": "approve", "reason": "urgent"}
    )
    assert code == 403 and "your own" in body["message"]
    # erin's server's token is in every kernel of her server: it decides nothing
    code, body = await at_hub(
        hub, "erin-server-token", "POST", path, {"decision": "approve", "reason": "outage"}
    )
    assert code == 403 and "server's Hub token does not decide" in body["message"]
    events = await asyncio.to_thread(collector_events, hub)
    assert decided(events) == []
    assert rejections(events, "your own") and rejections(events, "server's Hub token")
    assert rejections(events, "break_glass_groups")
    assert rows(shop) == 3 and not task.done()

    code, done = await at_hub(
        hub, "erin-token", "POST", path, {"decision": "approve", "reason": "incident 4711"}
    )
    assert code == 200 and done["state"] == "approved", done
    (mine,) = done["decisions"]
    assert mine["reviewer"] == "erin" and mine["break_glass"] is True
    assert mine["reason"] == "incident 4711"
    status, out, errors = await task
    assert (status, out.strip(), errors) == ("ok", "left 0", [])
    events = await wait_collector(
        hub, lambda evs: any(e["kind"] == "approval.executed" for e in evs)
    )
    (decision,) = decided(events)
    assert decision["identity"]["username"] == "erin"
    assert decision["identity"]["auth_method"] == "jupyterhub"
    p = decision["payload"]
    assert (p["break_glass"], p["reason"], p["state"]) == (True, "incident 4711", "approved")
    # a second decision of the same request changes nothing
    code, body = await at_hub(
        hub, "frank-token", "POST", path, {"decision": "deny", "reason": "too late"}
    )
    assert code == 409
    client.ws.close()


async def test_a_break_glass_member_denies_in_the_browser_session(hub, jp_fetch, jp_ws_fetch, shop):
    _kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
    rid = (await pending_request(hub, "erin-token"))["id"]
    path = f"jupyter-audit/api/approvals/{rid}"
    cookie = session_cookie("erin-session-token")
    code, session, set_cookies = await in_browser(hub, "GET", "jupyter-audit/api/session", cookie)
    assert code == 200 and session["username"] == "erin"
    xsrf = [c.split(";")[0] for c in set_cookies if c.startswith("_xsrf=")][0]
    headers = {"X-XSRFToken": session["xsrf_token"]}
    # a break-glass deny needs a reason too
    code, body, _ = await in_browser(
        hub, "POST", path, f"{cookie}; {xsrf}", {"decision": "deny"}, headers
    )
    assert code == 400 and "needs a reason" in body["message"]
    code, body, _ = await in_browser(
        hub,
        "POST",
        path,
        f"{cookie}; {xsrf}",
        {"decision": "deny", "reason": "not during the audit"},
        headers,
    )
    assert code == 200 and body["state"] == "denied", body
    assert body["decisions"][0]["break_glass"] is True
    status, _out, errors = await task
    assert status == "error" and errors[0]["ename"] == "ApprovalDenied"
    assert "not during the audit" in errors[0]["evalue"]
    assert rows(shop) == 3
    events = await asyncio.to_thread(collector_events, hub)
    (decision,) = decided(events)
    assert decision["payload"]["break_glass"] is True
    assert decision["identity"]["username"] == "erin"
    client.ws.close()


async def test_who_ran_the_cell_on_the_owners_server_does_not_break_the_glass_for_it(
    hub, jp_fetch, jp_ws_fetch, shop
):
    """JupyterHub sharing: erin, admitted to alice's server, runs the DELETE there. The
    request is alice's; erin, who ran it, cannot approve it with break-glass either; frank
    can."""
    _kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop, who="erin")
    request = await pending_request(hub, "frank-token")
    assert request["requester"] == "alice"
    path = f"jupyter-audit/api/approvals/{request['id']}"
    code, body = await at_hub(
        hub, "erin-token", "POST", path, {"decision": "approve", "reason": "mine, urgent"}
    )
    assert code == 403 and "you ran the cell" in body["message"]
    events = await asyncio.to_thread(collector_events, hub)
    assert rejections(events, "you ran the cell") and decided(events) == []
    code, body = await at_hub(
        hub, "frank-token", "POST", path, {"decision": "approve", "reason": "checked with erin"}
    )
    assert code == 200 and body["state"] == "approved"
    status, out, _errors = await task
    assert (status, out.strip()) == ("ok", "left 0")
    client.ws.close()


async def test_the_cli_breaks_the_glass_at_the_collector_as_a_process(hub):
    """`jupyter audit approvals approve|deny ID --reason R --url COLLECTOR --token T`, a real
    process, with a break-glass member's own Hub token."""
    ask = hub.approvals.ask_for
    first = (await asyncio.to_thread(ask, "alice/", ALICE_SERVER, hub_question()))["request"]
    second = (await asyncio.to_thread(ask, "alice/", ALICE_SERVER, hub_question()))["request"]

    async def cli(token, *args):
        return await asyncio.to_thread(
            run_cli, "approvals", *args, "--url", hub.url, "--token", token
        )

    mallory = {"kind": "user", "name": "mallory", "groups": [], "scopes": []}
    third = (await asyncio.to_thread(ask, "mallory/", mallory, hub_question()))["request"]
    # every server's requests, for a member who reviews nothing
    code, out, _err = await cli("erin-token", "list")
    assert code == 0, out
    assert all(f"#{r['id']}" in out for r in (first, second, third)), out
    assert "mallory" in out and "alice" in out
    code, out, err = await cli("erin-token", "approve", str(first["id"]))
    assert code == 2 and "needs a reason" in err
    code, out, err = await cli("erin-server-token", "approve", str(first["id"]), "--reason", "x")
    assert code == 2 and "server's Hub token does not decide" in err
    code, out, err = await cli("alice-token", "approve", str(first["id"]), "--reason", "x")
    assert code == 2 and "your own" in err
    code, out, err = await cli("erin-token", "approve", str(first["id"]), "--reason", "outage")
    assert code == 0, err
    assert out.strip() == f"request #{first['id']} approved by erin: outage (break-glass)"
    code, out, err = await cli("frank-token", "deny", str(second["id"]), "--reason", "no")
    assert code == 0 and out.strip().endswith("(break-glass)"), (out, err)
    code, out, _err = await cli("dave-token", "list", "--state", "all")
    assert code == 0 and out.strip() == "no approval requests"
    code, out, _err = await cli("erin-token", "list", "--state", "all")
    assert "approve by erin (break-glass): outage" in out
    assert "deny by frank (break-glass): no" in out


async def test_odd_reasons_oversize_bodies_and_replays_break_no_glass(hub):
    """What an insider in the break-glass group might try: a reason that is not text, too
    long, or too big a body; an id in another script; deciding again, or after a deny."""
    ask = hub.approvals.ask_for
    rid = (await asyncio.to_thread(ask, "alice/", ALICE_SERVER, hub_question()))["request"]["id"]
    path = f"jupyter-audit/api/approvals/{rid}"
    for reason, what in (
        (["outage"], "reason must be a string"),
        ({"text": "outage"}, "reason must be a string"),
        ("x" * 2001, "longer than"),
    ):
        code, body = await at_hub(
            hub, "erin-token", "POST", path, {"decision": "approve", "reason": reason}
        )
        assert code == 400 and what in body["message"], body
    code, body = await at_hub(
        hub, "erin-token", "POST", path, {"decision": "approve", "reason": "y" * (3 << 20)}
    )
    assert code == 413
    code, body = await at_hub(
        hub, "erin-token", "POST", path, {"decision": "approve", "reason": "ok", "as": "bob"}
    )
    assert code == 400 and "unknown fields" in body["message"]
    code, _ = await at_hub(hub, "erin-token", "GET", "jupyter-audit/api/approvals/%EF%BC%91")
    assert code == 404  # a fullwidth digit one is no request id
    assert decided(await asyncio.to_thread(collector_events, hub)) == []

    code, body = await at_hub(
        hub, "erin-token", "POST", path, {"decision": "deny", "reason": "not now"}
    )
    assert code == 200 and body["state"] == "denied"
    for token in ("erin-token", "frank-token"):
        code, body = await at_hub(
            hub, token, "POST", path, {"decision": "approve", "reason": "after all"}
        )
        assert code == 409, body
    (decision,) = decided(await asyncio.to_thread(collector_events, hub))
    assert decision["payload"]["state"] == "denied"


def test_a_break_glass_decision_notifies_as_one(collector_store, tmp_path):
    """The collector's webhooks (`approval_webhooks`) say a decision was break-glass: the
    Slack text, and the JSON's decision."""
    receiver = Receiver()
    secret = tmp_path / "hook.key"
    secret.write_text("k")
    hooks = [
        {"url": receiver.url + "/slack", "format": "slack"},
        {"url": receiver.url + "/json", "format": "json", "secret_file": str(secret)},
    ]
    try:
        broker = hub_broker(
            Recorder(collector_store), reviewer_groups=(), break_glass_groups=GLASS, webhooks=hooks
        )
        rid = broker.ask_for("alice/", ALICE_SERVER, hub_question())["request"]["id"]
        erin = personal_token_user("erin", GLASS)
        broker.decide(rid, hub_identity(erin), reviewer=False, decision="approve", reason="on call")
        got = receiver.wait_for(4)
        slack = [json.loads(b)["text"] for path, _h, b in got if path == "/slack"]
        assert f"*Approval #{rid} approved* by erin (break-glass)" in slack[-1]
        plain = [json.loads(b) for path, _h, b in got if path == "/json"]
        assert plain[-1]["event"] == "approval.decided"
        assert plain[-1]["approval"]["decisions"][0]["break_glass"] is True
        broker.close()
    finally:
        receiver.stop()


def test_who_can_decide_at_the_collector_is_its_groups_question(collector_store):
    """A request the server's policy forced to review: with no reviewer groups and no
    break-glass groups at the collector no one can decide it (it says so, and can only
    expire); break-glass groups alone are enough."""
    recorder = Recorder(collector_store)

    def message(**groups) -> str:
        broker = hub_broker(recorder, **groups)
        answer = broker.ask_for("alice/", ALICE_SERVER, hub_question())
        broker.close()
        return answer["request"]["message"]

    assert "no one here can decide" in message(reviewer_groups=(), break_glass_groups=())
    assert "no one here can decide" not in message(reviewer_groups=(), break_glass_groups=GLASS)
    assert "no one here can decide" not in message(reviewer_groups=["r"], break_glass_groups=())
    # rebuilt from the trail, the same requests follow the collector's groups now
    again = hub_broker(recorder, reviewer_groups=(), break_glass_groups=GLASS)
    assert not any(a.undecidable for a in again.visible({}, reviewer=True, state=None))


def test_the_collectors_roles_and_config_name_break_glass():
    app = CollectorApp(break_glass_groups=["oncall"])
    assert app.break_glass_groups == ["oncall"]
    assert CollectorApp().break_glass_groups == []
    ctx = Context(None, None, None, 0, [], ["rev"], list(app.break_glass_groups))
    assert ctx.roles({"groups": ["oncall"]}) == ["user", "break-glass"]
    assert ctx.roles({"groups": ["rev", "oncall"]}) == ["user", "reviewer", "break-glass"]
    assert ctx.roles({"groups": ["break-glass"]}) == ["user"]
