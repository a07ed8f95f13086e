"""The PostgreSQL trail's derived tables as the log says they must be, and their rebuild.

`Derivation` takes the log's records one by one, in order, and counts each trace's row with
the rules every backend uses (`traces.TraceRow.add`, `traces.is_participant`): what `verify`
compares the stored `traces`, `trace_users` and `trace_notebooks` rows with, and what
`rebuild` writes when they were found edited. The DuckDB trail does the same in SQL
(`traces.derived_differences`); here the records are decoded once anyway, for the column
check, so the counting rides along.
It reads records handed to it and writes only the derived tables: never the log.
"""

from __future__ import annotations

import json
from datetime import datetime

from ..traces import (
    NEEDS_PAYLOAD,
    NOT_ACTIVITY,
    TRACE_COLUMNS,
    TraceRow,
    archived_pairs,
    is_participant,
)
from .connection import PortableCursor
from .write import store_traces

_COMPARED = TRACE_COLUMNS[1:]  # all but the trace id


def participants_in_range(cur: PortableCursor, lo: int, hi: int) -> dict[str, list[str]]:
    """Trace id -> who took part in it over records #lo..#hi (`traces.traces_in_range` on a
    PostgreSQL trail), counted by the rules `Derivation` applies to the whole log."""
    snapshots = dict(cur.execute("SELECT identity_id, snapshot FROM identities").fetchall())
    d = Derivation(snapshots)
    for rows in cur.stream(
        "SELECT seq, time, record FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq", [lo, hi]
    ):
        for seq, time, rec in rows:
            d.add(seq, time, json.loads(bytes(rec)))
    out: dict[str, set[str]] = {tid: set() for tid in d.traces}
    for tid, user in d.pairs:
        out[tid].add(user)
    return {tid: sorted(users) for tid, users in sorted(out.items())}


