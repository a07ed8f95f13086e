"""PostgreSQL baselines shared by the benchmarks of the PostgreSQL trail."""

from __future__ import annotations

import statistics
import time


def copy_alone(dsn: str) -> tuple[float, int]:
    """PostgreSQL's binary COPY of a trail's own rows into a plain copy of its events
    table (transactions of 2,500 rows, as a round of the store): the database alone."""
    import psycopg

    from jupyter_audit.store.pg.schema import EVENTS_COLUMNS

    cols = ", ".join(EVENTS_COLUMNS)
    with psycopg.connect(dsn, autocommit=True) as con:
        rows = con.execute(f"SELECT {cols} FROM events ORDER BY seq").fetchall()
        con.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
        types = [
            con.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'events'::regclass AND attname = %s",
                [c],
            ).fetchone()[0]
            for c in EVENTS_COLUMNS
        ]
        t0 = time.perf_counter()
        for i in range(0, len(rows), 2500):
            with con.transaction(), con.cursor() as cur:
                with cur.copy(f"COPY events_copy ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for row in rows[i : i + 2500]:
                        copy.write_row(row)
        wall = time.perf_counter() - t0
        con.execute("DROP TABLE events_copy")
        return wall, len(rows)


def reads(dsn: str) -> None:
    """The reviewer's two commonest reads on a PostgreSQL trail: the newest 100 traces, and
    the whole of the newest trace (median / max of 21; the issue's bar is 50 ms)."""
    from jupyter_audit.server.trace_query import traces_answer
    from jupyter_audit.store import forwarded, queries
    from jupyter_audit.store.pg.connection import PortableCursor, connect

    con = connect(dsn, autocommit=True)
    cur = PortableCursor(con)
    try:
        n = queries.trail_stats(cur)["events"]
        trace = queries.list_traces(cur, limit=1)[0]["trace_id"]
        size = len(queries.get_trace_events(cur, trace, limit=10_000))
        lists, one, people = [], [], []
        for _ in range(21):
            t0 = time.perf_counter()
            queries.list_traces(cur, limit=100)
            lists.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            queries.get_trace_events(cur, trace, limit=10_000)
            one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page = traces_answer(cur, 100, {}, None)
            forwarded.scope_participants(cur, page["traces"])
            people.append(time.perf_counter() - t0)
        print(
            f"reads at {n:,} events (median / max of 21; target ≤ 50 ms):\n"
            f"  newest 100 traces   {statistics.median(lists) * 1e3:6.1f} / "
            f"{max(lists) * 1e3:6.1f} ms\n"
            f"  one trace ({size} events) {statistics.median(one) * 1e3:6.1f} / "
            f"{max(one) * 1e3:6.1f} ms\n"
            f"  newest 100 traces as the collector's people API answers them (a page, its "
            f"cursor, each trace's participants as its server recorded them) "
            f"{statistics.median(people) * 1e3:6.1f} / {max(people) * 1e3:6.1f} ms"
        )
    finally:
        con.close()


def search_reads(dsn: str) -> None:
    """The search index of a PostgreSQL trail (`store/pg/search.py`): built from nothing over
    the whole trail (the one-time cost of an upgrade; records/s), then the people API's
    searches: a common word, a rare one, two words and a prefix, and one trace's matching
    records (median / max of 7; DuckDB's figures on its own 2,000,000-event trail are in
    docs/benchmarks.md, bench_trace_queries)."""
    from jupyter_audit.store import listing, search, timeline
    from jupyter_audit.store.pg.connection import PortableCursor, connect
    from jupyter_audit.store.pg.search import catch_up

    con = connect(dsn, autocommit=True)
    cur = PortableCursor(con)
    try:
        con.execute("TRUNCATE search_records")
        con.execute("UPDATE search_state SET indexed_seq = 0")
        (n,) = con.execute("SELECT count(*) FROM events").fetchone()
        t0 = time.perf_counter()
        while not catch_up(con):
            pass
        built = time.perf_counter() - t0
        con.execute("VACUUM ANALYZE search_records")
        (docs,) = con.execute("SELECT count(*) FROM search_records").fetchone()
        (size,) = con.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('search_records'))"
        ).fetchone()
        print(
            f"search index built over {n:,} events in {built:.1f} s ({n / built:,.0f} records/s; "
            f"{docs:,} records with words, {size} with its indexes)"
        )
        common = con.execute(
            "SELECT word, ndoc FROM ts_stat('SELECT words FROM search_records') "
            "ORDER BY ndoc DESC LIMIT 1 OFFSET 3"
        ).fetchone()
        rare = con.execute(
            "SELECT word, ndoc FROM ts_stat('SELECT words FROM search_records') "
            "WHERE ndoc BETWEEN 20 AND 200 AND word ~ '^[a-z]{4,16}$' LIMIT 1"
        ).fetchone()
        pair = con.execute(
            "SELECT word, ndoc FROM ts_stat('SELECT words FROM search_records') "
            "WHERE word ~ '^[a-z]{5,}$' ORDER BY ndoc DESC LIMIT 2 OFFSET 6"
        ).fetchall()
        trace = listing.list_traces(cur, limit=1)[0]["trace_id"]
        cases = [
            (f"a common word ({common[0]!r}, in {common[1]:,} records)", [common[0]]),
            (f"a rare word ({rare[0]!r}, in {rare[1]:,})", [rare[0]]) if rare else None,
            (
                f"two words and a prefix ({pair[0][0]!r} {pair[1][0]!r} {pair[1][0][:3]!r}…)",
                [pair[0][0], pair[1][0], pair[1][0][:3]],
            ),
        ]
        print("searches (median / max of 7):")
        for case in filter(None, cases):
            label, words = case
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                listing.list_traces(cur, limit=50, q=words)
                times.append(time.perf_counter() - t0)
            print(
                f"  newest 50 traces, {label}: {statistics.median(times) * 1e3:7.1f} / "
                f"{max(times) * 1e3:7.1f} ms"
            )
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            timeline.trace_page(cur, trace, words=[common[0]], limit=500)
            times.append(time.perf_counter() - t0)
        print(
            f"  one trace's first 500 records holding {common[0]!r}: "
            f"{statistics.median(times) * 1e3:7.1f} / {max(times) * 1e3:7.1f} ms"
        )
        search.terms(common[0])  # a word a person can type
    finally:
        con.close()
