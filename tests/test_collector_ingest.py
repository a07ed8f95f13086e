"""The collector's ingest (jupyter_audit/collector): the wire checks of a forwarded record,
each server's chain continuity, and forwarded records stored again, through a real DuckDB
Writer, with their origin. Local trails are real Writers too, read by the forwarder's own
reader (`Forwarder.read_after`)."""

from __future__ import annotations

import json
import time

import pytest
from helpers.trail import ALICE, BOB, sql_event, writer_events

from jupyter_audit.collector import continuity
from jupyter_audit.collector.hubauth import Refused, server_id, token_from
from jupyter_audit.collector.protocol import (
    MAX_RECORDS,
    BadBatch,
    parse_batch,
    trace_in_collector,
)
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder
from jupyter_audit.store.forwarded import forward_event_id

SERVER = "alice/"


@pytest.fixture
def collector(writer_at):
    store = writer_at("collector")
    return Collector(store, Recorder(store))


def local_trail(writer_at, name="local", n=10, who=ALICE):
    w = writer_at(name)
    w.append_many([sql_event(i, who=who) for i in range(n)])
    w.flush()
    return w


def records(local, first=1, last=None) -> list[dict]:
    out = Forwarder(local, "http://unused/", None).read_after(first)
    return [r for r in out if last is None or r["seq"] <= last]


def body(local, recs, trail=None, **extra) -> bytes:
    return json.dumps(
        {"server": SERVER, "trail": trail or local.trail_id, "records": recs, **extra}
    ).encode()


def send(collector, local, recs, trail=None, **extra) -> dict:
    return collector.ingest(SERVER, "alice", parse_batch(body(local, recs, trail, **extra)))


def kinds(store, prefix):
    return [e for e in writer_events(store) if e["kind"].startswith(prefix)]


# -- the wire checks -----------------------------------------------------------------------


def test_a_record_proves_itself_or_the_batch_is_refused(writer_at):
    local = local_trail(writer_at, n=3)
    good = records(local)
    assert parse_batch(body(local, good)).records[2].seq == 3

    def refused(recs, match, **kw):
        with pytest.raises(BadBatch, match=match):
            parse_batch(body(local, recs, **kw))

    edited = dict(good[1], record=good[1]["record"].replace("loans.db", "other.db"))
    refused([edited], r"records\[0\]: hash is not sha256")
    refused([dict(good[1], seq=7)], r"the record's seq is not 7")
    refused([good[1], good[0]], "not after the record before")
    forged = json.dumps({**json.loads(good[0]["identity"]), "username": "bob"})
    refused([dict(good[0], identity=forged)], "identity is not the snapshot")
    refused([dict(good[0], identity=None)], "identity is not the snapshot")
    refused([dict(good[0], record="not json")], "not a trail record")
    refused([{**good[0], "extra": 1}], "must be an object with")
    refused([good[0]] * (MAX_RECORDS + 1), "more than")
    with pytest.raises(BadBatch, match="not JSON"):
        parse_batch(b"\xff{")
    # nesting deeper than the JSON decoder recurses: refused like any malformed body, never
    # a crash of the handler that goes unrecorded
    with pytest.raises(BadBatch, match="not JSON"):
        parse_batch(b"[" * 200_000)
    refused([dict(good[0], record='{"a":' + "[" * 200_000)], "not a trail record")
    refused([dict(good[0], identity="[" * 200_000)], "identity is not the snapshot")
    with pytest.raises(BadBatch, match="trail must be a trail id"):
        parse_batch(body(local, good, trail="bad trail id!"))


def test_the_hub_names_the_server_never_the_request():
    token_scopes = {
        "kind": "user",
        "name": "alice",
        "scopes": ["access:servers!server=alice/", "users:activity!user=alice"],
    }
    assert server_id(token_scopes, None) == "alice/"
    assert server_id(token_scopes, "alice/") == "alice/"
    with pytest.raises(Refused, match="may not forward as 'bob/'") as e:
        server_id(token_scopes, "bob/")
    assert e.value.status == 403
    with pytest.raises(Refused):  # another server of the same user is another server
        server_id(token_scopes, "alice/other")
    # a token that names no server (a user's own API token): only the name may be claimed
    own = {"kind": "user", "name": "alice", "scopes": ["access:servers!user=alice"]}
    assert server_id(own, "alice/gpu") == "alice/gpu"
    with pytest.raises(Refused, match="Hub user 'alice'"):
        server_id(own, "bob/gpu")
    with pytest.raises(Refused):
        server_id({"kind": "service", "name": "x", "scopes": []}, None)
    assert token_from("token abc") == token_from("Bearer abc") == "abc"
    assert token_from("Basic abc") is None and token_from(None) is None


