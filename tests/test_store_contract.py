"""The storage interface's guarantees (store/base.py), one suite run against every backend:
the DuckDB Writer on a real file and PgStore on a real PostgreSQL database of its own
(skipped without JUPYTER_AUDIT_TEST_PG_DSN). Order, acks after commit, exactly-once client
ids, origin in the signed bytes, verify and tampering, checkpoints, bundles, listings,
reopen, kill -9 of a writing process, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from helpers.servers import REPO
from helpers.stores import backend
from helpers.trail import ALICE, BOB, sql_event

from jupyter_audit.events import EventValidationError
from jupyter_audit.store.export import verify_bundle

BACKENDS = ["duckdb", "pg"]


@pytest.fixture(params=BACKENDS)
def trail(request, tmp_path):
    with backend(request.param, tmp_path) as b:
        yield b


def stored_records(trail) -> list[dict]:
    return [json.loads(bytes(r[0])) for r in trail.sql("SELECT record FROM events ORDER BY seq")]


ORIGIN = {
    "server": "alice/",
    "owner": "alice",
    "trail": "7c1c6bd6-0b4d-4c55-9d7a-3d1c0e5b1c11",
    "seq": 41,
    "hash": "ab" * 32,
}


def test_concurrent_submitters_get_gap_free_ordered_seqs(trail):
    s = trail.make()
    out: dict[int, list] = {}

    def submit(n: int) -> None:
        futs = [s.submit(sql_event(i, trace=f"t{n}")) for i in range(60)]
        futs.append(s.submit_batch([sql_event(100 + i, trace=f"t{n}") for i in range(40)]))
        res = [f.result(timeout=60) for f in futs[:-1]] + futs[-1].result(timeout=60)
        out[n] = [r.seq for r in res]

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seqs in out.values():
        assert seqs == sorted(seqs)  # each submitter's events in the order it sent them
    every = sorted(q for seqs in out.values() for q in seqs)
    assert len(every) == len(set(every)) == 400
    s.close()
    assert [r["seq"] for r in stored_records(trail)] == list(
        range(1, len(stored_records(trail)) + 1)
    )
    assert trail.verify().ok


def test_an_acknowledged_event_is_committed(trail):
    s = trail.make()
    res = s.append(sql_event(1, trace="acked"))
    # read through a connection of its own (PostgreSQL: another session; DuckDB: a cursor)
    events = s.get_trace_events("acked")
    assert [e["seq"] for e in events] == [res.seq]
    assert events[0]["hash"] == res.hash
    assert s.trail_stats()["last_seq"] >= res.seq


def test_client_event_ids_are_stored_once(trail):
    s = trail.make()
    first = s.submit(s.prepare({**sql_event(1), "event_id": "client-1"})).result(timeout=60)
    again = s.submit(s.prepare({**sql_event(1), "event_id": "client-1"})).result(timeout=60)
    assert again.duplicate and again.seq == first.seq
    # twice within one batch, and beside a new one
    batch = s.submit_batch(
        [
            s.prepare({**sql_event(2), "event_id": "client-2"}),
            s.prepare({**sql_event(2), "event_id": "client-2"}),
            s.prepare({**sql_event(1), "event_id": "client-1"}),
        ]
    ).result(timeout=60)
    assert [r.duplicate for r in batch] == [False, True, True]
    assert batch[1].seq == batch[0].seq and batch[2].seq == first.seq
    s.close()
    s = trail.make()  # and after a reopen
    assert (
        s.submit(s.prepare({**sql_event(2), "event_id": "client-2"})).result(timeout=60).duplicate
    )
    s.close()
    ids = [r["event_id"] for r in stored_records(trail)]
    assert ids.count("client-1") == 1 and ids.count("client-2") == 1


def test_origin_is_in_the_signed_bytes_and_round_trips(trail):
    s = trail.make()
    p = s.prepare({**sql_event(1, trace="fw"), "event_id": "fw.x"}, origin=ORIGIN)
    res = s.submit(p).result(timeout=60)
    [event] = s.get_trace_events("fw")
    assert event["origin"] == ORIGIN
    s.checkpoint().result(timeout=60)
    bundle = s.build_bundle(trace="fw")
    assert bundle["records"][0]["origin"] == ORIGIN
    assert verify_bundle(bundle).ok
    s.close()
    rec = trail.sql("SELECT record FROM events WHERE seq = %s", [res.seq])[0][0]
    assert b'"op_index":1,"origin":{' in bytes(rec)  # JCS order: between op_index and payload
    if trail.name == "pg":
        assert trail.sql(
            "SELECT origin_server, origin_seq FROM events WHERE seq = %s", [res.seq]
        ) == [("alice/", 41)]
    assert trail.verify().ok


def test_verify_checks_chain_and_signed_checkpoints(trail):
    from jupyter_audit.store.signing import SigningKey

    s = trail.make()
    s.append_many([sql_event(i) for i in range(30)])
    body = s.checkpoint().result(timeout=60)
    live = s.verify()
    assert live.ok, live.problems
    assert live.checkpoint["seq"] == body["seq"]
    s.close()
    lines = [json.loads(x) for x in trail.checkpoints.read_text().splitlines()]
    assert body in lines
    assert trail.verify().ok
    stranger = SigningKey.generate()
    pinned = trail.verify(trusted_keys=[stranger.public])
    assert not pinned.ok and pinned.problem == "checkpoint signature invalid"


def test_verify_while_appends_go_on_sees_one_moment(trail):
    s = trail.make(checkpoint_every=50)
    stop = threading.Event()

    def append() -> None:
        i = 0
        while not stop.is_set():
            s.submit_batch([sql_event(i + k, trace=f"t{i % 7}") for k in range(20)]).result()
            i += 20

    writer = threading.Thread(target=append)
    writer.start()
    try:
        results = [s.verify() for _ in range(5)]
    finally:
        stop.set()
        writer.join()
    assert all(r.ok for r in results), [r.problems for r in results if not r.ok]
    assert results[-1].last_seq > results[0].last_seq or results[0].last_seq > 1


@pytest.mark.parametrize("damage", ["edit", "delete", "reorder"])
def test_tampering_is_reported_at_the_first_bad_record(trail, damage):
    s = trail.make()
    s.append_many([sql_event(i) for i in range(20)])
    s.close()
    if damage == "edit":
        rec = bytes(trail.sql("SELECT record FROM events WHERE seq = 7")[0][0])
        trail.tamper(
            "UPDATE events SET record = %s WHERE seq = 7",
            [rec.replace(b"SELECT * FROM loans", b"SELECT 1 FROM loans")],
        )
    elif damage == "delete":
        trail.tamper("DELETE FROM events WHERE seq = 7")
    else:
        a, b = (
            bytes(trail.sql(f"SELECT record FROM events WHERE seq = {q}")[0][0]) for q in (7, 8)
        )
        trail.tamper("UPDATE events SET record = %s WHERE seq = 7", [b])
        trail.tamper("UPDATE events SET record = %s WHERE seq = 8", [a])
    r = trail.verify()
    assert not r.ok
    assert r.first_bad_seq == 7
    assert (
        r.problem
        == {
            "edit": "record changed",
            "delete": "record missing",
            "reorder": "records reordered",
        }[damage]
    )


def test_bundles_verify_and_listings_read_the_trail(trail):
    s = trail.make()
    s.append_many([sql_event(i, trace="t-a", who=ALICE) for i in range(5)])
    s.append_many([sql_event(i, trace="t-b", who=BOB) for i in range(3)])
    s.checkpoint().result(timeout=60)
    traces = s.list_traces()
    assert [t["trace_id"] for t in traces] == ["t-b", "t-a"]
    assert [t["trace_id"] for t in s.list_traces(username="alice")] == ["t-a"]
    assert s.list_traces(limit=1, before_seq=traces[0]["last_seq"])[0]["trace_id"] == "t-a"
    # a collector's reader: traces by id prefix, filtered before the limit (literal: no
    # LIKE wildcards)
    assert [t["trace_id"] for t in s.list_traces(limit=1, trace_prefixes=("t-a",))] == ["t-a"]
    assert len(s.list_traces(trace_prefixes=("t-a", "t-b"))) == 2
    assert s.list_traces(trace_prefixes=("t_",)) == s.list_traces(trace_prefixes=()) == []
    summary = s.get_trace_summary("t-a")
    assert summary["events"] == 5 and summary["users"] == ["alice"]
    assert summary["counts"]["queries"] == 5
    assert s.get_trace_summary("nope") is None
    events = s.get_trace_events("t-b")
    assert [e["identity"]["username"] for e in events] == ["bob"] * 3
    assert s.latest_payload("checkpoint")["seq"] == s.trail_stats()["last_seq"] - 1
    bundle = s.build_bundle(user="alice")
    assert len(bundle["records"]) == 5
    assert verify_bundle(bundle).ok


def test_reopening_continues_the_chain(trail):
    s = trail.make()
    s.append_many([sql_event(i) for i in range(10)])
    s.close()
    last = trail.sql("SELECT max(seq) FROM events")[0][0]
    s = trail.make()
    assert s.integrity.ok
    res = s.append(sql_event(99))
    assert res.seq > last
    s.close()
    r = trail.verify()
    assert r.ok and r.last_seq == res.seq + 1  # and the checkpoint at close


def test_a_malformed_event_is_refused_and_nothing_is_stored(trail):
    s = trail.make()
    before = s.trail_stats()["events"]
    with pytest.raises(EventValidationError, match="payload.statement is required"):
        s.submit({"kind": "op.sql", "payload": {"driver": "x"}})
    with pytest.raises(EventValidationError):
        s.submit_batch([sql_event(1), {"kind": "op.nope", "payload": {}}])
    s.flush()
    assert s.trail_stats()["events"] == before


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from helpers.stores import open_spec
    from helpers.trail import sql_event
    store = open_spec({spec!r}, Path({d!r}), checkpoint_every=37)
    i = 0
    while True:
        futs = [store.submit({{**sql_event(i + k), "event_id": f"kill-{{i + k}}"}})
                for k in range(5)]
        for f in futs:
            r = f.result()
            print(r.seq, r.event_id, flush=True)
        i += 5
    """
)


