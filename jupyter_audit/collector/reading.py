"""The collector's read side, for the Hub's people (docs/collector.md "Reading"): the same
paths, query parameters and answers a single-user server serves under `/jupyter-audit/api/`
(`server/trace_query.py` is the one definition of both), so the CLI's `--url` and the panel
(through its reader's own server) read the Hub's trail unchanged.

Who may see what is decided from the Hub's answer for the token (`Context.roles`) and the
server that recorded each trace (a forwarded trace id is namespaced by its server:
`protocol.trace_in_collector`), never from the identities inside forwarded records (a
server's owner controls those). Auditors see every trace and export anything; everyone else
their own servers' traces. An auditor's view or export of another's is recorded
(`trail.accessed`); a refusal is recorded as `security.rejected`. `user` in summaries and
filters is the Hub user whose server recorded the trace.

- `GET <prefix>jupyter-audit/api/me` -> the Hub user, their roles here, the trail's counts
- `GET <prefix>jupyter-audit/api/traces` -> {"traces", "next", "integrity"}
- `GET <prefix>jupyter-audit/api/traces/{id}` -> {"trace", "events", …, "integrity"}
- `GET <prefix>jupyter-audit/api/export` -> the export bundle of what matches
- `GET <prefix>jupyter-audit/api/verify[?deep=true][&pubkey=…]` -> the verification of the
  whole trail as of now (auditors)
- the first paths of the read API, `<prefix>api/traces`, `api/traces/{id}`, `api/export`,
  `api/verify`: the same handlers with their first defaults (up to 1000 traces, unfolded
  events, the export for auditors only)

Through the store's read cursor and the read modules (`TrailStore.cursor`), so DuckDB and
PostgreSQL collectors answer alike, the search (`q`) included (each store keeps its own index:
`store/search.py`).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref

from tornado import web

from ..server.trace_query import (
    MAX_EVENTS_PAGE,
    TraceQueryArgs,
    integrity_json,
    resolve,
    search_ready,
    shown_filters,
    trace_answer,
    traces_answer,
)
from ..store import forwarded, queries
from ..store.signing import KeyError_, load_public
from .browser import browser_prefix
from .handlers import BodyAfterAuth
from .protocol import trace_in_collector
from .service import hub_identity

MAX_TRACES = 1000  # traces a page of the first `api/traces`


class ReadHandler(TraceQueryArgs, BodyAfterAuth):
    """The Hub user is known once the headers are (`prepare`): a read has no body, and one
    declared by a caller the Hub does not know is never waited for; any other is read and
    dropped, never held (`body_cap` 0)."""

    def initialize(self, legacy: bool = False) -> None:
        self.legacy = legacy  # the first `api/…` paths and their defaults

    def body_cap(self) -> int:
        return 0  # a read's body is dropped as it arrives

    def caller(self) -> dict:
        """The Hub's user model for the caller's token (`prepare` asked the Hub)."""
        assert self.hub_user is not None
        return self.hub_user

    @property
    def store(self):
        return self.ctx.collector.store

    def is_auditor(self, user: dict) -> bool:
        return "auditor" in self.ctx.roles(user)

    def servers(self) -> dict[str, str]:
        """Trace-id prefix -> server id, for every server the collector has heard of."""
        known = set(list(self.ctx.collector.heads)) | set(list(self.ctx.collector.last_seen))
        return {trace_in_collector(s, "") or "": s for s in known}

    def prefixes_of(self, name: str) -> tuple[str, ...]:
        """The trace-id prefixes of the Hub user `name`'s servers."""
        return tuple(sorted(p for p, s in self.servers().items() if s.split("/")[0] == name))

    def own_prefixes(self, user: dict) -> tuple[str, ...]:
        """The trace-id prefixes of the caller's servers (those the collector has heard of);
        none for a Hub service's token (its name is no user's, whatever it spells)."""
        if user.get("kind", "user") != "user":
            return ()
        return self.prefixes_of(user["name"])

    @staticmethod
    def within(ref: str, prefixes: tuple[str, ...]) -> bool:
        """Whether `ref` (a trace id or a prefix of one) can only name a trace under one of
        `prefixes` (a server's namespace) or is a start of one of them."""
        return ref.startswith(prefixes) or any(p.startswith(ref) for p in prefixes)

    def place(self, summaries: list[dict]) -> None:
        """Each summary's `server` and `owner` (the Hub user whose server recorded it), and
        its `users` as that owner: who a collector's trace belongs to is the Hub's word,
        not the identities inside (its `participants` are what that server recorded:
        `forwarded.scope_participants`)."""
        servers = self.servers()
        for d in summaries:
            server = servers.get(forwarded.server_prefix(d.get("trace_id")) or "")
            d["server"] = server
            d["owner"] = server.split("/")[0] if server else None
            d["users"] = [d["owner"]] if server else []

    def scope(self, user: dict, only: str | None) -> tuple[str, ...] | None:
        """The trace-id prefixes the caller may read, narrowed to the Hub user `only` (None:
        every trace)."""
        if self.is_auditor(user):
            return None if only is None else self.prefixes_of(only)
        if only not in (None, user["name"]):
            self.refuse(403, "only auditors may read another user's traces")
        return self.own_prefixes(user)

    async def searchable(self, words) -> None:
        """Wait until the search index holds every committed record (`search_ready`)."""
        if words:
            await search_ready(self.store)

    def record_access(self, user: dict, action: str, trace_id: str | None, filters=None) -> None:
        self.ctx.recorder.record(
            {
                "kind": "trail.accessed",
                "identity": hub_identity(user),
                "trace_id": trace_id,
                "payload": {"action": action, "trace_id": trace_id, "filters": filters},
            }
        )

    def trail_integrity(self, user: dict, result) -> dict:
        """The whole trail's check at open as `user` may see it: an auditor all of it; anyone
        else whether and where it is broken (`ok`, `problem`, `first_bad_seq`), not its
        `detail`, which may name another server's trace, a token or a file of the collector."""
        out = integrity_json(result)
        if not self.is_auditor(user) and out.get("detail") is not None:
            out["detail"] = None
        return out

    def answer(self, body: dict) -> None:
        self.finish(json.dumps(body, default=str, ensure_ascii=False))


