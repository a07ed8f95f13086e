"""The Writer: validation, masking, caps, gap-free chain, derived tables, crash safety."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest
from helpers.servers import REPO
from helpers.trail import ALICE, BOB, sql_event

from jupyter_audit.events import EventValidationError
from jupyter_audit.store.chain import chain_rows
from jupyter_audit.store.queries import list_traces, rebuild_derived
from jupyter_audit.store.verify import verify_path


def records(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [
            json.loads(r[0])
            for r in con.execute("SELECT record FROM events ORDER BY seq").fetchall()
        ]
    finally:
        con.close()


def test_appends_are_sequenced_chained_and_verifiable(make_writer, trail_dir):
    w = make_writer()
    results = w.append_many([sql_event(i) for i in range(50)])
    seqs = [r.seq for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + 50))
    w.close()
    assert verify_path(trail_dir / "trail.duckdb").ok
    recs = records(trail_dir / "trail.duckdb")
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert recs[0]["kind"] == "trail.integrity" and recs[0]["payload"]["ok"] is True
    assert recs[-1]["kind"] == "checkpoint"  # signed at shutdown


@pytest.mark.parametrize(
    "event, message",
    [
        ({"kind": "op.nope", "payload": {}}, "unknown event kind 'op.nope'"),
        ({"kind": "op.sql", "payload": {"driver": "x"}}, "payload.statement is required"),
        (
            {"kind": "op.sql", "payload": {"driver": "x", "statement": 5}},
            "payload.statement must be string",
        ),
        (
            {"kind": "op.sql", "payload": {"driver": "x", "statement": "s", "rowcount": "1"}},
            "payload.rowcount must be",
        ),
        ({"kind": "op.shell", "payload": {"command": "ok", "out": b"\xff\xfe"}}, "not valid UTF-8"),
        ({"kind": "op.shell", "payload": {"command": "ok", "x": "\ud800"}}, "not valid UTF-8"),
        ({"kind": "op.shell", "payload": {"command": "ok"}, "trace_id": "a b"}, "trace_id"),
        ({"kind": "op.shell", "payload": {"command": "ok"}, "bogus": 1}, "unknown event fields"),
        ({"kind": "op.shell", "payload": "nope"}, "payload must be an object"),
        ("not an event", "an event must be an object"),
        ({"kind": "op.shell", "payload": {"command": "x"}, "identity": {"email": "a"}}, "username"),
    ],
)
def test_malformed_events_are_refused_and_nothing_else_is_lost(make_writer, event, message):
    w = make_writer()
    before = w.append(sql_event(1))
    with pytest.raises(EventValidationError, match=message):
        w.submit(event)
    after = w.append(sql_event(2))
    assert after.seq == before.seq + 1  # no gap, nothing lost


def test_fifty_megabyte_field_is_capped_with_size_and_hash(make_writer, trail_dir):
    import hashlib

    w = make_writer(max_field_bytes=1 << 20)
    big = ("SELECT 1; -- " + "x" * 100 + "\n") * (50 * 1024 * 1024 // 114)
    w.append({"kind": "op.sql", "identity": ALICE, "payload": {"driver": "d", "statement": big}})
    w.append(sql_event(3))
    w.close()
    recs = records(trail_dir / "trail.duckdb")
    capped = next(r for r in recs if r["capped"])
    info = capped["capped"][0]
    assert info["field"] == "payload.statement"
    assert info["original_bytes"] == len(big.encode())
    assert info["sha256"] == hashlib.sha256(big.encode()).hexdigest()
    assert len(capped["payload"]["statement"].encode()) <= (1 << 20) + 20
    assert any(r["kind"] == "op.sql" and r["payload"].get("params") == [3] for r in recs)
    assert verify_path(trail_dir / "trail.duckdb").ok


def test_every_field_is_masked_before_storage(make_writer, trail_dir):
    w = make_writer()
    w.append(
        {
            "kind": "op.sql",
            "identity": ALICE,
            "notebook": "clients/jane.doe@example.com.ipynb",
            "payload": {
                "driver": "postgresql",
                "database": "postgresql://app:hunter2@db.internal/prod",
                "statement": "SELECT * FROM t WHERE email = 'jane.doe@example.com'",
                "params": {"card": "4111 1111 1111 1111", "password": "s3cret-pw"},
            },
        }
    )
    w.close()
    raw = (trail_dir / "trail.duckdb").read_bytes()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True)
    text = " ".join(
        bytes(r[0]).decode() for r in con.execute("SELECT record FROM events").fetchall()
    )
    con.close()
    for secret in ("jane.doe@example.com", "hunter2", "4111 1111 1111 1111", "s3cret-pw"):
        assert secret not in text
        assert secret.encode() not in raw
    assert "‹EMAIL:" in text and "‹SECRET:" in text


def test_identity_snapshots_stored_once_by_hash(make_writer, trail_dir):
    w = make_writer()
    w.append_many([sql_event(i, who=ALICE if i % 2 else BOB) for i in range(20)])
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True)
    users = sorted(r[0] for r in con.execute("SELECT username FROM identities").fetchall())
    con.close()
    assert users.count("alice") == 1 and users.count("bob") == 1


def test_identities_are_remembered_by_their_exact_json():
    """Identity snapshots are memoised by the submitted object's JSON: an equal identity
    hits, while one differing only in a value's type (True vs 1) or a nested list does not
    share its entry; values other than strings, None and lists of strings (a set, NaN) are
    normalised without being memoised."""
    from jupyter_audit.store.records import _identity

    a = _identity({"username": "alice", "groups": ["x", "y"]})
    assert _identity({"username": "alice", "groups": ["x", "y"]}) is a
    assert _identity({"username": "alice", "groups": ["x"]})[1] != a[1]
    assert _identity({"username": "alice", "groups": ["x", "y"], "display_name": None})[1] == a[1]
    assert _identity({"username": "alice", "groups": {"y", "x"}})[1] == a[1]
    assert (
        _identity({"username": "alice", "email": float("nan")})[1]
        != (_identity({"username": "alice", "email": None})[1])
    )  # NaN and None have one JSON, not one snapshot
    with pytest.raises(EventValidationError, match="identity"):
        _identity(["alice"])


def test_derived_tables_rebuild_to_the_same_state(make_writer, trail_dir):
    w = make_writer()
    for t in range(5):
        w.append_many(
            [sql_event(i, trace=f"trace-{t}", who=BOB if t == 2 else ALICE) for i in range(7)]
        )
    for i in range(6):  # one event per commit: known traces take the UPDATE path
        w.append(sql_event(100 + i, trace=f"trace-{i % 3}", who=BOB if i % 3 == 2 else ALICE))
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"))
    before = list_traces(con, limit=100)
    rebuild_derived(con)
    after = list_traces(con, limit=100)
    con.close()
    strip = [{k: v for k, v in t.items() if k != "started_at" and k != "last_at"} for t in before]
    assert strip == [
        {k: v for k, v in t.items() if k not in ("started_at", "last_at")} for t in after
    ]
    assert [t["trace_id"] for t in before][0] == "trace-2"
    assert next(t for t in before if t["trace_id"] == "trace-2")["users"] == ["bob"]
    assert {t["trace_id"]: t["operations"] for t in before} == {
        "trace-0": 9,
        "trace-1": 9,
        "trace-2": 9,
        "trace-3": 7,
        "trace-4": 7,
    }


def test_failed_commit_acknowledges_nothing_and_keeps_the_chain(make_writer, trail_dir):
    w = make_writer()
    w.append(sql_event(1))
    seq_before = w.seq
    real = w._con

    class Broken:
        def __getattr__(self, name):
            return getattr(real, name)

        def from_arrow(self, table):
            if "record" in table.column_names:  # the insert into events
                raise duckdb.IOException("No space left on device")
            return real.from_arrow(table)

    w._con = Broken()
    fut = w.submit(sql_event(2))
    # a client id sent twice: the repeat is not acknowledged when its first copy failed
    first, repeat = (w.submit({**sql_event(9), "event_id": "9" * 32}) for _ in range(2))
    for f in (fut, first, repeat):
        with pytest.raises(Exception, match="No space left on device|not stored"):
            f.result(timeout=10)
    w._con = real
    assert w.seq == seq_before
    assert w.append(sql_event(3)).seq == seq_before + 1
    w.close()
    assert verify_path(trail_dir / "trail.duckdb").ok


def test_client_event_ids_are_stored_exactly_once(make_writer, trail_dir):
    """Kernels retry batches and re-send spools: an event id the trail holds is acknowledged
    with its first record and not stored again, whether it comes back alone, inside a batch
    of new events (the batch is first tried without looking ids up; the primary key refuses
    it, then the held ids are dropped) or twice within one batch."""

    def ev(i):
        return {**sql_event(i), "event_id": f"{i:032x}"}

    w = make_writer()
    first = w.submit_batch([ev(i) for i in range(5)]).result(timeout=10)
    assert not any(r.duplicate for r in first)
    seq_of = {r.event_id: r.seq for r in first}

    again = w.submit_batch([ev(3), ev(5), ev(1), ev(6), ev(5)]).result(timeout=10)
    assert [(r.event_id, r.duplicate) for r in again] == [
        (f"{3:032x}", True),
        (f"{5:032x}", False),
        (f"{1:032x}", True),
        (f"{6:032x}", False),
        (f"{5:032x}", True),  # repeated within the batch
    ]
    assert again[0].seq == seq_of[f"{3:032x}"] and again[2].seq == seq_of[f"{1:032x}"]
    assert again[4].seq == again[1].seq  # a repeat gets its first copy's record
    alone = w.append(ev(2))
    assert alone.duplicate and alone.seq == seq_of[f"{2:032x}"]
    new = w.append(ev(7))
    assert not new.duplicate and new.seq == again[3].seq + 1  # no gap left by the retries
    w.close()
    stored = [r["event_id"] for r in records(trail_dir / "trail.duckdb") if r["kind"] == "op.sql"]
    assert stored == [f"{i:032x}" for i in (0, 1, 2, 3, 4, 5, 6, 7)]
    assert verify_path(trail_dir / "trail.duckdb").ok


def test_events_submitted_raw_are_prepared_by_the_writer_thread(make_writer, trail_dir, caplog):
    """`submit_later`: raw events with the ids chosen for them are validated and masked on
    the writer thread, in submission order; one that fails is stored as its fallback, and
    one whose fallback fails too is logged and not stored, the others unharmed."""
    w = make_writer(prepare_workers=0)
    good = [sql_event(i) for i in range(3)]
    bad = {"kind": "op.sql", "identity": ALICE, "payload": {"driver": "x", "statement": 5}}
    worse = {"kind": "op.sql", "identity": BOB, "payload": {"driver": "x", "statement": 6}}
    events = [good[0], bad, good[1], worse, good[2]]
    ids = [f"{i:032x}" for i in range(len(events))]
    seen = []

    def fallback(event, error):
        seen.append(str(error))
        if event is worse:
            raise EventValidationError("the fallback fails too")
        return {**event, "flags": ["unstorable"], "payload": {"driver": "x", "statement": "?"}}

    results = w.submit_later(events, ids, fallback).result(timeout=30)
    assert [r.event_id for r in results] == [ids[0], ids[1], ids[2], ids[4]]
    assert seen == ["op.sql: payload.statement must be string, not int"] * 2
    assert "op.sql event not stored: the fallback fails too" in caplog.text
    assert w.submit_later([], [], fallback).result(timeout=5) == []
    w.close()
    recs = [r for r in records(trail_dir / "trail.duckdb") if r["kind"] == "op.sql"]
    assert [r["event_id"] for r in recs] == [ids[0], ids[1], ids[2], ids[4]]
    assert recs[1]["flags"] == ["unstorable"] and recs[1]["payload"]["statement"] == "?"
    assert "alice@example.org" not in json.dumps(recs)  # masked like any other event
    assert verify_path(trail_dir / "trail.duckdb").ok
    con = duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM client_events").fetchone()[0] == 0  # not clients'
    con.close()


def test_an_unexpected_error_preparing_a_raw_batch_costs_no_other_event(
    make_writer, trail_dir, monkeypatch, caplog
):
    """Not a validation error but a bug while preparing a `submit_later` batch: its events
    are prepared one by one, and only the one that fails goes to the fallback."""
    w = make_writer(prepare_workers=0)

    def broken(events, event_ids=None):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(w, "prepare_many", broken)
    events = [sql_event(i) for i in range(3)]
    events[1] = {**events[1], "payload": {"driver": "x", "statement": 5}}  # invalid
    ids = [f"{i:032x}" for i in range(3)]
    fallbacks = []

    def fallback(event, error):
        fallbacks.append(type(error).__name__)
        return {**event, "flags": ["unstorable"], "payload": {"driver": "x", "statement": "?"}}

    results = w.submit_later(events, ids, fallback).result(timeout=30)
    assert [r.event_id for r in results] == ids
    assert fallbacks == ["EventValidationError"]
    assert "preparing its events one by one" in caplog.text


def test_key_rotation_is_signed_by_the_old_key(make_writer, trail_dir):
    from jupyter_audit.store.signing import SigningKey

    w = make_writer(checkpoint_every=5)
    w.append_many([sql_event(i) for i in range(12)])
    old_pub = trail_dir / "old.pub"
    old_pub.write_bytes(w.key.public_pem())
    w.rotate_key(SigningKey.generate())
    w.append_many([sql_event(i) for i in range(12)])
    w.close()
    r = verify_path(trail_dir / "trail.duckdb", trusted_keys=[_pub(old_pub)])
    assert r.ok, r
    assert r.checkpoint["key_id"] == w.key.key_id


def _pub(path):
    from jupyter_audit.store.signing import load_public

    return load_public(path.read_bytes())


def test_reopened_broken_trail_records_integrity_and_writes_past_the_damage(make_writer, trail_dir):
    w = make_writer()
    w.append_many([sql_event(i) for i in range(30)])
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"))
    con.execute("DELETE FROM events WHERE seq = 10")
    last = con.execute("SELECT max(seq) FROM events").fetchone()[0]
    con.close()
    w2 = make_writer()
    assert w2.integrity.ok is False and w2.integrity.first_bad_seq == 10
    w2.append(sql_event(99))
    w2.close()
    recs = records(trail_dir / "trail.duckdb")
    integrity = [r for r in recs if r["kind"] == "trail.integrity"][-1]
    assert integrity["seq"] == last + 1
    assert integrity["payload"]["ok"] is False
    assert integrity["payload"]["first_bad_seq"] == 10
    assert integrity["payload"]["problem"] == "record missing"
    r = verify_path(trail_dir / "trail.duckdb")
    assert (r.ok, r.first_bad_seq) == (False, 10)  # the damage stays visible


CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from helpers.trail import sql_event
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer
    d = {d!r}
    w = Writer(d + "/trail.duckdb", MaskingEngine(load_or_create_key(d + "/masking.key")),
               SigningKey.load_or_create(d + "/signing-key.pem"), checkpoint_every=500).open()
    i = 0
    while True:
        res = w.submit_batch([sql_event(i + k) for k in range(50)]).result()
        i += 50
        print(res[-1].seq, flush=True)
    """
)