class Derivation:
    """The traces projection of the records added so far (module docstring). `snapshots`:
    identity id -> its snapshot (JSON text), as the `identities` table holds them."""

    def __init__(self, snapshots: dict[str, str]):
        self.snapshots = snapshots
        self._decoded: dict[str, dict | None] = {}
        self.traces: dict[str, TraceRow] = {}
        self.times: dict[str, list[datetime]] = {}
        self.pairs: set[tuple[str, str]] = set()

    def _snapshot(self, identity_id: str | None) -> dict | None:
        if identity_id is None:
            return None
        if identity_id not in self._decoded:
            raw = self.snapshots.get(identity_id)
            self._decoded[identity_id] = None if raw is None else json.loads(raw)
        return self._decoded[identity_id]

    def add(self, seq: int, time: datetime, rec: dict) -> None:
        """One record (decoded from its signed bytes) at `seq`, stored at `time`."""
        trace_id, kind = rec.get("trace_id"), rec.get("kind")
        if trace_id is None or kind in NOT_ACTIVITY or not isinstance(kind, str):
            return
        kernel_id, notebook = rec.get("kernel_id"), rec.get("notebook")
        t = self.traces.get(trace_id)
        if t is None:
            t = self.traces[trace_id] = TraceRow(kernel_id, notebook, seq, seq)
            self.times[trace_id] = [time, time]
        self.times[trace_id][1] = time
        unattributed = kind == "cell.started" and "unattributed" in (rec.get("flags") or ())
        payload = rec.get("payload") if kind in NEEDS_PAYLOAD else None
        payload = payload if isinstance(payload, dict) else None
        t.add(seq, kind, kernel_id, notebook, unattributed, payload)
        snapshot = self._snapshot(rec.get("identity_id"))
        if snapshot is not None and is_participant(snapshot, kind, payload):
            self.pairs.add((trace_id, snapshot["username"]))

    def expected(self, trace_id: str) -> dict:
        t = self.traces[trace_id]
        started, last = self.times[trace_id]
        row = {c: getattr(t, c) for c in _COMPARED if hasattr(t, c)}
        row.update(notebook=t.notebook or "", started_at=started, last_at=last)
        return row

    def names(self) -> set[tuple[str, str, int]]:
        """(trace id, notebook name, first seq giving it): `trace_notebooks` as the log says."""
        return {
            (t, name, first)
            for t, row in self.traces.items()
            for name, first in (row.names or {}).items()
        }

    def differences(self, cur: PortableCursor) -> tuple[str, str] | None:
        """The first trace (by id) whose stored rows are not what the log says: (trace id,
        what), or None."""
        have_users = set(cur.execute("SELECT trace_id, username FROM trace_users").fetchall())
        odd = have_users ^ self.pairs
        if odd:
            return min(t for t, _u in odd), "its participants (trace_users) differ from the log"
        # the names the panel lists and notebook searches match (`listing`)
        have_names = set(
            cur.execute("SELECT trace_id, notebook, first_seq FROM trace_notebooks").fetchall()
        )
        odd_names = have_names ^ self.names()
        if odd_names:
            return min(t for t, _n, _s in odd_names), (
                "its notebook names (trace_notebooks) differ from the log"
            )
        stored = {}
        for row in cur.execute(f"SELECT trace_id, {', '.join(_COMPARED)} FROM traces").fetchall():
            d = dict(zip(_COMPARED, row[1:], strict=True))
            d["notebook"] = d["notebook"] or ""
            stored[row[0]] = d
        for trace_id in sorted(set(stored) | set(self.traces)):
            if trace_id not in stored or trace_id not in self.traces:
                return trace_id, "its row in traces differs from the log"
            if stored[trace_id] != self.expected(trace_id):
                return trace_id, "its row in traces differs from the log"
        return None

    def differences_after_archive(
        self, cur: PortableCursor, archived: dict[str, list[str]]
    ) -> tuple[str, str] | None:
        """`differences` for a live trail whose oldest partitions were archived away
        (`traces.derived_differences_after_archive` on DuckDB): `archived` (from the signed
        `trail.archived` the live trail continues) is who took part in each trace over the
        archived records. `trace_users` must be those plus the live records' participants;
        a trace with no archived record must have exactly the rows its live records make,
        and an archived one a `traces` row (its counts are checked with `--archive`)."""
        want = archived_pairs(archived) | self.pairs
        have = set(cur.execute("SELECT trace_id, username FROM trace_users").fetchall())
        if want != have:
            return min(t for t, _u in want ^ have), (
                "its participants (trace_users) differ from the log"
            )
        stored = {}
        for row in cur.execute(f"SELECT trace_id, {', '.join(_COMPARED)} FROM traces").fetchall():
            d = dict(zip(_COMPARED, row[1:], strict=True))
            d["notebook"] = d["notebook"] or ""
            stored[row[0]] = d
        for trace_id in sorted(set(stored) | set(self.traces) | set(archived)):
            if trace_id in archived:
                if trace_id not in stored:
                    return trace_id, "its row in traces differs from the log"
            elif stored.get(trace_id) != (
                self.expected(trace_id) if trace_id in self.traces else None
            ):
                return trace_id, "its row in traces differs from the log"
        return None

    def rebuild(self, con, archived: dict[str, list[str]] | None = None) -> None:
        """Replace the derived tables with what the log says (one transaction on the
        psycopg connection `con`). `archived`: the participants the signed `trail.archived`
        recorded of records archived away; the rows of traces with archived records are
        then kept (their counts need the archive) and their participants restored."""
        keep = sorted(archived or {})
        with con.transaction(), con.cursor() as cur:
            for table in ("trace_notebooks", "traces"):
                cur.execute(f"DELETE FROM {table} WHERE NOT trace_id = ANY(%s::text[])", [keep])
            cur.execute("DELETE FROM trace_users")
            live = {t: row for t, row in self.traces.items() if t not in (archived or {})}
            if live:
                store_traces(cur, live, {t: tuple(self.times[t]) for t in live})
            pairs = sorted(self.pairs | archived_pairs(archived or {}))
            cur.executemany("INSERT INTO trace_users (trace_id, username) VALUES (%s, %s)", pairs)
            names = sorted(n for n in self.names() if n[0] in live)
            cur.executemany(
                "INSERT INTO trace_notebooks (trace_id, notebook, first_seq) VALUES (%s, %s, %s)",
                names,
            )
