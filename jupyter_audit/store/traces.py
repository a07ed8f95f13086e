"""The traces projection: one row per trace (a kernel session) and who took part in it.

`traces` and `trace_users` are derived tables: counts and names drawn from the log so that
listings need not scan it. The counting rules (what is a cell, an operation, when a trace has
ended) live here only, in `TraceRow.add`: the Writer adds each batch it commits
(`store_traces`), `queries.rebuild_derived` recounts the whole log with the same rules.
Participants are people and service accounts: the server's own (system) events, such as a
`session.ended` at shutdown, name no one (`is_participant`, `participants_sql`). Nor do the
events that act on a trace from outside its computation: participants decide who may see a
trace, so touching its kernel, its notebook or its approvals must not grant that. From trail
format 4 on, participants are named by an allow-list (`takes_part`): running code in the
trace (`cell.*`, `op.*`), asking for or running an approval, and starting its kernel; not
interrupting, restarting or shutting it down, deciding an approval, renaming, saving or
viewing. Before format 4 a deny-list (`NOT_TAKING_PART`) applied, and the migration to
format 4 drops the rows only it put there (`DROP_OUTSIDE_ACTORS`). A view is also no
activity of the trace (`NOT_ACTIVITY`): it shows in the trace's timeline but leaves its row
(counts, last event, duration) as it was, so reading an old trace does not make it look
recent.

This module writes the derived tables only, inside a transaction its caller opened: it must
never touch the log (`events`), commit, or import the writer (the read side imports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ..identity.snapshot import SYSTEM_AUTH_METHOD, is_system
from .risk import risk_rules

#: the counts of `traces` beyond events, cells and operations (TraceSummary `counts`)
COUNTS = (
    "queries",  # op.sql
    "http",  # op.http
    "shell",  # op.shell
    "failed_cells",  # cell.finished with status "error"
    "risky",  # op.sql / op.shell with a built-in finding (`risk.risk_rules`)
    "approvals",  # approval.requested
    "capture_gaps",  # cell.unreported
    "unattributed",  # op.unattributed, and cell.started flagged unattributed
)

#: before ALLOW_LIST_FORMAT: kinds whose identity does not make a participant
NOT_TAKING_PART = ("trail.accessed", "file.saved", "session.renamed")
#: the trail format from which participants are named by `takes_part`'s allow-list
ALLOW_LIST_FORMAT = 4
#: kinds (besides `cell.*`, `op.*` and a `session.started` that is no restart) whose
#: identity takes part in the trace
TAKING_PART = ("approval.requested", "approval.executed")
_TAKES_PART_SQL = (
    "(e.kind LIKE 'cell.%' OR e.kind LIKE 'op.%' OR e.kind IN ("
    + ", ".join(f"'{k}'" for k in TAKING_PART)
    + ") OR (e.kind = 'session.started' AND coalesce(json_extract_string("
    "decode(e.record), '$.payload.reason'), '') <> 'restart'))"
)
#: kinds that belong to a trace (its timeline) but are not counted in its row
NOT_ACTIVITY = ("trail.accessed",)
_NOT_ACTIVITY_SQL = ", ".join(f"'{k}'" for k in NOT_ACTIVITY)
_NOT_TAKING_PART_SQL = ", ".join(f"'{k}'" for k in NOT_TAKING_PART)

#: the columns of `traces`, in order
TRACE_COLUMNS = (
    "trace_id",
    "kernel_id",
    "notebook",
    "started_at",
    "last_at",
    "first_seq",
    "last_seq",
    "events",
    "cells",
    "operations",
    "status",
    *COUNTS,
)
_COLUMN_LIST = ", ".join(TRACE_COLUMNS)
#: kinds whose count `TraceRow.add` reads from the payload (callers parse only these)
NEEDS_PAYLOAD = frozenset(
    ("cell.finished", "op.sql", "op.shell", "op.unattributed", "session.started")
)
_KIND_COUNTS = {
    "op.sql": "queries",
    "op.http": "http",
    "op.shell": "shell",
    "approval.requested": "approvals",
    "cell.unreported": "capture_gaps",
    "op.unattributed": "unattributed",
}
_ADD_COUNTS = ",\n    ".join(f"{c} = traces.{c} + excluded.{c}" for c in COUNTS)
_UPDATE_COUNTS = ",\n    ".join(f"{c} = {c} + ?" for c in COUNTS)

# explicit column lists: a later format may add columns to these tables
UPSERT_TRACES = f"""
INSERT INTO traces ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {{src}}
ON CONFLICT (trace_id) DO UPDATE SET
    kernel_id = COALESCE(traces.kernel_id, excluded.kernel_id),
    notebook = COALESCE(excluded.notebook, traces.notebook),
    last_at = excluded.last_at,
    last_seq = excluded.last_seq,
    events = traces.events + excluded.events,
    cells = traces.cells + excluded.cells,
    operations = traces.operations + excluded.operations,
    status = COALESCE(excluded.status, traces.status),
    {_ADD_COUNTS}
