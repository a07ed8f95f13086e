"""Archiving the collector's PostgreSQL trail (docs/archive.md, "The collector's PostgreSQL
trail"): whole partitions written as the one archive format, read back and verified,
recorded as `trail.archived`, then detached and dropped by the maintenance role through the
one function it may call; `verify --pg` and `verify --archive --pg` afterwards; the roles'
refusals; an edited segment; a collector killed between "archived" and "dropped". Real
PostgreSQL (JUPYTER_AUDIT_TEST_PG_DSN, a database and roles per test); skipped without it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from helpers.pg_archive import (
    LATER,
    SIZE,
    archive,
    archived_payloads,
    edit_segment,
    live_range,
    open_store,
    partitions,
    setup_trail,
)
from helpers.stores import dsn_for, refused, role_dsn
from helpers.trail import sql_event

from jupyter_audit.identity.snapshot import system_identity
from jupyter_audit.store.archive_target import ArchiveError, open_target
from jupyter_audit.store.errors import TrailError
from jupyter_audit.store.pg import roles, schema
from jupyter_audit.store.pg.verify import verify_dsn, verify_with_archive

REFUSED = refused()


@pytest.fixture
def trail(pg, pg_role_names, tmp_path):
    """A trail made by pg-setup with partitions of SIZE records; the store opened as the
    writer role, with the maintenance role's DSN; `pg.dsn` stays the superuser's."""
    return setup_trail(pg, pg_role_names, tmp_path)


def test_partitions_are_archived_verified_recorded_and_dropped(trail):
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(230)])
    store.flush()
    last_before = store.seq
    done = archive(store, pg)
    assert done["archived"] == [
        "segment-000000000001-000000000100.parquet",
        "segment-000000000101-000000000200.parquet",
    ]
    assert done["removed"] == done["archived"]
    first, last = live_range(pg)
    assert first == 2 * SIZE + 1 and last > last_before  # + the trail.archived records
    assert "events_p0" not in partitions(pg) and "events_p1" not in partitions(pg)
    recorded = archived_payloads(pg)
    assert [(p["first_seq"], p["last_seq"]) for p in recorded] == [(1, 100), (101, 200)]
    assert all(p["checkpoint_seq"] == p["last_seq"] for p in recorded)
    # the writer goes on appending after the drop; a dropped partition is never made again
    store.append_many([sql_event(i) for i in range(230, 260)])
    store.close()
    assert "events_p0" not in partitions(pg)
    assert pg.sql("SELECT value FROM meta WHERE key = 'archived_upto'") == [("200",)]
    # the live trail alone, anchored by the signed trail.archived
    alone = verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints])
    assert alone.ok, alone.problems
    # archive + live trail as one chain
    target = open_target(str(pg.archive), None)
    both = verify_with_archive(target, pg.reader, checkpoint_files=[pg.checkpoints])
    assert both.ok, both.problems
    assert both.events == live_range(pg)[1]
    # the archive alone, in the one archive format
    from jupyter_audit.store.archive_verify import verify_archive

    assert verify_archive(target, expect_last_seq=200).ok
    # reopened, the store restores its chain after the drop
    store = open_store(pg)
    store.append(sql_event(999))
    store.close()
    assert verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints]).ok


def test_the_cli_verifies_pg_and_archive_with_pg_as_processes(trail, tmp_path):
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    archive(store, pg)
    store.close()
    base = [sys.executable, "-m", "jupyter_audit.cli", "verify", "--checkpoints"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    alone = subprocess.run(
        [*base, str(pg.checkpoints), "--pg", pg.reader, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert alone.returncode == 0, alone.stdout + alone.stderr
    both = subprocess.run(
        [*base, str(pg.checkpoints), "--archive", str(pg.archive), "--pg", pg.reader],
        capture_output=True,
        text=True,
        env=env,
    )
    assert both.returncode == 0, both.stdout + both.stderr
    assert "OK" in both.stdout
    # export and show read the live part of an archived PostgreSQL trail
    out = tmp_path / "live.jsonl"
    export = subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", "export", "--pg", pg.reader, "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert export.returncode == 0, export.stdout + export.stderr
    seqs = [json.loads(line)["seq"] for line in out.read_text().splitlines()]
    assert seqs and min(seqs) == SIZE + 1
    bundle = subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", "verify", "--bundle", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bundle.returncode == 0, bundle.stdout + bundle.stderr
    show = subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", "show", "--pg", pg.reader],
        capture_output=True,
        text=True,
        env=env,
    )
    assert show.returncode == 0, show.stdout + show.stderr
    # an edited archive segment: exit 1, named
    edit_segment(pg.archive / "segment-000000000001-000000000100.parquet", 5)
    bad = subprocess.run(
        [*base, str(pg.checkpoints), "--archive", str(pg.archive), "--pg", pg.reader],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "segment-000000000001-000000000100.parquet" in bad.stdout
    # pg-setup as a process: the partition size is kept in the trail's meta
    with psycopg.connect(pg.admin, autocommit=True) as con:
        con.execute("CREATE SCHEMA other")
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(pg.admin)
    params["options"] = "-c search_path=other"
    other = make_conninfo(**params)
    setup = subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", "pg-setup", "--pg", other]
        + ["--partition-size", "250", "--writer", "ja_w_other_" + os.urandom(4).hex()]
        + ["--reader", "ja_r_other_" + os.urandom(4).hex()]
        + ["--maintenance", "ja_m_other_" + os.urandom(4).hex()],
        capture_output=True,
        text=True,
        env=env,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    with psycopg.connect(other, autocommit=True) as con:
        (size,) = con.execute("SELECT value FROM meta WHERE key = 'partition_size'").fetchone()
        names = [
            r[0]
            for r in con.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'ja\\__\\_other\\_%'"
            ).fetchall()
        ]
        for name in names:
            con.execute(f'DROP OWNED BY "{name}"')
    with psycopg.connect(dsn_for(pg.admin, "postgres"), autocommit=True) as con:
        for name in names:
            con.execute(f'DROP ROLE "{name}"')
    assert size == "250"
    for bad in ("1", "0", "-5", str(10**13)):
        refused = subprocess.run(
            [sys.executable, "-m", "jupyter_audit.cli", "pg-setup", "--pg", other]
            + ["--partition-size", bad],
            capture_output=True,
            text=True,
            env=env,
        )
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "partition size" in refused.stderr or "invalid" in refused.stderr


def test_an_edited_segment_blocks_the_drop(trail):
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    done = archive(store, pg, retention=None)  # archived, nothing leaves yet
    assert done["archived"] and not done["removed"]
    assert live_range(pg)[0] == 1 and archived_payloads(pg) == []
    target = open_target(str(pg.archive), None)
    # archived and still live: the two copies are compared
    assert verify_with_archive(target, pg.reader, checkpoint_files=[pg.checkpoints]).ok
    edit_segment(pg.archive / done["archived"][0], 3)
    found = verify_with_archive(target, pg.reader, checkpoint_files=[pg.checkpoints])
    assert not found.ok and found.first_bad_seq <= 4
    assert done["archived"][0] in found.detail
    with pytest.raises(ArchiveError):
        archive(store, pg)
    store.close()
    assert live_range(pg)[0] == 1 and "events_p0" in partitions(pg)
    assert archived_payloads(pg) == []


def test_roles_refuse_what_is_not_theirs(trail, pg_role_names):
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(250)])
    store.close()
    drop = f"SELECT {schema.DROP_FUNCTION}(1)"
    for who in (pg.writer, pg.reader):
        for attempt in (
            "ALTER TABLE events DETACH PARTITION events_p0",
            "DROP TABLE events_p0",
            drop,
            "DROP FUNCTION jupyter_audit_drop_archived(bigint)",
        ):
            with psycopg.connect(who, autocommit=True) as con, pytest.raises(REFUSED):
                con.execute(attempt)
    with psycopg.connect(pg.maintenance, autocommit=True) as con:
        for attempt in (
            "UPDATE events SET kind = 'op.http' WHERE seq = 5",
            "DELETE FROM events WHERE seq = 5",
            "TRUNCATE events",
            "TRUNCATE events_p0",
            "DELETE FROM events_p0",
            "ALTER TABLE events DETACH PARTITION events_p0",
            "DROP TABLE events_p0",
            "INSERT INTO meta VALUES ('archived_upto', '100')",
            "UPDATE head SET seq = 1000",
            f"SELECT {schema.PARTITION_FUNCTION}(5000)",
        ):
            with pytest.raises(REFUSED):
                con.execute(attempt)
        # an unarchived partition
        with pytest.raises(REFUSED, match="no trail.archived"):
            con.execute(drop)
        # not a partition's first record, a partition after one still live, an unfinished one
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not start a partition"):
            con.execute(f"SELECT {schema.DROP_FUNCTION}(50)")
        with pytest.raises(REFUSED, match="still live"):
            con.execute(f"SELECT {schema.DROP_FUNCTION}(101)")
    # partly archived: the writer (who may INSERT rows) plants trail.archived records that
    # name part of a partition, or its range with another last hash
    store = open_store(pg)
    last_hash = bytes(pg.sql("SELECT hash FROM events WHERE seq = 100")[0][0]).hex()
    for first_seq, last_seq, h in ((1, 50, last_hash), (1, 100, "00" * 32), (1, 150, last_hash)):
        store.record_archived(_fake_archived(first_seq, last_seq, h), system_identity())
    store.close()
    with psycopg.connect(pg.maintenance, autocommit=True) as con:
        with pytest.raises(REFUSED, match="no trail.archived"):
            con.execute(drop)
    assert "events_p0" in partitions(pg)


def _fake_archived(first_seq: int, last_seq: int, last_hash: str) -> dict:
    return {
        "first_seq": first_seq,
        "last_seq": last_seq,
        "last_hash": last_hash,
        "checkpoint_seq": last_seq,
        "file": "segment-x.parquet",
        "sha256": "0" * 64,
        "bytes": 1,
        "archive": "nowhere",
        "frontier": "",
        "traces": {},
        "tokens": {},
    }


def test_the_maintenance_step_drops_only_signed_archives(trail):
    """A trail.archived the trail's key did not sign (planted by the writer role) never
    makes the archiver drop a partition, and verify reports it."""
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    store.flush()
    last_hash = bytes(pg.sql("SELECT hash FROM events WHERE seq = 100")[0][0]).hex()
    forged = {**_fake_archived(1, 100, last_hash), "trail_id": store.trail_id}
    forged["key_id"], forged["signature"] = store.key.key_id, "AAAA"
    store.append({"kind": "trail.archived", "identity": system_identity(), "payload": forged})
    store.flush()
    from jupyter_audit.store.pg import partitions as pg_partitions

    with pytest.raises(TrailError, match="no trail.archived record signed"):
        pg_partitions.drop(pg.maintenance, store.cursor(), store.key, store.trail_id, 100)
    with pytest.raises(TrailError, match="does not verify"):
        archive(store, pg)
    store.close()
    assert "events_p0" in partitions(pg)
    assert not verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints]).ok


def test_a_partition_gone_without_an_archive_or_a_hole_is_reported(trail):
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(330)])
    store.close()
    # a superuser drops the second partition (a hole), then the first (no trail.archived)
    pg.sql("ALTER TABLE events DETACH PARTITION events_p1")
    pg.sql("DROP TABLE events_p1")
    hole = verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints])
    assert not hole.ok and hole.first_bad_seq is not None and hole.first_bad_seq <= 101
    pg.sql("ALTER TABLE events DETACH PARTITION events_p0")
    pg.sql("DROP TABLE events_p0")
    gone = verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints])
    assert not gone.ok
    assert any(p["problem"] == "record_missing" for p in gone.problems)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime, timedelta
    sys.path.insert(0, {tests!r})
    from helpers.stores import PgBackend
    from jupyter_audit.identity.snapshot import system_identity
    from jupyter_audit.store.archive_target import open_target
    from jupyter_audit.store.archiver import run_archive
    from jupyter_audit.store.pg import partitions

    def killed(*a, **k):  # the collector dies after recording, before dropping
        os.kill(os.getpid(), signal.SIGKILL)

    partitions.drop = killed
    b = PgBackend(__import__("pathlib").Path({dir!r}), {dsn!r})
    store = b.new(checkpoint_every=40, maintenance_dsn={maintenance!r}).open()
    run_archive(store, open_target({archive!r}, None, create=True), archive_after=timedelta(0),
                retention=timedelta(0), now=datetime.now(UTC) + timedelta(days=1),
                identity=system_identity())
    """
)


