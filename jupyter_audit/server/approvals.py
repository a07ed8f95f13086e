"""The approval endpoints: for kernels (per-kernel secret) and for people (REST, roles).

Kernels: `POST kernel/approvals` asks about an operation (the server attributes the request
to the cell the kernel is running now, never to anything in the body), `GET
kernel/approvals/{id}?wait=S` long-polls its state, `POST kernel/approvals/{id}` reports
the execution or cancels. People: `GET approvals[?state=]`, `GET approvals/{id}`, `POST
approvals/{id}` `{"decision", "reason"}`. The rules live in `approvals/` (the broker); these
handlers authenticate, attribute and translate `Refused` into HTTP answers.
"""

from __future__ import annotations

import asyncio
import json
import re

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

from ..approvals import Refused, parse_ask
from .collector_proxy import DECIDE_AT_THE_COLLECTOR, collector_client, from_collector
from .handlers import APPROVALS_KEY, AuditHandler, refusal_message, requires
from .ingest.attribution import running_cell
from .ingest.handler import KernelHandler

SETTINGS_KEY = APPROVALS_KEY
# the kernel's question as the collector takes it (docs/approvals.md "Kernel protocol")
QUESTION: tuple[str, ...] = ("kind", "statement", "command", "method", "url", "params")
QUESTION += ("params_sha256", "driver", "database", "msg_id", "executemany")
MAX_BODY = 2 * 1024 * 1024


def refused(e: Refused) -> web.HTTPError:
    return web.HTTPError(e.status, e.message.replace("%", "%%"))


