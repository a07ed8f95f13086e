"""Review of the collector's PostgreSQL archiving (issue 18): attacks an insider could make on
archived and dropped partitions, each kept closed. Real PostgreSQL (JUPYTER_AUDIT_TEST_PG_DSN,
a database and roles per test; skipped without it), real forwarded trails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers.stores import dsn_for
from helpers.trail import sql_event

from jupyter_audit.collector.protocol import parse_batch
from jupyter_audit.collector.service import Collector
from jupyter_audit.identity.snapshot import system_identity
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder
from jupyter_audit.store.archive_target import open_target
from jupyter_audit.store.archiver import run_archive
from jupyter_audit.store.pg import roles, schema
from jupyter_audit.store.pg.verify import verify_dsn

SIZE = 100  # records a partition
LATER = datetime.now(UTC) + timedelta(days=1)  # every record is older than this


@pytest.fixture
def trail(pg, pg_role_names, tmp_path):
    """A trail made by pg-setup with partitions of SIZE records; `pg.writer`, `.reader`,
    `.maintenance`: the three roles' DSNs; `pg.dsn` stays the superuser's."""
    from psycopg.conninfo import conninfo_to_dict

    roles.setup(pg.dsn, partition_size=SIZE, **pg_role_names)
    db = conninfo_to_dict(pg.dsn)["dbname"]
    for k, name in pg_role_names.items():
        setattr(pg, k, dsn_for(pg.dsn, db, user=name))
    pg.archive = tmp_path / "archive"
    return pg


def open_store(pg):
    """The collector's store, as the writer role, with the maintenance role's DSN."""
    pg.dsn, admin = pg.writer, pg.dsn
    try:
        return pg.make(checkpoint_every=40, maintenance_dsn=pg.maintenance)
    finally:
        pg.dsn = admin


def archive(store, pg) -> dict:
    return run_archive(
        store,
        open_target(str(pg.archive), None, create=True),
        archive_after=timedelta(0),
        retention=timedelta(0),
        now=LATER,
        identity=system_identity(),
    )


def batch(local, server: str, first: int, last: int | None = None):
    recs = Forwarder(local, "http://unused/", None).read_after(first)
    recs = [r for r in recs if last is None or r["seq"] <= last]
    body = {"server": server, "trail": local.trail_id, "records": recs}
    return parse_batch(json.dumps(body).encode())


def origins(pg, server: str) -> list[int]:
    rows = pg.sql("SELECT origin_seq FROM events WHERE origin_server = %s ORDER BY seq", [server])
    return [r[0] for r in rows]


def test_records_resent_after_their_partition_was_dropped_are_held_not_stored_again(
    trail, writer_at
):
    """A server's records forwarded, archived and dropped, then forwarded again (the server
    resends from its start, e.g. after the collector restarted and lost its head with the
    dropped partition): acknowledged as the duplicates they are, never recorded again under
    new seqs, and never failing the batch (nor a batch of another server in its round)."""
    pg = trail
    alice = writer_at("alice")
    alice.append_many([sql_event(i) for i in range(20)])
    bob = writer_at("bob")
    bob.append_many([sql_event(i) for i in range(150)])
    store = open_store(pg)
    collector = Collector(store, Recorder(store))
    collector.ingest("alice/", "alice", batch(alice, "alice/", 1))
    collector.ingest("bob/", "bob", batch(bob, "bob/", 1))
    first_time = origins(pg, "alice/")
    assert (
        first_time
        and max(pg.sql("SELECT seq FROM events WHERE origin_server = 'alice/'"))[0] < SIZE
    )
    done = archive(store, pg)
    assert done["removed"], done
    assert origins(pg, "alice/") == []  # alice's records left with partition 1
    store.close()

    store = open_store(pg)  # the collector restarts: alice's head left with the partition
    collector = Collector(store, Recorder(store))
    assert collector.state("alice/")["seq"] == 0
    answer = collector.ingest("alice/", "alice", batch(alice, "alice/", 1))
    assert answer["duplicates"] == len(first_time)
    assert origins(pg, "alice/") == []  # nothing recorded again
    # alice goes on where she was: her new records continue her stream (no gap noted)
    alice.append_many([sql_event(i) for i in range(20, 25)])
    new = batch(alice, "alice/", first_time[-1] + 1)
    answer = collector.ingest("alice/", "alice", new)
    assert answer["duplicates"] == 0
    assert origins(pg, "alice/") == [r.seq for r in new.records]
    store.flush()
    kinds = {r[0] for r in pg.sql("SELECT kind FROM events")}
    assert "forward.gap" not in kinds and "forward.rewrite" not in kinds
    assert "security.rejected" not in kinds
    store.close()
    assert verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints]).ok


def test_the_writer_role_cannot_plant_an_id_of_an_archived_record(trail, writer_at):
    """Ids of archived records are held as duplicates, so the writer role (which may INSERT
    into event_ids) must not add one: a forwarded record with that id would be acknowledged
    and never stored. The trigger refuses it, even with a `meta` of the writer's own first
    on its search_path."""
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    store.flush()
    archive(store, pg)
    store.close()
    (upto,) = pg.sql("SELECT value FROM meta WHERE key = 'archived_upto'")[0]
    assert int(upto) == SIZE
    with psycopg.connect(pg.writer, autocommit=True) as con:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="archived record"):
            con.execute("INSERT INTO event_ids VALUES ('fw.planted', 5)")
        con.execute("CREATE TEMP TABLE meta (key text, value text)")
        con.execute("SET search_path = pg_temp, public")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="archived record"):
            con.execute("INSERT INTO public.event_ids VALUES ('fw.planted', 7)")
    assert pg.sql("SELECT count(*) FROM event_ids WHERE event_id = 'fw.planted'") == [(0,)]


def test_a_trail_archived_forwarded_by_a_server_never_lets_a_partition_go(trail, writer_at):
    """A Hub user's server forwards a `trail.archived` of its own naming exactly the
    collector's first partition and the hash of its last record: it is recorded wrapped
    (`forward.wrapped`), so the maintenance role's drop function refuses the partition, and
    neither the collector's drop nor verify takes it for the collector's own."""
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(SIZE + 10)])
    store.flush()
    (last_hash,) = pg.sql("SELECT hash FROM events WHERE seq = %s", [SIZE])[0]
    forged = {
        "first_seq": 1,
        "last_seq": SIZE,
        "last_hash": bytes(last_hash).hex(),
        "checkpoint_seq": SIZE,
        "trail_id": store.trail_id,
        "key_id": store.key.key_id,
        "signature": "AAAA",
        "file": "segment-000000000001-000000000100.parquet",
        "sha256": "0" * 64,
        "bytes": 1,
        "archive": "nowhere",
        "frontier": "",
        "traces": {},
        "tokens": {},
    }
    mallory = writer_at("mallory")
    mallory.append({"kind": "trail.archived", "identity": system_identity(), "payload": forged})
    collector = Collector(store, Recorder(store))
    collector.ingest("mallory/", "mallory", batch(mallory, "mallory/", 1))
    kinds = [r[0] for r in pg.sql("SELECT kind FROM events WHERE origin_server = 'mallory/'")]
    assert "forward.wrapped" in kinds and "trail.archived" not in kinds
    with psycopg.connect(pg.maintenance, autocommit=True) as con:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no trail.archived"):
            con.execute(f"SELECT {schema.DROP_FUNCTION}(1)")
    from jupyter_audit.store.errors import TrailError

    with pytest.raises(TrailError, match="no trail.archived record signed"):
        store.compact(SIZE)
    store.close()
    assert pg.sql("SELECT min(seq) FROM events") == [(1,)]
    assert verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints]).ok


def test_a_run_stopped_after_the_segments_were_written_finishes_once(trail, monkeypatch):
    """A run that dies after writing (and reading back) its segments but before recording
    `trail.archived` leaves the partitions live; the next run reads the segments back,
    records each once and drops them; archive + live trail verify as one chain."""
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(2 * SIZE + 10)])
    store.flush()

    def dies(*_a, **_k):
        raise RuntimeError("killed")

    with monkeypatch.context() as m:
        m.setattr(store, "record_archived", dies)
        with pytest.raises(RuntimeError):
            archive(store, pg)
    assert sorted(p.name for p in pg.archive.glob("*.parquet")) == [
        "segment-000000000001-000000000100.parquet",
        "segment-000000000101-000000000200.parquet",
    ]
    assert pg.sql("SELECT min(seq) FROM events") == [(1,)]
    done = archive(store, pg)
    assert len(done["removed"]) == 2
    rows = pg.sql("SELECT record FROM events WHERE kind = 'trail.archived'")
    ranges = sorted(
        (p["first_seq"], p["last_seq"]) for p in (json.loads(bytes(r[0]))["payload"] for r in rows)
    )
    assert ranges == [(1, SIZE), (SIZE + 1, 2 * SIZE)]
    assert archive(store, pg)["removed"] == []  # nothing more to do, nothing recorded twice
    store.close()
    from jupyter_audit.store.pg.verify import verify_with_archive

    both = verify_with_archive(
        open_target(str(pg.archive), None), pg.reader, checkpoint_files=[pg.checkpoints]
    )
    assert both.ok, both.problems


def test_archived_records_resent_from_the_middle_are_held_and_the_stream_goes_on(trail, writer_at):
    """With its head archived away, a server sends a middle run of its archived records (a
    replay, or its own trail archived up to there: its first live record): held, nothing
    stored again, a replay noted (`security.rejected`); the stream stands at the last of
    them and continues from there without a note."""
    pg = trail
    alice = writer_at("alice")
    alice.append_many([sql_event(i) for i in range(20)])
    bob = writer_at("bob")
    bob.append_many([sql_event(i) for i in range(150)])
    store = open_store(pg)
    collector = Collector(store, Recorder(store))
    collector.ingest("alice/", "alice", batch(alice, "alice/", 1))
    collector.ingest("bob/", "bob", batch(bob, "bob/", 1))
    archive(store, pg)
    store.close()
    store = open_store(pg)
    collector = Collector(store, Recorder(store))
    collector.state("alice/")
    replayed = collector.ingest("alice/", "alice", batch(alice, "alice/", 5, 8))
    assert replayed["duplicates"] == 4
    assert origins(pg, "alice/") == []
    store.flush()
    kinds = [r[0] for r in pg.sql("SELECT kind FROM events")]
    assert "security.rejected" in kinds
    gaps = kinds.count("forward.gap")  # the stream had no head: #5 is not #1
    assert collector.state("alice/")["seq"] == 8
    rest = batch(alice, "alice/", 9)
    assert collector.ingest("alice/", "alice", rest)["duplicates"] == len(rest.records)
    alice.append_many([sql_event(i) for i in range(20, 23)])
    new = batch(alice, "alice/", rest.records[-1].seq + 1)
    assert collector.ingest("alice/", "alice", new)["duplicates"] == 0
    assert origins(pg, "alice/") == [r.seq for r in new.records]
    store.flush()
    kinds = [r[0] for r in pg.sql("SELECT kind FROM events")]
    assert kinds.count("forward.gap") == gaps and "forward.rewrite" not in kinds
    store.close()


def test_a_forged_frontier_in_the_archive_is_never_signed_by_the_collector(trail, tmp_path):
    """Someone who can write the archive replaces the segment the live trail continues with
    a copy whose Merkle frontier is forged and re-signed with a key of their own (its
    records, chain and hashes untouched). The collector must not build the next partition's
    checkpoint on it (it would sign a Merkle root no trail has): the archive's frontier is
    checked against the collector's own signed `trail.archived` ending there."""
    import pyarrow as pa

    from jupyter_audit.store.archive import decode_segment, encode_segment
    from jupyter_audit.store.archive_target import ArchiveError
    from jupyter_audit.store.checkpoints import sign_checkpoint
    from jupyter_audit.store.merkle import MerkleFrontier
    from jupyter_audit.store.signing import SigningKey

    pg = trail
    pg.dsn, admin = pg.writer, pg.dsn
    try:  # no checkpoint of the collector's own inside a partition
        store = pg.make(checkpoint_every=10_000, maintenance_dsn=pg.maintenance)
    finally:
        pg.dsn = admin
    store.append_many([sql_event(i) for i in range(2 * SIZE - 1)])
    store.checkpoint()  # #200: the key's only signed checkpoint, archived with its partition
    assert len(archive(store, pg)["removed"]) == 2
    seg = pg.archive / "segment-000000000101-000000000200.parquet"
    seg.chmod(0o644)
    table, meta = decode_segment(seg.read_bytes())
    forged = MerkleFrontier()
    for i in range(SIZE):
        forged.append(bytes([i % 256]) * 32)
    after = forged.copy()
    for rec in table.column("record").to_pylist():
        from hashlib import sha256

        after.append(sha256(b"\x00" + rec).digest())
    mallory = SigningKey.load_or_create(tmp_path / "mallory.pem")
    checkpoint = sign_checkpoint(
        mallory,
        trail_id=meta["trail_id"],
        seq=2 * SIZE,
        last_hash=bytes.fromhex(meta["last_hash"]),
        merkle_root=after.root(),
        tree_size=2 * SIZE,
        time_us=1_700_000_000_000_000,
    )
    seg.write_bytes(
        encode_segment(
            pa.table([table.column("seq"), table.column("record")], names=["seq", "record"]),
            trail_id=meta["trail_id"],
            prev_hash=bytes.fromhex(meta["prev_hash"]),
            last_hash=bytes.fromhex(meta["last_hash"]),
            frontier=forged,
            checkpoint=checkpoint,
            identities=meta["identities"],
        )
    )
    store.append_many([sql_event(i) for i in range(SIZE)])
    store.flush()
    signed_before = pg.sql("SELECT count(*) FROM events WHERE kind = 'trail.archived'")
    with pytest.raises(ArchiveError, match="differs from the file the live trail recorded"):
        archive(store, pg)
    assert pg.sql("SELECT count(*) FROM events WHERE kind = 'trail.archived'") == signed_before
    assert not (pg.archive / "segment-000000000201-000000000300.parquet").exists()
    store.close()