def test_kill_9_loses_no_acknowledged_event(trail_dir):
    script = CRASH_SCRIPT.format(repo=str(REPO / "tests"), d=str(trail_dir))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    acked = 0
    deadline = time.monotonic() + 120
    while acked < 3000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acked >= 3000, "writer did not get going"
    r = verify_path(trail_dir / "trail.duckdb")
    assert r.ok, r
    assert r.last_seq >= acked
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    # the next server continues the chain where the crashed one stopped
    w = Writer(
        trail_dir / "trail.duckdb",
        MaskingEngine(load_or_create_key(trail_dir / "masking.key")),
        SigningKey.load_or_create(trail_dir / "signing-key.pem"),
    ).open()
    assert w.integrity.ok
    w.append(sql_event(1))
    w.close()
    assert verify_path(trail_dir / "trail.duckdb").ok


def test_large_intact_trail_verifies(make_writer, trail_dir):
    w = make_writer()
    batch = 5000
    for start in range(0, 100_000, batch):
        w.submit_batch([sql_event(i, trace=f"t{i % 40}") for i in range(start, start + batch)])
    w.flush(timeout=600)
    w.close()
    r = verify_path(trail_dir / "trail.duckdb")
    assert r.ok, r
    assert r.events >= 100_000


def test_format_version_migrates_forward(make_writer, trail_dir, monkeypatch):
    """A trail written by format N is migrated (inside one transaction) by a reader that
    knows format N+1, and is then refused by format N readers with a clear message."""
    from jupyter_audit.store import schema
    from jupyter_audit.store.errors import TrailError
    from jupyter_audit.store.schema import open_readable

    now = schema.FORMAT_VERSION
    w = make_writer()
    w.append(sql_event(1))
    w.close()
    monkeypatch.setattr(schema, "FORMAT_VERSION", now + 1)
    monkeypatch.setitem(schema.MIGRATIONS, now, ["ALTER TABLE traces ADD COLUMN labels VARCHAR"])
    w2 = make_writer()
    w2.append(sql_event(2))
    w2.close()
    con, meta = open_readable(trail_dir / "trail.duckdb")
    cols = [r[0] for r in con.execute("DESCRIBE traces").fetchall()]
    con.close()
    assert meta["format_version"] == str(now + 1) and "labels" in cols
    monkeypatch.setattr(schema, "FORMAT_VERSION", now)
    with pytest.raises(TrailError, match=f"unknown trail format version {now + 1}"):
        open_readable(trail_dir / "trail.duckdb")
    monkeypatch.setattr(schema, "FORMAT_VERSION", now + 1)
    assert verify_path(trail_dir / "trail.duckdb").ok


