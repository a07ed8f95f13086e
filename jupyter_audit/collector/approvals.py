"""Approvals through the collector: one queue for every server of the Hub, decided by people
the Hub names (docs/approvals.md "Under a JupyterHub collector").

A single-user server still attributes a kernel's question to the running cell and runs its
policy; a `review` is asked here, and the collector's broker (`approvals.ApprovalBroker` over
the collector's own trail store, DuckDB or PostgreSQL) records it, waits, expires it and takes
decisions. Who asks is the Hub's answer for the server's token (the owner); which server asks
is the Hub's too; the request's trace is the forwarded cell's trace at the collector
(`protocol.trace_in_collector`), so the request shows in that trace and a server reaches only
requests in its own namespace (another's id is a 404).

Servers' verbs, under `<prefix>api/approvals/` (`?server=` claims the server, as forwarding):
- `POST requests` {the kernel's question, "kernel_id", "trace_id", "session_id", "notebook",
  "decision": the server policy's {"decision": "review", "reasons", "min_approvals"}}
  -> the kernel's answer {"decision", "reasons", "min_approvals", "request"}
- `GET requests/{id}?kernel=K&wait=S` -> {"id", "state", "reason", "decided_by", "message"}
- `POST requests/{id}` {"kernel": K, "executed": {...}} | {"kernel": K, "cancel": why}
- `POST kernels` {"kernel": K, "why": interrupt|restart|shutdown|died|server shutdown}
  -> {"cancelled": [ids]}
People's, under `<prefix>jupyter-audit/api/` (a person's Hub token; the shapes of a server's
REST API): `GET approvals[?state=][&limit=]`, `GET approvals/{id}`, `POST approvals/{id}`
{"decision", "reason"}: a decision is taken with the person's browser session at the collector
(`browser`, with its XSRF token) or a Hub token that is not a server's (a server's token is in
every kernel of that server: 403, recorded). Reviewers are the Hub groups
`CollectorApp.reviewer_groups`; members of `CollectorApp.break_glass_groups` see every request
too and decide one alone, with a reason, flagged `break_glass` (`ApprovalBroker.is_break_glass`
on the Hub identity's groups); no one decides their own Hub user's request, nor one of a cell
they ran; a user who is neither sees their own requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from typing import NoReturn

from tornado import web
from tornado.ioloop import PeriodicCallback

from ..approvals import ApprovalBroker, Notifier, Refused, Webhook, WebhookConfigError
from ..approvals import parse_ask as parse_question
from ..approvals.model import EXECUTED, PENDING, Approval
from ..policy.decision import Decision, Reason
from ..store import queries
from .browser import BrowserSession
from .handlers import BodyAfterAuth
from .hubauth import is_server_token
from .protocol import trace_in_collector
from .service import hub_identity

MAX_BODY = 2 * 1024 * 1024  # a question holds a statement (up to 1 MiB) and its parameters
MAX_REASONS = 100
MAX_APPROVALS = 100
# requests of one Hub user waiting for review at once (every server of theirs): one user's
# flood would push everyone else's out of the reviewers' view and fill the collector's memory
MAX_PENDING_PER_USER = 50
_ID = re.compile(r"[0-9]{1,18}")
# the Hub groups whose members review by default (`CollectorApp.reviewer_groups`)
REVIEWER_GROUPS = ("audit-reviewers",)


def server_prefix(server: str) -> str:
    """The trace-id prefix of everything `server` recorded at the collector."""
    return trace_in_collector(server, "") or ""


class HubBroker(ApprovalBroker):
    """The approval broker of the collector: requests of every server, in the collector's
    trail. The policy ran on the server that asked (`ask_for`); kernels are known by their
    server (the trace namespace) and id together."""

    max_pending = MAX_PENDING_PER_USER

    def __init__(
        self,
        recorder,
        *,
        expiry: float = 1800.0,
        reviewer_groups=REVIEWER_GROUPS,
        break_glass_groups=(),
        notifier=None,
        log=None,
    ):
        super().__init__(
            recorder,
            None,
            expiry=expiry,
            break_glass_groups=break_glass_groups,
            notifier=notifier,
            log=log,
        )
        self.reviewer_groups = frozenset(reviewer_groups)
        # request id -> the Hub user who ran the asking cell, as the server said (JupyterHub
        # sharing: someone other than the owner); they do not decide it either
        self._ran_by: dict[int, str] = {}

    def executed(self, request_id: int, kernel_id: str, report: object) -> Approval:
        """As `ApprovalBroker.executed`; the same report again (a server delivering it again
        after an answer it did not get) is answered, never recorded twice."""
        with self._lock:
            approval = self.of_kernel(request_id, kernel_id)
            if (
                approval.state == EXECUTED
                and isinstance(report, dict)
                and report.get("statement_sha256") == approval.statement_sha256
                and report.get("params_sha256") == approval.params_sha256
                and report.get("rowcount") == (approval.executed or {}).get("rowcount")
            ):
                return approval
            return super().executed(request_id, kernel_id, report)

    def nobody_decides(self) -> bool:
        """No Hub group may decide here (no reviewer groups, no break-glass groups): a
        request the server's policy forced to review can only expire. The server's policy
        said `review`; whether anyone can decide it is the collector's groups' question."""
        return not self.reviewer_groups and not self.break_glass_groups

    def _more_payload(self, cell: dict) -> dict:
        ran_by = cell.get("ran_by")
        if not ran_by:
            return {}
        # `ran_by` is masked as any payload text is (an e-mail-like Hub name becomes a
        # pseudonym of the masking key in use); its hash is what `decide` compares, so the
        # check holds after the collector's masking key or configuration changes
        return {"ran_by": ran_by, "ran_by_sha256": _name_sha256(ran_by)}

    def _apply(self, record: dict, identity: dict | None, cur) -> Approval | None:
        approval = super()._apply(record, identity, cur)
        p = record["payload"]
        ran_by = p.get("ran_by_sha256") or p.get("ran_by")
        if approval is not None and record["kind"] == "approval.requested" and ran_by:
            self._ran_by[approval.id] = ran_by
        return approval

    def decide(self, request_id: int, identity: dict, **kw) -> Approval:
        ran_by = self._ran_by.get(request_id)
        name = identity.get("username")
        who = (name, self._masked(identity), _name_sha256(name) if name else None)
        if ran_by and ran_by in who:
            raise Refused(
                403,
                f"request #{request_id} is your own: you ran the cell that asked for it (on "
                "another user's server); another reviewer must decide",
            )
        return super().decide(request_id, identity, **kw)

    def _masked(self, identity: dict) -> str | None:
        """The username as a payload stores it (masked), for requests rebuilt from the trail."""
        name = identity.get("username")
        masker = getattr(self.recorder.writer, "masker", None)
        return masker.mask_text(name) if name and masker is not None else None

    def _cell_code(self, cur, approval: Approval) -> str | None:
        # the forwarded cell of that server only (another server could forward a cell
        # under the same msg_id and kernel id)
        return queries.cell_code(cur, approval.msg_id, approval.kernel_id, approval.trace_id)

    def _stopped(self, cur, pending: list[Approval]) -> list[Approval]:
        # a kernel's stop counts when its own server forwarded it (same trace)
        stops = queries.kernel_stops(
            cur, sorted({a.kernel_id for a in pending if a.kernel_id}), min(a.seq for a in pending)
        )
        out = []
        for a in pending:
            seqs = [s for s in stops.get(a.kernel_id or "", ()) if s > a.seq]
            if seqs and self._same_trace(cur, seqs, a.trace_id):
                out.append(a)
        return out

    @staticmethod
    def _same_trace(cur, seqs: list[int], trace_id: str | None) -> bool:
        row = cur.execute(
            "SELECT count(*) FROM events WHERE seq IN (SELECT unnest(?)) AND trace_id = ?",
            [seqs, trace_id],
        ).fetchone()
        return bool(row and row[0])

    def with_cell_code(self, approval: Approval) -> Approval:
        """`approval`, its cell's code looked up again if it was not forwarded yet when the
        request was made (the server forwards within seconds)."""
        if approval.cell_code is None and approval.msg_id:
            approval.cell_code = self._cell_code(self.recorder.writer.cursor(), approval)
        return approval

    # ------------------------------------------------------------------ servers
    def of_server(self, request_id: int, server: str, kernel_id: object) -> Approval:
        """A request of `server`'s kernel `kernel_id` (404 otherwise: another server's
        request is not shown to exist)."""
        approval = self._approvals.get(request_id)
        if (
            approval is None
            or not (approval.trace_id or "").startswith(server_prefix(server))
            or approval.kernel_id != kernel_id
        ):
            raise Refused(404, f"no request #{request_id} of this server's kernel")
        return approval

    def ask_for(self, server: str, owner: dict, body: dict) -> dict:
        """A server asks for review of an operation its kernel is about to run (blocking: it
        commits). The requester is the server's owner as the Hub named them."""
        question = parse_question(body)
        kernel_id = _text(body, "kernel_id", required=True) or ""
        trace = _text(body, "trace_id") or kernel_id
        cell = {
            "identity": hub_identity(owner),
            "trace_id": trace_in_collector(server, trace),
            "session_id": _text(body, "session_id"),
            "notebook": _text(body, "notebook", cap=4096),
            "ran_by": _text(body, "ran_by"),
        }
        decision = _decision(body.get("decision"))
        name = owner.get("name")
        with self._lock:  # counted and asked at once: two questions cannot both slip past
            waiting = sum(
                1
                for a in self._approvals.values()
                if a.state == PENDING and a.requester.get("username") == name
            )
            if waiting >= self.max_pending:
                raise Refused(
                    429,
                    f"Hub user {name!r} has {waiting} requests waiting for review already (at "
                    f"most {self.max_pending}): this operation did not run; ask again once "
                    "some are decided, cancelled or expired",
                )
            return self.ask(kernel_id, question, cell, decision)

    def cancel_server_kernel(self, server: str, kernel_id: str, why: object) -> list[int]:
        if why not in ("interrupt", "restart", "shutdown", "died", "server shutdown"):
            raise Refused(
                400, 'why must be "interrupt", "restart", "shutdown", "died" or "server shutdown"'
            )
        prefix = server_prefix(server)
        return self.cancel_kernel(
            kernel_id, str(why), only=lambda a: (a.trace_id or "").startswith(prefix)
        )