def test_a_collector_killed_between_archived_and_dropped_resumes(trail, tmp_path):
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(230)])
    store.close()
    code = KILLER.format(
        tests=str(Path(__file__).parent),
        dir=str(pg.dir),
        dsn=pg.writer,
        maintenance=pg.maintenance,
        archive=str(pg.archive),
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    recorded = archived_payloads(pg)
    assert [(r["first_seq"], r["last_seq"]) for r in recorded] == [(1, 100), (101, 200)]
    assert live_range(pg)[0] == 1  # recorded, not dropped
    # the next run (a restarted collector) drops them, recording nothing twice
    store = open_store(pg)
    done = archive(store, pg)
    store.close()
    assert live_range(pg)[0] == 201
    assert [(r["first_seq"], r["last_seq"]) for r in archived_payloads(pg)] == [
        (1, 100),
        (101, 200),
    ]
    assert done["kept_from"] == 201
    target = open_target(str(pg.archive), None)
    both = verify_with_archive(target, pg.reader, checkpoint_files=[pg.checkpoints])
    assert both.ok, both.problems
    assert verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints]).ok


def test_the_pg_collector_archives_and_keeps_without_a_maintenance_dsn(trail, tmp_path, caplog):
    import asyncio
    import logging

    from jupyter_audit.collector.app import CollectorApp, start_archiving

    pg = trail
    app = CollectorApp(
        pg_dsn=pg.writer,
        state_dir=str(tmp_path / "state"),
        archive_path=str(pg.archive),
        archive_after="0d",
        checkpoint_every=40,
    )
    caplog.set_level(logging.WARNING, "jupyter_audit.collector")
    store = app.open_store()
    try:
        store.append_many([sql_event(i) for i in range(130)])
        store.flush()
        done = asyncio.run(scheduled_run(start_archiving, app, store))
    finally:
        store.close()
    assert "pg_maintenance_dsn" in caplog.text
    assert done is not None and done["archived"] and not done["removed"]
    assert live_range(pg)[0] == 1 and archived_payloads(pg) == []
    # with the maintenance DSN the next run removes them
    app.pg_maintenance_dsn = pg.maintenance
    store = app.open_store()
    try:
        # a new partition after the kept segment: planned from the archive's frontier
        store.append_many([sql_event(i) for i in range(130, 230)])
        store.flush()
        done = asyncio.run(scheduled_run(start_archiving, app, store))
    finally:
        store.close()
    assert done is not None and done["removed"] == done["archived"]
    assert len(done["archived"]) == 2 and live_range(pg)[0] == 2 * SIZE + 1
    target = open_target(str(pg.archive), None)
    checkpoints = [tmp_path / "state" / "collector.checkpoints"]
    both = verify_with_archive(target, pg.reader, checkpoint_files=checkpoints)
    assert both.ok, both.problems


