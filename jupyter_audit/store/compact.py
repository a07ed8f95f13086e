"""Compaction: the trail without its archived records, written to a fresh file and swapped in.

Deleting rows does not shrink a DuckDB file, and a DELETE half done by a killed process is
what must never be: so archived records leave the live trail only by this swap. Every table
is copied (the log from `keep_after + 1` on, in seq order) into a fresh file beside the
trail, the fresh file is verified (its chain must continue the archive's and end where the
trail ends), and `os.replace` puts it in the trail's place; until then the old file is
untouched. The Writer runs `swap` on its own thread (`Writer.run_exclusive`), so nothing
is appended while the file changes under it. No other code path removes a log row.
"""

from __future__ import annotations

from pathlib import Path

from .durable import replace_durably
from .errors import TrailError
from .schema import DDL, open_readable
from .verify import verify_connection


def fresh_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".compact")


def discard_fresh(db_path: Path) -> None:
    """Remove what a compaction killed half-way left beside the trail."""
    fresh = fresh_path(db_path)
    for p in (fresh, fresh.with_name(fresh.name + ".wal")):
        p.unlink(missing_ok=True)


def write_fresh(con, db_path: Path, keep_after: int) -> Path:
    """Every table of the trail behind `con` into a fresh file, without the log's records up
    to `keep_after`; returns its path."""
    discard_fresh(db_path)
    fresh = fresh_path(db_path)
    here = con.execute("SELECT current_database()").fetchone()[0]
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND NOT temporary",
            [here],
        ).fetchall()
    ]
    quoted = str(fresh).replace("'", "''")
    con.execute(f"ATTACH '{quoted}' AS fresh")
    try:
        con.execute("USE fresh")
        try:
            for stmt in DDL:
                con.execute(stmt)
        finally:
            con.execute(f'USE "{here}"')
        made = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'fresh'"
            ).fetchall()
        }
        con.execute("BEGIN")
        try:
            for table in tables:
                source = f'"{here}"."{table}"'
                if table not in made:
                    con.execute(f'CREATE TABLE fresh."{table}" AS SELECT * FROM {source}')
                elif table == "events":
                    con.execute(
                        f"INSERT INTO fresh.events BY NAME SELECT * FROM {source} "
                        "WHERE seq > ? ORDER BY seq",
                        [keep_after],
                    )
                else:
                    con.execute(f'INSERT INTO fresh."{table}" BY NAME SELECT * FROM {source}')
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("CHECKPOINT fresh")  # all in the file: a WAL beside it would not move
    finally:
        con.execute("DETACH fresh")
    return fresh


def check_fresh(fresh: Path, checkpoint_files, last_seq: int, last_hash: str) -> None:
    """The fresh file verifies and ends where the trail ends (raises TrailError)."""
    con, meta = open_readable(fresh)
    try:
        result = verify_connection(con, meta, checkpoint_files=checkpoint_files)
    finally:
        con.close()
    if not result.ok:
        raise TrailError(f"the compacted trail does not verify: {result.problem}: {result.detail}")
    if result.last_seq != last_seq or result.last_hash != last_hash:
        raise TrailError(
            f"the compacted trail ends at #{result.last_seq}, not at the trail's #{last_seq}"
        )


def replace(fresh: Path, db_path: Path) -> None:
    """Put the fresh file in the trail's place, atomically and durably. Neither file may
    have a WAL beside it: the fresh one's would not move with it, the trail's would be
    replayed onto the fresh file (raises TrailError, nothing replaced)."""
    for wal in (fresh, db_path):
        if wal.with_name(wal.name + ".wal").exists():
            raise TrailError(f"{wal}: its WAL was not folded in; the trail is left as it was")
    replace_durably(fresh, db_path)