"""

# the same change as UPSERT_TRACES makes to an existing row
UPDATE_TRACE = f"""
UPDATE traces SET
    kernel_id = COALESCE(kernel_id, ?),
    notebook = COALESCE(?, notebook),
    last_at = make_timestamp(?::BIGINT),
    last_seq = ?,
    events = events + ?,
    cells = cells + ?,
    operations = operations + ?,
    status = COALESCE(?, status),
    {_UPDATE_COUNTS}
WHERE trace_id = ?
"""

INSERT_TRACE_NOTEBOOKS = (
    "INSERT INTO trace_notebooks (trace_id, notebook, first_seq) "
    "SELECT trace_id, notebook, first_seq FROM {src} ON CONFLICT DO NOTHING"
)

INSERT_TRACE_USERS = (
    "INSERT INTO trace_users (trace_id, username) SELECT trace_id, username FROM {src} "
    "ON CONFLICT DO NOTHING"
)


@dataclass(slots=True)
class TraceRow:
    """What a run of events adds to one trace's row (a new trace: the row itself)."""

    kernel_id: str | None
    notebook: str | None
    first_seq: int
    last_seq: int
    events: int = 0
    cells: int = 0
    operations: int = 0
    status: str | None = None  # "running", "ended", or None: unchanged
    queries: int = 0
    http: int = 0
    shell: int = 0
    failed_cells: int = 0
    risky: int = 0
    approvals: int = 0
    capture_gaps: int = 0
    unattributed: int = 0
    # every notebook name the run of events gave, with the first seq that gave it
    names: dict[str, int] | None = None

    def add(
        self,
        seq: int,
        kind: str,
        kernel_id,
        notebook,
        unattributed_start: bool,
        payload: dict | None = None,
    ) -> None:
        """Count one event of the trace; `unattributed_start`: a `cell.started` flagged
        "unattributed" (a cell no `cell.requested` announced, counted as a cell itself);
        `payload`: the stored (masked) payload, needed for the kinds in NEEDS_PAYLOAD."""
        self.last_seq = seq
        self.events += 1
        if kernel_id and not self.kernel_id:
            self.kernel_id = kernel_id
        if notebook:
            self.notebook = notebook
            if self.names is None:
                self.names = {notebook: seq}
            elif notebook not in self.names:
                self.names[notebook] = seq
        if kind == "cell.requested" or unattributed_start:
            self.cells += 1
            if unattributed_start:
                self.unattributed += 1
        elif kind.startswith("op."):
            self.operations += 1
        counted = _KIND_COUNTS.get(kind)
        if counted is not None:
            setattr(self, counted, getattr(self, counted) + 1)
        if kind in NEEDS_PAYLOAD and payload is not None:
            if kind == "cell.finished":
                if payload.get("status") == "error":
                    self.failed_cells += 1
            elif risk_rules(kind, payload):
                self.risky += 1
        if kind == "session.ended":
            self.status = "ended"
        elif kind == "session.started":
            self.status = "running"