# -- continuity and storage ----------------------------------------------------------------


def test_forwarded_records_are_stored_once_with_their_origin(writer_at, collector):
    local = local_trail(writer_at, n=10)
    recs = records(local)
    last = recs[-1]["seq"]
    assert last == len(recs) >= 10
    assert send(collector, local, recs[:6]) == {"acked": 6, "duplicates": 0}
    assert send(collector, local, recs[6:]) == {"acked": last, "duplicates": 0}
    # the ack was lost: the same batch again is acknowledged, nothing is stored twice
    before = collector.store.trail_stats()["events"]
    assert send(collector, local, recs[6:]) == {"acked": last, "duplicates": last - 6}
    assert collector.store.trail_stats()["events"] == before

    stored = [e for e in writer_events(collector.store) if "origin" in e]
    assert [e["origin"]["seq"] for e in stored] == list(range(1, last + 1))
    by_seq = {r["seq"]: r for r in recs}
    for e in stored:
        origin = e["origin"]
        assert origin["server"] == SERVER and origin["owner"] == "alice"
        assert origin["trail"] == local.trail_id
        assert origin["hash"] == by_seq[origin["seq"]]["hash"]
        local_record = json.loads(by_seq[origin["seq"]]["record"])
        assert origin["event_id"] == local_record["event_id"]
        assert e["event_id"] == forward_event_id(
            SERVER, local.trail_id, origin["seq"], origin["hash"]
        )
        assert e["kind"] == local_record["kind"]
        assert e["payload"] == local_record["payload"]
        if e["kind"] == "op.sql":
            assert e["trace_id"] == trace_in_collector(SERVER, "trace-1") != "trace-1"
            assert e["identity"]["username"] == "alice"
    assert collector.store.forward_heads() == {
        SERVER: {"trail": local.trail_id, "seq": last, "hash": recs[-1]["hash"]}
    }
    assert kinds(collector.store, "forward.") == []
    assert kinds(collector.store, "security.") == []
    assert collector.store.verify().ok


def test_a_gap_is_recorded_and_the_records_after_it_kept(writer_at, collector):
    local = local_trail(writer_at, n=8)
    recs = records(local)
    send(collector, local, recs[:3])
    assert send(collector, local, recs[5:])["acked"] == recs[-1]["seq"]
    [gap] = kinds(collector.store, "forward.gap")
    assert gap["payload"] == {
        "server": SERVER,
        "trail": local.trail_id,
        "expected_seq": 4,
        "got_seq": 6,
    }
    assert collector.store.verify().ok


def test_a_rewritten_trail_is_recorded_and_the_originals_kept(writer_at, collector):
    local = local_trail(writer_at, "local", n=5)
    first = records(local)
    send(collector, local, first)
    # the same places of "the same" trail, with other records (the user rewrote it)
    other = local_trail(writer_at, "rewritten", n=6, who=BOB)
    second = records(other)
    assert send(collector, other, second, trail=local.trail_id)["acked"] == len(second)
    rewrites = kinds(collector.store, "forward.rewrite")
    assert [r["payload"]["seq"] for r in rewrites] == [r["seq"] for r in first]
    assert [r["payload"]["got_hash"] for r in rewrites] == [r["hash"] for r in second[:6]]
    stored = [e for e in writer_events(collector.store) if e["kind"] == "op.sql"]
    assert [e["identity"]["username"] for e in stored] == ["alice"] * 5 + ["bob"] * 6
    # a new trail id for a known server (the file was replaced)
    send(collector, other, records(other)[:1])
    [*_, replaced] = kinds(collector.store, "forward.rewrite")
    assert replaced["payload"]["previous_trail"] == local.trail_id
    assert replaced["payload"]["trail"] == other.trail_id
    assert collector.store.verify().ok


