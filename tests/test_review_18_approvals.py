"""Adversarial review of approvals through the Hub's collector (issue 18): what a Hub user with
their own server, its token and a notebook can try against the collector's approval API, each
attack kept closed by a test. The collector's whole web app runs on a real port over a real
trail store (DuckDB, and PostgreSQL with JUPYTER_AUDIT_TEST_PG_DSN); only the Hub's token
check stands in (`HubStandIn`). The servers' verbs are called as alice's server would (or as
alice, holding her server's token in a notebook, could)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from helpers.approvals import hub_question
from helpers.collector import ALICE_SERVER, ALICE_SERVER_TOKEN, CollectorWeb, HubStandIn
from helpers.trail import writer_events
from tornado.httpclient import AsyncHTTPClient

from jupyter_audit.collector.handlers import SETTINGS_KEY
from jupyter_audit.collector.protocol import trace_in_collector
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.collector_approvals import CollectorApprovals
from jupyter_audit.server.collector_client import CollectorClient
from jupyter_audit.server.recorder import Recorder

USERS = {
    ALICE_SERVER_TOKEN: ALICE_SERVER,
    # alice's own API token: it may speak for any server name of hers
    "alice-token": {"kind": "user", "name": "alice", "groups": [], "scopes": []},
    "bob-token": {"kind": "user", "name": "bob", "groups": ["reviewers"], "scopes": []},
    # bob's server's token: bob too, from another token
    "bob-server-token": {
        "kind": "user",
        "name": "bob",
        "groups": ["reviewers"],
        "scopes": ["access:servers!server=bob/"],
    },
    # another API token of bob's own (not his server's)
    "bob-second-token": {"kind": "user", "name": "bob", "groups": ["reviewers"], "scopes": []},
    "carol-token": {"kind": "user", "name": "carol", "groups": ["reviewers"], "scopes": []},
    "mallory-server-token": {
        "kind": "user",
        "name": "mallory",
        "groups": [],
        "scopes": ["access:servers!server=mallory/"],
    },
}
DELETE = "DELETE FROM customers"


@pytest.fixture(params=["duckdb", "pg"])
def hub(request, writer_at):
    if request.param == "duckdb":
        store = writer_at("collector")
    else:
        store = request.getfixturevalue("pg").make()
    web_ = CollectorWeb(Collector(store, Recorder(store)), HubStandIn(dict(USERS)))
    web_.start()
    yield web_
    web_.close()


async def call(hub, token, method, path, body=None, params=""):
    """(status, JSON) of a call to the collector with a Hub token; `body` as bytes is sent
    as it is."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    r = await AsyncHTTPClient().fetch(
        hub.url + path + params,
        method=method,
        body=body if body is not None else (b"" if method == "POST" else None),
        headers={"Authorization": f"token {token}"},
        raise_error=False,
        request_timeout=60,
    )
    return r.code, json.loads(r.body) if r.body else None


def question(**more) -> dict:
    return hub_question(**{"statement": DELETE, **more})


async def ask(hub, token=ALICE_SERVER_TOKEN, server="alice/", **more) -> tuple[int, dict]:
    return await call(
        hub, token, "POST", "api/approvals/requests", question(**more), f"?server={server}"
    )