def traces_table(traces: dict[str, TraceRow], times: dict) -> pa.Table:
    """Rows for the traces table: `traces` maps trace id to its TraceRow, `times` to
    (started_at, last_at)."""
    ids = list(traces)
    rows = [traces[t] for t in ids]
    return pa.table(
        {
            "trace_id": pa.array(ids, pa.string()),
            "kernel_id": pa.array([r.kernel_id for r in rows], pa.string()),
            "notebook": pa.array([r.notebook for r in rows], pa.string()),
            "started_at": pa.array([times[t][0] for t in ids], pa.timestamp("us")),
            "last_at": pa.array([times[t][1] for t in ids], pa.timestamp("us")),
            "first_seq": pa.array([r.first_seq for r in rows], pa.int64()),
            "last_seq": pa.array([r.last_seq for r in rows], pa.int64()),
            "events": pa.array([r.events for r in rows], pa.int64()),
            "cells": pa.array([r.cells for r in rows], pa.int64()),
            "operations": pa.array([r.operations for r in rows], pa.int64()),
            "status": pa.array([r.status for r in rows], pa.string()),
            **{c: pa.array([getattr(r, c) for r in rows], pa.int64()) for c in COUNTS},
        }
    )


def store_traces(
    con,
    traces: dict[str, TraceRow],
    users: set,
    last_us: int,
    known: set,
    notebooks: set[tuple[str, str, int]] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Add a batch's counts to its traces' rows (`known`: trace ids with a row already), and
    the (trace, notebook name, first seq) rows of `notebooks`. A
    cell's few events touch one or two known traces: an UPDATE each costs a third of the
    Arrow upsert, which big batches and new traces use."""
    rest = traces
    if len(traces) <= 2 and known.issuperset(traces):
        rest = {}
        for trace_id, r in traces.items():
            (updated,) = con.execute(
                UPDATE_TRACE,
                [
                    r.kernel_id,
                    r.notebook,
                    last_us,
                    r.last_seq,
                    r.events,
                    r.cells,
                    r.operations,
                    r.status,
                    *(getattr(r, c) for c in COUNTS),
                    trace_id,
                ],
            ).fetchone()
            if not updated:  # the row is gone (derived tables rebuilt): upsert it
                rest[trace_id] = r
    if rest:
        upsert_traces(con, rest, {i: (last_us, last_us) for i in rest})
    if users:
        insert_trace_users(con, users)
    if notebooks:
        insert_trace_notebooks(con, notebooks)


def upsert_traces(con, traces: dict[str, TraceRow], times: dict) -> None:
    """Insert new trace rows, add to existing ones (`traces_table` for the arguments)."""
    con.register("_batch_traces", traces_table(traces, times))
    try:
        con.execute(UPSERT_TRACES.format(src="_batch_traces"))
    finally:
        con.unregister("_batch_traces")


def insert_trace_notebooks(con, notebooks: set[tuple[str, str, int]]) -> None:
    """Record (trace id, notebook name, first seq) rows; names already there keep theirs."""
    t = pa.table(
        {
            "trace_id": pa.array([a for a, _, _ in notebooks], pa.string()),
            "notebook": pa.array([b for _, b, _ in notebooks], pa.string()),
            "first_seq": pa.array([c for _, _, c in notebooks], pa.int64()),
        }
    )
    con.register("_batch_notebooks", t)
    try:
        con.execute(INSERT_TRACE_NOTEBOOKS.format(src="_batch_notebooks"))
    finally:
        con.unregister("_batch_notebooks")


def insert_trace_users(con, users: set[tuple[str, str]]) -> None:
    """Record (trace id, username) pairs; pairs already there are left as they are."""
    u = pa.table(
        {
            "trace_id": pa.array([a for a, _ in users], pa.string()),
            "username": pa.array([b for _, b in users], pa.string()),
        }
    )
    con.register("_batch_users", u)
    try:
        con.execute(INSERT_TRACE_USERS.format(src="_batch_users"))
    finally:
        con.unregister("_batch_users")


# What the derived tables must hold, computed from the log in SQL with the counting rules of
# TraceRow.add (first kernel id; last notebook named, none and "" alike; cells: requested,
# plus cell.started flagged unattributed; operations: op.*; status: the last session event).
_DERIVED_TRACES = f"""
WITH odd AS (  -- cells no cell.requested announced (their record is read only for these)
    SELECT trace_id, count(*) AS n FROM events
    WHERE kind = 'cell.started' AND trace_id IS NOT NULL
        AND list_contains(json_extract_string(decode(record), '$.flags[*]'), 'unattributed')
    GROUP BY trace_id
), d AS (
    SELECT trace_id,
        arg_min(kernel_id, seq) FILTER (WHERE kernel_id IS NOT NULL) AS kernel_id,
        coalesce(arg_max(notebook, seq) FILTER (WHERE notebook <> ''), '') AS notebook,
        arg_min(time, seq) AS started_at,
        arg_max(time, seq) AS last_at,
        min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS events,
        count(*) FILTER (WHERE kind = 'cell.requested') AS cells,
        count(*) FILTER (WHERE kind LIKE 'op.%') AS operations,
        arg_max(CASE WHEN kind = 'session.ended' THEN 'ended' ELSE 'running' END, seq)
            FILTER (WHERE kind IN ('session.started', 'session.ended')) AS status
    FROM events WHERE trace_id IS NOT NULL AND kind NOT IN ({_NOT_ACTIVITY_SQL})
    GROUP BY trace_id
)
SELECT coalesce(d.trace_id, t.trace_id) AS trace_id
FROM d LEFT JOIN odd USING (trace_id) FULL OUTER JOIN traces t USING (trace_id)
WHERE d.trace_id IS NULL OR t.trace_id IS NULL
    OR t.kernel_id IS DISTINCT FROM d.kernel_id
    OR coalesce(t.notebook, '') <> d.notebook
    OR t.started_at IS DISTINCT FROM d.started_at OR t.last_at IS DISTINCT FROM d.last_at
    OR t.first_seq IS DISTINCT FROM d.first_seq OR t.last_seq IS DISTINCT FROM d.last_seq
    OR t.events IS DISTINCT FROM d.events
    OR t.cells IS DISTINCT FROM d.cells + coalesce(odd.n, 0)
    OR t.operations IS DISTINCT FROM d.operations OR t.status IS DISTINCT FROM d.status
ORDER BY 1 LIMIT 1
"""

#: the trail format from which the server's own (system) events make no one a participant;
#: before it, their OS account was listed among a trace's people
PEOPLE_ONLY_FORMAT = 3


def participants_sql(format_version: int) -> str:
    """Who took part in each trace, (trace_id, username), as a trail of `format_version`
    records them: the usernames of the identity snapshots (not the `username` column beside
    them) of the trace's events that take part (`takes_part`; before ALLOW_LIST_FORMAT,
    all but NOT_TAKING_PART, which no trail before them gave a trace); from
    PEOPLE_ONLY_FORMAT on, people and service accounts only (`TraceRow`'s batches leave
    system snapshots out alike: `is_participant`). The snapshots are read once each, before
    the join, not once per event."""
    people = ""
    if format_version >= PEOPLE_ONLY_FORMAT:
        people = (
            "WHERE json_extract_string(snapshot, '$.auth_method') "
            f"IS DISTINCT FROM '{SYSTEM_AUTH_METHOD}'"
        )
    if format_version >= ALLOW_LIST_FORMAT:
        taking_part = _TAKES_PART_SQL
    else:
        taking_part = f"e.kind NOT IN ({_NOT_TAKING_PART_SQL})"
    return f"""
