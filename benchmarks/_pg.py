"""PostgreSQL baselines shared by the benchmarks of the PostgreSQL trail."""

from __future__ import annotations

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
