"""Read side of the trail: trace listings, timelines, export records, derived-table rebuild.

Everything shown to a person is decoded from the signed record bytes, not from the indexed
columns, so what a reviewer reads is what `verify` checks. These are the DuckDB backend's
read queries; callers that do not hold a cursor use the store's verbs (`base.TrailStore`).
Nothing here writes to the log: only `rebuild_derived` writes, and only derived tables.
It must never import the writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from .listing import add_people, list_traces, trace_columns, trace_row
from .schema import DERIVED_DDL, DERIVED_VERSION, FORMAT_VERSION
from .traces import (
    NEEDS_PAYLOAD,
    NOT_ACTIVITY,
    TraceRow,
    archived_pairs,
    insert_trace_notebooks,
    participants_sql,
    upsert_traces,
)

# listings live in `listing` (trace-id prefixes in `trace_ids`); callers reach them here too
__all__ = ["list_traces"]


def trace_users(cur, trace_id: str) -> list[str]:
    return [
        r[0]
        for r in cur.execute(
            "SELECT username FROM trace_users WHERE trace_id = ? ORDER BY username", [trace_id]
        ).fetchall()
    ]


def get_trace_summary(cur, trace_id: str, broken: set[str] | None = None) -> dict | None:
    """A trace's summary as listings show it (`listing`); `broken`: ids of traces holding
    a broken record."""
    row = cur.execute(
        f"SELECT {trace_columns(cur)} FROM traces t WHERE trace_id = ?", [trace_id]
    ).fetchone()
    if row is None:
        return None
    d = trace_row(row, trace_users(cur, trace_id))
    add_people(cur, [d], broken or set())
    return d


class IdentityCache:
    def __init__(self, cur):
        self.cur = cur
        self.cache: dict[str, dict] = {}

    def get(self, iid: str | None) -> dict | None:
        if iid is None:
            return None
        got = self.cache.get(iid)
        if got is None:
            row = self.cur.execute(
                "SELECT snapshot FROM identities WHERE identity_id = ?", [iid]
            ).fetchone()
            got = json.loads(row[0]) if row else {"username": None, "missing": True}
            self.cache[iid] = got
        return got


def export_record(rec_bytes: bytes, hash_: bytes, identities: IdentityCache) -> dict:
    """The export record (README, "For auditors"): the signed record plus its hash and identity."""
    rec = json.loads(rec_bytes)
    rec["hash"] = bytes(hash_).hex()
    rec["identity"] = identities.get(rec.get("identity_id"))
    return rec


def get_trace_events(
    cur, trace_id: str, summary: dict | None = None, limit: int = 10_000
) -> list[dict]:
    rows = cur.execute(
        "SELECT record, hash FROM events WHERE trace_id = ? ORDER BY seq LIMIT ?",
        [trace_id, int(limit)],
    ).fetchall()
    ids = IdentityCache(cur)
    # the signed record decides: a row whose indexed trace_id was edited is not shown here
    return [e for e in (export_record(r, h, ids) for r, h in rows) if e["trace_id"] == trace_id]


def traces_named_sql(name: str, *, partial: bool = False) -> tuple[str, list]:
    """SQL selecting the ids of the traces that carried the notebook `name` at any point
    (its current name or an earlier one: every record keeps the name it was made under, and
    `session.renamed` names both), and its parameters. `partial`: `name` is a
    case-insensitive substring instead of the exact (stored, masked) name."""
    if partial:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return (
            "SELECT DISTINCT trace_id FROM events WHERE trace_id IS NOT NULL "
            "AND notebook ILIKE ? ESCAPE '\\'",
            [f"%{escaped}%"],
        )
    return "SELECT DISTINCT trace_id FROM events WHERE trace_id IS NOT NULL AND notebook = ?", [
        name
    ]


def traces_named(cur, name: str, *, partial: bool = False) -> list[str]:
    """The ids of the traces that carried the notebook `name` at any point, sorted
    (`traces_named_sql`)."""
    sql, params = traces_named_sql(name, partial=partial)
    return sorted(r[0] for r in cur.execute(sql, params).fetchall())


def iter_trace(cur, trace_id: str, page: int = 1000, after_seq: int = 0) -> Iterator[dict]:
    """Every record of a trace after `after_seq`, in seq order, as export records, read a page
    at a time (keyset on seq): memory stays flat however long the trace, where one query
    ordered by seq would hold the whole result for its sort. Records whose signed trace_id
    is not this one (an edited index column) are left out, as in `get_trace_events`."""
    ids = IdentityCache(cur.cursor() if hasattr(cur, "cursor") else cur)
    after = int(after_seq)
    while True:
        rows = cur.execute(
            "SELECT seq, record, hash FROM events WHERE trace_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            [trace_id, after, int(page)],
        ).fetchall()
        for _seq, rec, h in rows:
            e = export_record(rec, h, ids)
            if e["trace_id"] == trace_id:
                yield e
        if len(rows) < page:
            return
        after = rows[-1][0]


def export_filter(
    *,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    notebook: str | None = None,
    trace: str | None = None,
    trace_ids: list[str] | None = None,
    trace_prefixes: tuple[str, ...] | None = None,
) -> tuple[str, list]:
    """The WHERE clause and parameters of an export: every filter AND-ed (`user`: the
    identity recorded; `trace_prefixes`: the trace id starts with one of them, a
    collector's reader's own servers, `listing.list_traces`)."""
    params: list[object]
    where, params = [], []
    if user is not None:
        where.append("identity_id IN (SELECT identity_id FROM identities WHERE username = ?)")
        params.append(user)
    if since is not None:
        where.append("time >= ?")
        params.append(since.astimezone(UTC).replace(tzinfo=None))
    if until is not None:
        where.append("time <= ?")
        params.append(until.astimezone(UTC).replace(tzinfo=None))
    if notebook is not None:
        # every record of each trace that ever had that name, and the trace-less ones made
        # under it (a save of the notebook with no kernel open)
        named, named_params = traces_named_sql(notebook)
        where.append(f"(trace_id IN ({named}) OR notebook = ?)")
        params.extend([*named_params, notebook])
    if trace is not None:
        where.append("trace_id = ?")
        params.append(trace)
    if trace_ids is not None:
        where.append("trace_id IN (SELECT unnest(?))")
        params.append(list(trace_ids))
    if trace_prefixes is not None:
        if not trace_prefixes:
            where.append("FALSE")
        else:
            where.append(
                "(" + " OR ".join(["starts_with(trace_id, ?)"] * len(trace_prefixes)) + ")"
            )
            params += list(trace_prefixes)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def iter_export(cur, where: str, params: list, batch: int = 10_000) -> Iterator[dict]:
    ids = IdentityCache(cur.cursor() if hasattr(cur, "cursor") else cur)
    result = cur.execute(f"SELECT record, hash FROM events{where} ORDER BY seq", params)
    while True:
        rows = result.fetchmany(batch)
        if not rows:
            return
        for rec, h in rows:
            yield export_record(rec, h, ids)


def trail_stats(cur, trace_prefixes: tuple[str, ...] | None = None) -> dict:
    """{"events", "last_seq"} of the whole trail, or (`trace_prefixes`) of the traces whose
    id starts with one of them (a collector's reader's own servers': from the `traces`
    table's counts, not a scan of the log)."""
    if trace_prefixes is None:
        row = cur.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
        return {"events": row[0], "last_seq": row[1]}
    if not trace_prefixes:
        return {"events": 0, "last_seq": 0}
    where = " OR ".join(["starts_with(trace_id, ?)"] * len(trace_prefixes))
    row = cur.execute(
        f"SELECT coalesce(sum(events), 0), coalesce(max(last_seq), 0) FROM traces WHERE {where}",
        list(trace_prefixes),
    ).fetchone()
    return {"events": int(row[0]), "last_seq": int(row[1])}


def rebuild_derived(con, archived: dict[str, list[str]] | None = None) -> None:
    """Recompute every derived table from the log (after a change of their shapes or rules,
    `schema.DERIVED_VERSION`, or an edit found at open): recreated with today's columns and
    recounted; the search index starts empty, for `search.catch_up` to fill. `archived`:
    trace id -> participants over records archived away (from the signed `trail.archived`
    the live trail continues): those traces keep their rows, their participants are added."""
    kept: dict[str, tuple[list[str], list]] = {}
    if archived:
        for table in ("traces", "trace_notebooks"):
            cur = con.execute(
                f"SELECT * FROM {table} WHERE trace_id IN (SELECT unnest(?::VARCHAR[]))",
                [sorted(archived)],
            )
            kept[table] = ([d[0] for d in cur.description], cur.fetchall())
    traces: dict[str, TraceRow] = {}
    times: dict[str, list] = {}
    result = con.execute(
        "SELECT seq, kind, time, trace_id, kernel_id, notebook, record FROM events "
        "WHERE trace_id IS NOT NULL AND kind NOT IN (SELECT unnest(?)) ORDER BY seq",
        [list(NOT_ACTIVITY)],
    )
    while rows := result.fetchmany(10_000):
        for seq, kind, ts, tid, kid, nb, rec in rows:
            t = traces.get(tid)
            if t is None:
                t = traces[tid] = TraceRow(kid, nb, seq, seq)
                times[tid] = [ts, ts]
            times[tid][1] = ts
            unattributed = kind == "cell.started" and "unattributed" in json.loads(rec)["flags"]
            payload = None
            if kind in NEEDS_PAYLOAD:
                payload = json.loads(rec).get("payload")
            t.add(seq, kind, kid, nb, unattributed, payload if isinstance(payload, dict) else None)
    con.execute("BEGIN")
    try:
        for table, ddl in DERIVED_DDL.items():
            con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(ddl)
        kept_ids = {r[cols.index("trace_id")] for cols, rs in kept.values() for r in rs}
        traces = {t: row for t, row in traces.items() if t not in kept_ids}
        for table, (cols, rows) in kept.items():
            if rows:
                listed = ", ".join(f'"{c}"' for c in cols)
                marks = ", ".join("?" for _ in cols)
                con.executemany(f"INSERT INTO {table} ({listed}) VALUES ({marks})", rows)
        if traces:
            upsert_traces(con, traces, times)
            names = {(i, n, s) for i, t in traces.items() for n, s in (t.names or {}).items()}
            if names:
                insert_trace_notebooks(con, names)
        # usernames from the snapshots themselves, which verify checks against their ids
        con.execute(
            f"INSERT INTO trace_users (trace_id, username) {participants_sql(FORMAT_VERSION)}"
        )
        if archived:
            con.executemany(
                "INSERT INTO trace_users (trace_id, username) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [list(p) for p in sorted(archived_pairs(archived))],
            )
        con.execute(
            "INSERT INTO meta VALUES ('derived_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [str(DERIVED_VERSION)],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


APPROVAL_KINDS = ("approval.requested", "approval.decided", "approval.executed")


def approval_records(cur, after_seq: int = 0) -> Iterator[tuple[dict, dict | None]]:
    """Every approval event after `after_seq`, in trail order: (record, identity snapshot).
    The approval broker rebuilds its state from these (and from each record it appends)."""
    ids = IdentityCache(cur.cursor() if hasattr(cur, "cursor") else cur)
    result = cur.execute(
        "SELECT record FROM events WHERE kind IN (SELECT unnest(?)) AND seq > ? ORDER BY seq",
        [list(APPROVAL_KINDS), int(after_seq)],
    )
    while rows := result.fetchmany(1000):
        for (rec,) in rows:
            r = json.loads(rec)
            yield r, ids.get(r.get("identity_id"))


def record_at(cur, seq: int) -> tuple[dict, dict | None] | None:
    """The stored (masked) record at `seq` and its identity snapshot."""
    row = cur.execute("SELECT record FROM events WHERE seq = ?", [int(seq)]).fetchone()
    if row is None:
        return None
    r = json.loads(row[0])
    return r, IdentityCache(cur).get(r.get("identity_id"))


def cell_code(
    cur, msg_id: str | None, kernel_id: str | None, trace_id: str | None = None
) -> str | None:
    """The (masked) code of the cell the gateway forwarded under `msg_id` to `kernel_id`
    (in trace `trace_id`, when given: a collector's trail holds every server's kernels)."""
    if not msg_id:
        return None
    in_trace = " AND trace_id = ?" if trace_id is not None else ""
    row = cur.execute(
        "SELECT record FROM events WHERE kind = 'cell.requested' AND msg_id = ? AND kernel_id "
        f"IS NOT DISTINCT FROM ?{in_trace} ORDER BY seq LIMIT 1",
        [msg_id, kernel_id, *([trace_id] if trace_id is not None else [])],
    ).fetchone()
    return None if row is None else json.loads(row[0])["payload"].get("code")


def kernel_stops(cur, kernel_ids: list[str], after_seq: int) -> dict[str, list[int]]:
    """For each kernel, the seqs of its interrupts, restarts and ends after `after_seq`, in
    order (a request pending at one of them was cancelled by it)."""
    out: dict[str, list[int]] = {}
    if not kernel_ids:
        return out
    rows = cur.execute(
        "SELECT kernel_id, seq, kind, record FROM events WHERE kernel_id IN (SELECT unnest(?)) "
        "AND seq > ? AND kind IN ('session.ended', 'session.interrupted', 'session.started') "
        "ORDER BY seq",
        [list(kernel_ids), int(after_seq)],
    ).fetchall()
    for kid, seq, kind, rec in rows:
        if kind != "session.started" or json.loads(rec)["payload"].get("reason") == "restart":
            out.setdefault(kid, []).append(seq)
    return out