def test_a_segment_planted_ahead_with_a_forged_frontier_is_refused(trail, tmp_path):
    """An auditor who can also write the archive plants the next due partition's segment
    before the collector writes it: the right records (the reader role reads them), chained
    and ending at the live hash, but a forged Merkle frontier signed with a key of their
    own. The collector takes a segment already there for one of its own killed runs, so it
    must check that the segment continues the archive's Merkle frontier: refused, nothing
    recorded, nothing dropped."""
    from hashlib import sha256

    from jupyter_audit.store.archive import encode_segment, identities_of, segment_rows
    from jupyter_audit.store.archive_target import ArchiveError
    from jupyter_audit.store.checkpoints import sign_checkpoint
    from jupyter_audit.store.merkle import MerkleFrontier
    from jupyter_audit.store.signing import SigningKey

    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(SIZE + 10)])
    store.flush()
    assert len(archive(store, pg)["removed"]) == 1
    store.append_many([sql_event(i) for i in range(SIZE)])
    store.flush()
    cur = store.cursor()
    table, last_hash = segment_rows(cur, SIZE + 1, 2 * SIZE)
    forged = MerkleFrontier()
    for i in range(SIZE):
        forged.append(bytes([i % 256]) * 32)
    after = forged.copy()
    for rec in table.column("record").to_pylist():
        after.append(sha256(b"\x00" + rec).digest())
    mallory = SigningKey.load_or_create(tmp_path / "mallory.pem")
    checkpoint = sign_checkpoint(
        mallory,
        trail_id=store.trail_id,
        seq=2 * SIZE,
        last_hash=last_hash,
        merkle_root=after.root(),
        tree_size=2 * SIZE,
        time_us=1_700_000_000_000_000,
    )
    first_archived = pg.archive / "segment-000000000001-000000000100.parquet"
    from jupyter_audit.store.archive import decode_segment

    _t, first_meta = decode_segment(first_archived.read_bytes())
    planted = pg.archive / "segment-000000000101-000000000200.parquet"
    planted.write_bytes(
        encode_segment(
            table,
            trail_id=store.trail_id,
            prev_hash=bytes.fromhex(first_meta["last_hash"]),
            last_hash=last_hash,
            frontier=forged,
            checkpoint=checkpoint,
            identities=identities_of(cur, table),
        )
    )
    signed_before = pg.sql("SELECT count(*) FROM events WHERE kind = 'trail.archived'")
    with pytest.raises(ArchiveError, match="does not link to the record before"):
        archive(store, pg)
    assert pg.sql("SELECT count(*) FROM events WHERE kind = 'trail.archived'") == signed_before
    assert pg.sql("SELECT min(seq) FROM events") == [(SIZE + 1,)]
    store.close()


