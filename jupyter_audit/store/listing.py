"""Trace listings: the filtered, cursor-paged list of trace summaries (REST `GET traces`).

A summary is the trace's row in the derived `traces` table (its counts by the rules of
`traces.TraceRow.add`), its participants and every name its notebook had. Filters and
searches read derived tables only (`traces`, `trace_users`, `trace_notebooks`,
`search_terms`), never a scan of the records, except a `kind` filter for a kind no count
column covers. Read side: it must never import the writer or write anything.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from . import search
from .traces import COUNTS, TRACE_COLUMNS

#: the flags of a trace, in order: a count above zero (`integrity`: a broken record in it)
FLAGS = ("failed_cells", "risky", "approvals", "capture_gaps", "unattributed", "integrity")
CURSOR_PREFIX = "ls1."

# kinds whose presence in a trace its row counts (no scan of the log to filter on them)
_KIND_COLUMNS = {
    "op.sql": "queries",
    "op.http": "http",
    "op.shell": "shell",
    "cell.requested": "cells",
    "approval.requested": "approvals",
    "cell.unreported": "capture_gaps",
    "op.unattributed": "unattributed",
}


class QueryError(ValueError):
    """A listing or timeline request the trail cannot answer as asked: the caller's 400."""


def iso(ts) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(ts)


def trace_row(row, users: list[str]) -> dict:
    """A summary from a `traces` row (TRACE_COLUMNS) and its participants' usernames."""
    d = dict(zip(TRACE_COLUMNS, row, strict=True))
    started, last = d["started_at"], d["last_at"]
    d["duration_s"] = (last - started).total_seconds() if started and last else 0
    d["started_at"] = iso(started)
    d["last_at"] = iso(last)
    d["status"] = d["status"] or "running"
    d["users"] = users
    d["counts"] = {"cells": d["cells"], **{c: d.pop(c) or 0 for c in COUNTS}}
    d["flags"] = [f for f in FLAGS if d["counts"].get(f)]
    return d


def trace_columns(cur, alias: str = "t") -> str:
    """The select list of TRACE_COLUMNS from `traces` as this trail has it: a trail whose
    derived tables predate the counts (read with `--db` before a server rebuilt them) reads
    0 for each. A PostgreSQL trail (`pg`) always has them all."""
    if getattr(cur, "dialect", "duckdb") == "postgresql":
        return ", ".join(f"{alias}.{c}" for c in TRACE_COLUMNS)
    have = {
        r[0]
        for r in cur.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'traces'"
        ).fetchall()
    }
    return ", ".join(f"{alias}.{c}" if c in have else f"0 AS {c}" for c in TRACE_COLUMNS)


def _has_table(cur, name: str) -> bool:
    if getattr(cur, "dialect", "duckdb") == "postgresql":
        return True  # a PostgreSQL trail is made with every table (`pg.schema`)
    return bool(
        cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()[
            0
        ]
    )


def encode_cursor(last_seq: int) -> str:
    """The opaque `next` of a traces page: where the next page starts (traces are ordered
    by their last record, newest first, and no two traces share one)."""
    return CURSOR_PREFIX + format(int(last_seq), "x")


def decode_cursor(raw: str) -> int:
    """The position an `encode_cursor` value names (QueryError if it is not one)."""
    bad = QueryError("cursor is not one this server returned")
    if not raw.startswith(CURSOR_PREFIX) or len(raw) > 40:
        raise bad
    digits = raw[len(CURSOR_PREFIX) :]
    if not digits or any(c not in "0123456789abcdef" for c in digits):
        raise bad
    value = int(digits, 16)
    if value >= 2**63:
        raise bad
    return value


def notebook_traces_sql(notebook: str) -> tuple[str, list]:
    """SQL selecting the ids of the traces whose notebook is, or once was, named like
    `notebook` (substring, case-insensitive), and its parameters: the one notebook filter
    of listings (renames included: `trace_notebooks` holds every name a trace had)."""
    return (
        "SELECT trace_id FROM trace_notebooks WHERE strpos(lower(notebook), ?) > 0",
        [notebook.lower()],
    )


