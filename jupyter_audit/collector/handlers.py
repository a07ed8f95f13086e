"""The collector's HTTP API (docs/collector.md "Protocol"): every verb authenticated with a
Hub token (`hubauth`), refusals answered as JSON `{code, message}` and recorded as
`security.rejected` (rate-limited per address); no request body, query or token is ever
logged.

- `GET  <prefix>api/forward/state[?server=NAME]` -> {"server", "trail", "seq", "hash"}
- `POST <prefix>api/forward` {"server", "trail", "records": [...], "backlog", "stopping"}
  -> {"acked", "duplicates"}, once the store committed (an empty `records` is a heartbeat)
"""

from __future__ import annotations

import asyncio
import json

from tornado import web
from tornado.ioloop import IOLoop

from .hubauth import Refused, server_id, token_from
from .protocol import BadBatch, parse_batch
from .service import MAX_SERVERS_PER_USER, hub_identity

SETTINGS_KEY = "jupyter_audit_collector"
# batches of one Hub user taken in at once (the others wait on the event loop, not in the
# worker pool): a user posting for many servers of theirs leaves workers for everyone else
INGESTS_PER_USER = 2


class CollectorHandler(web.RequestHandler):
    """One base: authentication, JSON errors, recorded refusals."""

    hub_user: dict | None = None
    token: str | None = None  # the caller's Hub token (`authenticate`)

    @property
    def ctx(self):
        return self.settings[SETTINGS_KEY]

    def check_xsrf_cookie(self) -> None:  # token-authenticated API, no cookies
        return None

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def _request_summary(self) -> str:
        # what tornado logs of every request and refusal: the path, never the query (the
        # people API's carries what a person typed: a search, a notebook name, a time)
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def write_error(self, status_code: int, **kwargs) -> None:
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message
        self.finish(json.dumps({"code": status_code, "message": message}))

    def refuse(self, status: int, message: str, server: str | None = None) -> None:
        """Record the refusal (under the Hub user when the Hub named one) and answer it."""
        who = self.hub_user
        source = f"collector {self.request.method} {self.request.path}"
        if who is not None:
            source += f" by Hub user {who.get('name')}"
        if server is not None:
            source += f" for server {server[:80]!r}"
        # rate-limited per Hub user once the Hub named one, else per address: servers share
        # an address (the Hub's proxy, 127.0.0.1), and one user's flood must not turn another
        # user's refusals into a count
        address = f"Hub user {who.get('name')}" if who is not None else None
        self.ctx.recorder.reject(
            message,
            source,
            address=address or self.request.remote_ip or "?",
            identity=hub_identity(who) if who and who.get("kind", "user") == "user" else None,
        )
        raise web.HTTPError(status, message.replace("%", "%%"))

    async def authenticate(self) -> dict:
        try:
            self.token = token_from(self.request.headers.get("Authorization"))
            self.hub_user = await self.ctx.users.user(self.token)
        except Refused as e:
            self.refuse(e.status, str(e))
        return self.hub_user  # type: ignore[return-value]

    def server_for(self, user: dict, claimed: str | None) -> str:
        try:
            server = server_id(user, claimed)
        except Refused as e:
            self.refuse(e.status, str(e), server=claimed)
            raise  # refuse raised already
        if self.token:
            self.ctx.server_tokens.saw(self.token)  # a server's: it never decides
        if not self.ctx.collector.admits(server):
            self.refuse(
                403,
                f"Hub user {user['name']!r} forwards as {MAX_SERVERS_PER_USER} servers already",
                server=server,
            )
        return server


class ForwardStateHandler(CollectorHandler):
    async def get(self) -> None:
        user = await self.authenticate()
        server = self.server_for(user, self.get_query_argument("server", None))
        self.finish(json.dumps(self.ctx.collector.state(server)))


@web.stream_request_body
class BodyAfterAuth(CollectorHandler):
    """The body is read only once the Hub knows the caller (`prepare`, after the headers): no
    one without a token can make the collector hold a body in memory; past `body_cap` it is
    read and dropped as it arrives (then refused, 413, by `raw_body`), never held."""

    _chunks: list[bytes]
    _size = 0

    def body_cap(self) -> int:
        return self.ctx.max_body_bytes

    async def prepare(self) -> None:
        self._chunks = []
        await self.authenticate()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.body_cap():
            self._chunks.append(chunk)
        else:
            self._chunks = []  # past the cap: refused by `raw_body`, nothing more is held

    def raw_body(self, what: str) -> bytes:
        if self._size > self.body_cap():
            self.refuse(413, f"{what} may not exceed {self.body_cap()} bytes")
        return b"".join(self._chunks)


class ForwardHandler(BodyAfterAuth):
    """POST api/forward: a batch of a server's records."""

    async def post(self) -> None:
        user = self.hub_user or await self.authenticate()  # `prepare` authenticated it
        raw = self.raw_body("a batch")
        try:
            batch = parse_batch(raw)
        except BadBatch as e:
            self.refuse(400, f"malformed batch: {e}")
        server = self.server_for(user, batch.server)
        slots = self.ctx.ingest_slots.setdefault(user["name"], asyncio.Semaphore(INGESTS_PER_USER))
        try:
            async with slots:
                result = await IOLoop.current().run_in_executor(
                    None, self.ctx.collector.ingest, server, user["name"], batch
                )
        except BadBatch as e:
            self.refuse(400, f"malformed batch: {e}", server=server)
        self.finish(json.dumps(result))


def handlers(prefix: str) -> list:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return [
        (prefix + "api/forward/state", ForwardStateHandler),
        (prefix + "api/forward", ForwardHandler),
    ]