def test_kill_9_of_a_writing_process_loses_nothing_acknowledged(trail):
    script = WRITER_SCRIPT.format(tests=str(REPO / "tests"), spec=trail.spec(), d=str(trail.dir))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    acked = {}
    try:
        for line in proc.stdout:
            seq, event_id = line.split()
            acked[event_id] = int(seq)
            if len(acked) >= 120:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert len(acked) >= 120, "the writer stopped early"
    s = trail.make()
    assert s.integrity.ok, s.integrity.problems
    res = s.submit(s.prepare({**sql_event(0), "event_id": "kill-0"})).result(timeout=60)
    assert res.duplicate and res.seq == acked["kill-0"]  # held ids survive the crash
    s.close()
    records = stored_records(trail)
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate seq
    by_id = {r["event_id"]: r["seq"] for r in records}
    assert all(by_id.get(e) == q for e, q in acked.items())  # every acknowledged event
    ids = [r["event_id"] for r in records if r["event_id"].startswith("kill-")]
    assert len(ids) == len(set(ids))
    assert trail.verify().ok


def test_an_event_cannot_set_its_own_origin(trail):
    s = trail.make()
    with pytest.raises(EventValidationError, match="unknown event fields"):
        s.submit({**sql_event(1), "origin": ORIGIN})
    with pytest.raises(EventValidationError, match="origin"):
        s.prepare(sql_event(1), origin={**ORIGIN, "seq": "41"})