def test_a_replayed_old_batch_stores_nothing_and_is_recorded(writer_at, collector):
    local = local_trail(writer_at, n=10)
    recs = records(local)
    collector.state(SERVER)
    send(collector, local, recs[:5])
    send(collector, local, recs[5:])
    before = collector.store.trail_stats()["events"]
    assert send(collector, local, recs[2:5]) == {"acked": 5, "duplicates": 3}
    collector.store.flush()
    [rejected] = kinds(collector.store, "security.rejected")
    assert "replayed batch: records #3..#5" in rejected["payload"]["reason"]
    assert collector.store.trail_stats()["events"] == before + 1
    # a resend from the resume point the collector told, or of everything, is plausible
    collector.state(SERVER)
    send(collector, local, recs)
    collector.store.flush()
    assert len(kinds(collector.store, "security.rejected")) == 1


def test_the_forwarding_servers_own_checkpoints_are_wrapped(writer_at, collector):
    local = local_trail(writer_at, n=3)
    local.checkpoint().result(timeout=30)
    local.flush()
    recs = records(local)
    send(collector, local, recs)
    wrapped = kinds(collector.store, "forward.wrapped")
    assert [w["payload"]["kind"] for w in wrapped] == ["checkpoint"]
    assert wrapped[0]["origin"]["seq"] == recs[-1]["seq"]
    collector.store.checkpoint().result(timeout=30)
    assert collector.store.verify().ok


def test_continuity_notes_within_one_batch():
    from jupyter_audit.collector.protocol import Batch, Forwarded

    def rec(seq, h, prev):
        return Forwarded(seq, b"", h, prev, {}, None)

    head = continuity.Head("t", 2, "b")
    batch = Batch("s/", "t", [rec(3, "c", "b"), rec(4, "d", "c"), rec(6, "f", "e")], 0, False)
    notes = continuity.notes_before("s/", head, batch)
    assert list(notes) == [2] and notes[2][0]["expected_seq"] == 5
    batch = Batch("s/", "t", [rec(3, "c", "x")], 0, False)
    [[note]] = continuity.notes_before("s/", head, batch).values()
    assert note["expected_hash"] == "b" and note["got_hash"] == "x"


def test_a_server_that_falls_silent_is_recorded_and_so_is_its_return(collector):
    collector.silent_after = 60
    collector.state(SERVER)
    collector.state("bob/")
    collector.heard("bob/", stopping=True)  # bob said he was stopping
    collector.tick()
    assert kinds(collector.store, "forward.silent") == []
    # a minute and more without a word (the clock moved, as seen by the collector)
    for server in collector.last_seen:
        collector.last_seen[server] = time.monotonic() - 61
    collector.tick()
    collector.tick()
    collector.store.flush()
    [silent] = kinds(collector.store, "forward.silent")
    assert silent["payload"]["server"] == SERVER and silent["payload"]["silent_for_s"] >= 60
    collector.state(SERVER)
    collector.store.flush()
    [resumed] = kinds(collector.store, "forward.resumed")
    assert resumed["payload"]["server"] == SERVER


def test_the_collector_command_says_what_it_lacks(tmp_path, monkeypatch):
    from helpers.servers import run_cli

    code, _out, err = run_cli("collector")
    assert code == 2 and "give --db PATH or --pg DSN" in err
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    code, _out, err = run_cli("collector", "--db", str(tmp_path / "c.duckdb"), "--port", "1")
    assert code == 2 and "JUPYTERHUB_API_TOKEN is not set" in err
    assert not (tmp_path / "c.duckdb").exists()  # nothing opened before it knows the Hub


def test_one_user_cannot_make_the_collector_track_servers_without_end(collector, monkeypatch):
    from jupyter_audit.collector import service

    monkeypatch.setattr(service, "MAX_SERVERS_PER_USER", 3)
    for name in ("", "a", "b"):
        assert collector.admits(f"alice/{name}")
        collector.state(f"alice/{name}")
    assert not collector.admits("alice/c")
    assert collector.admits("alice/a")  # one it knows
    assert collector.admits("bob/")  # another user's


def test_a_server_cannot_forward_the_collectors_own_notes(writer_at, collector):
    """A server's records of the collector's own kinds (`forward.silent` about another
    server, a `forward.rewrite`, …) would read as the collector's word: they are wrapped."""
    from jupyter_audit.identity.snapshot import system_identity

    local = writer_at("local")
    forged = {
        "server": "bob/",
        "last_seq": 1,
        "last_seen": "2026-01-01T00:00:00+00:00",
        "silent_for_s": 600,
    }
    local.append({"kind": "forward.silent", "identity": system_identity(), "payload": forged})
    note = {"server": "bob/", "trail": "t", "expected_seq": 2, "got_seq": 9}
    local.append({"kind": "forward.gap", "identity": system_identity(), "payload": note})
    local.flush()
    send(collector, local, records(local))
    assert kinds(collector.store, "forward.silent") == []
    assert kinds(collector.store, "forward.gap") == []
    wrapped = kinds(collector.store, "forward.wrapped")
    assert [(w["payload"]["kind"], w["payload"]["payload"]) for w in wrapped] == [
        ("forward.silent", forged),
        ("forward.gap", note),
    ]
    assert all(w["origin"]["server"] == SERVER for w in wrapped)


