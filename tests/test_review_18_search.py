"""Review of search on a PostgreSQL collector (issue 18): what an insider with a notebook
account could try against the index and the query built from `q`, each kept closed. Real
PostgreSQL (JUPYTER_AUDIT_TEST_PG_DSN, a database per test; skipped without it)."""

from __future__ import annotations

import pytest
from helpers.trail import ALICE, sql_event

from jupyter_audit.store import listing, search, timeline
from jupyter_audit.store.pg.search import MAX_WORDS_BYTES


def statement(i: int, text: str, trace: str) -> dict:
    event = sql_event(i, trace=trace, who=ALICE)
    event["payload"]["statement"] = text
    return event


def found(store, q: str) -> dict[str, int]:
    """Trace id -> matches of a search for `q`, as the people API lists them."""
    cur = store.cursor()
    return {t["trace_id"]: t["matches"] for t in listing.list_traces(cur, q=search.terms(q))}


def test_a_statement_cannot_hide_behind_more_words_than_one_tsvector_holds(pg):
    """A cell of ~1 MB of distinct junk words, then the statement that matters: on DuckDB
    every word is found, and on PostgreSQL the words past one tsvector's budget were
    dropped, so an auditor's search for the table missed the cell that dropped it."""
    s = pg.make()
    junk = " ".join(f"w{i:07d}" for i in range(MAX_WORDS_BYTES // 12 + 1000))
    s.append_many(
        [
            statement(0, "SELECT 1 FROM innocent", "t-a"),
            statement(1, f"SELECT {junk} FROM nowhere; DROP TABLE patients", "t-hide"),
        ]
    )
    assert s.index_search().result(timeout=120) is True
    assert found(s, "patients") == {"t-hide": 1}
    assert found(s, "drop table patients") == {"t-hide": 1}
    # a word in the first part and one in the last, AND-ed in the one record
    assert found(s, "w0000001 patients") == {"t-hide": 1}
    # one record counted once, whichever parts hold the words
    assert found(s, "select") == {"t-a": 1, "t-hide": 1}
    assert found(s, "w0000001") == {"t-hide": 1}
    page = timeline.trace_page(s.cursor(), "t-hide", words=search.terms("patients"), fold=False)
    assert len(page["events"]) == 1
    # and a restart indexes nothing twice
    s.close()
    s = pg.make()
    s.append_many([statement(2, "SELECT patients_again FROM x", "t-b")])
    assert s.index_search().result(timeout=120) is True
    assert found(s, "patients") == {"t-b": 1, "t-hide": 1}


ODD = [
    "it's",
    "a\\b",
    "x:*",
    "a & b | !c <-> d",
    "'' & ''",
    "a\x00b",
    "\\'; DROP TABLE events; --",
    "ΟΔΟΣ",
    "İstanbul",
    "𝐀" * 1000,
    "ab " * 7 + "a",
    "e\u0301t\u00e9",
    "\u200b\u202eabc",
    "(a",
    "a)",
]


@pytest.mark.parametrize("q", ODD)
def test_odd_queries_are_words_or_a_clear_error_never_tsquery_syntax(pg, q):
    """Whatever `q` holds reaches PostgreSQL as quoted words only: a query either finds
    what its words find or is refused by `search.terms` (a 400), never a database error."""
    s = pg.make()
    s.append_many([statement(0, "SELECT a, b, c, d, x, it, s FROM events", "t-a")])
    assert s.index_search().result(timeout=60) is True
    try:
        words = search.terms(q)
    except search.SearchError:
        return
    cur = s.cursor()
    listing.list_traces(cur, q=words)  # raises on anything PostgreSQL would not take
    timeline.trace_page(cur, "t-a", words=words)


def test_a_chunk_of_the_index_holds_a_bounded_number_of_bytes(pg, monkeypatch):
    """Records of a megabyte each, forwarded by the thousand: one chunk of 5,000 of them
    read at once would be gigabytes in the collector's memory, and a collector killed for
    it would meet the same chunk at the next search. A chunk stops at CHUNK_BYTES of
    records (at least one record), and the next goes on where it stopped: nothing missed,
    nothing twice."""
    import psycopg

    from jupyter_audit.store.pg import search as pg_search

    s = pg.make()
    big = " ".join(f"v{i:05d}" for i in range(2000))  # ~14 kB of words a record
    s.append_many([statement(i, f"SELECT r{i} {big}", f"t-{i}") for i in range(10)])
    s.close()  # its indexer does not race the chunks counted here
    monkeypatch.setattr(pg_search, "CHUNK_BYTES", 40_000)  # two or three of these records
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        rounds = 1
        while not pg_search.catch_up(con):
            rounds += 1
            (indexed,) = con.execute("SELECT count(*) FROM search_records").fetchone()
            assert indexed <= 3 * rounds
        assert rounds >= 4
        (rows,) = con.execute("SELECT count(DISTINCT seq) FROM search_records").fetchone()
        assert rows == 10
        # a record bigger than a whole chunk is still read, alone: the index never stalls
        monkeypatch.setattr(pg_search, "CHUNK_BYTES", 1)
        con.execute("TRUNCATE search_records")
        con.execute("UPDATE search_state SET indexed_seq = 0")
        assert not pg_search.catch_up(con)
        (rows,) = con.execute("SELECT count(DISTINCT seq) FROM search_records").fetchone()
        assert rows == 1
        while not pg_search.catch_up(con):
            pass
        (rows,) = con.execute("SELECT count(DISTINCT seq) FROM search_records").fetchone()
        assert rows == 10
    s = pg.make()
    assert s.index_search().result(timeout=60) is True
    assert found(s, "r7 v01999") == {"t-7": 1}
    assert found(s, "v00000") == {f"t-{i}": 1 for i in range(10)}


def test_an_index_of_one_row_per_record_is_rebuilt_by_pg_setup(pg, pg_role_names, caplog):
    """A trail whose `search_records` has the first shape (one row per record, no `parts`:
    made by the merge before this review) would have its indexer fail at every round; the
    writer role's store says to run pg-setup, which rebuilds it from the log."""
    import logging

    import psycopg
    from helpers.stores import role_dsn

    from jupyter_audit.store.pg import roles, schema

    with psycopg.connect(pg.dsn, autocommit=True) as con:
        schema.create(con)
    roles.setup(pg.dsn, **pg_role_names)
    pg.sql("DROP TABLE search_records")
    pg.sql(
        "CREATE TABLE search_records (seq bigint PRIMARY KEY, trace_id text NOT NULL, "
        "words tsvector NOT NULL)"
    )
    writer = pg_role_names["writer"]
    pg.sql(f'GRANT SELECT, INSERT, UPDATE, DELETE ON search_records TO "{writer}"')
    admin, pg.dsn = pg.dsn, role_dsn(pg, pg_role_names["writer"])
    with caplog.at_level(logging.WARNING, logger="jupyter_audit.pg"):
        s = pg.make()
    assert "pg-setup" in caplog.text
    s.append_many([statement(i, f"SELECT churn_{i} FROM quarterly", "t-1") for i in range(5)])
    with pytest.raises(search.SearchUnavailable):
        s.index_search().result(timeout=60)
    pg.dsn = admin
    roles.setup(admin, **pg_role_names)
    assert s.index_search().result(timeout=60) is True
    assert found(s, "churn_3") == {"t-1": 1}
