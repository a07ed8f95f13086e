"""The collector's read side, for the Hub's people (docs/collector.md "Reading"): who may see
what is decided from the Hub's answer for their token and the server that recorded each
trace, never from the identities inside forwarded records (a server's owner controls those).

- `GET <prefix>api/traces` -> {"traces": [...]}: auditors every trace; others the traces of
  their own servers (a forwarded trace id is namespaced by its server: `trace_in_collector`)
- `GET <prefix>api/traces/{id}` -> {"trace", "events"}: 403 for another's trace unless an
  auditor, whose view of another's trace is recorded (`trail.accessed`)
- `GET <prefix>api/export` -> the export bundle of the whole trail (auditors), recorded
- `GET <prefix>api/verify[?deep=true][&pubkey=…]` -> the verification of the collector's trail
  as of now (auditors), also at `<prefix>jupyter-audit/api/verify`, where a server answers it,
  so that `jupyter audit verify --url <collector> --token <Hub token>` works as for a server

Through the `TrailStore` verbs only (`list_traces`, `get_trace_summary`, `get_trace_events`,
`build_bundle`), so DuckDB and PostgreSQL serve alike.
"""

from __future__ import annotations

import asyncio
import json

from ..store.signing import KeyError_, load_public
from .handlers import CollectorHandler
from .protocol import trace_in_collector
from .service import hub_identity

MAX_TRACES = 1000


class ReadHandler(CollectorHandler):
    def is_auditor(self, user: dict) -> bool:
        return "auditor" in self.ctx.roles(user)

    def own_prefixes(self, user: dict) -> tuple[str, ...]:
        """The trace-id prefixes of the user's servers (those the collector has heard of)."""
        name = user["name"] + "/"
        servers = [s for s in list(self.ctx.collector.heads) if s.startswith(name)]
        return tuple(trace_in_collector(s, "") or "" for s in servers)

    def record_access(self, user: dict, action: str, trace_id: str | None) -> None:
        self.ctx.recorder.record(
            {
                "kind": "trail.accessed",
                "identity": hub_identity(user),
                "trace_id": trace_id,
                "payload": {"action": action, "trace_id": trace_id, "filters": None},
            }
        )


class TracesHandler(ReadHandler):
    async def get(self) -> None:
        user = await self.authenticate()
        store = self.ctx.collector.store
        # others' traces filtered in the query, not after the cap: a user's own must not fall
        # out of the newest MAX_TRACES of all servers
        mine = None if self.is_auditor(user) else self.own_prefixes(user)
        traces = await asyncio.to_thread(store.list_traces, limit=MAX_TRACES, trace_prefixes=mine)
        self.finish(json.dumps({"traces": traces}, default=str))


class TraceHandler(ReadHandler):
    async def get(self, trace_id: str) -> None:
        user = await self.authenticate()
        mine = self.own_prefixes(user)
        own = bool(mine) and trace_id.startswith(mine)
        if not own and not self.is_auditor(user):
            self.refuse(403, "this trace was recorded by another user's server")
        store = self.ctx.collector.store
        summary = await asyncio.to_thread(store.get_trace_summary, trace_id)
        if summary is None:
            self.set_status(404)
            self.finish(json.dumps({"code": 404, "message": "no such trace"}))
            return
        if not own:
            self.record_access(user, "view", trace_id)
        events = await asyncio.to_thread(store.get_trace_events, trace_id)
        self.finish(json.dumps({"trace": summary, "events": events}, default=str))


class ExportHandler(ReadHandler):
    async def get(self) -> None:
        user = await self.authenticate()
        if not self.is_auditor(user):
            self.refuse(403, "only auditors may export the collector's trail")
        self.record_access(user, "export", None)
        store = self.ctx.collector.store
        await asyncio.wrap_future(store.checkpoint())
        bundle = await asyncio.to_thread(store.build_bundle)
        self.finish(json.dumps(bundle, ensure_ascii=False, sort_keys=True))


class VerifyHandler(ReadHandler):
    async def get(self) -> None:
        user = await self.authenticate()
        if not self.is_auditor(user):
            self.refuse(403, "only auditors may verify the collector's trail")
        deep = self.get_query_argument("deep", "false").lower() in ("1", "true", "yes")
        pinned = None
        if self.get_query_argument("pubkey", None):
            try:
                pinned = [load_public(self.get_query_argument("pubkey"))]
            except KeyError_ as e:
                self.refuse(400, f"pubkey: {e}")
        store = self.ctx.collector.store
        result = await asyncio.to_thread(store.verify, trusted_keys=pinned, deep=deep)
        self.finish(json.dumps(result.to_dict(), default=str))


def read_handlers(prefix: str) -> list:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return [
        (prefix + "api/traces", TracesHandler),
        (prefix + r"api/traces/([A-Za-z0-9._:@/+=~-]{1,256})", TraceHandler),
        (prefix + "api/export", ExportHandler),
        (prefix + "api/verify", VerifyHandler),
        (prefix + "jupyter-audit/api/verify", VerifyHandler),
    ]
