"""REST API for users under /jupyter-audit/api/. One base class authenticates, authorizes
and turns errors into JSON `{"code", "message"}`: bad input 400, missing role 403, unknown
thing 404, our own failure 500. Handlers reach the server's services through settings: the
Recorder (`jupyter_audit`), the TokenStore (`jupyter_audit_tokens`) and the AuditAuthorizer
(`authorizer`). The kernels' endpoint (per-kernel secrets) is `ingest/handler.py`."""

from __future__ import annotations

import asyncio
import inspect
import json
import urllib.parse
from functools import wraps
from typing import cast

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..events import EventValidationError
from ..identity.resolve import snapshot_for
from ..identity.tokens import TokenError
from ..store import queries
from ..store import trail as trail_ops
from ..store.canonical import iso_time
from ..store.errors import TrailError
from ..store.export import ExportError
from ..store.signing import KeyError_, load_public
from .authorization import RESOURCES, AuditAuthorizer
from .collector_proxy import collector_client, from_collector
from .ingest.handler import KernelEventsHandler
from .trace_query import (
    TraceQueryArgs,
    integrity_json,
    resolve,
    search_ready,
    shown_filters,
    trace_answer,
    traces_answer,
)

API = "/jupyter-audit/api"
APPROVALS_KEY = "jupyter_audit_approvals"  # the server's approval broker in the settings


def requires(resource: str):
    """Authenticated (401 otherwise) and authorized for `resource` by the server's
    Authorizer (403 otherwise, naming the role)."""

    def wrap(method):
        @wraps(method)
        async def inner(self, *args, **kwargs):
            if not self.current_user:
                raise web.HTTPError(401, self.auth_message())
            await self.authorize(resource)
            out = method(self, *args, **kwargs)
            if inspect.isawaitable(out):
                out = await out
            return out

        return inner

    return wrap


class AuditHandler(TraceQueryArgs, ExtensionHandlerMixin, APIHandler):
    auth_resource = "audit:me"

    def auth_message(self) -> str:
        why = getattr(self, "_audit_auth_error", None)
        if why:
            return f"authentication failed: {why}"
        return "authentication required: sign in, or send 'Authorization: Bearer <token>'"

    def get_login_url(self):
        # an API: answer 401 instead of redirecting to a login page
        raise web.HTTPError(401, self.auth_message())

    def check_xsrf_cookie(self):
        # tornado calls this once before prepare() (no user known yet; jupyter_server skips
        # that call) and prepare() again after authentication: then answer 401, not 403
        if hasattr(self, "_jupyter_current_user") and not self._jupyter_current_user:
            raise web.HTTPError(401, self.auth_message())
        return super().check_xsrf_cookie()

    async def authorize(self, resource: str, action: str | None = None) -> None:
        action = action or {"GET": "read", "HEAD": "read"}.get(self.request.method, "write")
        ok = self.authorizer.is_authorized(self, self.current_user, action, resource)
        if inspect.isawaitable(ok):
            ok = await ok
        if not ok:
            raise web.HTTPError(403, refusal_message(self.authorizer, resource))

    @property
    def recorder(self):
        return self.settings["jupyter_audit"]

    @property
    def writer(self):
        return self.recorder.writer

    @property
    def token_store(self):
        return self.settings["jupyter_audit_tokens"]

    def identity(self) -> dict:
        return snapshot_for(self.current_user, self.identity_provider)

    def roles(self, identity: dict | None = None) -> list[str]:
        """The caller's roles from their groups, with `break-glass` when the approval
        broker's `break_glass_groups` hold one of them (as the collector's `me` says)."""
        identity = identity or self.identity()
        authorizer = cast(AuditAuthorizer, self.authorizer)
        roles = authorizer.roles(identity, self.identity_provider)
        broker = self.settings.get(APPROVALS_KEY)
        if broker is not None and broker.is_break_glass(identity) and "break-glass" not in roles:
            roles.append("break-glass")
        return roles

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "body must be a JSON object")
        return body

    def record_access(self, identity: dict, action: str, trace_id=None, filters=None) -> None:
        # an access of one trace shows in that trace (neither counted in it nor making the
        # reader a participant: store/traces.py); an export of a filtered set, or of a trace
        # that does not exist, belongs to none
        known = bool(trace_id) and queries.get_trace_summary(self.writer.cursor(), trace_id)
        self.recorder.record_now(
            {
                "kind": "trail.accessed",
                "identity": identity,
                "trace_id": trace_id if known else None,
                "payload": {"action": action, "trace_id": trace_id, "filters": filters},
            }
        )

    def _handle_request_exception(self, e):
        if isinstance(e, EventValidationError | ExportError):
            self.send_error(400, reason="Bad Request", message=str(e))
        elif isinstance(e, TrailError):
            self.log.error("jupyter-audit trail error: %s", e)
            self.send_error(500, message=f"audit trail error: {e}")
        else:
            super()._handle_request_exception(e)

    def write_error(self, status_code, **kwargs):
        message = kwargs.get("message")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if message is None:
            if isinstance(exc, web.HTTPError) and exc.log_message:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            else:
                message = self._reason
        body = {"code": status_code, "message": message}
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="jupyter-audit"')
            body.update(self.sign_in_again())
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def sign_in_again(self) -> dict:
        """What a 401 tells a client about signing in: `reason` (`session_expired`,
        `session_ended`, `credential_refused` or `not_signed_in`) and, when this server
        signs people in, `login_url` (a path; add `?next=` to come back)."""
        reason = getattr(self, "_audit_session_state", None)
        if reason is None:
            reason = "credential_refused" if getattr(self, "_audit_auth_error", None) else None
        out = {"reason": reason or "not_signed_in"}
        if self.identity_provider.login_available:
            out["login_url"] = self.settings.get("login_url") or self.base_url + "login"
        return out


