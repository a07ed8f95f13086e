"""The trace a person named on the command line (`show`, `export --trace`, `replay`): a full
id or a prefix of at least six characters, resolved by store/trace_ids.py's one rule, from the
trail file (`--db`), a collector's PostgreSQL trail (`--pg`) or from the traces the running
server lets this token see (`--url`). Several matches are an error listing them; so is none."""

from __future__ import annotations

import urllib.parse

from ..store.trace_ids import AmbiguousTrace, TraceNotFound, pick_trace, resolve_trace
from .main import CLIError, _api, _open_source, _source
from .terminal import printable

LISTING_PAGE = 500  # traces per request while resolving through the server (its maximum)


def trace_ref(args, ref: str) -> str:
    """The full id of the trace `ref` names (CLIError, exit 2, when none or several)."""
    try:
        kind, where = _source(args)
        if kind == "url":
            return _resolve_url(args, ref)
        con, _meta = _open_source(kind, where)
        try:
            return trace_in(con, ref)
        finally:
            con.close()
    except AmbiguousTrace as e:
        raise CLIError(ambiguous_message(e)) from None
    except TraceNotFound as e:
        raise CLIError(str(e)) from None


def trace_in(con, ref: str) -> str:
    """The full id of the trace `ref` names in the trail (or archive + trail) behind `con`
    (CLIError, exit 2, when none or several)."""
    try:
        return resolve_trace(con, ref)
    except AmbiguousTrace as e:
        raise CLIError(ambiguous_message(e)) from None
    except TraceNotFound as e:
        raise CLIError(str(e)) from None


def _resolve_url(args, ref: str) -> str:
    """The server resolves it (`GET traces/{ref}`: a full id, or a prefix of eight or more
    characters among the traces this token may see; a refusal such as 403 is the answer);
    where it finds none (a shorter prefix, an older server), through its listing, page by
    page (an exact id ends it at once)."""
    try:
        got = _api(args, f"traces/{urllib.parse.quote(ref, safe='')}", {"limit": 1, "fold": 0})
        return got["trace"]["trace_id"]
    except CLIError as e:
        if e.status not in (400, 404):
            raise
    candidates: list[dict] = []
    before = None
    while True:
        page = _api(args, "traces", {"limit": LISTING_PAGE, "before": before})["traces"]
        for t in page:
            if t["trace_id"] == ref:
                return ref
        candidates.extend(page)
        if len(page) < LISTING_PAGE:
            return pick_trace(ref, candidates)
        before = min(t["last_seq"] for t in page)


def ambiguous_message(e: AmbiguousTrace) -> str:
    """The error of an ambiguous prefix: the candidates (id, started, notebook), one a line."""
    more = f" (the first {len(e.candidates)} shown)" if e.count > len(e.candidates) else ""
    lines = [f"{e.count} traces start with {printable(e.ref)!r}{more}; give more of the id:"]
    for c in e.candidates:
        lines.append(
            f"  {printable(c['trace_id'])}  started {printable(c.get('started_at') or '?')[:19]}"
            f"  {printable(c.get('notebook') or '(no notebook)')}"
        )
    return "\n".join(lines)