def test_text_that_looks_like_sql_or_placeholders_is_stored_as_data(trail):
    from jupyter_audit.store import queries

    s = trail.make()
    odd = "x'); DROP TABLE events; -- ? %s %(a)s $1 \\ %_"
    event = sql_event(1, trace="t=odd")
    event["notebook"] = odd
    event["payload"]["statement"] = odd
    res = s.append(event)
    [stored] = s.get_trace_events("t=odd")
    assert stored["seq"] == res.seq and stored["notebook"] == odd
    assert stored["payload"]["statement"] == odd
    assert s.get_trace_summary("t=odd")["notebook"] == odd
    assert queries.traces_named(s.cursor(), odd) == ["t=odd"]
    assert queries.traces_named(s.cursor(), "%s %(a)s", partial=True) == ["t=odd"]
    assert queries.traces_named(s.cursor(), "%x", partial=True) == []
    s.close()
    assert trail.verify().ok


def test_submit_later_prepares_on_the_writer_thread_with_a_fallback(trail):
    s = trail.make()
    bad = {"kind": "op.sql", "trace_id": "later", "payload": {"driver": "x"}}  # no statement

    def fallback(event, error):
        return {**sql_event(0, trace="later"), "payload": {**sql_event(0)["payload"]}}

    res = s.submit_later([sql_event(1, trace="later"), bad], ["e-1", "e-2"], fallback).result(
        timeout=60
    )
    assert [r.event_id for r in res] == ["e-1", "e-2"]
    assert [e["event_id"] for e in s.get_trace_events("later")] == ["e-1", "e-2"]