def test_format_1_trail_gains_the_service_token_table(make_writer, trail_dir):
    """Format 1 (before service accounts) opens under format 2: the token table is added."""
    from jupyter_audit.store.schema import connect

    w = make_writer()
    w.append(sql_event(1))
    w.close()
    con = connect(trail_dir / "trail.duckdb")
    con.execute("DROP TABLE service_tokens")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    con.close()
    w2 = make_writer()
    w2.append(sql_event(2))
    assert w2.cursor().execute("SELECT count(*) FROM service_tokens").fetchone() == (0,)
    w2.close()
    assert verify_path(trail_dir / "trail.duckdb").ok


# Fast paths of prepare() give exactly what the general code gives ---------------------------

_scalars = (
    None,
    True,
    False,
    0,
    -7,
    2**53 - 1,
    2**53,
    -(2**60),
    1.5,
    "",
    "text",
    "é€",
    "\U0001f600",
    "\ud800",
    b"bytes",
    b"\xff",
    "x" * 40,
)


def _json_like():
    from hypothesis import strategies as st

    keys = st.sampled_from(["a", "b", "password", "é", "\U0001f600k", "\ufb33", "k" * 30])
    return st.recursive(
        st.sampled_from(_scalars) | st.text(max_size=20) | st.integers(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.lists(children, max_size=3).map(tuple)
            | st.dictionaries(keys, children, max_size=4)
            | st.dictionaries(st.integers(), children, max_size=1)
        ),
        max_leaves=15,
    )