async def scheduled_run(start_archiving, app, store):
    """One run of the collector's archiving schedule (started as `run` starts it)."""
    import asyncio

    schedule = start_archiving(app, store)
    try:
        return await asyncio.get_running_loop().run_in_executor(None, schedule.run)
    finally:
        schedule.stop()


def test_derived_tables_of_an_archived_trail_are_checked_and_rebuilt(trail):
    """After the drop the live trail alone still checks `trace_users` against the signed
    trail.archived's participants plus the live records' (the writer role may edit the
    derived tables), and a store reopened rebuilds them without losing archived ones."""
    from helpers.trail import BOB

    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i, trace="old") for i in range(120)])
    store.append_many([sql_event(i, trace="new", who=BOB) for i in range(120, 130)])
    archive(store, pg)
    store.close()
    assert live_range(pg)[0] == SIZE + 1
    assert verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints]).ok
    before = sorted(pg.sql("SELECT trace_id, username FROM trace_users"))
    with psycopg.connect(pg.writer, autocommit=True) as con:  # the writer role edits
        con.execute("INSERT INTO trace_users VALUES ('old', 'mallory')")
        con.execute("DELETE FROM trace_users WHERE trace_id = 'new'")
    found = verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints])
    assert not found.ok and found.problems[0]["problem"] == "derived_changed"
    store = open_store(pg)  # rebuilt at open, archived participants kept
    store.close()
    assert sorted(pg.sql("SELECT trace_id, username FROM trace_users")) == before
    assert verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints]).ok