def test_the_trail_verifies_right_after_partitions_leave_before_any_checkpoint(trail):
    """Partitions smaller than `checkpoint_every` are archived and dropped before the
    collector made any checkpoint: its key must be vouched for by a signed checkpoint in
    the live trail, or an auditor's `verify --pg` (without the checkpoint file) and the next
    archiving run find the `trail.archived` records unsigned and the records before them
    missing."""
    pg = trail
    pg.dsn, admin = pg.writer, pg.dsn
    try:
        store = pg.make(checkpoint_every=10_000, maintenance_dsn=pg.maintenance)
    finally:
        pg.dsn = admin
    store.append_many([sql_event(i) for i in range(2 * SIZE + 10)])
    store.flush()
    assert len(archive(store, pg)["removed"]) == 2
    found = verify_dsn(pg.reader)
    assert found.ok, found.problems
    store.append_many([sql_event(i) for i in range(SIZE)])
    store.flush()
    assert len(archive(store, pg)["removed"]) == 1
    store.close()


def test_the_oldest_segments_deleted_from_the_archive_are_reported(trail):
    """Someone who can write the archive deletes its oldest segment once its partition was
    dropped and the `trail.archived` naming it was itself archived away: `verify --archive
    --pg` still reports the records missing."""
    from jupyter_audit.store.pg.verify import verify_with_archive

    pg = trail
    store = open_store(pg)
    for _ in range(3):
        store.append_many([sql_event(i) for i in range(SIZE)])
        store.flush()
        archive(store, pg)
    store.close()
    (upto,) = pg.sql("SELECT value FROM meta WHERE key = 'archived_upto'")[0]
    assert int(upto) >= 2 * SIZE
    oldest = pg.archive / "segment-000000000001-000000000100.parquet"
    for f in (oldest, oldest.with_suffix(".json")):
        f.chmod(0o644)
        f.unlink()
    found = verify_with_archive(
        open_target(str(pg.archive), None), pg.reader, checkpoint_files=[pg.checkpoints]
    )
    assert not found.ok
    assert any(p["seq"] == 1 for p in found.problems), found.problems