def refusal_message(authorizer, resource: str) -> str:
    """Why a 403: the role missing and the configured groups that grant it."""
    role = RESOURCES.get(resource)
    if role is None:
        return f"not allowed: {resource}"
    groups = list(getattr(authorizer, f"{role}_groups", None) or [])
    if not groups:
        return f"this needs the {role} role"
    setting = f"c.AuditApp.{role}_groups"
    return (
        f"this needs the {role} role, which members of {', '.join(groups)} have "
        f"({setting}); ask an administrator to add you to one of them"
    )


class MeHandler(AuditHandler):
    """Who the caller is, their roles and the trail they read (`source`: `server`, this
    server's own trail; `collector`, the Hub's: then roles and trail are the collector's)."""

    @web.authenticated
    @requires("audit:me")
    async def get(self):
        expires = session_expiry(self.current_user)
        if collector_client(self) is not None:
            hub = await from_collector(self, "me", params={})
            self.finish({**hub, "source": "collector", "session_expires_at": expires})
            return
        ident = self.identity()
        stats = queries.trail_stats(self.writer.cursor())
        self.finish(
            {
                "username": ident["username"],
                "display_name": ident.get("display_name") or ident["username"],
                "identity": ident,
                "roles": self.roles(ident),
                "trail": {**stats, "integrity": integrity_json(self.writer.integrity)},
                "source": "server",
                # when this sign-in (or token) ends: the panel checks again then
                "session_expires_at": expires,
            }
        )


def session_expiry(user) -> str | None:
    """When the user's sign-in session or token stops being valid, as the trail writes
    times, or None."""
    epoch = getattr(user, "expires_at", None)
    return iso_time(int(epoch * 1_000_000)) if isinstance(epoch, int | float) else None


class TraceQueryHandler(AuditHandler):
    """What the trace endpoints share: strict parameters (`trace_query`) and, with the
    Hub's collector configured, the collector's answer instead of the local trail's."""

    async def index_ready(self) -> None:
        """Wait until the search index holds every committed record (`search_ready`)."""
        await search_ready(self.writer)


class TracesHandler(TraceQueryHandler):
    """Trace summaries, newest first, a page at a time (`listing.list_traces`)."""

    @web.authenticated
    @requires("audit:traces")
    async def get(self):
        if collector_client(self) is not None:
            self.finish(await from_collector(self, "traces"))
            return
        ident = self.identity()
        limit, only, filters = self.listing_args()
        if "auditor" in self.roles(ident):
            username = only
        else:
            if only not in (None, ident["username"]):
                await self.authorize("audit:traces:all")  # 403: only auditors
            username = ident["username"]
        if filters["q"]:
            await self.index_ready()
        writer = self.writer
        out = await asyncio.to_thread(
            lambda: traces_answer(
                writer.cursor(), limit, {**filters, "username": username}, writer.integrity
            )
        )
        self.finish(out)


