"""The people API's trace reads as one definition for both places that answer them: a
single-user server's `jupyter-audit/api/traces…` (`handlers`) and the Hub collector's same
paths (`collector/people.py`).

`TraceQueryArgs` (a mixin for any tornado handler) parses the query strictly: a NUL byte, an
overlong value or a malformed number is a 400 naming the parameter, never a 500.
`listing_args`, `page_args` and `export_args` read the parameters of `GET traces`,
`GET traces/{id}` and `GET export`; `traces_answer` and `trace_answer` run them on a trail's
read cursor (DuckDB or PostgreSQL: `store.listing`, `store.timeline`). Who may see what is
each caller's to decide before it asks; nothing here authorizes or writes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from tornado import web

from ..events import KINDS
from ..store import listing, queries, search, timeline, trace_ids
from ..store.errors import TrailError
from ..store.filters import parse_time

MAX_LIMIT = 1000
MAX_TEXT = 1000  # characters of a free-text filter (user, notebook, kind, msg_id)
MAX_TRACES_PAGE = 500  # traces per `GET traces` page
MAX_EVENTS_PAGE = 5000  # events per `GET traces/{id}` page
SEARCH_WAIT = 120.0  # seconds a search waits for the index to catch up


async def search_ready(store) -> None:
    """Wait until `store`'s search index (`index_search`: the DuckDB Writer's, or a
    PostgreSQL trail's indexer) holds every committed record: a 400 for a trail that has no
    index (saying how to add one), a 503 while it is still being built or failed to catch
    up (the next search tries again). Waited for without cancelling it on time-out: the
    indexing goes on for the next one."""
    ready = asyncio.wrap_future(store.index_search())
    done, _ = await asyncio.wait({ready}, timeout=SEARCH_WAIT)
    if not done:
        raise web.HTTPError(503, "the search index is still being built; try again")
    try:
        ready.result()
    except search.SearchUnavailable as e:
        raise web.HTTPError(400, str(e)) from None
    except TrailError:
        # its text may quote what the index choked on (another's masked record): the log
        # has the kind of failure, the caller only that it failed
        raise web.HTTPError(
            503,
            "search is not available now: the search index could not be brought up to "
            "date; try again",
        ) from None


def integrity_json(result) -> dict:
    if result is None:
        return {"ok": True, "first_bad_seq": None, "problem": None, "checked_at": None}
    return {
        "ok": result.ok,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
        "detail": result.detail,
        "checked_at": getattr(result, "checked_at", None),
    }


def broken_seqs(result) -> list[int]:
    """The seqs of the records the verification `result` found broken."""
    problems = getattr(result, "problems", None) or []
    return sorted({p["seq"] for p in problems if p.get("seq") is not None})


class TraceQueryArgs:
    """Strict query parameters (module docstring), for a tornado RequestHandler."""

    request: web.httputil.HTTPServerRequest  # type: ignore[name-defined]

    def arg_int(self, name: str, default: int, lo: int = 0, hi: int = MAX_LIMIT) -> int:
        raw = self.get_argument(name, None)  # type: ignore[attr-defined]
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"{name} must be an integer") from None
        if not lo <= value <= hi:
            raise web.HTTPError(400, f"{name} must be between {lo} and {hi}")
        return value

    def arg_time(self, name: str) -> datetime | None:
        raw = self.arg_text(name, 100)
        if raw is None:
            return None
        try:
            return parse_time(raw)
        except ValueError:
            # not the value: a refusal's message is logged, and it is what a person typed
            raise web.HTTPError(
                400, f"{name} must be an ISO 8601 date or date-time (2026-05-01T12:00:00Z)"
            ) from None

    def arg_text(self, name: str, max_len: int = MAX_TEXT) -> str | None:
        raw = self.request.query_arguments.get(name)
        if not raw:
            return None
        if len(raw) > 1:
            raise web.HTTPError(400, f"{name} given more than once")
        return self._text(name, raw[0], max_len)

    def arg_texts(self, name: str, max_len: int = MAX_TEXT) -> list[str]:
        raw = self.request.query_arguments.get(name) or []
        if len(raw) > 20:
            raise web.HTTPError(400, f"{name} given more than 20 times")
        return [self._text(name, v, max_len) for v in raw]

    @staticmethod
    def _text(name: str, raw: bytes, max_len: int) -> str:
        if len(raw) > 4 * max_len:
            raise web.HTTPError(400, f"{name} is longer than {max_len} characters")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPError(400, f"{name} is not UTF-8 text") from None
        if len(value) > max_len:
            raise web.HTTPError(400, f"{name} is longer than {max_len} characters")
        if any(c < " " and c not in "\t" for c in value):
            raise web.HTTPError(400, f"{name} holds a control character (NUL, newline...)")
        return value

    def arg_seq(self, name: str) -> int | None:
        raw = self.arg_text(name, 30)
        if raw is None:
            return None
        if not raw.isdigit() or not raw.isascii():
            raise web.HTTPError(400, f"{name} must be an integer, 0 or more")
        value = int(raw)
        if value >= 2**63:
            raise web.HTTPError(400, f"{name} is too large")
        return value

    def arg_kind(self, name: str = "kind") -> list[str]:
        kinds = self.arg_texts(name, 100)
        for k in kinds:
            if k not in KINDS:
                raise web.HTTPError(400, f"{name}: no event kind {k!r}")
        return kinds

    def arg_words(self) -> list[str] | None:
        raw = self.arg_text("q", search.MAX_QUERY)
        if raw is None or not raw.strip():
            return None
        try:
            return search.terms(raw)
        except search.SearchError as e:
            raise web.HTTPError(400, str(e)) from None

    def listing_args(self, default_limit: int = 50, max_limit: int = MAX_TRACES_PAGE):
        """(limit, the `user` asked for or None, the other filters of `listing.list_traces`)
        of `GET traces`."""
        limit = self.arg_int("limit", default_limit, 1, max_limit)
        before = self.arg_seq("before")
        cursor = self.arg_text("cursor", 100)
        if cursor is not None:
            try:
                before = listing.decode_cursor(cursor)
            except listing.QueryError as e:
                raise web.HTTPError(400, str(e)) from None
        only = self.arg_text("user", 256)
        flags = self.arg_texts("flag", 40)
        for f in flags:
            if f not in listing.FLAGS:
                raise web.HTTPError(400, f"flag must be one of {', '.join(listing.FLAGS)}")
        filters = {
            "before_seq": before,
            "notebook": self.arg_text("notebook"),
            "since": self.arg_time("since"),
            "until": self.arg_time("until"),
            "kinds": self.arg_kind(),
            "flags": flags,
            "q": self.arg_words(),
        }
        return limit, only, filters

    def page_args(self, default_limit: int = 500, default_fold: bool | None = None) -> dict:
        """The arguments of `timeline.trace_page` (less the cursor's) of `GET traces/{id}`."""
        limit = self.arg_int("limit", default_limit, 1, MAX_EVENTS_PAGE)
        after, before = self.arg_seq("after_seq"), self.arg_seq("before_seq")
        page = self.arg_text("page", 10)
        if page not in (None, "first", "last"):
            raise web.HTTPError(400, "page must be first or last")
        if sum(x is not None for x in (after, before, page)) > 1:
            raise web.HTTPError(400, "give at most one of after_seq, before_seq and page")
        msg_id = self.arg_text("msg_id", 256)
        fold = self.arg_text("fold", 5)
        if fold not in (None, "0", "1", "true", "false"):
            raise web.HTTPError(400, "fold must be 0 or 1")
        if fold is not None:
            folding = fold in ("1", "true")
        else:
            folding = (msg_id is None) if default_fold is None else default_fold
        kinds = self.arg_kind()
        if len(kinds) > 1:
            raise web.HTTPError(400, "kind given more than once")
        return {
            "limit": limit,
            "after_seq": after,
            "before_seq": before,
            "last": page == "last",
            "fold": folding,
            "msg_id": msg_id,
            "kind": kinds[0] if kinds else None,
            "words": self.arg_words(),
        }

    def export_args(self) -> dict:
        """The filters of `GET export` (`queries.export_filter`)."""
        return {
            "user": self.arg_text("user", 256),
            "since": self.arg_time("since"),
            "until": self.arg_time("until"),
            "notebook": self.arg_text("notebook"),
            "trace": self.arg_text("trace", 256),
        }


def shown_filters(filters: dict) -> dict:
    """Export filters as a `trail.accessed` record names them."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items()}


def resolve(cur, ref: str, **scope) -> str:
    """The full id of the trace `ref` (an id or a prefix of 8+ characters) names among the
    traces `scope` allows (`trace_ids.resolve_trace`'s `username` or `trace_prefixes`):
    400 when ambiguous, 404 when there is none."""
    try:
        return trace_ids.resolve_trace(cur, ref, 8, **scope)
    except trace_ids.AmbiguousTrace as e:
        raise web.HTTPError(
            400, f"{ref!r} is the start of {e.count} trace ids: give more of it"
        ) from None
    except trace_ids.TraceNotFound:
        raise web.HTTPError(404, f"no trace {ref}") from None


def traces_answer(cur, limit: int, filters: dict, integrity) -> dict:
    """`GET traces`: a page of summaries (`listing.list_traces` with `filters`), the cursor
    of the next, and the trail's integrity (`integrity`: the VerifyResult found at open)."""
    broken = listing.broken_traces(cur, broken_seqs(integrity))
    traces = listing.list_traces(cur, limit=limit + 1, broken=broken, **filters)
    more = len(traces) > limit
    traces = traces[:limit]
    return {
        "traces": traces,
        "next": listing.encode_cursor(traces[-1]["last_seq"]) if more else None,
        "integrity": integrity_json(integrity),
    }


def trace_answer(cur, trace_id: str, page: dict, integrity) -> dict | None:
    """`GET traces/{id}`: the trace's summary, a page of its events (`page`: the arguments
    of `timeline.trace_page`) and its own integrity; None if there is no such trace."""
    seqs = broken_seqs(integrity)
    broken = listing.broken_traces(cur, seqs)
    summary = queries.get_trace_summary(cur, trace_id, broken)
    if summary is None:
        return None
    page_ = timeline.trace_page(cur, trace_id, broken=set(seqs), **page)
    return {
        "trace": summary,
        **page_,
        "integrity": timeline.trace_integrity(cur, summary, integrity),
    }
