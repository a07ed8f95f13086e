"""Adversarial review of the PostgreSQL trail (issue 18): each test keeps one attack closed.
An insider holding the collector's (writer role's) DSN, a superuser editing rows, an auditor
verifying as the read-only role. Real PostgreSQL (JUPYTER_AUDIT_TEST_PG_DSN); skipped
without it."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from helpers.stores import dsn_for
from helpers.trail import sql_event

from jupyter_audit.store.merkle import MerkleFrontier
from jupyter_audit.store.pg import roles, schema
from jupyter_audit.store.verify import PROBLEMS


@pytest.fixture
def writer(pg, pg_role_names):
    """The trail set up with its roles; the writer role's DSN (the role dropped afterwards)."""
    from psycopg.conninfo import conninfo_to_dict

    names = pg_role_names
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        schema.create(con, partition_size=50)
    roles.setup(pg.dsn, **names)
    yield dsn_for(pg.dsn, conninfo_to_dict(pg.dsn)["dbname"], user=names["writer"])


def test_a_forged_event_id_neither_drops_an_event_nor_passes_verify(pg, writer):
    """The writer role may INSERT into event_ids: a row claiming an id the collector has not
    stored yet must not make that event be acknowledged as a duplicate and dropped."""
    from jupyter_audit.store.errors import TrailWriteError

    s = pg.make()
    s.append_many([sql_event(i) for i in range(5)])
    with psycopg.connect(writer, autocommit=True) as con:
        con.execute("INSERT INTO event_ids VALUES ('client-next', 3)")
    r = pg.verify()
    assert not r.ok and r.problem == PROBLEMS["event_ids_changed"], r.problems
    fut = s.submit(s.prepare({**sql_event(9), "event_id": "client-next"}))
    with pytest.raises(TrailWriteError):  # refused, loudly: never acknowledged unstored
        fut.result(timeout=60)
    res = s.submit(s.prepare({**sql_event(10), "event_id": "client-other"})).result(timeout=60)
    assert not res.duplicate
    s.close()
    assert pg.sql("SELECT count(*) FROM events WHERE event_id = 'client-other'") == [(1,)]


@pytest.mark.parametrize(
    "edit",
    [
        "INSERT INTO trace_notebooks VALUES ('trace-1', 'nothing-to-see.ipynb', 2)",
        "DELETE FROM trace_notebooks WHERE trace_id = 'trace-1'",
        "UPDATE trace_notebooks SET notebook = 'other.ipynb' WHERE notebook = 'renamed.ipynb'",
    ],
)
def test_notebook_names_the_writer_edits_are_found_and_rebuilt(pg, writer, edit):
    """The panel lists a trace's notebook names and searches by them from trace_notebooks,
    which the writer role may change: verify compares it with the log like the other
    derived tables, and a store that opens the trail rebuilds it."""
    s = pg.make()
    s.append_many([sql_event(i) for i in range(4)])
    s.append({**sql_event(9), "notebook": "renamed.ipynb"})
    s.close()
    assert pg.verify().ok
    before = pg.sql("SELECT * FROM trace_notebooks ORDER BY 1, 2")
    with psycopg.connect(writer, autocommit=True) as con:
        con.execute(edit)
    r = pg.verify()
    assert not r.ok and r.problem == PROBLEMS["derived_changed"], r.problems
    assert "trace_notebooks" in r.detail
    s = pg.make()
    s.close()
    assert pg.sql("SELECT * FROM trace_notebooks ORDER BY 1, 2") == before
    assert pg.verify().ok


def test_the_writer_cannot_make_partitions_by_the_thousand(pg, writer):
    """EXECUTE on the partition function must not let the writer role make partitions far
    ahead of the log (each one slows every read of `events`); what a round needs still
    works."""
    s = pg.make()
    s.append_many([sql_event(i) for i in range(3)])
    s.close()

    def partitions() -> int:
        return pg.sql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")[0][0]

    before = partitions()
    with psycopg.connect(writer, autocommit=True) as con:
        for upto in (schema.AHEAD + 100, 2**62, 2**63 - 1):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="ahead of the log"):
                con.execute("SELECT jupyter_audit_partitions(%s)", [upto])
        assert partitions() == before
        con.execute("SELECT jupyter_audit_partitions(%s)", [3 + 120])
    assert partitions() == 123 // 50 + 2
    s = pg.make()
    s.append_many([sql_event(i) for i in range(200)])  # crosses partitions as before
    s.close()
    assert pg.verify().ok


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://auditor:hun%zzter2@127.0.0.1:1/none",  # libpq quotes the bad token
        "postgresql://auditor:hunter2@[::1:1/none",  # ... the whole URI
        "host=127.0.0.1 port=1 user=auditor password=hun ter2",  # ... the piece after
        "host=127.0.0.1 port=1 user=auditor password='hun ter2'",  # a quoted value
        "postgresql://auditor:hun@ter2@127.0.0.1:1/none",
        "postgresql://auditor@127.0.0.1:1/none?password=hunter2&sslmode=nonsense",
    ],
)
def test_no_piece_of_a_password_in_a_connection_error(dsn):
    """A DSN libpq cannot read or connect with is named without its password, and libpq's
    own message is not repeated when it may quote it (`verify --pg` prints both)."""
    from helpers.servers import run_cli

    code, out, err = run_cli("verify", "--pg", dsn)
    assert code == 2 and "cannot connect to PostgreSQL" in err
    for piece in ("hun", "ter2", "%zz"):
        assert piece not in out + err


