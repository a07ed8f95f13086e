"""What a collector's trail holds of records forwarded to it (`records.prepare(origin=…)`).

A forwarded record carries its `origin` (the server that recorded it first, that server's
trail id, sequence number and hash) inside its signed bytes, and the collector's event id
`fw.<40 hex>` (`forward_event_id`), which makes a resend of the same record a duplicate and a
different record at the same place (a rewrite) a new one. This module only reads.
"""

from __future__ import annotations

import hashlib
import json

from .listing import participant

FORWARD_ID_PREFIX = "fw."


def forward_event_id(server: str, trail: str, seq: int, hash_hex: str) -> str:
    """The collector's event id of the record `server` holds at `seq` of its trail `trail`
    with chain hash `hash_hex`: the same record re-sent has the same id, any other record at
    that place another one."""
    key = "\0".join((server, trail, str(seq), hash_hex)).encode("utf-8")
    return FORWARD_ID_PREFIX + hashlib.sha256(key).hexdigest()[:40]


def forward_heads(cur) -> dict[str, dict]:
    """For each origin server, its newest forwarded record by the collector's sequence:
    {server: {"trail", "seq", "hash"}} (from the record's `origin`). A scan of the forwarded
    records (their event ids are indexed by prefix nowhere: a DuckDB collector is the small
    deployment; PostgreSQL keeps origin columns)."""
    rows = cur.execute(
        "SELECT record FROM events WHERE starts_with(event_id, ?) ORDER BY seq",
        [FORWARD_ID_PREFIX],
    )

    def records():
        while batch := rows.fetchmany(4096):
            for (record,) in batch:
                yield bytes(record)

    return heads_of(records())


def heads_of(records) -> dict[str, dict]:
    """{server: {"trail", "seq", "hash"}} of the last record of each origin server among
    `records` (canonical bytes, in the collector's order)."""
    heads: dict[str, dict] = {}
    for record in records:
        origin = json.loads(record).get("origin")
        if isinstance(origin, dict) and isinstance(origin.get("server"), str):
            heads[origin["server"]] = {
                "trail": origin["trail"],
                "seq": origin["seq"],
                "hash": origin["hash"],
            }
    return heads


def server_prefix(trace_id: str | None) -> str | None:
    """The server part of a forwarded trace id (`fw.<tag>.`, `collector.protocol`), or None."""
    if not trace_id or not trace_id.startswith(FORWARD_ID_PREFIX):
        return None
    end = trace_id.find(".", len(FORWARD_ID_PREFIX))
    return trace_id[: end + 1] if end > 0 else None


def scope_participants(cur, summaries: list[dict]) -> None:
    """Each forwarded trace's `participants` as its own server recorded them. A listing shows
    each participant's newest identity snapshot in the whole trail (`listing.participants`);
    in a collector's, that may be another server's, which writes what it likes (a display
    name, a token owner under someone else's name). Here a participant's snapshot is the
    newest one that first appeared in a trace of the same server; none: the name alone."""
    names = sorted({u for d in summaries for u in d["users"]})
    if not names:
        return
    found: dict[tuple[str | None, str], dict] = {}
    for username, tid, snap in cur.execute(
        "SELECT i.username, e.trace_id, i.snapshot FROM identities i "
        "JOIN events e ON e.seq = i.first_seq WHERE i.username IN (SELECT unnest(?)) "
        "ORDER BY i.first_seq DESC",
        [names],
    ).fetchall():
        key = (server_prefix(tid), username)
        if key[0] is not None and key not in found:
            found[key] = participant(username, snap)
    for d in summaries:
        prefix = server_prefix(d["trace_id"])
        d["participants"] = [found.get((prefix, u)) or participant(u) for u in d["users"]]