def test_a_duckdb_segment_replaced_before_it_was_recorded_is_refused(writer_at, tmp_path):
    """The same attack on a DuckDB trail (the archiver is one): a segment written by an
    archive-only run, not yet recorded, is replaced by a copy with a forged Merkle frontier
    signed by another key; the run that would record and remove it refuses it."""
    from hashlib import sha256

    from jupyter_audit.store.archive import decode_segment, encode_segment
    from jupyter_audit.store.archive_target import ArchiveError
    from jupyter_audit.store.checkpoints import sign_checkpoint
    from jupyter_audit.store.merkle import MerkleFrontier
    from jupyter_audit.store.signing import SigningKey

    w = writer_at("server", checkpoint_every=100)
    for start in range(0, 300, 50):
        w.append_many([sql_event(i) for i in range(start, start + 50)])
        w.flush()
    where = tmp_path / "duck-archive"

    def run(retention):
        return run_archive(
            w,
            open_target(str(where), None, create=True),
            archive_after=timedelta(0),
            retention=retention,
            now=LATER,
            identity=system_identity(),
            segment_rows=100,
        )

    names = run(None)["archived"]
    assert len(names) >= 2
    seg = where / names[1]
    seg.chmod(0o644)
    table, meta = decode_segment(seg.read_bytes())
    fb = meta["frontier_before"]
    forged = MerkleFrontier()
    for i in range(fb["size"]):
        forged.append(bytes([i % 256]) * 32)
    after = forged.copy()
    for rec in table.column("record").to_pylist():
        after.append(sha256(b"\x00" + rec).digest())
    cp = meta["checkpoint"]
    mallory = SigningKey.load_or_create(tmp_path / "mallory.pem")
    seg.write_bytes(
        encode_segment(
            table,
            trail_id=meta["trail_id"],
            prev_hash=bytes.fromhex(meta["prev_hash"]),
            last_hash=bytes.fromhex(meta["last_hash"]),
            frontier=forged,
            checkpoint=sign_checkpoint(
                mallory,
                trail_id=meta["trail_id"],
                seq=cp["seq"],
                last_hash=bytes.fromhex(cp["hash"]),
                merkle_root=after.root(),
                tree_size=cp["tree_size"],
                time_us=1_700_000_000_000_000,
            ),
            identities=meta["identities"],
        )
    )
    with pytest.raises(ArchiveError, match="does not link to the record before"):
        run(timedelta(0))
    cur = w.cursor()
    assert cur.execute("SELECT count(*) FROM events WHERE kind = 'trail.archived'").fetchone() == (
        0,
    )
    assert cur.execute("SELECT min(seq) FROM events").fetchone() == (1,)


