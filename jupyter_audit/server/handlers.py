"""REST API for users under /jupyter-audit/api/. One base class authenticates, authorizes
and turns errors into JSON `{"code", "message"}`: bad input 400, missing role 403, unknown
thing 404, our own failure 500. Handlers reach the server's services through settings: the
Recorder (`jupyter_audit`), the TokenStore (`jupyter_audit_tokens`) and the AuditAuthorizer
(`authorizer`). The kernels' endpoint (per-kernel secrets) is `ingest/handler.py`."""

from __future__ import annotations

import asyncio
import inspect
import json
from datetime import datetime
from functools import wraps
from typing import cast

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..events import KINDS, EventValidationError
from ..identity.resolve import snapshot_for
from ..identity.tokens import TokenError
from ..store import listing, queries, search, timeline
from ..store import trail as trail_ops
from ..store.canonical import iso_time
from ..store.errors import TrailError
from ..store.export import ExportError
from ..store.filters import parse_time
from ..store.signing import KeyError_, load_public
from .authorization import RESOURCES, AuditAuthorizer
from .ingest.handler import KernelEventsHandler

API = "/jupyter-audit/api"
MAX_LIMIT = 1000
MAX_TRACES_PAGE = 500  # traces per `GET traces` page
MAX_EVENTS_PAGE = 5000  # events per `GET traces/{id}` page


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