def forge(rec: dict, **changes) -> dict:
    """A local record with other fields that still proves itself (its user recomputed the
    hash, as anyone who can write their own trail can)."""
    import hashlib

    fields = {**json.loads(rec["record"]), **changes}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(bytes.fromhex(fields["prev_hash"]) + text.encode()).hexdigest()
    return {**rec, "record": text, "hash": digest}


def test_a_forwarded_records_origin_carries_nothing_the_masker_would_catch(writer_at, collector):
    """The origin is copied from the server's record, not from its payload: free text put in
    its time, capped or withheld fields must not reach the collector's trail unmasked."""
    local = local_trail(writer_at, n=1)
    [rec] = records(local)[:1]
    pii = "jane.doe@example.com 4111 1111 1111 1111"
    forged = forge(
        rec,
        time=pii,
        capped=[{"field": f"payload.{pii}", "original_bytes": 9, "note": pii}],
        withheld=[{"field": "payload.sql", "reason": pii}],
    )
    send(collector, local, [forged])
    [stored] = [e for e in writer_events(collector.store) if "origin" in e]
    text = json.dumps(stored, ensure_ascii=False)
    assert "jane.doe@example.com" not in text and "4111 1111" not in text
    assert "time" not in stored["origin"]  # not a time: not carried
    assert stored["origin"]["capped"] and stored["origin"]["withheld"]  # carried, masked
    # a record's own time is carried as it was
    send(collector, local, records(local)[1:2])
    later = [e for e in writer_events(collector.store) if "origin" in e][-1]
    assert later["origin"]["time"] == json.loads(records(local)[1]["record"])["time"]


def test_a_refused_record_is_named_without_its_values(writer_at, collector):
    """The refusal of a record goes to the collector's log, the server and the trail: it
    names the problem, never a value the masker would catch (an unknown kind is a value), and a
    malformed kind is a refusal, not a crash."""
    local = local_trail(writer_at, n=1)
    [rec] = records(local)[:1]
    with pytest.raises(BadBatch, match="unknown event kind") as e:
        send(collector, local, [forge(rec, kind="jane.doe@example.com")])
    assert "jane.doe@example.com" not in str(e.value)
    with pytest.raises(BadBatch, match=r"records\[0\]"):
        send(collector, local, [forge(rec, kind=["op.sql"])])
    assert [e for e in writer_events(collector.store) if "origin" in e] == []


def test_a_trace_namespace_cannot_be_searched_for():
    """A user may name servers of theirs (their own token claims any name): the namespace of
    a server's traces must be too wide to search for a name that shares another's (48 bits
    were a few GPU-hours; then alice's server reads and adds to bob's traces)."""
    alice, bob = trace_in_collector("alice/x", "t"), trace_in_collector("bob/", "t")
    assert alice != bob
    for traced in (alice, bob):
        _fw, tag, rest = traced.split(".", 2)
        assert rest == "t" and len(tag) >= 32 and int(tag, 16) >= 0


def test_a_hub_user_name_with_a_slash_never_names_another_users_server():
    """JupyterHub's own authenticators refuse '/' in user names; a custom one might not. A
    user 'alice/x' would otherwise forward as 'alice/x/' (alice's server named 'x') and
    read its traces: every endpoint refuses such a caller."""
    import asyncio

    from jupyter_audit.collector.hubauth import HubUsers

    class HubAuthStandIn:  # the Hub's answer for the token
        async def user_for_token(self, token, sync=False):
            return {"kind": "user", "name": token, "scopes": [f"access:servers!user={token}"]}

        def check_scopes(self, required, user):
            return True

    users = HubUsers(HubAuthStandIn(), {"access:services!service=jupyter-audit"})
    assert asyncio.run(users.user("alice"))["name"] == "alice"
    with pytest.raises(Refused, match="not a Hub user name") as e:
        asyncio.run(users.user("alice/x"))
    assert e.value.status == 403
