"""One trace's timeline, a page at a time (REST `GET traces/{id}`): events in trail order,
paged by sequence number to any length, repeated operations folded, broken records marked,
and the trace's own integrity.

Every event is decoded from its signed record (what `verify` checks), never from the
indexed columns; a row whose record names another trace is not shown, and a record that no
longer reads as JSON is shown as broken, not raised. Folding groups consecutive operations
of one cell with the same kind and the same normalised statement, command or method and
host into the first of them, with `repeat` (`fold_key`). Read side: it must never import the
writer or write anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from . import search
from .folding import failed, fold_key
from .queries import IdentityCache, export_record
from .risk import risk_rules

CHUNK = 1000  # rows read per query while a page fills


def risk_of(ev: dict) -> dict | None:
    """The `risk` shown beside an event (`risk.risk_rules`; an approval request's own)."""
    kind, p = ev.get("kind"), ev.get("payload")
    if kind == "approval.requested" and isinstance(p, dict):
        return {"decision": p.get("decision") or "review", "rules": list(p.get("rules") or [])}
    rules = risk_rules(str(kind), p if isinstance(p, dict) else None)
    return {"decision": "warn", "rules": list(rules)} if rules else None


def _event(seq, rec, hash_, ids: IdentityCache, broken: set[int]) -> dict:
    try:
        ev = export_record(rec, hash_, ids)
        if not isinstance(ev, dict):
            raise ValueError("not an object")
    except (ValueError, AttributeError, TypeError):
        return {"seq": seq, "kind": None, "payload": None, "broken": True, "unreadable": True}
    for k in ("kernel_time", "op_index", "notebook", "msg_id"):
        ev.setdefault(k, None)
    if seq in broken or ev.get("seq") != seq:
        ev["broken"] = True
    risk = risk_of(ev)
    if risk:
        ev["risk"] = risk
    return ev


def _rows(cur, where: str, params: list, start: int | None, forward: bool) -> Iterator[tuple]:
    """(seq, record, hash) of the rows matching `where`, after (or before) `start`."""
    op, order = (">", "ASC") if forward else ("<", "DESC")
    pos = start
    while True:
        bound, bparams = ("", []) if pos is None else (f" AND seq {op} ?", [pos])
        rows = cur.execute(
            f"SELECT seq, record, hash FROM events WHERE {where}{bound} ORDER BY seq {order} "
            "LIMIT ?",
            params + bparams + [CHUNK],
        ).fetchall()
        yield from rows
        if len(rows) < CHUNK:
            return
        pos = rows[-1][0]


def trace_page(
    cur,
    trace_id: str,
    *,
    limit: int = 500,
    after_seq: int | None = None,
    before_seq: int | None = None,
    last: bool = False,
    fold: bool = True,
    msg_id: str | None = None,
    kind: str | None = None,
    words: list[str] | None = None,
    broken: set[int] | None = None,
) -> dict:
    """A page of at most `limit` events (folded groups count one) of `trace_id`: the first,
    the one after `after_seq`, the one ending before `before_seq`, or the `last`; filtered
    by `msg_id`, `kind` and search `words`. `broken`: seqs of records that fail
    verification. Returns `events`, `next_after_seq`, `prev_before_seq`, `total`."""
    where, params = "trace_id = ?", [trace_id]
    if msg_id is not None:
        where += " AND msg_id = ?"
        params.append(msg_id)
    if kind is not None:
        where += " AND kind = ?"
        params.append(kind)
    if words:
        sql, p = search.matching_sql(words, trace_id, getattr(cur, "dialect", "duckdb"))
        where += f" AND seq IN (SELECT seq FROM ({sql}) s)"
        params += p
    forward = not (last or before_seq is not None)
    start = before_seq if before_seq is not None else after_seq
    ids = IdentityCache(cur)
    broken = broken or set()
    items: list[dict] = []
    keys: list[tuple | None] = []
    ends: list[int] = []  # the first and the last row consumed, in reading order
    for seq, rec, h in _rows(cur, where, params, start, forward):
        ev = _event(seq, rec, h, ids, broken)
        key = fold_key(ev) if fold else None
        if ev.get("trace_id", trace_id) != trace_id:
            pass  # the signed record names another trace: not one of this one's events
        elif key is not None and keys and keys[-1] == key:
            _join(items, ev, seq, forward)
        elif len(items) >= limit:
            break
        else:
            items.append(ev)
            keys.append(key)
        if not ends:
            ends.append(seq)
        ends[1:] = [seq]
    if not forward:
        items.reverse()
        ends.reverse()
    lo, hi = (ends[0], ends[-1]) if ends else (None, None)
    more_after = hi is not None and _exists(cur, where, params, ">", hi)
    more_before = lo is not None and _exists(cur, where, params, "<", lo)
    (total,) = cur.execute("SELECT count(*) FROM events WHERE trace_id = ?", [trace_id]).fetchone()
    return {
        "events": items,
        "next_after_seq": hi if more_after else None,
        "prev_before_seq": lo if more_before else None,
        "total": total,
    }


def _join(items: list[dict], ev: dict, seq: int, forward: bool) -> None:
    """Fold `ev` into the group `items[-1]` (reading backwards, `ev` comes first and stands
    for the group)."""
    group = items[-1]
    rep = group.get("repeat")
    if rep is None:
        first = group["seq"]
        rep = {"count": 1, "first_seq": first, "last_seq": first, "errors": int(failed(group))}
        group["repeat"] = rep
    rep["count"] += 1
    rep["errors"] += int(failed(ev))
    if forward:
        rep["last_seq"] = seq
    else:
        rep["first_seq"] = seq
        ev["repeat"] = rep
        if group.get("broken"):
            ev["broken"] = True
        items[-1] = group = ev
    if ev.get("broken"):
        group["broken"] = True


def _exists(cur, where: str, params: list, op: str, seq: int) -> bool:
    row = cur.execute(
        f"SELECT 1 FROM events WHERE {where} AND seq {op} ? LIMIT 1", params + [seq]
    ).fetchone()
    return row is not None


def broken_in_trace(cur, trace_id: str, seqs: list[int]) -> list[int]:
    """Which of `seqs` (records that fail verification) lie in `trace_id`, by the indexed
    column or by the signed record."""
    if not seqs:
        return []
    out = []
    for seq, tid, rec in cur.execute(
        "SELECT seq, trace_id, record FROM events WHERE seq IN (SELECT unnest(?))", [list(seqs)]
    ).fetchall():
        try:
            other = json.loads(rec).get("trace_id")
        except (ValueError, AttributeError):
            other = None
        if trace_id in (tid, other):
            out.append(seq)
    return sorted(out)


def covering_checkpoint(cur, last_seq: int) -> dict | None:
    """The newest signed checkpoint stored in the trail if it covers record `last_seq`."""
    row = cur.execute(
        "SELECT record FROM events WHERE kind = 'checkpoint' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    try:
        p = json.loads(row[0])["payload"]
        if int(p["seq"]) < last_seq:
            return None
        return {"seq": int(p["seq"]), "signed_at": p.get("time"), "key_id": p.get("key_id")}
    except (ValueError, KeyError, TypeError):
        return None


def trace_integrity(cur, summary: dict, result) -> dict:
    """TraceIntegrity: the open-time verification (`result`, a VerifyResult or None) as it
    concerns this trace, and the checkpoint that vouches for its last record."""
    problems = list(getattr(result, "problems", None) or [])
    seqs = [p["seq"] for p in problems if p.get("seq") is not None]
    bad = broken_in_trace(cur, summary["trace_id"], seqs)
    first = bad[0] if bad else None
    problem = None
    if first is not None:
        found = [p for p in problems if p.get("seq") == first]
        problem = found[0].get("detail") or found[0].get("problem")
    return {
        "ok": not bad,
        "first_bad_seq": first,
        "problem": problem,
        "checkpoint": covering_checkpoint(cur, int(summary["last_seq"] or 0)),
        "verified_up_to": getattr(result, "intact_upto", None) if result is not None else None,
    }
