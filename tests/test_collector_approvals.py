"""Approvals through the Hub's collector (collector/approvals.py, server/collector_approvals.py):
a real jupyter_server whose `collector_url` is the collector's web app in this process
(`CollectorWeb` over a real trail store: DuckDB, and PostgreSQL with JUPYTER_AUDIT_TEST_PG_DSN),
real kernels running cells that delete from a real SQLite table. Only the Hub's token check
stands in (`HubStandIn`); the real Hub is tests/e2e/test_collector_hub.py.

alice owns the server (JUPYTERHUB_USER, her server token); bob and carol are reviewers at the
Hub (bob's server token decides nothing: every kernel of his server holds it); mallory has a
server of her own; dave is no reviewer.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import pytest
from helpers import hub_approvals
from helpers.approvals import Receiver, as_user, hub_question, refused
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
    cell_code,
    collector_events,
    in_browser,
    pending_request,
    rejections,
    rows,
    start_cell,
    wait_collector,
)
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import wait_for, writer_events
from tornado.httpclient import AsyncHTTPClient

from jupyter_audit.approvals import Refused
from jupyter_audit.cli import main as cli_main
from jupyter_audit.collector.approvals import hub_broker
from jupyter_audit.collector.protocol import trace_in_collector
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.recorder import Recorder

USERS = {
    ALICE_SERVER_TOKEN: ALICE_SERVER,
    # alice's own API token: she is a reviewer too, and still never decides her own
    "alice-token": {"kind": "user", "name": "alice", "groups": ["reviewers"], "scopes": []},
    "bob-token": {"kind": "user", "name": "bob", "groups": ["reviewers"], "scopes": []},
    "dave-token": {"kind": "user", "name": "dave", "groups": [], "scopes": []},
    "carol-token": personal_token_user("carol", ["reviewers"]),
    # bob's server's own token (in every kernel of his server), and the token the collector's
    # OAuth got for bob's browser session
    "bob-server-token": server_token_user("bob", ["reviewers"]),
    "bob-session-token": personal_token_user("bob", ["reviewers"]),
    "mallory-server-token": {
        "kind": "user",
        "name": "mallory",
        "groups": ["reviewers"],
        "scopes": ["access:servers!server=mallory/"],
    },
}
collector_store = hub_approvals.collector_store
shop = hub_approvals.shop


@pytest.fixture
def expiry():
    return 1800.0


@pytest.fixture
def hub(collector_store, expiry):
    collector = Collector(collector_store, Recorder(collector_store))
    web_ = CollectorWeb(collector, HubStandIn(dict(USERS)), approval_expiry=expiry, oauth=True)
    web_.start()
    yield web_
    web_.close()


@pytest.fixture
def jp_server_config(trail_dir, hub, monkeypatch):
    return owners_server_config(
        trail_dir, monkeypatch, hub.url, HubUserProvider, collector_heartbeat=1
    )


async def test_the_cell_waits_bob_approves_at_the_collector_and_it_runs_in_its_trace(
    hub, jp_serverapp, jp_fetch, jp_ws_fetch, shop
):
    kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
    request = await pending_request(hub)
    rid = request["id"]
    assert request["requester"] == "alice" and request["statement"] == DELETE
    assert request["kernel_id"] == kernel_id and request["kind"] == "sql"
    assert rows(shop) == 3 and not task.done()

    # alice sees it through her own server (the Hub's one queue); no one decides there
    mine = await as_user(jp_fetch, "alice", "approvals")
    assert [a["id"] for a in mine["approvals"]] == [rid]
    code, message = await refused(
        as_user(jp_fetch, "alice", "approvals", str(rid), method="POST", body={"decision": "deny"})
    )
    assert code == 403 and "decided at the collector" in message
    # nor at the collector, with her own token, although she is a reviewer there
    code, body = await at_hub(
        hub, "alice-token", "POST", f"jupyter-audit/api/approvals/{rid}", {"decision": "approve"}
    )
    assert code == 403 and "your own" in body["message"]
    # dave is no reviewer: he does not see it, and cannot decide it
    code, body = await at_hub(hub, "dave-token", "GET", "jupyter-audit/api/approvals")
    assert code == 200 and body["approvals"] == []
    code, body = await at_hub(
        hub, "dave-token", "POST", f"jupyter-audit/api/approvals/{rid}", {"decision": "approve"}
    )
    assert code == 403 and "c.CollectorApp.reviewer_groups" in body["message"]
    # another user's server cannot wait on, report or cancel alice's request
    for method, body_ in (
        ("GET", None),
        ("POST", {"kernel": kernel_id, "cancel": "interrupt"}),
        ("POST", {"kernel": kernel_id, "executed": {"statement_sha256": "0" * 64}}),
    ):
        code, _ = await at_hub(
            hub,
            "mallory-server-token",
            method,
            f"api/approvals/requests/{rid}",
            body_,
            params=f"?server=mallory/&kernel={kernel_id}&wait=0",
        )
        assert code == 404
    code, body = await at_hub(
        hub,
        "mallory-server-token",
        "POST",
        "api/approvals/kernels",
        {"kernel": kernel_id, "why": "shutdown"},
        params="?server=mallory/",
    )
    assert code == 200 and body == {"cancelled": []}
    # nor claim to be alice's server
    code, _ = await at_hub(
        hub,
        "mallory-server-token",
        "GET",
        f"api/approvals/requests/{rid}",
        params=f"?server=alice/&kernel={kernel_id}",
    )
    assert code == 403

    code, decided = await at_hub(
        hub,
        "bob-token",
        "POST",
        f"jupyter-audit/api/approvals/{rid}",
        {"decision": "approve", "reason": "checked"},
    )
    assert code == 200 and decided["state"] == "approved", decided
    status, out, errors = await task
    assert (status, out.strip(), errors) == ("ok", "left 0", [])
    assert rows(shop) == 0

    trace = trace_in_collector("alice/", kernel_id)

    def done(events):
        kinds = {(e["kind"], e["trace_id"], bool(e.get("origin"))) for e in events}
        return ("approval.executed", trace, False) in kinds and (
            "cell.requested",
            trace,
            True,
        ) in kinds

    events = await wait_collector(hub, done)
    approvals = [e for e in events if e["kind"].startswith("approval.") and not e.get("origin")]
    assert [e["kind"] for e in approvals] == [
        "approval.requested",
        "approval.decided",
        "approval.executed",
    ]
    requested, decision, executed = approvals
    assert {e["trace_id"] for e in approvals} == {trace}
    assert requested["identity"]["username"] == "alice"
    assert requested["identity"]["auth_method"] == "jupyterhub"
    assert decision["identity"]["username"] == "bob"
    assert executed["payload"]["rowcount"] == 3
    cell = [e for e in events if e["kind"] == "cell.requested" and e["trace_id"] == trace]
    assert requested["msg_id"] in {c["msg_id"] for c in cell}
    # the server held nothing itself: its local trail has no approval of its own
    local = writer_events(jp_serverapp.web_app.settings["jupyter_audit"].writer)
    assert not [e for e in local if e["kind"].startswith("approval.")]
    seen = await as_user(jp_fetch, "alice", "approvals", str(rid))
    assert seen["state"] == "executed" and "DELETE FROM customers" in seen["cell_code"]
    client.ws.close()


async def test_a_servers_token_never_decides_a_browser_session_with_xsrf_does(
    hub, jp_serverapp, jp_fetch, jp_ws_fetch, shop
):
    """Code in bob's kernel holds his server's token (JUPYTERHUB_API_TOKEN): with it, at the
    collector or through a server, nothing is decided, and each try is recorded. bob decides
    in his browser, signed in at the collector, with its XSRF token."""
    _kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
    rid = (await pending_request(hub))["id"]
    path = f"jupyter-audit/api/approvals/{rid}"

    code, body = await at_hub(hub, "bob-server-token", "POST", path, {"decision": "approve"})
    assert code == 403 and "server's Hub token does not decide" in body["message"]
    assert "/jupyter-audit/sign-in" in body["message"]
    # reading with it still works
    code, body = await at_hub(hub, "bob-server-token", "GET", path)
    assert code == 200 and body["state"] == "pending"
    # a server never proxies a decision (its token is its kernels' too), and records the try
    code, message = await refused(
        as_user(jp_fetch, "alice", "approvals", str(rid), method="POST", body={"decision": "deny"})
    )
    assert code == 403 and "decided at the collector" in message
    local = writer_events(jp_serverapp.web_app.settings["jupyter_audit"].writer)
    assert rejections(local, "decided at the collector")

    # no credential, a forged session cookie, a cookie of an unknown token: sign in first
    forged = "service-jupyter-audit=" + session_cookie("bob-session-token").split("=", 1)[1][:-4]
    for cookie, query in (("", ""), (forged, ""), ("", "?token=bob-token")):
        code, body, _ = await in_browser(hub, "POST", path + query, cookie, {"decision": "approve"})
        assert code == 401 and body["sign_in"] == "/jupyter-audit/sign-in", (cookie, body)
    # a session without the XSRF token (a cross-site form), or a wrong one: 403, recorded
    cookie = session_cookie("bob-session-token")
    carols = session_cookie("carol-token")
    _, carol, carol_cookies = await in_browser(hub, "GET", "jupyter-audit/api/session", carols)
    for session, headers in (
        (cookie, {}),
        (cookie, {"X-XSRFToken": "2|00|11|22"}),
        (session_cookie("no-such-token"), {}),
        # another session's token and cookie (carol's page cannot act as bob, nor the reverse)
        (
            f"{cookie}; {carol_cookies[0].split(';')[0]}",
            {"X-XSRFToken": carol["xsrf_token"]},
        ),
    ):
        code, body, _ = await in_browser(
            hub, "POST", path, session, {"decision": "approve"}, headers=headers
        )
        assert code == 403 and "XSRF" in body["message"], body
    code, body = await at_hub(hub, "bob-token", "GET", path)
    assert body["state"] == "pending" and not body.get("decisions")
    events = await asyncio.to_thread(collector_events, hub)
    assert rejections(events, "server's Hub token does not decide")
    assert rejections(events, "XSRF")

    # the session names bob and hands his page the XSRF token (its cookie is set with it)
    code, session, set_cookies = await in_browser(hub, "GET", "jupyter-audit/api/session", cookie)
    assert code == 200 and session["username"] == "bob"
    xsrf = [c.split(";")[0] for c in set_cookies if c.startswith("_xsrf=")]
    assert xsrf and xsrf[0] == "_xsrf=" + session["xsrf_token"]
    code, decided, _ = await in_browser(
        hub,
        "POST",
        path,
        f"{cookie}; {xsrf[0]}",
        {"decision": "approve", "reason": "read it"},
        headers={"X-XSRFToken": session["xsrf_token"]},
    )
    assert code == 200 and decided["state"] == "approved", decided
    status, out, _errors = await task
    assert (status, out.strip()) == ("ok", "left 0")
    events = await wait_collector(
        hub, lambda evs: any(e["kind"] == "approval.decided" for e in evs)
    )
    (decision,) = [e for e in events if e["kind"] == "approval.decided" and not e.get("origin")]
    assert decision["identity"]["username"] == "bob"
    client.ws.close()


async def test_the_collectors_me_says_where_a_browser_decides(hub):
    code, me = await at_hub(hub, "bob-token", "GET", "jupyter-audit/api/me")
    assert code == 200 and me["collector_prefix"] == "/"
    code, body, _ = await in_browser(hub, "GET", "jupyter-audit/api/session")
    assert code == 401 and body["sign_in"] == "/jupyter-audit/sign-in"


async def test_denied_with_the_cli_at_the_collector_the_statement_never_runs(
    hub, jp_fetch, jp_ws_fetch, shop, capsys
):
    _kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
    rid = (await pending_request(hub))["id"]

    async def cli(token, *args):
        return await asyncio.to_thread(
            cli_main, ["approvals", *args, "--url", hub.url, "--token", token]
        )

    capsys.readouterr()
    assert await cli("bob-token", "list") == 0
    assert f"#{rid}" in capsys.readouterr().out
    assert await cli("alice-token", "approve", str(rid)) == 2
    assert "your own" in capsys.readouterr().err
    assert await cli("bob-token", "deny", str(rid), "--reason", "not on a Friday") == 0
    status, _out, errors = await task
    assert status == "error" and errors[0]["ename"] == "ApprovalDenied"
    assert "not on a Friday" in errors[0]["evalue"]
    assert rows(shop) == 3
    client.ws.close()


class TestExpiry:
    @pytest.fixture
    def expiry(self):
        return 2.0

    async def test_nobody_decides_it_expires_at_the_collector(
        self, hub, jp_fetch, jp_ws_fetch, shop
    ):
        _kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
        status, _out, errors = await task
        assert status == "error" and errors[0]["ename"] == "ApprovalExpired"
        assert rows(shop) == 3
        code, body = await at_hub(hub, "bob-token", "GET", "jupyter-audit/api/approvals")
        assert [a["state"] for a in body["approvals"]] == ["expired"]
        client.ws.close()


async def test_an_interrupted_kernel_cancels_its_request_at_the_collector(
    hub, jp_fetch, jp_ws_fetch, shop
):
    kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
    rid = (await pending_request(hub))["id"]
    await jp_fetch(
        "api",
        "kernels",
        kernel_id,
        "interrupt",
        method="POST",
        body="",
        headers={"X-Test-User": "alice"},
    )
    status, _out, errors = await task
    assert status == "error" and errors[0]["ename"] == "KeyboardInterrupt"
    code, body = await at_hub(hub, "bob-token", "GET", f"jupyter-audit/api/approvals/{rid}")
    assert code == 200 and body["state"] == "cancelled"
    code, body = await at_hub(
        hub, "bob-token", "POST", f"jupyter-audit/api/approvals/{rid}", {"decision": "approve"}
    )
    assert code == 409  # too late: it never runs
    assert rows(shop) == 3
    client.ws.close()


async def test_with_the_collector_away_nothing_runs_unapproved(
    hub, jp_serverapp, jp_fetch, jp_ws_fetch, shop
):
    hub.stop()
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers={"X-Test-User": "alice"})
    status, _out, errors = await client.run_full(cell_code(shop), timeout=120)
    assert status == "error" and errors[0]["ename"] == "ApprovalUnavailable"
    assert "collector cannot be reached" in errors[0]["evalue"]
    assert "did not run" in errors[0]["evalue"]
    assert rows(shop) == 3
    # the server's own trail says what happened: the cell failed on it
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    finished = await wait_for(audit, lambda es: any(e["kind"] == "cell.finished" for e in es))
    failed = [e for e in finished if e["kind"] == "cell.finished"][-1]
    assert failed["payload"]["status"] == "error"
    assert "ApprovalUnavailable" in json.dumps(failed["payload"]["error"])
    # a read still runs; the people's queue says the collector is away (never a local answer)
    assert (await client.run("print(1 + 1)"))[0] == "ok"
    code, message = await refused(as_user(jp_fetch, "alice", "approvals"))
    assert code == 503 and "cannot be reached" in message
    hub.start()
    client.ws.close()
    del kernel_id


async def test_a_wait_outlives_the_collector_going_away_for_a_moment(
    hub, collector_store, jp_fetch, jp_ws_fetch, shop, caplog
):
    """The kernel's long poll fails while the collector is away (503 from its server), keeps
    polling with backoff, and carries on when the collector is back."""
    if not hasattr(collector_store, "db_path"):
        pytest.skip("once is enough: the store is not what this is about")
    _kernel_id, client, task = await start_cell(jp_fetch, jp_ws_fetch, shop)
    rid = (await pending_request(hub))["id"]
    hub.stop()  # the poll under way ends (within 30 s); the next ones fail
    deadline = time.monotonic() + 60
    failed_poll = re.compile(rf"503 GET \S*/jupyter-audit/api/kernel/approvals/{rid}\?")
    while not failed_poll.search(caplog.text):
        assert time.monotonic() < deadline and not task.done(), caplog.text[-2000:]
        await asyncio.sleep(0.2)
    hub.start()
    code, _ = await at_hub(
        hub, "bob-token", "POST", f"jupyter-audit/api/approvals/{rid}", {"decision": "approve"}
    )
    assert code == 200
    status, out, _errors = await task
    assert (status, out.strip()) == ("ok", "left 0")
    client.ws.close()


async def test_a_visitor_who_ran_the_cell_on_the_owners_server_does_not_decide_it(
    hub, jp_fetch, jp_ws_fetch, shop
):
    """JupyterHub sharing: bob, a reviewer, runs a DELETE in alice's server. The request is
    alice's (the server's owner, as the Hub names it), and bob, who ran it, cannot approve it
    either; another reviewer can."""
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers={"X-Test-User": "bob"})
    task = asyncio.create_task(client.run_full(cell_code(shop), timeout=120))
    request = await pending_request(hub)
    assert request["requester"] == "alice"
    path = f"jupyter-audit/api/approvals/{request['id']}"
    code, body = await at_hub(hub, "bob-token", "POST", path, {"decision": "approve"})
    assert code == 403 and "you ran the cell" in body["message"]
    code, body = await at_hub(hub, "carol-token", "POST", path, {"decision": "approve"})
    assert code == 200 and body["state"] == "approved"
    status, out, _errors = await task
    assert (status, out.strip()) == ("ok", "left 0")
    client.ws.close()
    del kernel_id


async def test_a_shared_visitor_is_not_served_the_owners_queue(hub, jp_fetch, jp_ws_fetch):
    """bob, admitted to alice's server (JupyterHub sharing), would act with alice's rights."""
    code, message = await refused(as_user(jp_fetch, "bob", "approvals"))
    assert code == 403 and "owner only" in message


def test_the_collectors_queue_survives_a_restart_and_ignores_forwarded_decisions(
    collector_store,
):
    """The broker rebuilds from the collector's own approval records; a server that forwards
    an `approval.decided` of its own (its trail is its owner's to write) decides nothing."""
    recorder = Recorder(collector_store)
    broker = hub_broker(recorder)
    question = hub_question(DELETE)
    answer = broker.ask_for("alice/", USERS["alice-token"], question)
    rid = answer["request"]["id"]
    forged = collector_store.prepare_many(
        [
            {
                "kind": "approval.decided",
                "identity": {"username": "bob", "auth_method": "jupyterhub"},
                "trace_id": trace_in_collector("alice/", "k-1"),
                "kernel_id": "k-1",
                "payload": {
                    "request_id": str(rid),
                    "decision": "approve",
                    "reviewer": "bob",
                    "state": "approved",
                },
            }
        ],
        origins=[{"server": "alice/", "owner": "alice", "trail": "t", "seq": 9, "hash": "0" * 64}],
    )
    collector_store.submit_batch(forged).result(30)
    again = hub_broker(recorder)
    assert again.of_server(rid, "alice/", "k-1").state == "pending"
    with pytest.raises(Exception, match="no request"):
        again.of_server(rid, "mallory/", "k-1")
    # and the next request's id goes on from the collector's own
    answer = again.ask_for("alice/", USERS["alice-token"], {**question, "msg_id": "m2"})
    assert answer["request"]["id"] == rid + 1

    def forward_stop(server: str, seq: int) -> None:
        origin = {"server": server, "owner": server[:-1], "trail": "t", "seq": seq}
        stop = {
            "kind": "session.ended",
            "identity": None,
            "trace_id": trace_in_collector(server, "k-1"),
            "kernel_id": "k-1",
            "payload": {"reason": "shutdown"},
        }
        batch = collector_store.prepare_many([stop], origins=[{**origin, "hash": "1" * 64}])
        collector_store.submit_batch(batch).result(30)

    # who ran the cell (as the server said) does not decide it, after a restart too
    ran = again.ask_for(
        "alice/", USERS["alice-token"], {**question, "msg_id": "m3", "ran_by": "bob"}
    )
    bob = {"username": "bob", "auth_method": "jupyterhub"}
    for b in (again, hub_broker(recorder)):
        with pytest.raises(Refused, match="you ran the cell"):
            b.decide(ran["request"]["id"], bob, reviewer=True, decision="approve", reason=None)

    # mallory's server says kernel k-1 (alice's kernel id) stopped: alice's requests stay
    forward_stop("mallory/", 1)
    assert hub_broker(recorder).of_server(rid, "alice/", "k-1").state == "pending"
    # alice's server says it: cancelled at the next start
    forward_stop("alice/", 10)
    restarted = hub_broker(recorder)
    assert restarted.of_server(rid, "alice/", "k-1").state == "cancelled"
    assert restarted.of_server(rid + 1, "alice/", "k-1").state == "cancelled"
    assert restarted.of_server(rid + 2, "alice/", "k-1").state == "cancelled"


async def test_bad_and_unauthenticated_calls_are_refused_with_clear_errors(hub):
    for path in ("api/approvals/requests", "jupyter-audit/api/approvals/1"):
        r = await AsyncHTTPClient().fetch(
            hub.url + path, method="POST", body=b"{}", raise_error=False
        )
        assert r.code in (401, 403), path  # 401 at the real Hub (no token); the stand-in: 403
    code, body = await at_hub(
        hub, "alice-server-token", "POST", "api/approvals/requests", params="?server=alice/"
    )
    assert code == 400 and "kind" in body["message"]
    question = {"kind": "sql", "statement": DELETE, "msg_id": "m", "kernel_id": "k"}
    for decision, what in (
        (None, "decision"),
        ({"decision": "allow", "reasons": []}, "decision"),
        ({"decision": "review", "reasons": [], "min_approvals": 0}, "min_approvals"),
        ({"decision": "review", "reasons": ["x"]}, "reasons"),
    ):
        code, body = await at_hub(
            hub,
            "alice-server-token",
            "POST",
            "api/approvals/requests",
            {**question, "decision": decision},
            params="?server=alice/",
        )
        assert code == 400 and what in body["message"], body
    big = {**question, "statement": "DELETE FROM t WHERE x = '" + "a" * (3 << 20) + "'"}
    code, body = await at_hub(
        hub, "alice-server-token", "POST", "api/approvals/requests", big, params="?server=alice/"
    )
    assert code == 413
    code, body = await at_hub(hub, "bob-token", "GET", "jupyter-audit/api/approvals?limit=0")
    assert code == 400
    code, body = await at_hub(hub, "bob-token", "GET", "jupyter-audit/api/approvals?state=nope")
    assert code == 400 and "state must be" in body["message"]
    code, body = await at_hub(hub, "bob-token", "GET", "jupyter-audit/api/approvals/%D9%A3")
    assert code == 404  # an Arabic-Indic digit is no request id
    code, body = await at_hub(
        hub,
        "alice-server-token",
        "GET",
        "api/approvals/requests/1",
        params="?server=alice/&kernel=k&wait=nan",
    )
    assert code == 400
    # nothing was recorded for any of it but the refusals
    kinds = {e["kind"] for e in collector_events(hub)}
    assert not {k for k in kinds if k.startswith("approval.")}


def test_the_collector_sends_the_webhooks(collector_store, tmp_path):
    receiver = Receiver()
    secret = tmp_path / "hook.key"
    secret.write_text("k")
    try:
        broker = hub_broker(
            Recorder(collector_store),
            webhooks=[{"url": receiver.url, "format": "json", "secret_file": str(secret)}],
        )
        question = {
            "kind": "sql",
            "statement": DELETE,
            "msg_id": "m",
            "kernel_id": "k",
            "decision": {"decision": "review", "reasons": [], "min_approvals": 1},
        }
        rid = broker.ask_for("alice/", USERS["alice-token"], question)["request"]["id"]
        broker.decide(
            rid,
            {"username": "bob", "auth_method": "jupyterhub"},
            reviewer=True,
            decision="deny",
            reason=None,
        )
        got = receiver.wait_for(2)
        kinds = [json.loads(body)["event"] for _path, _headers, body in got]
        assert kinds == ["approval.requested", "approval.decided"]
        assert json.loads(got[0][2])["approval"]["requester"] == "alice"
        broker.close()
    finally:
        receiver.stop()


class TestSlowCollector:
    """A collector that takes connections and never answers: the question times out on the
    server, and the kernel hears why, in time; the operation does not run."""

    @pytest.fixture
    def black_hole(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
        sock.close()

    @pytest.fixture
    def jp_server_config(self, trail_dir, black_hole, monkeypatch):
        monkeypatch.setenv("JUPYTERHUB_USER", "alice")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", ALICE_SERVER_TOKEN)
        return server_config(
            trail_dir / "trail.duckdb",
            server={"identity_provider_class": HubUserProvider},
            collector_url=black_hole,
        )

    async def test_a_question_the_collector_does_not_answer_fails_closed(
        self, jp_fetch, jp_ws_fetch, shop
    ):
        _kernel_id, client = await open_kernel(
            jp_fetch, jp_ws_fetch, headers={"X-Test-User": "alice"}
        )
        status, _out, errors = await client.run_full(cell_code(shop), timeout=120)
        assert status == "error" and errors[0]["ename"] == "ApprovalUnavailable"
        assert "collector cannot be reached" in errors[0]["evalue"]
        assert rows(shop) == 3
        client.ws.close()
