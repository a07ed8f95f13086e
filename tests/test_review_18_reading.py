"""Review of reading the Hub's trail (issue 18, part B): attacks by a Hub user with a server,
its token and a notebook, each kept closed on the collector's real web app over a real
DuckDB or PostgreSQL trail (`test_collector_reading.hub_trail`; only the Hub's token check
stands in)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
from helpers.collector import CollectorWeb, HubStandIn
from helpers.servers import free_port, run_cli
from helpers.trail import sql_event
from test_collector_reading import (  # noqa: F401  (hub_trail: the fixture)
    ALICE1,
    ALICE_ID,
    BOB1,
    USERS,
    forward,
    get,
    hub_trail,
)

from jupyter_audit.collector import reading
from jupyter_audit.collector.handlers import SETTINGS_KEY
from jupyter_audit.collector.protocol import trace_in_collector
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.recorder import Recorder


def test_another_users_trace_ids_are_refused_alike_whether_they_exist_or_not(hub_trail):  # noqa: F811
    # a forwarded id's namespace is sha256 of the server's id, which everyone can compute
    # ("alice/"), and some trace ids are guessable (`terminal-1`): a 403 for an existing id
    # and a 404 for a missing one would tell bob which traces alice's server recorded
    exists = get(hub_trail, f"traces/{ALICE1}", "bob")
    missing = get(hub_trail, "traces/" + trace_in_collector("alice/", "terminal-1"), "bob")
    assert exists.status_code == missing.status_code == 403
    assert exists.json()["message"] == missing.json()["message"]
    # the same for a prefix of alice's namespace and for a Hub service's token
    beyond = get(hub_trail, "traces/" + trace_in_collector("alice/", "x")[:-1], "bob")
    assert beyond.status_code == 403
    for ref in (ALICE1, trace_in_collector("alice/", "terminal-1")):
        assert get(hub_trail, f"traces/{ref}", "svc").status_code == 403
    # the caller's own: a missing id is a 404, a prefix of their namespace resolves
    assert (
        get(hub_trail, "traces/" + trace_in_collector("alice/", "nope"), "alice").status_code == 404
    )
    assert get(hub_trail, f"traces/{ALICE1}", "alice").status_code == 200


def test_show_and_export_url_say_plainly_when_the_collector_refuses_or_is_away(
    hub_trail,  # noqa: F811
    tmp_path,
):
    secret = "not-a-hub-token-5ecret"
    for args in (("show",), ("show", ALICE1), ("export", "-o", str(tmp_path / "x.jsonl"))):
        code, out, err = run_cli(*args, "--url", hub_trail.url, "--token", secret)
        assert code != 0 and "403" in err and "Hub does not know" in err, (args, code, err)
        assert secret not in out + err
        code, out, err = run_cli(*args, "--url", hub_trail.url, "--token", "bob-token")
        if len(args) == 2:  # alice's trace, asked for by bob
            assert code != 0 and "403" in err and "bob-token" not in out + err
    away = f"http://127.0.0.1:{free_port()}/"  # no collector listens there
    code, out, err = run_cli("show", "--url", away, "--token", secret)
    assert code != 0 and err.strip() and "Traceback" not in err and secret not in out + err


def test_me_counts_only_what_the_caller_may_read(hub_trail):  # noqa: F811
    # the whole Hub's count, every few seconds in each open panel, told a user when and how
    # much everyone else worked; a user's `me` counts the records of their own servers' traces
    whole = get(hub_trail, "me", "carol").json()["trail"]
    alices = get(hub_trail, "traces", "carol", user="alice").json()["traces"]
    own = get(hub_trail, "me", "alice").json()["trail"]
    assert own["events"] == sum(t["events"] for t in alices) < whole["events"]
    assert own["last_seq"] == max(t["last_seq"] for t in alices) < whole["last_seq"]
    assert get(hub_trail, "me", "svc").json()["trail"]["events"] == 0
    bobs = get(hub_trail, "traces", "carol", user="bob").json()["traces"]
    assert get(hub_trail, "me", "bob").json()["trail"]["events"] == sum(t["events"] for t in bobs)


def test_a_broken_trail_is_told_to_users_without_naming_anothers_trace(writer_at):
    # the whole trail's check at open names what it found (`detail`: another server's trace
    # id, a service token's id, a checkpoint file's path); a user is told that and where the
    # trail is broken (`ok`, `problem`, `first_bad_seq`), an auditor also what
    store = writer_at("collector")
    collector = Collector(store, Recorder(store))
    forward(collector, writer_at("alice"), "alice/", [sql_event(0, trace="alice-1", who=ALICE_ID)])
    bob = {"username": "bob", "auth_method": "jupyterhub", "groups": []}
    forward(collector, writer_at("bob"), "bob/", [sql_event(1, trace="alice-1", who=bob)])
    store.close()
    with duckdb.connect(str(store.db_path)) as con:  # an edit of bob's trace's counts
        con.execute("UPDATE traces SET operations = 7 WHERE trace_id = ?", [BOB1])
    store = writer_at("collector")
    assert not store.integrity.ok and BOB1 in json.dumps(store.integrity.to_dict())
    web_ = CollectorWeb(Collector(store, Recorder(store)), HubStandIn(USERS))
    web_.start()
    try:
        for path in ("me", "traces", f"traces/{ALICE1}"):
            answer = get(web_, path, "alice")
            assert answer.status_code == 200, answer.text
            assert BOB1 not in answer.text
        integrity = get(web_, "traces", "alice").json()["integrity"]
        assert integrity["ok"] is False and integrity["problem"]
        assert BOB1 in get(web_, "traces", "carol").text  # the auditor's: the whole of it
    finally:
        web_.close()


def test_what_a_reader_searches_for_never_reaches_the_collectors_log(hub_trail, caplog):  # noqa: F811
    # the people API's query carries what a person typed (a search, a notebook name, a
    # time); tornado logs every request's URI, and a refusal's, query and all
    caplog.set_level(logging.DEBUG)
    typed = "jane.doe@example.com 4111111111111111"
    asked = [
        ("traces", "alice", {"q": typed}),
        ("traces", "alice", {"notebook": typed}),
        ("traces", "bob", {"user": "alice", "notebook": typed}),  # 403
        ("traces", "alice", {"since": typed}),  # 400
        ("export", "alice", {"notebook": typed, "since": "2999-01-01"}),
        ("me", "nobody", {"q": typed}),  # the Hub does not know the token
    ]
    for path, who, params in asked:
        get(hub_trail, path, who, **params)
    hub_trail.store.flush()
    # the collector's log, not this test's HTTP client's
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("urllib3"))
    assert "GET /jupyter-audit/api/traces" in logged  # requests are still logged
    for part in ("jane.doe", "4111111111111111"):
        assert part not in logged


def test_a_user_builds_one_export_at_a_time(hub_trail):  # noqa: F811
    # an export signs a checkpoint on the trail's writer and reads the whole trail's Merkle
    # leaves in the worker pool the collector also takes everyone's batches in: a user
    # asking for many at once would hold the Hub's forwarding up
    store = hub_trail.store
    gate = threading.Event()
    busy = store.run_exclusive(lambda: gate.wait(60))  # the writer, busy: exports wait
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(get, hub_trail, "export", "alice")
            bobs = pool.submit(get, hub_trail, "export", "bob")
            again = until_refused(hub_trail, "alice")
            assert again.status_code == 429 and "still being built" in again.json()["message"]
            gate.set()
            assert first.result().status_code == 200
            assert bobs.result().status_code == 200  # another user's was not refused
    finally:
        gate.set()
        busy.result(60)
    assert get(hub_trail, "export", "alice").status_code == 200  # once it is done


def until_refused(web_, who: str):
    """The answer to a second export of `who`'s, once their first (sent by another thread)
    is being built."""
    collector = web_.app.settings[SETTINGS_KEY].collector
    deadline = time.monotonic() + 60
    while ("user", who) not in reading._exporting.get(collector, ()):
        assert time.monotonic() < deadline, "the first export never started"
        time.sleep(0.01)
    return get(web_, "export", who, since="2999-01-01")


def test_a_read_with_a_body_is_refused_before_the_body_unless_the_hub_knows_the_caller(
    hub_trail,  # noqa: F811
):
    # reads take no body; one declared by a caller the Hub does not know is never waited
    # for nor held (as for the forwarding API): the refusal comes after the headers
    for path in ("jupyter-audit/api/me", "jupyter-audit/api/traces", "api/export"):
        with socket.create_connection(("127.0.0.1", hub_trail.port), timeout=30) as sock:
            sock.sendall(
                f"GET /{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 16000000\r\n\r\n".encode()
                + b"[" * 1000
            )
            assert sock.recv(4096).split(b" ")[1] in (b"401", b"403")
    # a caller the Hub knows: the body is read and dropped, the read answered
    body = b" " * 100_000
    with socket.create_connection(("127.0.0.1", hub_trail.port), timeout=30) as sock:
        sock.sendall(
            b"GET /jupyter-audit/api/me HTTP/1.1\r\nHost: x\r\nAuthorization: token "
            b"alice-token\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"username": "alice"' in answer