SELECT DISTINCT e.trace_id, i.username FROM events e JOIN (
    SELECT identity_id, json_extract_string(snapshot, '$.username') AS username
    FROM identities {people}
) i USING (identity_id)
WHERE e.trace_id IS NOT NULL AND {taking_part}
"""


def takes_part(kind: str, payload: dict | None) -> bool:
    """Whether an event of `kind` (its stored `payload` for a `session.started`) is taking
    part in its trace: running code in it, asking for or running an approval, starting
    (not restarting) its kernel."""
    if kind.startswith(("cell.", "op.")) or kind in TAKING_PART:
        return True
    if kind == "session.started":
        return not (isinstance(payload, dict) and payload.get("reason") == "restart")
    return False


def is_participant(snapshot: dict | None, kind: str, payload: dict | None = None) -> bool:
    """Whether an event of `kind` with this identity makes its username one of the trace's
    participants (today's format)."""
    return snapshot is not None and not is_system(snapshot) and takes_part(kind, payload)


def _derived_users(format_version: int) -> str:
    participants = participants_sql(format_version)
    return f"""
SELECT trace_id FROM (
    (({participants}) EXCEPT (SELECT trace_id, username FROM trace_users))
    UNION ALL
    ((SELECT trace_id, username FROM trace_users) EXCEPT ({participants}))
) ORDER BY 1 LIMIT 1
"""


# Format 2 -> 3: the rows only the server's own events put in trace_users go. Exactly those:
# a row added or removed by hand stays as it was, for verify to report after the migration.
DROP_SYSTEM_PARTICIPANTS = f"""
DELETE FROM trace_users t USING (
    ({participants_sql(PEOPLE_ONLY_FORMAT - 1)}) EXCEPT ({participants_sql(PEOPLE_ONLY_FORMAT)})
) s WHERE t.trace_id = s.trace_id AND t.username = s.username
"""

# Format 3 -> 4: the rows only an outside act put in trace_users go (someone who interrupted,
# restarted or shut down another's kernel, or decided their approval). Exactly those, as
# above: a row added or removed by hand stays, for verify to report.
DROP_OUTSIDE_ACTORS = f"""
DELETE FROM trace_users t USING (
    ({participants_sql(ALLOW_LIST_FORMAT - 1)}) EXCEPT ({participants_sql(ALLOW_LIST_FORMAT)})
) s WHERE t.trace_id = s.trace_id AND t.username = s.username
"""


def derived_differences(con, format_version: int) -> tuple[str, str] | None:
    """The first trace whose derived rows are not what the log says, under the rules of the
    trail's `format_version`: (trace id, what)."""
    row = con.execute(_derived_users(format_version)).fetchone()
    if row is not None:
        return row[0], "its participants (trace_users) differ from the log"
    row = con.execute(_DERIVED_TRACES).fetchone()
    if row is not None:
        return row[0], "its row in traces differs from the log"
    return None


def traces_in_range(con, lo: int, hi: int, format_version: int) -> dict[str, list[str]]:
    """Trace id -> its participants, over the records #lo..#hi only: what an archive run
    records (signed, in `trail.archived`) of the records leaving the live trail, so that
    the live trail alone can still check and rebuild `trace_users`."""
    if getattr(con, "dialect", None) == "postgresql":
        from .pg.derived import participants_in_range  # the rules in Python, as pg counts

        return participants_in_range(con, lo, hi)
    out: dict[str, set[str]] = {
        tid: set()
        for (tid,) in con.execute(
            "SELECT DISTINCT trace_id FROM events WHERE seq BETWEEN ? AND ? "
            f"AND trace_id IS NOT NULL AND kind NOT IN ({_NOT_ACTIVITY_SQL})",
            [lo, hi],
        ).fetchall()
    }
    # `events` narrowed to the range by a CTE of that name: whatever participants_sql's
    # WHERE holds stays as it is
    for tid, user in con.execute(
        "WITH events AS (SELECT * FROM main.events WHERE seq BETWEEN ? AND ?) "
        + participants_sql(format_version),
        [lo, hi],
    ).fetchall():
        out.setdefault(tid, set()).add(user)
    return {tid: sorted(users) for tid, users in sorted(out.items())}


def archived_pairs(archived: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(tid, user) for tid, users in archived.items() for user in users}


def derived_differences_after_archive(
    con, format_version: int, archived: dict[str, list[str]]
) -> tuple[str, str] | None:
    """`derived_differences` for a live trail whose head was archived: `archived` (from the
    signed `trail.archived` that ends before the first live record) is who took part in
    each trace over the archived records. `trace_users` must be those plus the live
    records' participants; a trace with no archived record must have exactly the `traces`
    row its live records make, and an archived one a row (its counts are checked with
    `--archive`)."""
    want = archived_pairs(archived) | {
        (t, u) for t, u in con.execute(participants_sql(format_version)).fetchall()
    }
    have = set(con.execute("SELECT trace_id, username FROM trace_users").fetchall())
    if want != have:
        return min(t for t, _u in want ^ have), "its participants (trace_users) differ from the log"
    ids = sorted(archived)
    query = _DERIVED_TRACES.rsplit("ORDER BY 1 LIMIT 1", 1)[0]
    row = con.execute(
        f"SELECT trace_id FROM ({query}) WHERE trace_id NOT IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY 1 LIMIT 1",
        [ids],
    ).fetchone()
    if row is None:
        row = con.execute(
            "SELECT min(trace_id) FROM (SELECT unnest(?::VARCHAR[]) AS trace_id "
            "EXCEPT SELECT trace_id FROM traces)",
            [ids],
        ).fetchone()
        row = row if row and row[0] is not None else None
    if row is not None:
        return row[0], "its row in traces differs from the log"
    return None