def test_a_segment_planted_ahead_signed_by_another_key_is_refused(trail, tmp_path):
    """The planted segment is right in every record and in its Merkle frontier, but its
    checkpoint is signed by a key of the planter's own: the collector must not vouch for
    that file (its sha256 in a signed `trail.archived`): refused, nothing dropped."""
    from hashlib import sha256

    from jupyter_audit.store.archive import (
        decode_segment,
        encode_segment,
        identities_of,
        segment_rows,
    )
    from jupyter_audit.store.archive_target import ArchiveError
    from jupyter_audit.store.checkpoints import sign_checkpoint
    from jupyter_audit.store.merkle import MerkleFrontier
    from jupyter_audit.store.signing import SigningKey

    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(SIZE + 10)])
    store.flush()
    archive(store, pg)
    store.append_many([sql_event(i) for i in range(SIZE)])
    store.flush()
    cur = store.cursor()
    table, last_hash = segment_rows(cur, SIZE + 1, 2 * SIZE)
    t0, m0 = decode_segment((pg.archive / "segment-000000000001-000000000100.parquet").read_bytes())
    fb = m0["frontier_before"]
    before = MerkleFrontier.from_hex(fb["size"], fb["hashes"])
    for rec in t0.column("record").to_pylist():
        before.append(sha256(b"\x00" + rec).digest())
    after = before.copy()
    for rec in table.column("record").to_pylist():
        after.append(sha256(b"\x00" + rec).digest())
    mallory = SigningKey.load_or_create(tmp_path / "mallory.pem")
    (pg.archive / "segment-000000000101-000000000200.parquet").write_bytes(
        encode_segment(
            table,
            trail_id=store.trail_id,
            prev_hash=bytes.fromhex(m0["last_hash"]),
            last_hash=last_hash,
            frontier=before,
            checkpoint=sign_checkpoint(
                mallory,
                trail_id=store.trail_id,
                seq=2 * SIZE,
                last_hash=last_hash,
                merkle_root=after.root(),
                tree_size=2 * SIZE,
                time_us=1_700_000_000_000_000,
            ),
            identities=identities_of(cur, table),
        )
    )
    signed_before = pg.sql("SELECT count(*) FROM events WHERE kind = 'trail.archived'")
    with pytest.raises(ArchiveError, match="signed by another key"):
        archive(store, pg)
    assert pg.sql("SELECT count(*) FROM events WHERE kind = 'trail.archived'") == signed_before
    assert pg.sql("SELECT min(seq) FROM events") == [(SIZE + 1,)]
    store.close()
