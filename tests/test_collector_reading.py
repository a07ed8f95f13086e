"""The collector speaks a server's people API (`collector/reading.py`): `me`, `traces`,
`traces/{id}` and `export` under `jupyter-audit/api/`, with a server's parameters and
answers, on a real DuckDB or PostgreSQL trail over the collector's real web app (only the
Hub's token check stands in: helpers.collector). Who sees what is the Hub's answer for the
token and the server that recorded each trace, never an identity a server wrote; the CLI's
`show`/`export --url` run against it as real processes."""

from __future__ import annotations

import json

import pytest
import requests
from helpers.collector import CollectorWeb, HubStandIn
from helpers.servers import run_cli
from helpers.trail import sql_event

from jupyter_audit.collector.protocol import parse_batch, trace_in_collector
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder
from jupyter_audit.store import queries

USERS = {
    "carol-token": {"kind": "user", "name": "carol", "groups": ["auditors"], "scopes": []},
    "alice-token": {"kind": "user", "name": "alice", "groups": [], "scopes": []},
    "bob-token": {"kind": "user", "name": "bob", "groups": [], "scopes": []},
    # a Hub service that happens to be named like a user
    "svc-token": {"kind": "service", "name": "alice", "scopes": []},
}
API = "jupyter-audit/api/"
ALICE_ID = {"username": "alice", "auth_method": "jupyterhub", "groups": []}
# bob's server writes what it likes: a trace that claims alice ran it, and one named like hers
FORGED = {
    "username": "alice",
    "auth_method": "jupyterhub",
    "groups": ["auditors"],
    "display_name": "Not Alice",
    "token_id": "0123456789abcdef",
    "token_owner": "mallory",
}


def forward(collector: Collector, local, server: str, events: list[dict]) -> None:
    local.append_many(events)
    local.flush()
    recs = Forwarder(local, "http://unused/", None).read_after(1)
    body = {"server": server, "trail": local.trail_id, "records": recs}
    owner = server.split("/")[0]
    collector.ingest(server, owner, parse_batch(json.dumps(body).encode()))


@pytest.fixture(params=["duckdb", "postgresql"])
def hub_trail(request, writer_at):
    """A collector's store holding alice's and bob's forwarded traces, served on a port."""
    store = (
        writer_at("collector")
        if request.param == "duckdb"
        else request.getfixturevalue("pg").make()
    )
    collector = Collector(store, Recorder(store))
    forward(
        collector,
        writer_at("alice"),
        "alice/",
        [sql_event(i, trace="alice-1", who=ALICE_ID) for i in range(4)]
        + [sql_event(i, trace="beta-2", who=ALICE_ID) for i in range(4, 6)],
    )
    forward(
        collector,
        writer_at("bob"),
        "bob/",
        [sql_event(i, trace="alice-1", who=FORGED) for i in range(3)]
        # a trace id that spells alice's trace at the collector
        + [sql_event(9, trace=trace_in_collector("alice/", "alice-1"), who=FORGED)],
    )
    store.flush()
    web_ = CollectorWeb(collector, HubStandIn(USERS))
    web_.start()
    web_.store, web_.kind = store, request.param
    try:
        yield web_
    finally:
        web_.close()


def get(web_, path: str, who: str | None, **params):
    headers = {"Authorization": f"token {who}-token"} if who else {}
    return requests.get(web_.url + API + path, headers=headers, params=params, timeout=60)


def ids(answer: dict) -> set[str]:
    return {t["trace_id"] for t in answer["traces"]}


ALICE1 = trace_in_collector("alice/", "alice-1")
ALICE2 = trace_in_collector("alice/", "beta-2")
BOB1 = trace_in_collector("bob/", "alice-1")
BOB2 = trace_in_collector("bob/", ALICE1)  # bob's server chose alice's collector id


def recorded(store, kind: str) -> list[dict]:
    """The collector's records of `kind` (through its store's read cursor, any backend)."""
    store.flush()
    cur = store.cursor()
    where, params = queries.export_filter()
    return [e for e in queries.iter_export(cur, where, params) if e["kind"] == kind]


def test_me_names_the_hub_user_and_their_roles_at_the_collector(hub_trail):
    me = get(hub_trail, "me", "alice").json()
    assert me["username"] == "alice" and me["roles"] == ["user"]
    assert me["source"] == "collector" and me["servers"] == ["alice/"]
    assert me["trail"]["events"] > 0 and me["trail"]["integrity"]["ok"] is True
    assert get(hub_trail, "me", "carol").json()["roles"] == ["user", "auditor"]
    assert get(hub_trail, "me", None).status_code in (401, 403)  # the stand-in's word
    assert get(hub_trail, "me", "mallory").status_code == 403


