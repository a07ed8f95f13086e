"""A sealed batch into the PostgreSQL trail: one transaction, or nothing.

`insert` stores what `batch.seal` made of a round (records, hashes, leaves, identities, the
traces projection's counts, client event ids) with the new high-water mark in `head`, in
one transaction: the log rows by binary COPY, the rest by set-based statements. It never
UPDATEs or DELETEs a log row (only `head` and the derived tables change), never changes the
store's state and never resolves a future: the engine does both once this returned.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import psycopg
from psycopg import errors

from ..batch import SealedBatch
from ..traces import INSERT_TRACE_NOTEBOOKS, INSERT_TRACE_USERS, TRACE_COLUMNS, TraceRow
from ..traces import UPSERT_TRACES as _UPSERT
from .connection import qmark
from .schema import EVENTS_COLUMNS

_EPOCH = datetime(1970, 1, 1)
_COPY = f"COPY events ({', '.join(EVENTS_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_TYPES = ["int8", "text", "timestamp", *["text"] * 8, "int8", "bytea", "bytea", "bytea"]
# the traces projection's rows as arrays, one per column of `traces`
_TRACE_TYPES = {
    "trace_id": "text",
    "kernel_id": "text",
    "notebook": "text",
    "started_at": "timestamp",
    "last_at": "timestamp",
    "status": "text",
}
_TRACE_SRC = "(SELECT * FROM unnest({}) AS b({})) AS src".format(
    ", ".join(f"?::{_TRACE_TYPES.get(c, 'int8')}[]" for c in TRACE_COLUMNS),
    ", ".join(TRACE_COLUMNS),
)
UPSERT_TRACES = qmark(_UPSERT.format(src=_TRACE_SRC))
INSERT_USERS = qmark(
    INSERT_TRACE_USERS.format(
        src="(SELECT * FROM unnest(?::text[], ?::text[]) AS u(trace_id, username)) AS src"
    )
)
INSERT_NOTEBOOKS = qmark(
    INSERT_TRACE_NOTEBOOKS.format(
        src="(SELECT * FROM unnest(?::text[], ?::text[], ?::int8[]) AS n(trace_id, notebook, "
        "first_seq)) AS src"
    )
)


def timestamp(us: int) -> datetime:
    """A record time in microseconds since the epoch as PostgreSQL's `timestamp` (UTC)."""
    return _EPOCH + timedelta(microseconds=us)


def micros(time: datetime) -> int:
    """A `timestamp` column (naive, UTC) in microseconds since the epoch."""
    return (time - _EPOCH) // timedelta(microseconds=1)


def _origin(origin_json: str) -> tuple[str | None, int | None]:
    if not origin_json:
        return None, None
    o = orjson.loads(origin_json)
    return o.get("server"), o.get("seq")


def insert(con: psycopg.Connection, batch: SealedBatch, *, optimistic: bool) -> bool:
    """Store `batch` and the new high-water mark in one transaction (raises, nothing stored,
    if that fails). False, with nothing stored, when `optimistic` and the trail already holds
    one of its client event ids (the `event_ids` primary key refuses it)."""
    time = timestamp(batch.time_us)
    table = batch.table
    leaves = table.column("leaf").to_pylist()
    records = table.column("record").to_pylist()
    try:
        with con.transaction(), con.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.set_types(_TYPES)
                write = copy.write_row
                for i, p in enumerate(batch.events):
                    server, origin_seq = _origin(p.origin_json)
                    write(
                        (
                            batch.first_seq + i,
                            p.kind,
                            time,
                            p.trace_id,
                            p.kernel_id,
                            p.session_id,
                            p.notebook,
                            p.msg_id,
                            p.identity_id,
                            p.event_id,
                            server,
                            origin_seq,
                            batch.hashes[i],
                            leaves[i],
                            records[i],
                        )
                    )
            if batch.identities:
                cur.executemany(
                    "INSERT INTO identities (identity_id, snapshot, username, first_seq) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [[iid, *new] for iid, new in batch.identities.items()],
                )
            if batch.traces:
                store_traces(cur, batch.traces, dict.fromkeys(batch.traces, (time, time)))
            if batch.users:
                users = sorted(batch.users)
                cur.execute(INSERT_USERS, [list(col) for col in zip(*users, strict=True)])
            if batch.notebooks:
                nbs = sorted(batch.notebooks)
                cur.execute(
                    INSERT_NOTEBOOKS,
                    [[t for t, _, _ in nbs], [n for _, n, _ in nbs], [s for _, _, s in nbs]],
                )
            if batch.client_ids:
                cur.execute(
                    "INSERT INTO event_ids (event_id, seq) "
                    "SELECT * FROM unnest(%s::text[], %s::int8[])",
                    [list(batch.client_ids), list(batch.client_ids.values())],
                )
            cur.execute(
                "UPDATE head SET seq = %s, hash = %s, frontier = %s, time_us = %s",
                [batch.last_seq, batch.last_hash, batch.frontier.to_hex(), batch.time_us],
            )
    except errors.UniqueViolation as e:
        if optimistic and e.diag.table_name == "event_ids":
            return False
        raise
    return True


def store_traces(cur, traces: dict[str, TraceRow], times: dict) -> None:
    """Add `traces` (counts of a run of events) to their rows, inserting new ones; `times`:
    trace id -> (time of its first event, of its last) in the run."""
    ids = list(traces)
    rows = [traces[t] for t in ids]
    columns: dict[str, list] = {
        "trace_id": ids,
        "started_at": [times[t][0] for t in ids],
        "last_at": [times[t][1] for t in ids],
    }
    for c in TRACE_COLUMNS:
        if c not in columns:
            columns[c] = [getattr(r, c) for r in rows]
    cur.execute(UPSERT_TRACES, [columns[c] for c in TRACE_COLUMNS])


def held_client_ids(con, ids: list[str]) -> dict[str, int]:
    """Which of the client-chosen event ids `ids` the trail holds, with their seq: those
    whose record is in the log, and those of records archived away (at or below
    `meta.archived_upto`, which only the drop function writes: a server resending records
    the collector archived and dropped has them acknowledged, never recorded again). The
    writer role may INSERT into `event_ids`, but a row naming no live record must not make
    an event be acknowledged and dropped: the `event_ids` trigger (`schema`) refuses a row
    at or below `archived_upto`, and a row planted in a partition's range before it was
    archived is reported by the `verify` the archiver runs first (nothing archived)."""
    with con.transaction():
        rows = con.execute(
            "SELECT i.event_id, i.seq FROM event_ids i "
            "LEFT JOIN events e ON e.seq = i.seq AND e.event_id = i.event_id "
            "WHERE i.event_id = ANY(%s::text[]) AND (e.seq IS NOT NULL OR i.seq <= "
            "coalesce((SELECT value::bigint FROM meta WHERE key = 'archived_upto'), 0))",
            [ids],
        ).fetchall()
    return dict(rows)
