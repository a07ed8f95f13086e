"""Opening a trail for writing, brought forward to today's format: in place where a
migration only adds things (`schema.initialise`), by copy and swap where it rewrites the
`events` table (`schema.REWRITES`; 3 -> 4, the compact layout).

The copy is a fresh file beside the trail (`<trail>.migrating`), filled by DuckDB from the
old one table by table (streamed: a big trail does not have to fit in memory twice), then
checkpointed, flushed to disk and renamed over the trail. A crash before the rename leaves
the old trail as it was (the half-written copy is removed at the next attempt); after it,
the new one whole. Records, hashes and leaves are copied byte for byte and in the order
they were stored, so a trail that verified before verifies after, against the same signed
checkpoints, and whatever was wrong with it is found again (the Writer verifies the trail
it opens). The one thing the copy drops is format 3's prev_hash column: if it was edited,
the old file is kept beside the new one (`<trail>.format3`) as the evidence. It must never
change a record or drop a row.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from .chain import prev_column_mismatch
from .durable import replace_durably
from .errors import TrailError
from .schema import DDL, DERIVED_TABLES, FORMAT_VERSION, REWRITES, connect, initialise
from .traces import ALLOW_LIST_FORMAT, DROP_OUTSIDE_ACTORS

log = logging.getLogger(__name__)

# what the rewrite copies into the new `events` table: every column of today's layout, each
# present in every older one
_EVENT_COLUMNS = (
    "seq, kind, time, trace_id, kernel_id, notebook, msg_id, identity_id, event_id, "
    "hash, leaf, record"
)
# DuckDB's memory while it copies (its buffer cache would otherwise grow to 80 % of RAM,
# with the old file's blocks read once each); beyond it, it spills to `<trail>.tmp/`
MIGRATION_MEMORY = "512MB"
# copied by column name; a derived table of an older shape keeps what it held (today's new
# columns take their defaults) so that the Writer's verification compares it with the log
# before recounting it (`derived_version`)
_OTHER_TABLES = ("meta", "identities", "client_events", "service_tokens", *DERIVED_TABLES)


def open_writable(
    path: str | os.PathLike, findings: list | None = None
) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """Open (creating if needed) the trail at `path` read-write in today's format; the
    connection and the trail's meta. What a migration found that today's format no longer
    holds (a format-3 prev_hash column edit) is added to `findings` as (problem code, seq,
    detail), for the Writer's integrity record."""
    path = Path(path)
    con = connect(path)
    try:
        meta = initialise(con)
        version = int(meta["format_version"])
        if version < FORMAT_VERSION and version in REWRITES:
            con.close()  # again, with the memory the copy may take bounded
            con = connect(path, memory_limit=MIGRATION_MEMORY)
            con = _rewrite(con, path, version, findings if findings is not None else [])
            meta = initialise(con)  # the in-place steps after the rewrite, if any
    except BaseException:
        con.close()
        raise
    return con, meta


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _rewrite(con, path: Path, version: int, findings: list) -> duckdb.DuckDBPyConnection:
    """Copy the trail behind `con` (format `version`) into a fresh file of today's layout
    and swap it in; `con` is closed, a connection to the new file returned."""
    tmp = path.with_name(path.name + ".migrating")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)  # a copy an earlier attempt did not finish
    log.warning("audit trail %s: format %d -> %d (compact layout)", path, version, FORMAT_VERSION)
    con.execute("CHECKPOINT")  # the old trail whole in its file, nothing left in its WAL
    old_name = con.execute("SELECT current_database()").fetchone()[0]
    old = old_name.replace('"', '""')
    rows = con.execute("SELECT count(*), max(seq) FROM events").fetchone()
    edited: int | str | None
    try:
        edited = prev_column_mismatch(con)
    except duckdb.Error as e:  # e.g. a column of another type: evidence too
        edited = f"unreadable ({type(e).__name__})"
    con.execute(f"ATTACH {_quote(tmp)} AS migrating")
    try:
        con.execute("USE migrating")
        for stmt in DDL:
            con.execute(stmt)
        con.execute(
            f"INSERT INTO migrating.events ({_EVENT_COLUMNS}) "
            f'SELECT {_EVENT_COLUMNS} FROM "{old}".events'
        )
        present = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [old_name]
            ).fetchall()
        }
        for table in _OTHER_TABLES:
            if table in present:
                con.execute(f'INSERT INTO migrating.{table} BY NAME SELECT * FROM "{old}".{table}')
        if version + 1 == ALLOW_LIST_FORMAT:  # participants by today's allow-list
            con.execute(DROP_OUTSIDE_ACTORS)
        con.execute(
            "UPDATE migrating.meta SET value = ? WHERE key = 'format_version'",
            [str(version + 1)],
        )
        copied = con.execute("SELECT count(*), max(seq) FROM migrating.events").fetchone()
        if copied != rows:
            raise TrailError(
                f"migrating {path}: copied {copied[0]} events up to #{copied[1]}, "
                f"the trail holds {rows[0]} up to #{rows[1]}; the trail is left as it was"
            )
        con.execute("CHECKPOINT migrating")
        con.execute(f'USE "{old}"')
        con.execute("DETACH migrating")
    except BaseException as e:
        try:
            con.execute(f'USE "{old}"')
            con.execute("DETACH DATABASE IF EXISTS migrating")
        except duckdb.Error:
            pass
        tmp.unlink(missing_ok=True)
        if isinstance(e, duckdb.Error):  # e.g. the disk filled up
            raise TrailError(
                f"migrating {path} to format {version + 1} failed ({e}); the trail is unchanged"
            ) from None
        raise
    con.close()
    wal = path.with_name(path.name + ".wal")
    if wal.exists():  # would be replayed onto the new file: never swap with one there
        raise TrailError(
            f"migrating {path}: its WAL was not folded in; the trail is left as it was"
        )
    os.chmod(tmp, path.stat().st_mode & 0o777)
    if edited is not None:
        evidence = path.with_name(f"{path.name}.format{version}")
        evidence.unlink(missing_ok=True)
        os.link(path, evidence)  # the old file stays whole under this name
        log.error(
            "audit trail %s: its prev_hash column differs from the chain at #%s; the trail "
            "before migration is kept as %s",
            path,
            edited,
            evidence,
        )
        findings.append(
            (
                "column_mismatch",
                edited if isinstance(edited, int) else None,
                f"before migration to format {version + 1}, the prev_hash column differed "
                f"from the chain at #{edited} (the trail before is kept as {evidence.name})",
            )
        )
    replace_durably(tmp, path)
    return connect(path)