def approval_events(hub) -> list[dict]:
    return [
        e
        for e in writer_events(hub.approvals.recorder.writer)
        if e["kind"].startswith("approval.") and not e.get("origin")
    ]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_text_the_trail_cannot_hold_is_a_clear_400_and_nothing_changes(hub):
    """A lone surrogate in a statement (a Python str can hold one), a kernel or trace id the
    trail's id rules refuse, a reviewer's reason it cannot store: each a 400 naming the field,
    never an unexplained 500 (which the kernel would only show as "HTTP 500")."""
    for more, field in (
        ({"statement": "DELETE FROM customers WHERE name = '\ud800'"}, "statement"),
        ({"kernel_id": "k 1\n"}, "kernel_id"),
        ({"trace_id": "t\x00"}, "trace_id"),
        ({"session_id": "s/\x01"}, "session_id"),
        ({"notebook": "\udfff.ipynb"}, "notebook"),
    ):
        code, body = await ask(hub, **more)
        assert code == 400 and field in body["message"], (more, code, body)
    assert approval_events(hub) == []

    code, body = await ask(hub)
    assert code == 200, body
    rid = body["request"]["id"]
    code, body = await call(
        hub,
        "bob-token",
        "POST",
        f"jupyter-audit/api/approvals/{rid}",
        b'{"decision": "approve", "reason": "ok \\ud800"}',
    )
    assert code == 400 and "reason" in body["message"], body
    code, body = await call(hub, "bob-token", "GET", f"jupyter-audit/api/approvals/{rid}")
    assert code == 200 and body["state"] == "pending" and body["decisions"] == []


async def test_one_user_cannot_bury_the_hubs_queue_under_requests(hub):
    """alice, holding her server's token in a notebook, posts request after request (under as
    many server names of hers as she likes): past a few waiting ones, the collector refuses
    (429, saying why) instead of pushing everyone else's requests out of the reviewers' view
    (newest first, 200 a page) and its memory. Others still ask; once hers are decided she
    asks again."""
    hub.approvals.max_pending = 3
    for token, server in (
        (ALICE_SERVER_TOKEN, "alice/"),
        (ALICE_SERVER_TOKEN, "alice/"),
        ("alice-token", "alice/two"),
    ):
        code, body = await ask(hub, token=token, server=server)
        assert code == 200, body
    code, body = await ask(hub, token="alice-token", server="alice/three")
    assert code == 429 and "waiting for review" in body["message"], body
    assert len(approval_events(hub)) == 3
    # mallory is not held up by alice
    code, body = await ask(hub, token="mallory-server-token", server="mallory/")
    assert code == 200, body
    code, body = await call(hub, "bob-token", "GET", "jupyter-audit/api/approvals?state=pending")
    assert sorted(a["requester"] for a in body["approvals"]) == ["alice"] * 3 + ["mallory"]
    first = min(a["id"] for a in body["approvals"] if a["requester"] == "alice")
    code, body = await call(
        hub, "bob-token", "POST", f"jupyter-audit/api/approvals/{first}", {"decision": "deny"}
    )
    assert code == 200 and body["state"] == "denied"
    code, body = await ask(hub)
    assert code == 200, body