class TraceHandler(TraceQueryHandler):
    """One trace: its summary, a page of its events (`timeline.trace_page`) and its own
    integrity. A full id or an unambiguous prefix of at least 8 characters."""

    @web.authenticated
    @requires("audit:traces")
    async def get(self, ident_or_prefix):
        if collector_client(self) is not None:
            path = "traces/" + urllib.parse.quote(ident_or_prefix, safe="")
            self.finish(await from_collector(self, path))
            return
        ident = self.identity()
        page = self.page_args()
        writer = self.writer
        cur = writer.cursor()
        # a prefix is resolved among the traces the user may see: it tells no one which
        # ids others' traces have (a full id of another's trace is a 403, as before)
        mine = None if "auditor" in self.roles(ident) else ident["username"]
        trace_id = resolve(cur, ident_or_prefix, username=mine)
        if ident["username"] not in queries.trace_users(cur, trace_id):
            await self.authorize("audit:traces:all")
            self.record_access(ident, "view", trace_id)
        if page["words"]:
            await self.index_ready()
        out = await asyncio.to_thread(
            lambda: trace_answer(writer.cursor(), trace_id, page, writer.integrity)
        )
        if out is None:
            raise web.HTTPError(404, f"no trace {ident_or_prefix}")
        self.finish(out)


class VerifyHandler(AuditHandler):
    @web.authenticated
    @requires("audit:verify")
    async def get(self):
        deep = self.get_argument("deep", "false").lower() in ("1", "true", "yes")
        pinned = None
        if self.get_argument("pubkey", None):
            try:
                pinned = [load_public(self.get_argument("pubkey"))]
            except KeyError_ as e:
                raise web.HTTPError(400, f"pubkey: {e}") from None
        result = await asyncio.to_thread(self.writer.verify, trusted_keys=pinned, deep=deep)
        self.finish(result.to_dict())


class ExportHandler(AuditHandler):
    """The export bundle as JSON: every matching record, the covering signed checkpoint and
    inclusion proofs. The CLI writes the records file (jsonl/csv/parquet) from it. With the
    Hub's collector configured, the collector's bundle (it decides what its reader may
    export)."""

    @web.authenticated
    @requires("audit:me")
    async def get(self):
        if collector_client(self) is not None:
            out = await from_collector(self, "export")
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(out, ensure_ascii=False, sort_keys=True))
            return
        await self.authorize("audit:export")
        ident = self.identity()
        filters = self.export_args()
        self.record_access(ident, "export", filters.get("trace"), shown_filters(filters))
        writer = self.writer
        # sign a checkpoint now, so it covers everything exported
        await asyncio.wrap_future(writer.checkpoint())

        def run():
            return trail_ops.build_bundle(writer.cursor(), **filters)

        bundle = await asyncio.to_thread(run)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(bundle, ensure_ascii=False, sort_keys=True))


class TokensHandler(AuditHandler):
    """Service-account tokens, for admins: GET lists them (never a secret), POST
    `{"service_account", "owner", "expires"}` creates one and returns it once."""

    @web.authenticated
    @requires("audit:tokens")
    def get(self):
        self.finish({"tokens": self.token_store.list()})

    @web.authenticated
    @requires("audit:tokens")
    async def post(self):
        body = self.json_body()
        try:
            token, record = await asyncio.to_thread(
                self.token_store.create,
                body.get("service_account"),
                body.get("owner"),
                body.get("expires") or "30d",
                self.identity(),
            )
        except TokenError as e:
            raise web.HTTPError(400, str(e)) from None
        self.set_status(201)
        self.finish({**record, "token": token})


class TokenHandler(AuditHandler):
    """GET one token's record; DELETE revokes it (optional `{"reason": ...}`) and closes the
    websockets opened with it."""

    @web.authenticated
    @requires("audit:tokens")
    def get(self, token_id):
        record = self.token_store.get(token_id)
        if record is None:
            raise web.HTTPError(404, f"no token {token_id}")
        self.finish(record)

    @web.authenticated
    @requires("audit:tokens")
    async def delete(self, token_id):
        body = self.json_body() if self.request.body else {}
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise web.HTTPError(400, "reason must be a string")
        try:
            record = await asyncio.to_thread(
                self.token_store.revoke, token_id, self.identity(), reason
            )
        except KeyError:
            raise web.HTTPError(404, f"no token {token_id}") from None
        except TokenError as e:
            raise web.HTTPError(409, str(e)) from None
        self.recorder.close_token_sockets(token_id)
        self.finish(record)


HANDLERS = [
    (rf"{API}/me", MeHandler),
    (rf"{API}/traces", TracesHandler),
    (rf"{API}/traces/([A-Za-z0-9._:@/+=~-]+)", TraceHandler),
    (rf"{API}/verify", VerifyHandler),
    (rf"{API}/export", ExportHandler),
    (rf"{API}/tokens", TokensHandler),
    (rf"{API}/tokens/([0-9a-f]{{16}})", TokenHandler),
    (rf"{API}/kernel/events", KernelEventsHandler),
]