def test_traces_are_the_servers_listing_scoped_by_the_recording_server(hub_trail):
    everyone = get(hub_trail, "traces", "carol").json()
    assert ids(everyone) == {ALICE1, ALICE2, BOB1, BOB2}
    assert everyone["next"] is None and everyone["integrity"]["ok"] is True
    owners = {t["trace_id"]: (t["owner"], t["server"], t["users"]) for t in everyone["traces"]}
    # bob's trace names alice inside (his server wrote that); it is bob's: the Hub said so
    assert owners[BOB1] == owners[BOB2] == ("bob", "bob/", ["bob"])
    assert owners[ALICE1] == ("alice", "alice/", ["alice"])
    alices = get(hub_trail, "traces", "alice").json()
    assert ids(alices) == {ALICE1, ALICE2}
    # bob's server named alice with a display name and a token owner of its own: alice's
    # traces show her as her own server recorded her, bob's trace as his server did
    assert "Not Alice" not in json.dumps(alices) and "mallory" not in json.dumps(alices)
    for t in alices["traces"]:
        assert [p["username"] for p in t["participants"]] == ["alice"]
        assert t["participants"][0]["service_account"] is False
    bobs = next(t for t in everyone["traces"] if t["trace_id"] == BOB1)
    assert bobs["participants"][0]["display_name"] == "Not Alice"
    one = get(hub_trail, f"traces/{ALICE1}", "alice").json()["trace"]
    assert one["participants"][0]["token_owner"] is None
    assert ids(get(hub_trail, "traces", "bob").json()) == {BOB1, BOB2}
    assert ids(get(hub_trail, "traces", "svc").json()) == set()
    assert get(hub_trail, f"traces/{ALICE1}", "svc").status_code == 403
    # `user` is the Hub user whose server recorded the trace
    assert ids(get(hub_trail, "traces", "carol", user="alice").json()) == {ALICE1, ALICE2}
    assert ids(get(hub_trail, "traces", "alice", user="alice").json()) == {ALICE1, ALICE2}
    r = get(hub_trail, "traces", "bob", user="alice")
    assert r.status_code == 403 and "only auditors" in r.json()["message"]
    # paged with the server's cursor
    first = get(hub_trail, "traces", "carol", limit=2).json()
    assert len(first["traces"]) == 2 and first["next"]
    rest = get(hub_trail, "traces", "carol", limit=2, cursor=first["next"]).json()
    assert ids(first) | ids(rest) == {ALICE1, ALICE2, BOB1, BOB2} and rest["next"] is None
    # the server's filters
    assert ids(get(hub_trail, "traces", "alice", notebook="ANALYSIS").json()) == {ALICE1, ALICE2}
    assert ids(get(hub_trail, "traces", "alice", kind="op.http").json()) == set()
    assert ids(get(hub_trail, "traces", "carol", since="2999-01-01T00:00:00Z").json()) == set()
    for bad in ({"limit": "x"}, {"kind": "no.such"}, {"cursor": "ls1.zz"}, {"flag": "odd"}):
        r = get(hub_trail, "traces", "alice", **bad)
        assert r.status_code == 400, (bad, r.text)
    r = get(hub_trail, "traces", "alice", notebook="a\x00b")
    assert r.status_code == 400 and "control character" in r.json()["message"]


def test_one_trace_is_the_servers_page_and_only_the_owners_or_an_auditors(hub_trail):
    page = get(hub_trail, f"traces/{ALICE1}", "alice", limit=2, fold=0).json()
    assert page["trace"]["trace_id"] == ALICE1 and page["trace"]["owner"] == "alice"
    assert [e["seq"] for e in page["events"]] == sorted(e["seq"] for e in page["events"])
    assert len(page["events"]) == 2 and page["next_after_seq"] and page["total"] == 4
    assert page["integrity"]["ok"] is True
    # an unambiguous prefix, resolved among the caller's own traces
    assert get(hub_trail, f"traces/{ALICE2[:-1]}", "alice").json()["trace"]["trace_id"] == ALICE2
    # another's trace: a full id is refused and recorded, a prefix tells nothing (refused
    # alike, before any look-up: test_review_18_reading)
    r = get(hub_trail, f"traces/{ALICE1}", "bob")
    assert r.status_code == 403 and "another user's server" in r.json()["message"]
    assert get(hub_trail, f"traces/{ALICE2[:-1]}", "bob").status_code == 403
    assert any(
        "another user's server" in json.dumps(e)
        for e in recorded(hub_trail.store, "security.rejected")
    )
    # an auditor's view of another's trace is recorded
    assert get(hub_trail, f"traces/{BOB1}", "carol").status_code == 200
    views = [e for e in recorded(hub_trail.store, "trail.accessed") if e["trace_id"] == BOB1]
    assert views and views[0]["identity"]["username"] == "carol"
    assert views[0]["payload"]["action"] == "view"
    assert get(hub_trail, f"traces/{ALICE1}", "alice", page="middle").status_code == 400