class AuditHandler(ExtensionHandlerMixin, APIHandler):
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
        authorizer = cast(AuditAuthorizer, self.authorizer)
        return authorizer.roles(identity or self.identity(), self.identity_provider)

    def arg_int(self, name: str, default: int, lo: int = 0, hi: int = MAX_LIMIT) -> int:
        raw = self.get_argument(name, None)
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
        raw = self.get_argument(name, None)
        if raw is None:
            return None
        try:
            return parse_time(raw)
        except ValueError as e:
            raise web.HTTPError(400, f"{name}: {e}") from None

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "body must be a JSON object")
        return body

    def record_access(self, identity: dict, action: str, trace_id=None, filters=None) -> None:
        self.recorder.record_now(
            {
                "kind": "trail.accessed",
                "identity": identity,
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


class MeHandler(AuditHandler):
    @web.authenticated
    @requires("audit:me")
    def get(self):
        ident = self.identity()
        cur = self.writer.cursor()
        stats = queries.trail_stats(cur)
        self.finish(
            {
                "username": ident["username"],
                "display_name": ident.get("display_name") or ident["username"],
                "identity": ident,
                "roles": self.roles(ident),
                "trail": {**stats, "integrity": integrity_json(self.writer.integrity)},
                # when this sign-in (or token) ends: the panel checks again then
                "session_expires_at": session_expiry(self.current_user),
            }
        )


def session_expiry(user) -> str | None:
    """When the user's sign-in session or token stops being valid, as the trail writes
    times, or None."""
    epoch = getattr(user, "expires_at", None)
    return iso_time(int(epoch * 1_000_000)) if isinstance(epoch, int | float) else None


MAX_TEXT = 1000  # characters of a free-text filter (user, notebook, kind, msg_id)
SEARCH_WAIT = 120.0  # seconds a search waits for the index to catch up


class TraceQueryHandler(AuditHandler):
    """What the trace endpoints share: strict parameters (a NUL byte, an overlong value or
    a malformed number is a 400 naming it, never a 500) and the integrity found at open."""

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

    async def index_ready(self) -> None:
        """Wait until the search index holds every committed record."""
        # waited for without cancelling it on time-out: the indexing goes on for the next one
        ready = asyncio.wrap_future(self.writer.index_search())
        done, _ = await asyncio.wait({ready}, timeout=SEARCH_WAIT)
        if not done:
            raise web.HTTPError(503, "the search index is still being built; try again")
        ready.result()

    def broken_seqs(self) -> list[int]:
        result = self.writer.integrity
        problems = getattr(result, "problems", None) or []
        return sorted({p["seq"] for p in problems if p.get("seq") is not None})


class TracesHandler(TraceQueryHandler):
    """Trace summaries, newest first, a page at a time (`listing.list_traces`)."""

    @web.authenticated
    @requires("audit:traces")
    async def get(self):
        ident = self.identity()
        limit = self.arg_int("limit", 50, 1, MAX_TRACES_PAGE)
        before = self.arg_seq("before")
        cursor = self.arg_text("cursor", 100)
        if cursor is not None:
            try:
                before = listing.decode_cursor(cursor)
            except listing.QueryError as e:
                raise web.HTTPError(400, str(e)) from None
        only = self.arg_text("user", 256)
        if "auditor" in self.roles(ident):
            username = only
        else:
            if only not in (None, ident["username"]):
                await self.authorize("audit:traces:all")  # 403: only auditors
            username = ident["username"]
        flags = self.arg_texts("flag", 40)
        for f in flags:
            if f not in listing.FLAGS:
                raise web.HTTPError(400, f"flag must be one of {', '.join(listing.FLAGS)}")
        filters = {
            "username": username,
            "before_seq": before,
            "notebook": self.arg_text("notebook"),
            "since": self.arg_time("since"),
            "until": self.arg_time("until"),
            "kinds": self.arg_kind(),
            "flags": flags,
            "q": self.arg_words(),
        }
        if filters["q"]:
            await self.index_ready()
        seqs = self.broken_seqs()
        writer = self.writer

        def run():
            cur = writer.cursor()
            broken = listing.broken_traces(cur, seqs)
            return listing.list_traces(cur, limit=limit + 1, broken=broken, **filters)

        traces = await asyncio.to_thread(run)
        more = len(traces) > limit
        traces = traces[:limit]
        self.finish(
            {
                "traces": traces,
                "next": listing.encode_cursor(traces[-1]["last_seq"]) if more else None,
                "integrity": integrity_json(self.writer.integrity),
            }
        )


class TraceHandler(TraceQueryHandler):
    """One trace: its summary, a page of its events (`timeline.trace_page`) and its own
    integrity. A full id or an unambiguous prefix of at least 8 characters."""

    @web.authenticated
    @requires("audit:traces")
    async def get(self, ident_or_prefix):
        ident = self.identity()
        limit = self.arg_int("limit", 500, 1, MAX_EVENTS_PAGE)
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
        folding = (msg_id is None) if fold is None else fold in ("1", "true")
        kinds = self.arg_kind()
        if len(kinds) > 1:
            raise web.HTTPError(400, "kind given more than once")
        words = self.arg_words()
        writer = self.writer
        cur = writer.cursor()
        # a prefix is resolved among the traces the user may see: it tells no one which
        # ids others' traces have (a full id of another's trace is a 403, as before)
        mine = None if "auditor" in self.roles(ident) else ident["username"]
        try:
            trace_id = listing.resolve_trace_id(cur, ident_or_prefix, username=mine)
        except listing.QueryError as e:
            raise web.HTTPError(400, str(e)) from None
        if trace_id is None:
            raise web.HTTPError(404, f"no trace {ident_or_prefix}")
        if ident["username"] not in queries.trace_users(cur, trace_id):
            await self.authorize("audit:traces:all")
            self.record_access(ident, "view", trace_id)
        if words:
            await self.index_ready()
        seqs = self.broken_seqs()

        def run():
            cur = writer.cursor()
            broken = listing.broken_traces(cur, seqs)
            summary = queries.get_trace_summary(cur, trace_id, broken)
            if summary is None:
                return None
            page_ = timeline.trace_page(
                cur,
                trace_id,
                limit=limit,
                after_seq=after,
                before_seq=before,
                last=page == "last",
                fold=folding,
                msg_id=msg_id,
                kind=kinds[0] if kinds else None,
                words=words,
                broken=set(seqs),
            )
            integrity = timeline.trace_integrity(cur, summary, writer.integrity)
            return {"trace": summary, **page_, "integrity": integrity}

        out = await asyncio.to_thread(run)
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
    inclusion proofs. The CLI writes the records file (jsonl/csv/parquet) from it."""

    @web.authenticated
    @requires("audit:export")
    async def get(self):
        ident = self.identity()
        filters = {
            "user": self.get_argument("user", None),
            "since": self.arg_time("since"),
            "until": self.arg_time("until"),
            "notebook": self.get_argument("notebook", None),
            "trace": self.get_argument("trace", None),
        }
        shown = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items()}
        self.record_access(ident, "export", filters.get("trace"), shown)
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