@pytest.mark.parametrize(
    "edit, found",
    [
        ("UPDATE head SET seq = seq + 100, frontier = %s", "tail_truncated"),  # a gap
        ("UPDATE head SET hash = '\\x00'::bytea || substr(hash, 2)", "meta_changed"),  # a break
        ("UPDATE head SET time_us = 253402300799000000", None),  # year 9999: time frozen
    ],
)
def test_a_head_the_writer_edits_does_not_steer_the_chain(pg, writer, edit, found):
    """`head` is the writer role's to UPDATE. Edited while the collector was away, it must
    not make the next collector go on from a seq, hash or time of its own: the trail would
    show records missing or a broken link forever (nobody can remove them) and every later
    record the forged time. The edit is found at open and recorded; the log is what counts."""
    import time

    s = pg.make()
    s.append_many([sql_event(i) for i in range(5)])
    s.close()
    with psycopg.connect(writer, autocommit=True) as con:
        (seq,) = con.execute("SELECT seq FROM head").fetchone()
        frontier = MerkleFrontier()  # one the size of the forged seq, so that it parses
        for _ in range(seq + 100):
            frontier.append(bytes(32))
        con.execute(edit, [frontier.to_hex()] if "%s" in edit else None)
    s = pg.make()
    if found:
        assert found in {p["problem"] for p in s.integrity.problems}, s.integrity.problems
    res = s.append(sql_event(9))
    s.close()
    (last,) = pg.sql("SELECT max(seq) FROM events")[0]
    assert res.seq < last and pg.verify().ok  # the integrity record at open, then a checkpoint
    (kinds,) = pg.sql("SELECT array_agg(kind ORDER BY seq) FROM events")[0]
    if found:
        assert "trail.integrity" in kinds
    (newest,) = pg.sql("SELECT extract(epoch FROM max(time)) FROM events")[0]
    assert newest < time.time() + 3600


class _Recorder:
    """A TCP relay to PostgreSQL that keeps every byte the client sent (sslmode=disable)."""

    def __init__(self, host: str, port: int):
        import socket
        import threading

        self.target = (host, port)
        self.sent = bytearray()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src, dst, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.server.close()


def test_setup_never_sends_a_role_password_in_the_clear(pg):
    """`roles.setup(passwords=…)` sets a role's password by ALTER ROLE, a statement the
    server may log (log_statement = ddl): it must carry the SCRAM verifier, not the
    password."""
    import base64
    import hashlib
    import hmac

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(pg.dsn)
    relay = _Recorder(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"ja_{k}_{suffix}" for k in ("writer", "reader", "maintenance")}
    secret = "Tr0ub4dor&3-" + suffix
    try:
        via = make_conninfo(pg.dsn, host="127.0.0.1", port=relay.port, sslmode="disable")
        roles.setup(via, **names, passwords={names["writer"]: secret})
        assert b"SCRAM-SHA-256$" in relay.sent and secret.encode() not in relay.sent
        ((verifier,),) = pg.sql(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [names["writer"]]
        )
        # the verifier is of this password (RFC 5802: StoredKey = H(HMAC(salted, "Client Key")))
        iterations, salt, keys = (
            verifier.removeprefix("SCRAM-SHA-256$").replace("$", ":").split(":")[:3]
        )
        salted = hashlib.pbkdf2_hmac(
            "sha256", secret.encode(), base64.b64decode(salt), int(iterations)
        )
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        assert base64.b64encode(hashlib.sha256(client_key).digest()).decode() == keys
    finally:
        relay.close()
        with psycopg.connect(pg.dsn, autocommit=True) as con:
            for name in names.values():
                con.execute(f'DROP OWNED BY "{name}"')
        with psycopg.connect(dsn_for(pg.dsn, "postgres"), autocommit=True) as con:
            for name in names.values():
                con.execute(f'DROP ROLE IF EXISTS "{name}"')
