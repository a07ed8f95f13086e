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