def test_a_drop_waits_for_a_reader_only_briefly_and_tries_again(trail, monkeypatch):
    """An auditor's snapshot holds a lock on the log: the maintenance step gives up after
    its lock timeout (appends are not held behind it) and the next run finishes."""
    from jupyter_audit.store.pg import partitions as pg_partitions

    monkeypatch.setattr(pg_partitions, "LOCK_TIMEOUT_MS", 200)
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    with psycopg.connect(pg.reader) as reader:  # a transaction left open, as verify's
        reader.execute("SELECT count(*) FROM events").fetchone()
        with pytest.raises(TrailError, match="lock"):
            archive(store, pg)
        store.append(sql_event(500))  # the writer is not held up
    assert live_range(pg)[0] == 1
    archive(store, pg)
    store.close()
    assert live_range(pg)[0] == SIZE + 1
    assert [(p["first_seq"], p["last_seq"]) for p in archived_payloads(pg)] == [(1, 100)]


def test_writer_and_maintenance_together_can_drop_but_not_unseen(trail):
    """The one thing the database cannot check is the Ed25519 signature: holding both the
    writer role (to plant a trail.archived naming a partition and its last hash) and the
    maintenance role drops a partition no archive holds. verify reports it."""
    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    store.flush()
    last_hash = bytes(pg.sql("SELECT hash FROM events WHERE seq = 100")[0][0]).hex()
    planted = {**_fake_archived(1, 100, last_hash), "trail_id": store.trail_id}
    planted["key_id"], planted["signature"] = "k", "AAAA"
    store.append({"kind": "trail.archived", "identity": system_identity(), "payload": planted})
    store.close()
    with psycopg.connect(pg.maintenance, autocommit=True) as con:
        con.execute(f"SELECT {schema.DROP_FUNCTION}(1)")
    found = verify_dsn(pg.reader, checkpoint_files=[pg.checkpoints])
    codes = {p["problem"] for p in found.problems}
    assert not found.ok and {"archived_unsigned", "record_missing"} <= codes


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what, check, proc, seconds: float = 120) -> None:
    """Poll the database until `check()` holds (the collector process works on its own
    schedule); fail early if the process died."""
    import time

    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, f"the collector exited while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.2)