STATS_SECONDS = 10.0  # how long the trail's counts in `me` are reused
# store -> {the reader's trace prefixes (None: all) -> (when, counts)}
_stats: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def trail_stats(store, prefixes: tuple[str, ...] | None) -> dict:
    """The counts of the trail (`prefixes` None: an auditor's) or of the traces of the
    reader's own servers, computed at most every STATS_SECONDS: every open panel asks for
    `me` every few seconds, and counting a collector's trail is a scan. A user's are their
    own servers' only: the whole Hub's, every few seconds, would tell them when and how much
    everyone else works."""
    now = time.monotonic()
    per_store = _stats.setdefault(store, {})
    cached = per_store.get(prefixes)
    if cached is None or now - cached[0] > STATS_SECONDS:
        if prefixes is None:
            counts = await asyncio.to_thread(store.trail_stats)
        else:
            counts = await asyncio.to_thread(lambda: queries.trail_stats(store.cursor(), prefixes))
        cached = (now, counts)
        per_store[prefixes] = cached
    return cached[1]


class MeHandler(ReadHandler):
    async def get(self) -> None:
        user = self.caller()
        store = self.store
        stats = await trail_stats(store, None if self.is_auditor(user) else self.own_prefixes(user))
        self.answer(
            {
                "username": user["name"],
                "display_name": user["name"],
                "identity": hub_identity(user),
                "roles": self.ctx.roles(user),
                "trail": {**stats, "integrity": self.trail_integrity(user, store.integrity)},
                "source": "collector",
                "servers": sorted(self.servers()[p] for p in self.own_prefixes(user)),
                # where a browser decides approvals (the Hub's public service prefix)
                "collector_prefix": browser_prefix(self),
                "session_expires_at": None,
            }
        )


class TracesHandler(ReadHandler):
    async def get(self) -> None:
        user = self.caller()
        if self.legacy:
            limit, only, filters = self.listing_args(MAX_TRACES, MAX_TRACES)
        else:
            limit, only, filters = self.listing_args()
        # others' traces filtered in the query, not after the page: a user's own must not
        # fall out of the newest of all servers
        prefixes = self.scope(user, only)
        await self.searchable(filters["q"])
        store = self.store

        def run():
            cur = store.cursor()
            out = traces_answer(
                cur, limit, {**filters, "trace_prefixes": prefixes}, store.integrity
            )
            forwarded.scope_participants(cur, out["traces"])
            return out

        out = await asyncio.to_thread(run)
        out["integrity"] = self.trail_integrity(user, store.integrity)
        self.place(out["traces"])
        self.answer(out)


