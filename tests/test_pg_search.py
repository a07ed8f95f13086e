"""What only the PostgreSQL trail's search index has (`store/pg/search.py`; the words and
matches both stores share are tests/test_store_contract.py's): a trail made before it
answers a search with how to add it, and `pg-setup` adds it and indexes what the trail
holds; its roles; its indexer surviving a lost connection, an edited record and a record
too big for one tsvector; nothing indexed twice across a restart. Real PostgreSQL
(JUPYTER_AUDIT_TEST_PG_DSN, a database per test); skipped without it."""

from __future__ import annotations

import asyncio
import logging
import threading

import psycopg
import pytest
from helpers.stores import as_role, refused, role_dsn
from helpers.trail import ALICE, sql_event
from tornado import web

from jupyter_audit.server.trace_query import search_ready
from jupyter_audit.store import listing, search
from jupyter_audit.store.pg import roles, schema
from jupyter_audit.store.pg.search import MAX_WORDS_BYTES

REFUSED = refused()


def statement(i: int, text: str, trace: str = "t-1") -> dict:
    event = sql_event(i, trace=trace, who=ALICE)
    event["payload"]["statement"] = text
    return event


def found(store, q: str) -> list[str]:
    return [t["trace_id"] for t in listing.list_traces(store.cursor(), q=search.terms(q))]


def ready_or_http_error(store) -> web.HTTPError | None:
    """What a people API handler answers while waiting for `store`'s index."""
    try:
        asyncio.run(search_ready(store))
    except web.HTTPError as e:
        return e
    return None


def test_a_trail_made_before_the_index_says_how_to_add_it_and_pg_setup_does(
    pg, pg_role_names, caplog
):
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        schema.create(con)
    roles.setup(pg.dsn, **pg_role_names)
    # a trail of the version before: no search tables
    pg.sql("DROP TABLE search_records, search_state")
    admin = pg.dsn
    pg.dsn = role_dsn(pg, pg_role_names["writer"])
    with caplog.at_level(logging.WARNING, logger="jupyter_audit.pg"):
        s = pg.make()  # the writer role may not create them: the store opens without
    assert "jupyter audit pg-setup" in caplog.text
    s.append_many([statement(i, f"SELECT churn_{i} FROM quarterly") for i in range(30)])
    error = ready_or_http_error(s)
    assert error is not None and error.status_code == 400
    assert "no search index" in error.log_message and "pg-setup" in error.log_message
    with pytest.raises(search.SearchUnavailable):
        s.index_search().result(timeout=60)
    # the administrator runs pg-setup again: the open store's next search indexes the
    # records the trail already held
    pg.dsn = admin
    roles.setup(admin, **pg_role_names)
    assert ready_or_http_error(s) is None
    assert found(s, "churn_7") == ["t-1"] and found(s, "quarter") == ["t-1"]
    (rows,) = pg.sql("SELECT count(*) FROM search_records")[0:1]
    assert rows == (30,)


def test_the_writer_keeps_the_index_and_the_reader_only_reads_it(pg, pg_role_names):
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        schema.create(con)
    roles.setup(pg.dsn, **pg_role_names)
    pg.dsn, admin = role_dsn(pg, pg_role_names["writer"]), pg.dsn
    s = pg.make()
    s.append_many([statement(i, "SELECT loans FROM book") for i in range(5)])
    assert s.index_search().result(timeout=60) is True
    with as_role(pg, pg_role_names["writer"]) as con:
        for attempt in ("DROP TABLE search_records", "ALTER TABLE search_state ADD x int"):
            with pytest.raises(REFUSED):
                con.execute(attempt)
    with as_role(pg, pg_role_names["reader"]) as con:
        assert con.execute("SELECT count(*) FROM search_records").fetchone()[0] == 5
        for attempt in (
            "DELETE FROM search_records",
            "UPDATE search_state SET indexed_seq = 0",
            "INSERT INTO search_records VALUES (999, 'x', 'y')",
        ):
            with pytest.raises(REFUSED):
                con.execute(attempt)
    pg.dsn = admin
    assert found(s, "loans book") == ["t-1"]


def test_the_indexer_survives_a_lost_connection_an_edited_record_and_a_huge_one(pg):
    s = pg.make()
    s.append_many([statement(0, "SELECT alpha FROM one", "t-a")])
    assert s.index_search().result(timeout=60) is True
    # its connection killed: that search fails with a clear error, the next one reconnects
    pg.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'jupyter-audit search'"
    )
    s.append_many([statement(1, "SELECT beta FROM two", "t-b")])
    first = ready_or_http_error(s)
    assert first is None or (first.status_code == 503 and "search" in first.log_message)
    assert ready_or_http_error(s) is None
    assert found(s, "beta") == ["t-b"]
    # a record edited behind the store's back into bytes that are not JSON (verify reports
    # it): the index passes it by and goes on
    s.append_many([statement(2, "SELECT gamma FROM three", "t-c")])
    seq = s.trail_stats()["last_seq"]
    pg.tamper("UPDATE events SET record = %s WHERE seq = %s", [b"\xff not json", seq])
    # a statement with more distinct words than one tsvector holds: its first ones indexed
    many = " ".join(f"w{i:07d}" for i in range(MAX_WORDS_BYTES // 12))
    s.append_many([statement(3, "SELECT delta " + many, "t-d")])
    s.append_many([statement(4, "SELECT epsilon FROM five", "t-e")])
    assert s.index_search().result(timeout=120) is True
    assert found(s, "gamma") == []
    assert found(s, "delta") == ["t-d"] and found(s, "w0000001") == ["t-d"]
    assert found(s, "epsilon") == ["t-e"]


def test_nothing_is_indexed_twice_across_restarts_and_two_indexers(pg):
    s = pg.make()
    s.append_many([statement(i, f"SELECT word{i % 3} FROM t") for i in range(50)])
    assert s.index_search().result(timeout=60) is True
    s.close()
    s = pg.make()
    s.append_many([statement(50 + i, "SELECT word1 FROM t") for i in range(10)])
    # a second indexer on the same trail (another process's, say) races this one's
    from jupyter_audit.store.pg.search import catch_up

    with psycopg.connect(pg.dsn, autocommit=True) as other:
        racing = catch_up(other)
    assert s.index_search().result(timeout=60) is True
    assert racing in (True, False)
    (indexed,) = pg.sql("SELECT count(*), count(DISTINCT seq) FROM search_records")
    assert indexed[0] == indexed[1] == 60
    matches = listing.list_traces(s.cursor(), q=["word1"])[0]["matches"]
    assert matches == 17 + 10


def test_the_index_keeps_up_in_the_background_without_a_search(pg, monkeypatch):
    from jupyter_audit.store.pg import search as pg_search

    monkeypatch.setattr(pg_search, "INTERVAL", 0.05)
    monkeypatch.setattr(pg_search, "BACKGROUND_CHUNK", 7)  # several chunks, paced
    s = pg.make()
    s.append_many([statement(i, f"SELECT w{i} FROM t") for i in range(40)])
    last = s.trail_stats()["last_seq"]
    indexed = 0
    for _ in range(600):  # no search asks: the background catches up alone
        (indexed,) = pg.sql("SELECT indexed_seq FROM search_state")[0]
        if indexed >= last:
            break
        threading.Event().wait(0.05)
    assert indexed >= last
    (rows,) = pg.sql("SELECT count(*) FROM search_records")[0]
    assert rows == 40