def _body(handler) -> dict:
    if len(handler.request.body) > MAX_BODY:
        raise web.HTTPError(413, f"body larger than {MAX_BODY} bytes")
    try:
        body = json.loads(handler.request.body or b"{}")
    except (ValueError, RecursionError):
        raise web.HTTPError(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPError(400, "body must be a JSON object")
    return body


def _request_id(raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise web.HTTPError(404, "no such request")
    return int(raw)


class KernelApprovalsHandler(KernelHandler):
    """POST kernel/approvals: may this kernel run this operation now?"""

    @property
    def broker(self):
        return self.settings[SETTINGS_KEY]

    @allow_unauthenticated
    async def post(self):
        kernel_id = self.kernel_id()
        body = _body(self)
        try:
            ask = parse_ask(body)
        except Refused as e:
            raise refused(e) from None
        recorder, broker = self.recorder, self.broker
        cell = running_cell(recorder.cells, recorder.writer.cursor, kernel_id, ask.msg_id)
        known = recorder.cells.lookup(ask.msg_id)
        if cell is None and known is not None and known.get("kernel_id") != kernel_id:
            # not a late thread of its own cell: a kernel naming another kernel's cell
            recorder.reject(
                "approval request names a cell of another kernel",
                f"kernel approvals from {self.request.remote_ip or '?'}",
                address=self.request.remote_ip or "?",
                kernel_id=kernel_id,
            )
        decision = broker.check(ask, cell)
        if decision is None or decision.action != "review":
            # most writes end here: nothing recorded, the cells' batching left alone
            self.finish(broker.answer(decision))
            return
        recorder.flush_cells()  # the cell's own record goes first in the trail
        if getattr(broker, "remote", False):  # asked at the Hub's collector
            question = {k: body[k] for k in QUESTION if k in body}
            try:
                answer = await broker.ask(kernel_id, question, cell, decision)
            except Refused as e:
                raise refused(e) from None
        else:
            answer = await asyncio.to_thread(broker.ask, kernel_id, ask, cell, decision)
        self.finish(answer)


class KernelApprovalHandler(KernelHandler):
    """GET kernel/approvals/{id}?wait=S (long poll); POST `{"executed": {...}}` or
    `{"cancel": "interrupt"|"restart"|"shutdown"}`. Another kernel's request is a 404."""

    @property
    def broker(self):
        return self.settings[SETTINGS_KEY]

    @allow_unauthenticated
    async def get(self, raw_id):
        kernel_id = self.kernel_id()
        try:
            wait = float(self.get_argument("wait", "0"))
        except ValueError:
            raise web.HTTPError(400, "wait must be a number of seconds") from None
        if not wait >= 0:  # NaN too
            raise web.HTTPError(400, "wait must be a number of seconds")
        try:  # on the event loop: the collector's long poll holds no worker thread either
            status = await self.broker.wait(_request_id(raw_id), kernel_id, wait)
        except Refused as e:
            raise refused(e) from None
        self.finish(status)

    @allow_unauthenticated
    async def post(self, raw_id):
        kernel_id = self.kernel_id()
        body = _body(self)
        request_id = _request_id(raw_id)
        if ("executed" in body) == ("cancel" in body) or len(body) != 1:
            raise web.HTTPError(400, 'body must be {"executed": {...}} or {"cancel": "..."}')
        broker = self.broker
        if getattr(broker, "remote", False):
            try:
                self.finish(await broker.report(request_id, kernel_id, body))
            except Refused as e:
                raise refused(e) from None
            return
        try:
            if "executed" in body:
                approval = await asyncio.to_thread(
                    self.broker.executed, request_id, kernel_id, body["executed"]
                )
            else:
                approval = await asyncio.to_thread(
                    self.broker.cancel, request_id, kernel_id, body["cancel"]
                )
        except Refused as e:
            raise refused(e) from None
        self.finish(approval.status_json())


class ApprovalsHandler(AuditHandler):
    """GET approvals[?state=pending|...|all][&limit=200]: every request for reviewers, one's
    own for everyone else, newest first."""

    @property
    def broker(self):
        return self.settings[SETTINGS_KEY]

    @web.authenticated
    @requires("audit:approvals")
    async def get(self):
        if collector_client(self) is not None:  # the Hub's one queue
            self.finish(await from_collector(self, "approvals"))
            return
        ident = self.identity()
        limit = self.arg_int("limit", 200, 1)
        try:
            found = self.broker.visible(
                ident,
                reviewer="reviewer" in self.roles(ident),
                state=self.get_argument("state", None),
            )
        except Refused as e:
            raise refused(e) from None
        self.finish({"approvals": [a.to_json() for a in found[:limit]]})


class ApprovalHandler(AuditHandler):
    """GET approvals/{id}; POST approvals/{id} `{"decision": "approve"|"deny", "reason"}`."""

    @property
    def broker(self):
        return self.settings[SETTINGS_KEY]

    @web.authenticated
    @requires("audit:approvals")
    async def get(self, raw_id):
        if collector_client(self) is not None:
            path = f"approvals/{_request_id(raw_id)}"
            self.finish(await from_collector(self, path))
            return
        ident = self.identity()
        try:
            approval = self.broker.get(
                _request_id(raw_id), ident, reviewer="reviewer" in self.roles(ident)
            )
        except Refused as e:
            raise refused(e) from None
        self.finish(approval.to_json())

    @web.authenticated
    @requires("audit:approvals")
    async def post(self, raw_id):
        body = self.json_body()
        unknown = set(body) - {"decision", "reason"}
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}")
        if collector_client(self) is not None:
            # decided at the collector, never with this server's token: every kernel of this
            # server holds it (collector/browser.py)
            self.recorder.reject(
                DECIDE_AT_THE_COLLECTOR,
                f"approval decision through the server from {self.request.remote_ip or '?'}",
                address=self.request.remote_ip or "?",
                identity=self.identity(),
            )
            raise web.HTTPError(403, DECIDE_AT_THE_COLLECTOR)
        ident = self.identity()
        try:
            approval = await asyncio.to_thread(
                self.broker.decide,
                _request_id(raw_id),
                ident,
                reviewer="reviewer" in self.roles(ident),
                decision=body.get("decision"),
                reason=body.get("reason"),
            )
        except Refused as e:
            if e.role == "reviewer":
                message = refusal_message(self.authorizer, "audit:approvals:review")
                raise web.HTTPError(403, message.replace("%", "%%")) from None
            raise refused(e) from None
        self.finish(approval.to_json())


API_PATHS = [
    ("approvals", ApprovalsHandler),
    ("approvals/([^/]+)", ApprovalHandler),
    ("kernel/approvals", KernelApprovalsHandler),
    ("kernel/approvals/([^/]+)", KernelApprovalHandler),
]