def test_search_answers_alike_on_both_stores_within_what_the_caller_may_see(hub_trail):
    # the words of alice's statements, AND-ed, the last a prefix
    r = get(hub_trail, "traces", "alice", q="LOANS whe")
    assert r.status_code == 200, r.text
    assert ids(r.json()) == {ALICE1, ALICE2}
    assert {t["trace_id"]: t["matches"] for t in r.json()["traces"]} == {ALICE1: 4, ALICE2: 2}
    # one trace's records holding the words (`id = 5`: the statement's words)
    r = get(hub_trail, f"traces/{ALICE2}", "alice", q="id 5", fold="0")
    assert r.status_code == 200, r.text
    assert [e["payload"]["statement"] for e in r.json()["events"]] == [
        "SELECT * FROM loans WHERE id = 5"
    ]
    # bob's search never reaches alice's server's traces, nor alice's his
    assert ids(get(hub_trail, "traces", "bob", q="loans").json()) == {BOB1, BOB2}
    assert get(hub_trail, f"traces/{ALICE1}", "bob", q="loans").status_code == 403
    # an auditor searches every server, or one user's
    assert ids(get(hub_trail, "traces", "carol", q="loans").json()) == {ALICE1, ALICE2, BOB1, BOB2}
    assert ids(get(hub_trail, "traces", "carol", q="loans", user="bob").json()) == {BOB1, BOB2}
    # a query with nothing to search for, or too many words, is the caller's 400
    for q in ("&&& :*", " ".join(f"w{i}" for i in range(9))):
        r = get(hub_trail, "traces", "alice", q=q)
        assert r.status_code == 400 and "q " in r.json()["message"]


def test_export_gives_auditors_anything_and_others_their_own_servers_traces(hub_trail):
    def records(who, **params):
        r = get(hub_trail, "export", who, **params)
        assert r.status_code == 200, r.text
        return r.json()["records"]

    everything = records("carol")
    assert {r["trace_id"] for r in everything} >= {ALICE1, ALICE2, BOB1}
    mine = records("alice")
    assert mine and {r["trace_id"] for r in mine} == {ALICE1, ALICE2}
    assert {r["trace_id"] for r in records("carol", user="bob")} <= {BOB1, BOB2}
    assert {r["trace_id"] for r in records("carol", trace=BOB1)} == {BOB1}
    assert {r["trace_id"] for r in records("alice", trace=ALICE1)} == {ALICE1}
    for params in ({"trace": BOB1}, {"user": "bob"}):
        r = get(hub_trail, "export", "alice", **params)
        assert r.status_code == 403, (params, r.text)
    exports = [
        e for e in recorded(hub_trail.store, "trail.accessed") if e["payload"]["action"] == "export"
    ]
    assert {e["identity"]["username"] for e in exports} == {"carol", "alice"}
    # the first path keeps its rule: the whole trail, for auditors only
    r = requests.get(hub_trail.url + "api/export", headers={"Authorization": "token bob-token"})
    assert r.status_code == 403


def test_show_and_export_url_work_against_the_collector(hub_trail, tmp_path):
    url = hub_trail.url
    code, out, err = run_cli("show", "--url", url, "--token", "alice-token")
    assert code == 0, err
    assert ALICE1[:20] in out and BOB1[:20] not in out
    code, out, err = run_cli("show", ALICE1[:-2], "--url", url, "--token", "alice-token")
    assert code == 0, err
    assert "loans" in out
    code, out, err = run_cli("show", BOB1, "--url", url, "--token", "alice-token")
    assert code == 2 and "403" in err, (code, out, err)
    target = tmp_path / "alice.jsonl"
    code, out, err = run_cli(
        "export", "--url", url, "--token", "alice-token", "--format", "jsonl", "-o", str(target)
    )
    assert code == 0, err
    lines = [json.loads(x) for x in target.read_text().splitlines()]
    assert lines and {x["trace_id"] for x in lines} == {ALICE1, ALICE2}
    target = tmp_path / "bob.jsonl"
    code, out, err = run_cli(
        "export", "--url", url, "--token", "carol-token", "--user", "bob", "-o", str(target)
    )
    assert code == 0, err
    assert {json.loads(x)["trace_id"] for x in target.read_text().splitlines()} <= {BOB1, BOB2}