async def rejections(hub, count: int, timeout=60) -> list[dict]:
    """The collector's `security.rejected` records, once there are `count` of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await asyncio.to_thread(writer_events, hub.approvals.recorder.writer)
        found = [e for e in events if e["kind"] == "security.rejected"]
        if len(found) >= count:
            return found
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.2)


async def test_what_only_a_forging_server_would_send_is_recorded_not_just_refused(hub):
    """An honest server never waits on, reports or cancels a request id that is not its
    kernel's, and never reports `executed` for a request that is not approved: the first is
    a server probing for others' requests, the second a server that told its own kernel
    "approved" itself (it relays the collector's answers to a kernel its user controls). The
    collector refuses both, and records each as `security.rejected` under the Hub user, so
    the attempt is in the Hub's trail, not only in an answer the server can throw away."""
    code, body = await ask(hub)
    assert code == 200, body
    rid = body["request"]["id"]
    # mallory's server (mallory holds its token) tries alice's request id
    code, _ = await call(
        hub,
        "mallory-server-token",
        "POST",
        f"api/approvals/requests/{rid}",
        {"kernel": "k-1", "cancel": "interrupt"},
        "?server=mallory/",
    )
    assert code == 404
    # alice's server reports the pending request executed (its kernel ran it unapproved)
    report = {"statement_sha256": sha(DELETE), "rowcount": 3}
    code, body = await call(
        hub,
        ALICE_SERVER_TOKEN,
        "POST",
        f"api/approvals/requests/{rid}",
        {"kernel": "k-1", "executed": report},
        "?server=alice/",
    )
    assert code == 409 and "not approved" in body["message"]
    found = await rejections(hub, 2)
    by = {e["identity"]["username"]: e["payload"] for e in found}
    assert set(by) == {"mallory", "alice"}
    assert f"#{rid}" in by["mallory"]["reason"] and "mallory/" in by["mallory"]["source"]
    assert "not approved" in by["alice"]["reason"]
    # the request itself is untouched: still pending, no executed record
    assert [e["kind"] for e in approval_events(hub)] == ["approval.requested"]


async def decide(hub, token, rid, decision="approve"):
    return await call(
        hub, token, "POST", f"jupyter-audit/api/approvals/{rid}", {"decision": decision}
    )


async def report(hub, rid, executed, token=ALICE_SERVER_TOKEN, server="alice/"):
    return await call(
        hub,
        token,
        "POST",
        f"api/approvals/requests/{rid}",
        {"kernel": "k-1", "executed": executed},
        f"?server={server}",
    )


async def test_races_replays_and_a_restart_decide_nothing_twice(hub):
    """Held: one reviewer's second token is still one reviewer (his server's decides nothing); two reviewers racing on a
    request that needs one approval make one decision; `executed` for another statement,
    other parameters, or a second time (another outcome) is refused, the same report again
    is recorded once; a restarted collector still holds what
    was pending (decidable) and what was approved (runnable once)."""
    code, body = await ask(
        hub,
        decision={
            "decision": "review",
            "reasons": [{"rule": "r", "message": "m", "action": "review"}],
            "min_approvals": 2,
        },
    )
    two = body["request"]["id"]
    assert (await decide(hub, "bob-token", two))[1]["state"] == "pending"
    code, body = await decide(hub, "bob-second-token", two)
    assert code == 409 and "already decided" in body["message"]
    # his server's token decides nothing at all (every kernel of his server holds it)
    code, body = await decide(hub, "bob-server-token", two)
    assert code == 403 and "server's Hub token does not decide" in body["message"]
    assert (await decide(hub, "carol-token", two))[1]["state"] == "approved"

    code, body = await ask(hub)
    one = body["request"]["id"]
    answers = await asyncio.gather(decide(hub, "bob-token", one), decide(hub, "carol-token", one))
    assert sorted(code for code, _ in answers) == [200, 409]

    code, body = await ask(hub, params=[1], params_sha256=sha("[1]"))
    pending = body["request"]["id"]

    # the collector restarts: its queue rebuilt from its own trail
    hub.stop()
    again = CollectorWeb(hub.app.settings[SETTINGS_KEY].collector, HubStandIn(dict(USERS)))
    again.start()
    try:
        for attempt in (
            {"statement_sha256": sha(DELETE + " WHERE 1=1")},
            {"statement_sha256": sha(DELETE), "params_sha256": sha("[2]")},
        ):
            code, body = await report(again, one, attempt)
            assert code == 409 and "another statement" in body["message"], body
        code, body = await report(again, one, {"statement_sha256": sha(DELETE), "rowcount": 3})
        assert code == 200 and body["state"] == "executed"
        # the same report again (a server delivering it again) is answered, not recorded
        code, body = await report(again, one, {"statement_sha256": sha(DELETE), "rowcount": 3})
        assert code == 200 and body["state"] == "executed"
        # another report of it (it ran again) is refused
        code, body = await report(again, one, {"statement_sha256": sha(DELETE), "rowcount": 0})
        assert code == 409
        code, body = await call(again, "bob-token", "GET", f"jupyter-audit/api/approvals/{pending}")
        assert body["state"] == "pending"
        code, body = await decide(again, "bob-token", pending, "deny")
        assert code == 200 and body["state"] == "denied"
        kinds = [e["kind"] for e in approval_events(again)]
        assert kinds.count("approval.executed") == 1
    finally:
        again.close()
        hub.start()


async def test_an_outcome_the_collector_could_not_take_is_delivered_once_it_is_back(hub):
    """The operation ran, approved; as the kernel reports it the collector is away. The
    server says so to the kernel and delivers the report again until the collector takes it:
    `approval.executed` is in the Hub's trail once, and the request does not stay open (an
    approved request nobody ran could be claimed by a later run)."""
    code, body = await ask(hub)
    rid = body["request"]["id"]
    assert (await decide(hub, "bob-token", rid))[1]["state"] == "approved"
    client = CollectorClient(hub.url, ALICE_SERVER_TOKEN, server="alice/")
    approvals = CollectorApprovals(None, client)
    hub.stop()
    try:
        said = await approvals.report(
            rid, "k-1", {"executed": {"statement_sha256": sha(DELETE), "rowcount": 3}}
        )
        assert "recorded there once it can be" in said["message"]
        assert rid in approvals.undelivered
    finally:
        hub.start()
    deadline = asyncio.get_running_loop().time() + 60
    while rid in approvals.undelivered:
        assert asyncio.get_running_loop().time() < deadline, "never delivered"
        await asyncio.sleep(0.2)
    kinds = [e["kind"] for e in approval_events(hub)]
    assert kinds == ["approval.requested", "approval.decided", "approval.executed"]
    code, body = await call(hub, "bob-token", "GET", f"jupyter-audit/api/approvals/{rid}")
    assert body["state"] == "executed" and body["executed"]["rowcount"] == 3


def test_who_ran_the_cell_still_cannot_decide_it_after_the_masking_key_changes(tmp_path):
    """bob@corp.org (an e-mail-like Hub name, as OAuth sign-ins give) ran a cell on alice's
    shared server; the request records who ran it, masked like any payload text. The
    collector's masking key is replaced (rotation) and the collector restarts: bob still
    cannot approve it (the check compared pseudonyms of the old key with the new)."""
    from jupyter_audit.approvals import Refused
    from jupyter_audit.collector.approvals import hub_broker
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    def collector_trail(key: str):
        masker = MaskingEngine(load_or_create_key(tmp_path / key))
        key_ = SigningKey.load_or_create(tmp_path / "signing-key.pem")
        return Writer(tmp_path / "trail.duckdb", masker, key_).open()

    writer = collector_trail("masking.key")
    broker = hub_broker(Recorder(writer))
    rid = broker.ask_for("alice/", ALICE_SERVER, question(ran_by="bob@corp.org"))["request"]["id"]
    stored = [e for e in writer_events(writer) if e["kind"] == "approval.requested"]
    assert "bob@corp.org" not in json.dumps(stored)  # masked in the trail
    writer.close()
    writer = collector_trail("rotated.key")
    try:
        again = hub_broker(Recorder(writer))
        bob = {"username": "bob@corp.org", "auth_method": "jupyterhub"}
        with pytest.raises(Refused, match="you ran the cell"):
            again.decide(rid, bob, reviewer=True, decision="approve", reason=None)
        carol = {"username": "carol", "auth_method": "jupyterhub"}
        assert again.decide(rid, carol, reviewer=True, decision="approve", reason=None).state
    finally:
        writer.close()


def test_the_queue_is_listed_while_servers_ask(writer_at):
    """The collector lists its queue on the event loop (a reviewer's page) while worker
    threads add the requests servers ask for; with every server of the Hub asking, a listing
    must not fail because a request arrived during it (it was a 500: "dictionary changed
    size during iteration"). The thread adds requests as `_apply` does; thread switches are
    made as frequent as possible so that the race shows at once."""
    import sys
    import threading

    from jupyter_audit.approvals.model import Approval
    from jupyter_audit.collector.approvals import hub_broker

    broker = hub_broker(Recorder(writer_at("collector")))

    def request(i: int) -> Approval:
        return Approval(
            i,
            {"username": "alice"},
            "sql",
            DELETE,
            sha(DELETE),
            None,
            [],
            [],
            1,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:30:00Z",
        )

    for i in range(1, 5001):
        broker._approvals[i] = request(i)
    stop = threading.Event()

    def servers_ask() -> None:
        i = 5001
        while not stop.is_set():
            with broker._lock:
                broker._approvals[i] = request(i)
            i += 1

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    asking = threading.Thread(target=servers_ask)
    asking.start()
    try:
        for _ in range(50):
            listed = broker.visible({"username": "bob"}, reviewer=True, state="pending")
            assert len(listed) >= 5000
    finally:
        stop.set()
        asking.join()
        sys.setswitchinterval(before)


def test_a_stopping_server_waits_for_a_slow_collector_once_not_once_per_kernel():
    """A server stops with many kernels while the collector takes connections and never
    answers: cancelling each kernel's requests there must not cost a timeout per kernel (the
    Hub kills a server that takes too long to stop, before its own shutdown records are
    written). After the first call finds it away, the others are not tried."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted: list = []

    def take() -> None:
        while True:
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=take, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        approvals = CollectorApprovals(None, CollectorClient(url, "t", server="alice/"))
        approvals.blocking_within = 1.0
        for kernel in ("k-1", "k-2", "k-3", "k-4"):
            assert approvals.cancel_kernel(kernel, "server shutdown") == []
        assert len(accepted) == 1
    finally:
        sock.close()
        for conn in accepted:
            conn.close()


async def test_forwarded_approval_and_session_records_decide_nothing_after_a_restart(hub):
    """Held: alice's server forwards records of its own making (its trail is hers to write):
    an `approval.requested` under the next id the collector will give, an `approval.executed`
    of her pending request, a `session.ended` of mallory's kernel id. After a restart the
    collector's queue holds only its own requests, hers still pending, mallory's too."""
    code, body = await ask(hub)
    rid = body["request"]["id"]
    code, body = await ask(hub, token="mallory-server-token", server="mallory/", kernel_id="k-9")
    theirs = body["request"]["id"]
    store = hub.approvals.recorder.writer
    forged = [
        {
            "kind": "approval.requested",
            "identity": {"username": "bob", "auth_method": "jupyterhub"},
            "trace_id": trace_in_collector("alice/", "k-1"),
            "kernel_id": "k-1",
            "payload": {"request_id": str(theirs + 1), "statement": "SELECT 1"},
        },
        {
            "kind": "approval.executed",
            "identity": {"username": "alice", "auth_method": "jupyterhub"},
            "trace_id": trace_in_collector("alice/", "k-1"),
            "kernel_id": "k-1",
            "payload": {"request_id": str(rid), "statement_sha256": sha(DELETE)},
        },
        {
            "kind": "session.ended",
            "identity": None,
            "trace_id": trace_in_collector("alice/", "k-9"),
            "kernel_id": "k-9",
            "payload": {"reason": "shutdown"},
        },
    ]
    origins = [
        {"server": "alice/", "owner": "alice", "trail": "t", "seq": i, "hash": f"{i}" * 64}
        for i in range(1, 4)
    ]
    await asyncio.to_thread(
        lambda: store.submit_batch(store.prepare_many(forged, origins=origins)).result(30)
    )
    hub.stop()
    again = CollectorWeb(hub.app.settings[SETTINGS_KEY].collector, HubStandIn(dict(USERS)))
    again.start()
    try:
        code, body = await call(again, "bob-token", "GET", "jupyter-audit/api/approvals")
        assert {a["id"]: a["state"] for a in body["approvals"]} == {
            rid: "pending",
            theirs: "pending",
        }
        code, body = await ask(again)
        assert body["request"]["id"] == theirs + 1
    finally:
        again.close()
        hub.start()
