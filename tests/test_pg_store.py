"""What only the PostgreSQL trail has: its roles (the writer cannot change or remove the
log, the reader cannot write), the append-only trigger, partitions made by a function the
writer does not own, one writer at a time, an unreachable server, a connection lost
mid-stream, and tampering with its columns, identities and derived tables. Real PostgreSQL
(JUPYTER_AUDIT_TEST_PG_DSN, a database per test); skipped without it."""

from __future__ import annotations

import psycopg
import pytest
from helpers.stores import PgBackend, as_role, refused, role_dsn
from helpers.trail import ALICE, BOB, sql_event

from jupyter_audit.store.errors import TrailError, TrailLockedError, TrailWriteError
from jupyter_audit.store.pg import roles, schema

REFUSED = refused()


def test_the_writer_role_appends_but_cannot_change_or_remove_the_log(pg, pg_role_names):
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        schema.create(con, partition_size=50)  # so that appends cross partitions
    roles.setup(pg.dsn, **pg_role_names)
    pg.dsn, admin = role_dsn(pg, pg_role_names["writer"]), pg.dsn
    s = pg.make()  # the collector's store, as the writer role
    s.append_many([sql_event(i) for i in range(120)])
    s.close()
    pg.dsn = admin
    assert pg.verify().ok
    partitions = pg.sql(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    )
    assert len(partitions) >= 3
    assert all(owner != pg_role_names["writer"] for _name, owner in partitions)
    attempts = [
        "UPDATE events SET kind = 'op.http' WHERE seq = 5",
        "DELETE FROM events WHERE seq = 5",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE events DETACH PARTITION events_p0",
        "DROP TABLE events",
        "UPDATE events_p0 SET kind = 'op.http' WHERE seq = 5",
        "DELETE FROM events_p0",
        "TRUNCATE events_p0",
        "DROP TABLE events_p0",
        "DELETE FROM event_ids",
        "UPDATE identities SET username = 'mallory'",
        "DROP FUNCTION jupyter_audit_partitions(bigint)",
        "SET session_replication_role = replica",
    ]
    with as_role(pg, pg_role_names["writer"]) as con:
        for statement in attempts:
            with pytest.raises(REFUSED):
                con.execute(statement)
    with as_role(pg, pg_role_names["reader"]) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 121 + 1
        for statement in (
            "INSERT INTO event_ids VALUES ('x', 1)",
            "UPDATE head SET seq = 0",
            "DELETE FROM traces",
            "SELECT jupyter_audit_partitions(10000)",
        ):
            with pytest.raises(REFUSED):
                con.execute(statement)
    assert pg.verify().ok  # nothing the attempts did stuck


def test_the_trigger_refuses_even_the_owner(pg):
    s = pg.make()
    s.append(sql_event(1))
    s.close()
    with psycopg.connect(pg.dsn, autocommit=True) as con:  # the superuser who owns it all
        for statement in (
            "UPDATE events SET kind = 'x' WHERE seq = 1",
            "DELETE FROM events WHERE seq = 1",
            "TRUNCATE events",
            "TRUNCATE events_p0",
            "DELETE FROM identities",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                con.execute(statement)
    # switched off, which only a superuser can do, it no longer stops an edit: verify does
    pg.tamper("ALTER TABLE events DISABLE TRIGGER events_append_only")
    r = pg.verify()
    assert r.ok and any("events_append_only" in w for w in r.warnings)


def test_a_second_writer_is_refused_and_a_dead_ones_lock_goes_with_it(pg):
    s = pg.make()
    with pytest.raises(TrailLockedError, match="open for writing by another process"):
        pg.new().open()
    pg.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'jupyter-audit' AND datname = current_database()"
    )
    s2 = pg.make()  # the lock went with the dead connection
    s2.append(sql_event(1))
    with pytest.raises(TrailWriteError):
        s.append(sql_event(2))  # the old store cannot take the lock back from the new one
    s2.close()
    assert pg.verify().ok


def test_an_unreachable_server_at_open_is_a_clear_error(tmp_path):
    b = PgBackend(tmp_path, "postgresql://nobody:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(TrailError, match="cannot connect to PostgreSQL at") as e:
        b.new().open()
    assert "s3cret" not in str(e.value)


def test_a_connection_lost_mid_stream_fails_its_round_and_the_store_goes_on(pg):
    s = pg.make()
    s.append_many([sql_event(i) for i in range(10)])
    before = pg.sql("SELECT count(*) FROM events")[0][0]
    pg.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'jupyter-audit' AND datname = current_database()"
    )
    fut = s.submit_batch([sql_event(100 + i) for i in range(5)])
    with pytest.raises(TrailWriteError):
        fut.result(timeout=60)
    assert pg.sql("SELECT count(*) FROM events")[0][0] == before  # nothing half stored
    res = s.append(sql_event(200))  # reconnected, lock taken again, chain taken up
    assert res.seq == before + 1
    s.close()
    assert pg.verify().ok


def test_a_connection_dropped_inside_a_transaction_stores_nothing_of_it(pg):
    s = pg.make()
    s.append_many([sql_event(i) for i in range(5)])
    before = pg.sql("SELECT count(*), max(seq) FROM events")[0]
    # the server ends the writer's session after the batch's rows were copied, before commit
    pg.sql(
        "CREATE FUNCTION drop_me() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$"
    )
    pg.sql("CREATE TRIGGER drop_me BEFORE UPDATE ON head FOR EACH ROW EXECUTE FUNCTION drop_me()")
    fut = s.submit_batch([sql_event(100 + i) for i in range(50)])
    with pytest.raises(TrailWriteError):
        fut.result(timeout=60)
    pg.sql("DROP TRIGGER drop_me ON head")
    assert pg.sql("SELECT count(*), max(seq) FROM events")[0] == before
    assert pg.sql("SELECT count(*) FROM event_ids")[0][0] == 0
    res = s.append(sql_event(200))
    assert res.seq == before[1] + 1
    s.close()
    assert pg.verify().ok


@pytest.mark.parametrize(
    "edit, problem",
    [
        ("UPDATE events SET kind = 'op.http' WHERE seq = 4", "column_mismatch"),
        ("UPDATE events SET origin_server = 'bob/' WHERE seq = 4", "column_mismatch"),
        ("UPDATE identities SET username = 'mallory'", "identity_changed"),
        ("DELETE FROM identities", "identity_missing"),
        ("UPDATE head SET seq = 3", "meta_changed"),
        ("UPDATE traces SET events = 1", "derived_changed"),
        ("DELETE FROM trace_users WHERE username = 'bob'", "derived_changed"),
    ],
)
def test_edits_beside_the_chain_are_found(pg, edit, problem):
    s = pg.make()
    s.append_many([sql_event(i, who=ALICE if i % 2 else BOB) for i in range(8)])
    s.close()
    pg.tamper(edit)
    r = pg.verify()
    assert not r.ok
    assert problem in {p["problem"] for p in r.problems}, r.problems
    if problem == "derived_changed":  # a writer that opens it recounts them from the log
        s = pg.make()
        assert not s.integrity.ok
        s.close()
        assert pg.verify().ok


def test_an_unknown_format_is_refused(pg):
    s = pg.make()
    s.close()
    pg.tamper("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(TrailError, match="unknown trail format version '99'"):
        pg.new().open()
    with pytest.raises(TrailError, match="unknown trail format version"):
        pg.verify()