def test_a_rotated_key_signs_on_and_verifies_against_the_pinned_old_one(trail):
    from jupyter_audit.store.signing import SigningKey

    s = trail.make()
    s.append_many([sql_event(i) for i in range(3)])
    s.rotate_key(SigningKey.generate())
    s.append_many([sql_event(i) for i in range(3, 6)])
    s.checkpoint().result(timeout=60)
    s.close()
    r = trail.verify(trusted_keys=[trail.key.public])
    assert r.ok, r.problems
    assert r.checkpoint["key_id"] != trail.key.key_id  # the new key signed the last one


def _statement(i: int, text: str, trace: str, who=ALICE) -> dict:
    event = sql_event(i, trace=trace, who=who)
    event["payload"]["statement"] = text
    return event


def test_search_matches_the_same_words_on_every_store(trail):
    """The search (`q` of the people API) on each store: words AND-ed within one record,
    the last one a prefix, over masked text only, case and script as a query splits them,
    within one trace for a timeline, and records committed before a search all found."""
    from jupyter_audit.store import listing, search, timeline

    s = trail.make()
    s.append_many(
        [
            _statement(0, "SELECT churn FROM quarterly_report WHERE region = 'North'", "t-a"),
            _statement(1, "SELECT name FROM kunden WHERE stadt = 'München'", "t-a"),
            _statement(
                2, "DELETE FROM customers WHERE email = 'carol.zimmermann@example.com'", "t-b"
            ),
            _statement(3, "SELECT churn FROM weekly", "t-b", who=BOB),
            # odd text the index must survive: a NUL, quotes and tsquery syntax
            _statement(4, "SELECT '\x00' || 'a & b' || ':*' || '!x' FROM \"we'ird\"", "t-c"),
        ]
    )
    assert s.index_search().result(timeout=60) is True
    cur = s.cursor()

    def found(q: str, **kw) -> list[str]:
        return [t["trace_id"] for t in listing.list_traces(cur, q=search.terms(q), **kw)]

    assert found("churn") == ["t-b", "t-a"]
    assert found("churn quart") == ["t-a"]  # AND-ed in one record; the last a prefix
    assert found("quart churn") == []  # only the last word is a prefix
    assert found("REGION north") == ["t-a"]  # case does not matter
    assert found("münch") == ["t-a"] and found("MÜNCHEN") == ["t-a"]
    assert found("churn", username="bob") == ["t-b"]
    assert found("churn", trace_prefixes=("t-a",)) == ["t-a"]
    # the address was masked before it was stored: only its pseudonym is a word
    assert found("zimmermann") == [] and found("carol") == [] and found("example") == []
    assert found("email") == ["t-b"]
    assert found("we ird") == ["t-c"] and found("a b x") == ["t-c"]
    assert found("churn")[0] == "t-b"
    matches = {t["trace_id"]: t["matches"] for t in listing.list_traces(cur, q=["select"])}
    assert matches == {"t-a": 2, "t-b": 1, "t-c": 1}
    page = timeline.trace_page(cur, "t-a", words=search.terms("kunden"), fold=False)
    assert [e["payload"]["statement"] for e in page["events"]] == [
        "SELECT name FROM kunden WHERE stadt = 'München'"
    ]
    assert timeline.trace_page(cur, "t-b", words=["kunden"])["events"] == []

    # records committed after the last search are found by the next one
    s.append_many([_statement(5, "SELECT novel_word FROM t", "t-d")])
    assert s.index_search().result(timeout=60) is True
    assert found("novel_w") == ["t-d"]
    s.close()
    # and after a restart, nothing is indexed twice nor missed
    s = trail.make()
    s.append_many([_statement(6, "SELECT novel_word FROM u", "t-e")])
    assert s.index_search().result(timeout=60) is True
    cur = s.cursor()
    assert found("novel_word") == ["t-e", "t-d"]