class TraceHandler(ReadHandler):
    async def get(self, ref: str) -> None:
        user = self.caller()
        if self.legacy:
            page = self.page_args(MAX_EVENTS_PAGE, default_fold=False)
        else:
            page = self.page_args()
        auditor = self.is_auditor(user)
        mine = self.own_prefixes(user)
        store = self.store
        # a prefix is resolved among the traces the caller may see (it tells no one which
        # ids others' traces have); any id outside the caller's servers' namespaces is a 403
        # before any look-up, whether that trace exists or not: a namespace is sha256 of a
        # server id anyone can spell and some trace ids are guessable (`terminal-1`), so a
        # 404 for a missing one would tell which traces another's server recorded
        if not auditor and not self.within(ref, mine):
            self.refuse(403, "this trace was recorded by another user's server")
        trace_id = await asyncio.to_thread(
            lambda: resolve(store.cursor(), ref, trace_prefixes=None if auditor else mine)
        )
        own = bool(mine) and trace_id.startswith(mine)
        if not own and not auditor:
            self.refuse(403, "this trace was recorded by another user's server")
        await self.searchable(page["words"])

        def run():
            cur = store.cursor()
            out = trace_answer(cur, trace_id, page, store.integrity)
            if out is not None:
                forwarded.scope_participants(cur, [out["trace"]])
            return out

        out = await asyncio.to_thread(run)
        if out is None:
            raise web.HTTPError(404, f"no trace {ref}")
        if not own:
            self.record_access(user, "view", trace_id)
        self.place([out["trace"]])
        self.answer(out)


# Hub users (kind, name) with an export being built, per collector
_exporting: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ExportHandler(ReadHandler):
    async def get(self) -> None:
        user = self.caller()
        # one export at a time per Hub user: each signs a checkpoint on the trail's writer
        # and reads the whole trail's Merkle leaves in the worker pool the collector also
        # takes everyone's batches in; many at once would hold the Hub's forwarding up
        busy = _exporting.setdefault(self.ctx.collector, set())
        who = (user.get("kind", "user"), user["name"])
        if who in busy:
            raise web.HTTPError(
                429, "an export of yours is still being built: try again when it is done"
            )
        busy.add(who)
        try:
            await self.export(user)
        finally:
            busy.discard(who)

    async def export(self, user: dict) -> None:
        auditor = self.is_auditor(user)
        if self.legacy and not auditor:
            self.refuse(403, "only auditors may export the collector's trail")
        filters = self.export_args()
        only = filters.pop("user")  # the Hub user whose servers recorded it
        prefixes = self.scope(user, only)
        trace = filters.get("trace")
        if trace is not None and not auditor and not (prefixes and trace.startswith(prefixes)):
            self.refuse(403, "this trace was recorded by another user's server")
        self.record_access(user, "export", trace, shown_filters({**filters, "user": only}))
        store = self.store
        await asyncio.wrap_future(store.checkpoint())  # one that covers everything exported
        bundle = await asyncio.to_thread(store.build_bundle, **filters, trace_prefixes=prefixes)
        self.finish(json.dumps(bundle, ensure_ascii=False, sort_keys=True))


class VerifyHandler(ReadHandler):
    async def get(self) -> None:
        user = self.caller()
        if not self.is_auditor(user):
            self.refuse(403, "only auditors may verify the collector's trail")
        deep = self.get_query_argument("deep", "false").lower() in ("1", "true", "yes")
        pinned = None
        if self.get_query_argument("pubkey", None):
            try:
                pinned = [load_public(self.get_query_argument("pubkey"))]
            except KeyError_ as e:
                self.refuse(400, f"pubkey: {e}")
        result = await asyncio.to_thread(self.store.verify, trusted_keys=pinned, deep=deep)
        self.answer(result.to_dict())


TRACE_ID = r"([A-Za-z0-9._:@/+=~-]{1,256})"


def read_handlers(prefix: str) -> list:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    api, first = prefix + "jupyter-audit/api/", {"legacy": True}
    return [
        (api + "me", MeHandler),
        (api + "traces", TracesHandler),
        (api + "traces/" + TRACE_ID, TraceHandler),
        (api + "export", ExportHandler),
        (api + "verify", VerifyHandler),
        (prefix + "api/traces", TracesHandler, first),
        (prefix + "api/traces/" + TRACE_ID, TraceHandler, first),
        (prefix + "api/export", ExportHandler, first),
        (prefix + "api/verify", VerifyHandler, first),
    ]
