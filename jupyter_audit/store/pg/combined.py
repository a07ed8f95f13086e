"""An archive and the live PostgreSQL trail it came from, read as one trail file (`export`
and `show` with `--archive DIR --pg DSN`).

`open_combined` reads the live trail in one REPEATABLE READ, read-only snapshot (the
auditor's read-only role suffices): it checks the archive against it first
(`verify.check_archive`: every segment verified, the archive reaching the live trail's first
record and ending at the hash it continues, live rows the archive also holds hashing alike,
every segment the live trail records as archived there unedited), and that each identity
snapshot hashes to its id (`verify.check_identities`), and refuses with a
TrailError when anything is wrong: nothing unverified is shown. Then it lays archive + live
trail out as one DuckDB file (`archive_verify.combined_trail`), the live part copied by
`LiveCopy`: meta, identities, derived tables and the records after the archive's last, in
batches through a server-side cursor. The read modules then read that file as they read any
trail. It only reads the PostgreSQL trail.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pyarrow as pa

from ..archive_target import ArchiveTarget
from ..archive_verify import combined_trail
from ..errors import TrailError
from ..schema import open_readable
from ..verify import VerifyResult
from . import schema
from .connection import PortableCursor, _scrubbed
from .schema import EVENTS_COLUMNS
from .snapshot import snapshot

BATCH = 10_000
# meta the combined file takes from the live trail (its own format version stays: it is
# a DuckDB trail)
_META = ("trail_id", "last_seq", "last_hash", "frontier", "last_time_us")
# the derived tables, whole: they count over archived records too
_DERIVED = ("traces", "trace_users", "trace_notebooks")


class LiveCopy:
    """`combined_trail`'s `live`: a PostgreSQL trail's live part (as of `cur`'s snapshot)
    copied into a combined DuckDB trail."""

    def __init__(self, cur: PortableCursor, meta: dict[str, str]):
        self.cur, self.meta = cur, meta

    def __call__(self, con, last_archived: int) -> None:
        con.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [[k, self.meta[k]] for k in _META if k in self.meta],
        )
        con.executemany(
            "INSERT OR IGNORE INTO identities VALUES (?, ?, ?, ?)",
            self.cur.execute(
                "SELECT identity_id, snapshot, username, first_seq FROM identities"
            ).fetchall(),
        )
        for table in _DERIVED:
            self._copy(con, table, f"SELECT {{cols}} FROM {table}", ())
        self._copy(
            con, "events", "SELECT {cols} FROM events WHERE seq > ? ORDER BY seq", (last_archived,)
        )

    def _copy(self, con, table: str, sql: str, params) -> None:
        """The rows `sql` selects of the live `table`, its columns the combined one has too
        (`{cols}`), into the combined `table`, BATCH at a time."""
        have = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        if table == "events":
            cols = [c for c in have if c in EVENTS_COLUMNS]
        else:
            live = {
                r[0]
                for r in self.cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = ? AND table_schema = current_schema()",
                    [table],
                ).fetchall()
            }
            cols = [c for c in have if c in live]
            if not cols:  # a table this trail does not have
                return
        names = ", ".join(f'"{c}"' for c in cols)
        for rows in self.cur.stream(sql.format(cols=names), params, BATCH):
            batch = pa.table(
                [pa.array([_plain(r[i]) for r in rows]) for i in range(len(cols))], names=cols
            )
            con.register("_live", batch)
            try:
                con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _live")
            finally:
                con.unregister("_live")


def _plain(value):
    """A value as pyarrow takes it (psycopg may hand bytea out as a memoryview)."""
    return bytes(value) if isinstance(value, memoryview) else value


def open_combined(target: ArchiveTarget, scratch: Path, dsn: str, *, trusted_keys=None):
    """(read-only connection, meta) of the archive at `target` + the live PostgreSQL trail
    at `dsn` as one, a file in `scratch`; TrailError when the archive does not verify
    against the live trail or the trail cannot be read (the DSN's password never named)."""
    from .verify import check_archive, check_identities

    try:
        with snapshot(dsn) as con:
            meta = schema.read_meta(con)
            cur = PortableCursor(con)
            result = VerifyResult()
            chain, _first = check_archive(cur, meta, target, result, trusted_keys=trusted_keys)
            # who did what comes from the snapshots: an edited one would name someone else
            check_identities(cur, result)
            if not result.ok:
                raise TrailError(
                    f"the archive does not verify with the live trail: {result.detail}"
                )
            path = combined_trail(target, scratch, chain=chain, live=LiveCopy(cur, meta))
    except psycopg.Error as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrailError(f"cannot read the PostgreSQL trail: {_scrubbed(why, dsn)}") from None
    return open_readable(path)