def list_traces(
    cur,
    *,
    username: str | None = None,
    limit: int = 100,
    before_seq=None,
    notebook: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: list[str] | None = None,
    flags: list[str] | None = None,
    q: list[str] | None = None,
    broken: set[str] | None = None,
    trace_prefixes: tuple[str, ...] | None = None,
) -> list[dict]:
    """Newest traces first (by their last record), `limit` of them, all filters AND-ed:
    `username` took part; `before_seq`: last record before it (the cursor); `notebook`
    (`notebook_traces_sql`); overlapping [`since`, `until`]; holding a record of each of
    `kinds`; every one of `flags` (FLAGS; `broken`: the ids of traces holding a broken
    record); `q`: words (`search.terms`) some record holds, with `matches` counted;
    `trace_prefixes`: the trace id starts with one of them (a collector's reader: the traces
    of their own servers, `collector.protocol.trace_in_collector`)."""
    params: list[object]
    where, params = [], []
    if username is not None:
        where.append("t.trace_id IN (SELECT trace_id FROM trace_users WHERE username = ?)")
        params.append(username)
    if trace_prefixes is not None:
        if not trace_prefixes:
            return []
        where.append("(" + " OR ".join(["starts_with(t.trace_id, ?)"] * len(trace_prefixes)) + ")")
        params += list(trace_prefixes)
    if before_seq is not None:
        where.append("t.last_seq < ?")
        params.append(int(before_seq))
    if notebook is not None:
        sql, p = notebook_traces_sql(notebook)
        where.append(f"t.trace_id IN ({sql})")
        params += p
    if since is not None:
        where.append("t.last_at >= ?")
        params.append(since.astimezone(UTC).replace(tzinfo=None))
    if until is not None:
        where.append("t.started_at <= ?")
        params.append(until.astimezone(UTC).replace(tzinfo=None))
    for kind in kinds or ():
        column = _KIND_COLUMNS.get(kind)
        if column is not None:
            where.append(f"t.{column} > 0")
        else:
            where.append("t.trace_id IN (SELECT trace_id FROM events WHERE kind = ?)")
            params.append(kind)
    for flag in flags or ():
        if flag == "integrity":
            where.append("t.trace_id IN (SELECT unnest(?::VARCHAR[]))")
            params.append(sorted(broken or ()))
        elif flag in FLAGS:
            where.append(f"t.{flag} > 0")
        else:
            raise QueryError(f"flag must be one of {', '.join(FLAGS)}")
    columns = trace_columns(cur)
    source = "traces t"
    if q:
        sql, p = search.matching_sql(q, dialect=getattr(cur, "dialect", "duckdb"))
        source += (
            f" JOIN (SELECT trace_id, count(*) AS matches FROM ({sql}) s GROUP BY trace_id) m"
            " USING (trace_id)"
        )
        params = p + params
        columns += ", m.matches"
    sql = f"SELECT {columns} FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY t.last_seq DESC LIMIT ?"
    params.append(int(limit))
    rows = cur.execute(sql, params).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    users: dict[str, list[str]] = {i: [] for i in ids}
    for tid, user in cur.execute(
        "SELECT trace_id, username FROM trace_users WHERE trace_id IN (SELECT unnest(?)) "
        "ORDER BY username",
        [ids],
    ).fetchall():
        users[tid].append(user)
    n = len(TRACE_COLUMNS)
    out = []
    for r in rows:
        d = trace_row(r[:n], users[r[0]])
        if q:
            d["matches"] = r[n]
        out.append(d)
    add_people(cur, out, broken or set())
    return out


def add_people(cur, summaries: list[dict], broken: set[str]) -> None:
    """Each summary's `notebooks` (oldest first), `participants` and `integrity` flag."""
    ids = [d["trace_id"] for d in summaries]
    names: dict[str, list[str]] = {i: [] for i in ids}
    rows = []
    if _has_table(cur, "trace_notebooks"):  # derived tables of before issue 15: no names
        rows = cur.execute(
            "SELECT trace_id, notebook FROM trace_notebooks WHERE trace_id IN (SELECT unnest(?)) "
            "ORDER BY first_seq",
            [ids],
        ).fetchall()
    for tid, name in rows:
        names[tid].append(name)
    people = participants(cur, sorted({u for d in summaries for u in d["users"]}))
    for d in summaries:
        d["notebooks"] = names[d["trace_id"]] or ([d["notebook"]] if d["notebook"] else [])
        d["participants"] = [people[u] for u in d["users"]]
        if d["trace_id"] in broken:
            d["counts"]["integrity"] = 1
            d["flags"].append("integrity")


def participants(cur, usernames: list[str]) -> dict[str, dict]:
    """What a listing shows of each participant, from their newest identity snapshot:
    whether a service account (a token's identity), the token's owner, a display name."""
    out: dict[str, dict] = {u: participant(u) for u in usernames}
    if not usernames:
        return out
    for username, snap in cur.execute(
        "SELECT DISTINCT ON (username) username, snapshot FROM identities "
        "WHERE username IN (SELECT unnest(?)) ORDER BY username, first_seq DESC",
        [usernames],
    ).fetchall():
        out[username] = participant(username, snap)
    return out


def participant(username: str, snapshot: str | bytes | None = None) -> dict:
    """What a listing shows of a participant, from an identity snapshot (JSON text) of
    theirs, or their name alone."""
    s = json.loads(snapshot) if snapshot is not None else {}
    return {
        "username": username,
        "service_account": bool(s.get("token_id")),
        "token_owner": s.get("token_owner"),
        "display_name": s.get("display_name"),
    }


def broken_traces(cur, seqs: list[int]) -> set[str]:
    """The traces the records at `seqs` belong to, by their indexed column and by their
    signed record (an edit may have set them apart: both are named)."""
    out: set[str] = set()
    if not seqs:
        return out
    for tid, rec in cur.execute(
        "SELECT trace_id, record FROM events WHERE seq IN (SELECT unnest(?))", [list(seqs)]
    ).fetchall():
        if tid:
            out.add(tid)
        try:
            other = json.loads(rec).get("trace_id")
        except (ValueError, AttributeError):
            other = None
        if isinstance(other, str):
            out.add(other)
    return out