def _name_sha256(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def _text(body: dict, name: str, *, required: bool = False, cap: int = 256) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > cap:
        raise Refused(400, f"{name} must be a string of 1 to {cap} characters")
    return value


def _decision(raw: object) -> Decision:
    """The server policy's decision, checked: only a `review` opens a request."""
    if not isinstance(raw, dict) or raw.get("decision") != "review":
        raise Refused(400, 'decision must be the policy\'s {"decision": "review", ...}')
    reasons = raw.get("reasons")
    if not isinstance(reasons, list) or len(reasons) > MAX_REASONS:
        raise Refused(400, f"decision.reasons must be a list of at most {MAX_REASONS}")
    out = []
    for r in reasons:
        if not isinstance(r, dict):
            raise Refused(400, "decision.reasons must hold objects")
        rule, message, action = r.get("rule"), r.get("message"), r.get("action")
        tables = r.get("tables") or []
        if not all(isinstance(v, str) and len(v) <= 4096 for v in (rule, message, action)):
            raise Refused(400, "each reason needs rule, message and action (strings)")
        if action not in ("allow", "warn", "review", "deny"):
            raise Refused(400, "a reason's action must be allow, warn, review or deny")
        if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
            raise Refused(400, "a reason's tables must be a list of strings")
        out.append(
            Reason(str(rule), str(message), str(action), tuple(t[:256] for t in tables[:100]))
        )
    n = raw.get("min_approvals", 1)
    if type(n) is not int or not 1 <= n <= MAX_APPROVALS:
        raise Refused(400, f"decision.min_approvals must be an integer from 1 to {MAX_APPROVALS}")
    return Decision("review", tuple(out), n)


# ---------------------------------------------------------------------- handlers
class ApprovalBase(BodyAfterAuth):
    """Authenticated once the headers are in: a body is read only for a caller the Hub
    named, and past MAX_BODY it is dropped as it arrives (then refused, 413)."""

    def body_cap(self) -> int:
        return MAX_BODY

    @property
    def broker(self) -> HubBroker:
        return self.ctx.approvals

    def body(self) -> dict:
        raw = self.raw_body("a body")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body

    def request_id(self, raw: str) -> int:
        if not _ID.fullmatch(raw):
            raise web.HTTPError(404, "no such request")
        return int(raw)

    def refused(self, e: Refused, server: str | None = None) -> NoReturn:
        """A refusal of the broker's: a 403 is recorded (`security.rejected`), others are
        answered."""
        if e.status == 403:
            self.refuse(403, e.message, server=server)
        raise web.HTTPError(e.status, e.message.replace("%", "%%"))

    async def server(self) -> str:
        user = self.hub_user or await self.authenticate()  # `prepare` authenticated it
        return self.server_for(user, self.get_query_argument("server", None))


class RequestsHandler(ApprovalBase):
    async def post(self) -> None:
        server = await self.server()
        body = self.body()
        try:
            owner = self.hub_user or {}
            answer = await asyncio.to_thread(self.broker.ask_for, server, owner, body)
        except Refused as e:
            self.refused(e, server)
        self.finish(json.dumps(answer))


class RequestHandler(ApprovalBase):
    async def get(self, raw_id: str) -> None:
        server = await self.server()
        kernel = self.get_query_argument("kernel", None)
        try:
            wait = float(self.get_query_argument("wait", "0"))
        except ValueError:
            wait = -1.0
        if not wait >= 0:  # NaN too
            raise web.HTTPError(400, "wait must be a number of seconds")
        request_id = self.request_id(raw_id)
        self.own(request_id, server, kernel)
        try:
            status = await self.broker.wait(request_id, kernel or "", wait)
        except Refused as e:
            self.refused(e, server)
        self.finish(json.dumps(status))

    def own(self, request_id: int, server: str, kernel: object) -> None:
        """A request of this server's kernel, or a 404 recorded as `security.rejected`: an
        honest server only ever names the requests its kernels asked for."""
        try:
            self.broker.of_server(request_id, server, kernel)
        except Refused as e:
            self.refuse(e.status, e.message, server=server)

    async def post(self, raw_id: str) -> None:
        server = await self.server()
        body = self.body()
        request_id = self.request_id(raw_id)
        kernel = body.pop("kernel", None)
        if ("executed" in body) == ("cancel" in body) or len(body) != 1:
            raise web.HTTPError(
                400, 'body must be {"kernel", "executed": {...}} or {"kernel", "cancel": "..."}'
            )
        broker = self.broker
        self.own(request_id, server, kernel)
        try:
            if "executed" in body:
                try:
                    approval = await asyncio.to_thread(
                        broker.executed, request_id, kernel, body["executed"]
                    )
                except Refused as e:
                    if e.status != 409:
                        raise
                    # an operation reported run that was not approved as this (the server
                    # told its kernel "approved" itself, or it ran something else): recorded
                    self.refuse(409, e.message, server=server)
            else:
                approval = await asyncio.to_thread(
                    broker.cancel, request_id, kernel, body["cancel"]
                )
        except Refused as e:
            self.refused(e, server)
        self.finish(json.dumps(approval.status_json()))


class KernelsHandler(ApprovalBase):
    async def post(self) -> None:
        server = await self.server()
        body = self.body()
        try:
            kernel = _text(body, "kernel", required=True) or ""
            done = await asyncio.to_thread(
                self.broker.cancel_server_kernel, server, kernel, body.get("why")
            )
        except Refused as e:
            self.refused(e, server)
        self.finish(json.dumps({"cancelled": done}))


class PeopleBase(ApprovalBase):
    def shapes(self, approvals: list[Approval]) -> list[dict]:
        """The REST shapes (blocking: a cell's code may be looked up in the trail)."""
        return [self.broker.with_cell_code(a).to_json() for a in approvals]

    async def person(self) -> tuple[dict, bool]:
        """The Hub user's identity snapshot, and whether they review."""
        user = self.hub_user or await self.authenticate()  # `prepare` authenticated it
        if user.get("kind", "user") != "user":
            self.refuse(403, "approvals are decided by people: use a Hub user's token")
        return hub_identity(user), "reviewer" in self.ctx.roles(user)


class PeopleApprovalsHandler(PeopleBase):
    async def get(self) -> None:
        ident, reviewer = await self.person()
        try:
            limit = int(self.get_query_argument("limit", "200"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise web.HTTPError(400, "limit must be an integer from 1 to 1000")
        try:
            found = self.broker.visible(
                ident, reviewer=reviewer, state=self.get_query_argument("state", None)
            )
        except Refused as e:
            self.refused(e)
        out = await asyncio.to_thread(self.shapes, found[:limit])
        self.finish(json.dumps({"approvals": out}))


class PeopleApprovalHandler(BrowserSession, PeopleBase):
    """A request read with a person's Hub token; decided with their browser session at the
    collector or a Hub token that is not a server's (`browser`)."""

    async def prepare(self) -> None:
        self._chunks = []
        if self.request.method == "POST" and not self.request.headers.get("Authorization"):
            self.hub_user = await self.session_user()
            if self.hub_user is None:
                self.needs_sign_in()
            return
        await self.authenticate()
        if self.request.method == "POST" and (
            is_server_token(self.hub_user or {}) or self.token in self.ctx.server_tokens
        ):
            self.refuse(
                403,
                "a server's Hub token does not decide approvals: every kernel of that server "
                "holds it. Decide in your browser, signed in at the audit collector "
                f"({self.sign_in_url()}; JupyterLab's audit panel does this), or with "
                "`jupyter audit approvals approve|deny ID --url COLLECTOR --token T` and a "
                "Hub API token of your own (never one a kernel can read)",
            )

    async def get(self, raw_id: str) -> None:
        ident, reviewer = await self.person()
        try:
            approval = self.broker.get(self.request_id(raw_id), ident, reviewer=reviewer)
        except Refused as e:
            self.refused(e)
        self.finish(json.dumps((await asyncio.to_thread(self.shapes, [approval]))[0]))

    async def post(self, raw_id: str) -> None:
        ident, reviewer = await self.person()
        body = self.body()
        unknown = set(body) - {"decision", "reason"}
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}")
        try:
            approval = await asyncio.to_thread(
                self.broker.decide,
                self.request_id(raw_id),
                ident,
                reviewer=reviewer,
                decision=body.get("decision"),
                reason=body.get("reason"),
            )
        except Refused as e:
            if e.role == "reviewer":
                e = Refused(
                    403,
                    "deciding approvals needs the reviewer role: membership of a Hub group "
                    "in c.CollectorApp.reviewer_groups (or, to decide alone in an emergency "
                    "and with a reason, of one in c.CollectorApp.break_glass_groups)",
                )
            self.refused(e)
        self.finish(json.dumps((await asyncio.to_thread(self.shapes, [approval]))[0]))


def approval_handlers(prefix: str) -> list:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return [
        (prefix + "api/approvals/requests", RequestsHandler),
        (prefix + r"api/approvals/requests/([^/]+)", RequestHandler),
        (prefix + "api/approvals/kernels", KernelsHandler),
        (prefix + "jupyter-audit/api/approvals", PeopleApprovalsHandler),
        (prefix + r"jupyter-audit/api/approvals/([^/]+)", PeopleApprovalHandler),
    ]


# ---------------------------------------------------------------------- the process
def hub_broker(
    recorder,
    *,
    expiry: float = 1800.0,
    reviewer_groups=REVIEWER_GROUPS,
    break_glass_groups=(),
    webhooks=(),
    log=None,
) -> HubBroker:
    """The collector's broker, its state rebuilt from its trail; `reviewer_groups` and
    `break_glass_groups` as `CollectorApp`'s (the Hub groups that decide)."""
    try:
        hooks = [Webhook.from_config(entry) for entry in webhooks]
    except WebhookConfigError as e:
        raise ValueError(f"c.CollectorApp.approval_webhooks: {e}") from None
    notifier = Notifier(hooks, log=log) if hooks else None
    broker = HubBroker(
        recorder,
        expiry=expiry,
        reviewer_groups=reviewer_groups,
        break_glass_groups=break_glass_groups,
        notifier=notifier,
        log=log,
    )
    broker.rebuild()
    return broker


def start_approvals(app, context, log=None):
    """Approvals at the collector (`run`): the broker in `context.approvals`, expiry every
    few seconds off the event loop. Returns what stops them."""
    from tornado.ioloop import IOLoop

    broker = hub_broker(
        context.recorder,
        expiry=app.approval_expiry,
        reviewer_groups=context.reviewer_groups,
        break_glass_groups=context.break_glass_groups,
        webhooks=app.approval_webhooks,
        log=log,
    )
    context.approvals = broker

    def expire_due() -> None:
        try:
            broker.expire_due()
        except Exception as e:  # noqa: BLE001 - retried at the next tick
            (log or logging.getLogger(__name__)).error(
                "jupyter-audit collector: approval expiry failed: %s", type(e).__name__
            )

    def expire() -> None:
        IOLoop.current().run_in_executor(None, expire_due)

    timer = PeriodicCallback(expire, 5000)
    timer.start()

    def stop() -> None:
        timer.stop()
        broker.close()

    return stop