def test_normal_form_check_agrees_with_normalise():
    """`_is_normal` says True only for values `_normalise` returns unchanged, with the same
    size and key flags (and does say True for values already in normal form); anything else
    goes through `_normalise` itself."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from jupyter_audit.store.records import _is_normal, _normalise, _Walk

    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
    keys = text | st.sampled_from(["\U0001f600k", "\ufb33", "a"])
    normal = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | text,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=4),
        max_leaves=15,
    )

    def walks(value, cap):
        fast, slow = _Walk(), _Walk()
        ok = _is_normal(value, 0, cap, fast)
        if ok:
            assert _normalise(value, "payload", 0, cap, slow) == value
            assert (fast.oversize, fast.astral) == (slow.oversize, slow.astral)
        return ok

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.dictionaries(keys, normal, max_size=5), st.sampled_from([4, 8, 1 << 20]))
    def check_normal(value, cap):
        assert walks(value, cap)

    @settings(max_examples=400, deadline=None, database=None)
    @given(
        st.dictionaries(st.text(max_size=5), _json_like(), max_size=5),
        st.sampled_from([8, 1 << 20]),
    )
    def check_any(value, cap):
        walks(value, cap)

    check_normal()
    check_any()


def test_payload_validation_fast_path_agrees_with_the_full_check():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from jupyter_audit.events import REGISTRY, _validate, validate_payload

    fields = sorted({n for spec in REGISTRY.values() for n in spec["fields"]}) + ["extra"]

    def outcome(fn, *args):
        try:
            return fn(*args)
        except EventValidationError as e:
            return str(e)

    @settings(max_examples=600, deadline=None, database=None)
    @given(
        st.sampled_from(sorted(REGISTRY) + ["op.nope"]),
        st.dictionaries(st.sampled_from(fields), _json_like(), max_size=6) | _json_like(),
    )
    def check(kind, payload):
        assert outcome(validate_payload, kind, payload) == outcome(
            _validate, REGISTRY.get(kind), kind, payload
        )

    check()


def test_payload_encoder_is_canonical_bytes():
    import rfc8785
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from jupyter_audit.store.canonical import canonical_bytes
    from jupyter_audit.store.records import _jcs_bmp

    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
    values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | text,
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                text.filter(lambda k: all(ord(ch) <= 0xFFFF for ch in k)), c, max_size=4
            )
        ),
        max_leaves=20,
    )

    @settings(max_examples=400, deadline=None, database=None)
    @given(values)
    def check(value):
        assert _jcs_bmp(value) == canonical_bytes(value, astral_keys=False) == rfc8785.dumps(value)

    check()


def test_payload_encoder_agrees_with_jcs_on_every_code_point():
    """The payload encoder in use is orjson's (sorted keys): the same bytes as JCS for every
    character a stored text can hold, in keys and in values."""
    import rfc8785

    from jupyter_audit.store.canonical import canonical_bytes
    from jupyter_audit.store.records import _jcs_bmp

    assert "dumps" in _jcs_bmp.__code__.co_freevars  # orjson, not a fallback
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # lone surrogates never reach the encoder
        c = chr(cp)
        value = {"z": [c, 1], "k" + (c if cp <= 0xFFFF else ""): "a" + c + "b"}
        assert _jcs_bmp(value) == canonical_bytes(value, astral_keys=False), hex(cp)
        if cp % 97 == 0:
            assert _jcs_bmp(value) == rfc8785.dumps(value), hex(cp)


def test_stored_records_are_the_spliced_canonical_bytes(make_writer, trail_dir):
    """What the Writer stores is `encode_record` of the prepared event, which is JCS."""
    import rfc8785

    from jupyter_audit.store.records import encode_record

    w = make_writer()
    events = [
        sql_event(1),
        {**sql_event(2), "notebook": "Grüße/ünï.ipynb", "flags": ["b", "a", "b"]},
        {**sql_event(3), "event_id": "client-ev-3", "session_id": "s-1", "kernel_time": "t-9"},
        {"kind": "op.shell", "payload": {"command": "echo é €", "extra": {"\U0001f600": 1}}},
    ]
    prepared = [w.prepare(e) for e in events]
    results = w.submit_batch(prepared).result(timeout=60)
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True)
    rows = {r.seq: (r.record, r.prev_hash) for r in chain_rows(con)}
    con.close()
    for p, r in zip(prepared, results, strict=True):
        raw, prev = rows[r.seq]
        time_iso = json.loads(raw)["time"]
        assert raw == encode_record(p, r.seq, prev.hex(), time_iso, 1)
        assert raw == rfc8785.dumps(json.loads(raw))
    assert verify_path(trail_dir / "trail.duckdb").ok


def test_server_event_ids_are_unique_and_unpredictable():
    """Ids the server chooses (the gateway stamps them on cells, where the kernel sees
    them): 32 hex digits, never repeated, not a visible counter, a fresh key in a fork."""
    import re

    from jupyter_audit.store.records import new_event_id

    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len({i[:8] for i in ids}) > 19_000  # no shared prefix, no visible counter
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, new_event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    os.close(r)
    os.close(w)
    assert child not in ids and child != new_event_id()


def test_a_log_line_names_a_bugs_type_not_its_text(make_writer, caplog):
    """An error that is not a validation error may quote the value it choked on: the log
    line about a raw event that could not be stored shows only its type."""
    w = make_writer(prepare_workers=0)

    def fallback(event, error):
        raise RuntimeError("cannot mask carol@example.org")

    bad = {"kind": "op.sql", "identity": ALICE, "payload": {"driver": "x", "statement": 5}}
    assert w.submit_later([bad], ["0" * 32], fallback).result(timeout=30) == []
    assert "op.sql event not stored: RuntimeError" in caplog.text
    assert "carol" not in caplog.text


def test_the_writer_is_a_trail_store_and_answers_its_read_verbs(make_writer, trail_dir):
    """The DuckDB Writer implements `base.TrailStore`: what callers ask of a trail, reads
    included, through the store rather than its cursor."""
    from jupyter_audit.store.base import TrailStore

    w = make_writer()
    assert isinstance(w, TrailStore)
    w.append_many([sql_event(i, trace="trace-a") for i in range(3)])
    w.append(sql_event(9, trace="trace-b", who=BOB))
    w.checkpoint().result(timeout=60)
    assert w.trail_stats() == {"events": 6, "last_seq": 6}  # two integrity/checkpoint events
    assert [t["trace_id"] for t in w.list_traces()] == ["trace-b", "trace-a"]
    assert [t["trace_id"] for t in w.list_traces(username="bob")] == ["trace-b"]
    assert w.get_trace_summary("trace-a")["events"] == 3
    assert w.get_trace_summary("nothing") is None
    events = w.get_trace_events("trace-a")
    assert [e["op_index"] for e in events] == [0, 1, 2]
    result = w.verify(deep=True)
    assert result.ok and result.checkpoints_checked >= 2
    bundle = w.build_bundle(trace="trace-b")
    assert [r["trace_id"] for r in bundle["records"]] == ["trace-b"]
    assert bundle["checkpoint"]["seq"] == 5 and bundle["uncovered"] == []


def test_a_live_verify_while_batches_are_stored_sees_one_moment(make_writer):
    """Checks that read the trail at different moments saw the high-water mark, the row
    counts and the derived rows of different batches, and reported tampering that was not
    there (found as a flaky `verify` in a test with a kernel running)."""
    import threading

    w = make_writer()
    w.append_many([sql_event(i) for i in range(200)])
    stop = threading.Event()

    def write():
        i = 0
        while not stop.is_set():
            w.append_many([sql_event(i + k) for k in range(20)])
            i += 20

    writer = threading.Thread(target=write)
    writer.start()
    try:
        results = [w.verify() for _ in range(25)]
    finally:
        stop.set()
        writer.join()
    problems = [p for r in results for p in r.problems]
    assert problems == [] and all(r.ok for r in results)
    w.close()
