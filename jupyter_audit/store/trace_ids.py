"""Trace ids as people type them: a full id, or an unambiguous prefix of at least
MIN_PREFIX characters (the CLI's `show`, `export --trace`, `replay`; the REST trace lookup).

One rule for every caller (`pick_trace`): an exact id wins; otherwise exactly one trace
starting with the prefix is it; several are `AmbiguousTrace` (with the candidates, oldest
first, so a person can choose); none, or a prefix too short to mean anything, is
`TraceNotFound`. Reads the `traces` table only; never writes.
"""

from __future__ import annotations

from collections.abc import Iterable

from .listing import iso

#: the shortest prefix taken for a trace id
MIN_PREFIX = 6
#: candidates listed when a prefix is ambiguous
MAX_CANDIDATES = 20


class TraceNotFound(LookupError):
    """No trace has this id (or starts with this prefix)."""


class AmbiguousTrace(LookupError):
    """Several traces start with this prefix: `candidates` [{trace_id, notebook,
    started_at}], oldest first (at most MAX_CANDIDATES), `count` of them all."""

    def __init__(self, ref: str, candidates: list[dict], count: int):
        self.ref, self.candidates, self.count = ref, candidates, count
        super().__init__(f"{count} traces start with {ref!r}")


def pick_trace(ref: str, candidates: Iterable[dict], min_prefix: int = MIN_PREFIX) -> str:
    """The trace `ref` names among `candidates` (dicts with `trace_id`, `notebook`,
    `started_at`): see the module's rule."""
    if not ref:
        raise TraceNotFound("no trace id given")
    found = []
    for c in candidates:
        if c["trace_id"] == ref:
            return ref
        if len(ref) >= min_prefix and c["trace_id"].startswith(ref):
            found.append(c)
    if not found:
        if len(ref) < min_prefix:
            raise TraceNotFound(
                f"no trace {ref!r} (a shortened id needs at least {min_prefix} characters)"
            )
        raise TraceNotFound(f"no trace {ref!r}")
    if len(found) == 1:
        return found[0]["trace_id"]
    found.sort(key=lambda c: (c.get("started_at") or "", c["trace_id"]))
    raise AmbiguousTrace(ref, found[:MAX_CANDIDATES], len(found))


def resolve_trace(
    cur,
    ref: str,
    min_prefix: int = MIN_PREFIX,
    *,
    username: str | None = None,
    trace_prefixes: tuple[str, ...] | None = None,
) -> str:
    """The full id of the trace `ref` names in the trail behind `cur` (`pick_trace`). With
    `username`, only that user's traces are candidates (for a server answering a user: a
    prefix must not tell anyone which ids others' traces have; a full id is found whoever's
    it is, for the caller to authorize). With `trace_prefixes`, likewise only the traces
    whose id starts with one of them (a collector's reader: their own servers')."""
    if ref and cur.execute("SELECT 1 FROM traces WHERE trace_id = ?", [ref]).fetchone():
        return ref
    where = "length(?) >= ? AND starts_with(trace_id, ?)"
    params: list[object] = [ref, int(min_prefix), ref]
    if username is not None:
        where += " AND trace_id IN (SELECT trace_id FROM trace_users WHERE username = ?)"
        params.append(username)
    if trace_prefixes is not None:
        if not trace_prefixes:
            raise TraceNotFound(f"no trace {ref!r}")
        where += " AND (" + " OR ".join(["starts_with(trace_id, ?)"] * len(trace_prefixes)) + ")"
        params += list(trace_prefixes)
    rows = cur.execute(
        f"SELECT trace_id, notebook, started_at FROM traces WHERE {where} "
        "ORDER BY started_at, trace_id",
        params,
    ).fetchall()
    candidates = [{"trace_id": t, "notebook": n, "started_at": iso(s)} for t, n, s in rows]
    return pick_trace(ref, candidates, min_prefix)