def test_the_collector_process_archives_and_resumes_after_a_kill(trail, tmp_path):
    """`jupyter audit collector --pg … --archive-path … --pg-maintenance …` as a real
    process: killed (SIGKILL) after recording trail.archived while its drop waits for a
    reader's lock, then restarted: it drops the partitions, recording nothing twice."""
    pg = trail
    store = open_store(pg)  # the collector's own keys: its state directory is pg.dir
    store.append_many([sql_event(i) for i in range(230)])
    store.close()
    config = tmp_path / "collector_config.py"
    config.write_text(
        "c.CollectorApp.archive_interval = 1\n"
        "c.CollectorApp.archive_after = '0d'\n"
        "c.CollectorApp.retention = '0d'\n"
        "c.CollectorApp.checkpoint_every = 40\n"
    )
    argv = [sys.executable, "-m", "jupyter_audit.cli", "collector", "--pg", pg.writer]
    argv += ["--state-dir", str(pg.dir), "--archive-path", str(pg.archive)]
    argv += ["--pg-maintenance", pg.maintenance, "--config", str(config)]
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "JUPYTERHUB_API_TOKEN": "not-asked-in-this-test",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/jupyter-audit/",
    }

    def start():
        log = open(tmp_path / "collector.log", "ab")  # noqa: SIM115 - the process's
        return subprocess.Popen(
            [*argv, "--port", str(_free_port())], env=env, stdout=log, stderr=log
        )

    def recorded() -> int:
        return len(archived_payloads(pg))

    with psycopg.connect(pg.reader) as reader:  # holds the log's lock: the drop waits
        reader.execute("SELECT count(*) FROM events").fetchone()
        proc = start()
        try:
            _wait_for("trail.archived records", lambda: recorded() == 2, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            # PostgreSQL notices a dead client only when it next talks to it: the killed
            # collector's backend, still waiting for the lock, would finish its (valid) drop
            # once the reader lets go. End it as a crash of the collector's host would.
            pg.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'jupyter-audit%%' AND datname = current_database()"
            )
    assert live_range(pg)[0] == 1 and "events_p0" in partitions(pg)
    proc = start()
    try:
        _wait_for("the drop", lambda: live_range(pg)[0] == 2 * SIZE + 1, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert [(p["first_seq"], p["last_seq"]) for p in archived_payloads(pg)] == [
        (1, 100),
        (101, 200),
    ]
    target = open_target(str(pg.archive), None)
    both = verify_with_archive(target, pg.reader, checkpoint_files=[pg.checkpoints])
    assert both.ok, both.problems


def test_rows_edited_after_verify_are_never_signed_into_the_archive(trail):
    """The partition's checkpoint is signed when its segment is made: rows a superuser
    edits between the archiver's verify and that moment are refused, not signed."""
    from jupyter_audit.store.pg import partitions as pg_partitions

    pg = trail
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    store.flush()
    older = (LATER + timedelta(days=1)).replace(tzinfo=None)
    assert (
        len(pg_partitions.plan(store.cursor(), store.key, store.trail_id, SIZE, 0, older, 0)) == 1
    )
    pg.tamper(
        "UPDATE events SET record = convert_to(replace(convert_from(record, 'UTF8'), "
        "'loans', 'LOANS'), 'UTF8') WHERE seq = 50"
    )
    with pytest.raises(ArchiveError, match="#50 changed"):
        pg_partitions.plan(store.cursor(), store.key, store.trail_id, SIZE, 0, older, 0)
    store.close()


def test_pg_setup_brings_an_earlier_trail_up_to_the_drop_function(pg, pg_role_names):
    """A trail made before partitions could leave (no drop function, no partition size in
    meta) gets both from pg-setup, with the default size; its partitions are untouched."""
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        schema.create(con, partition_size=schema.PARTITION_SIZE)
        con.execute(f"DROP FUNCTION {schema.DROP_FUNCTION}(bigint)")
        con.execute("DELETE FROM meta WHERE key = 'partition_size'")
    roles.setup(pg.dsn, **pg_role_names)
    maintenance = role_dsn(pg, pg_role_names["maintenance"])
    with psycopg.connect(maintenance, autocommit=True) as con:
        with pytest.raises(REFUSED, match="not all there"):
            con.execute(f"SELECT {schema.DROP_FUNCTION}(1)")
    assert partitions(pg) == ["events_p0", "events_p1"]
