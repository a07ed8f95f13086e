"""The approval broker: risky operations a kernel asks about, held until people decide.

State lives in the trail. Every change is an event appended and committed first
(`approval.requested`, `approval.decided`, `approval.executed`), then read back as stored
(masked, timestamped) and applied (`model.Approval.apply`); a server that starts rebuilds
the same state from the same records (`rebuild`), cancels what a kernel stop ended while no
server was watching, and expires what is overdue. Nothing here knows tornado: the handlers
(`server/approvals.py`) authenticate, and hand in the identity and the cell the server
attributed the request to — never anything the kernel said about who it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..events import EventValidationError
from ..identity.snapshot import system_identity
from ..store import queries
from .model import (
    APPROVED,
    CANCEL_REASONS,
    CANCELLED,
    EXPIRED,
    PENDING,
    STATES,
    Approval,
    Refused,
    iso,
    person_keys,
)

MAX_STATEMENT = 1 << 20
MAX_WAIT = 30.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
UNATTRIBUTED = {
    "rule": "approval.unattributed",
    "message": "the request does not come from the cell this kernel is running for a person "
    "(the server forwarded no such cell to it, or the cell has finished), so no one can be "
    "asked to approve it",
    "action": "deny",
    "tables": [],
}


@dataclass(frozen=True)
class Ask:
    """A kernel's question, checked: the operation and the text that identifies it."""

    operation: str  # sql | shell | http
    text: str  # the statement, the command, or "METHOD url": what is approved and hashed
    params_sha256: str | None
    driver: str | None
    database: str | None
    msg_id: str
    method: str | None = None
    url: str | None = None
    # as the kernel renders op.sql params (JSON), unmasked: masked when recorded, never kept
    params: list | dict | None = None
    many: bool = False  # executemany: params is a list of parameter sets

    @property
    def sha256(self) -> str:
        return text_sha256(self.text)


def text_sha256(text: str) -> str:
    """The hash an approval binds: sha256 of the UTF-8 text (statement, command, `METHOD url`)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _opt_str(body: dict, name: str, cap: int = 4096) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise Refused(400, f"{name} must be a string or null")
    if value is not None and len(value) > cap:
        raise Refused(400, f"{name} is longer than {cap} characters")
    return value


def _hash(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not (isinstance(value, str) and _HEX64.fullmatch(value)):
        raise Refused(400, f"{name} must be 64 lowercase hex digits or null")
    return value


def parse_ask(body: dict) -> Ask:
    """The kernel's POST body, checked (Refused 400 with what is wrong)."""
    operation = body.get("kind")
    if operation not in ("sql", "shell", "http"):
        raise Refused(400, 'kind must be "sql", "shell" or "http"')
    msg_id = body.get("msg_id")
    if not isinstance(msg_id, str) or not msg_id or len(msg_id) > 256:
        raise Refused(400, "msg_id (the running cell's execute_request msg_id) is required")
    method = url = None
    if operation == "sql":
        text = body.get("statement")
        if not isinstance(text, str) or not text.strip():
            raise Refused(400, "statement is required for kind sql")
    elif operation == "shell":
        text = body.get("command")
        if not isinstance(text, str) or not text.strip():
            raise Refused(400, "command is required for kind shell")
    else:
        method, url = body.get("method"), body.get("url")
        if not isinstance(method, str) or not method.isalpha() or not isinstance(url, str):
            raise Refused(400, "method and url are required for kind http")
        method = method.upper()
        text = f"{method} {url}"
    if len(text) > MAX_STATEMENT:
        raise Refused(400, f"the operation is longer than {MAX_STATEMENT} characters")
    params = body.get("params")
    if params is not None and (operation != "sql" or not isinstance(params, list | dict)):
        raise Refused(400, "params must be a JSON array or object (kind sql), or null")
    many = body.get("executemany", False)
    if many is not True and many is not False:
        raise Refused(400, "executemany must be true or false")
    if many and not isinstance(params, list | None):
        raise Refused(400, "params of executemany must be an array of parameter sets")
    return Ask(
        operation=operation,
        text=text,
        params_sha256=_hash(body, "params_sha256"),
        driver=_opt_str(body, "driver"),
        database=_opt_str(body, "database"),
        msg_id=msg_id,
        method=method,
        url=url,
        params=params,
        many=many,
    )


class ApprovalBroker:
    """Requests, decisions, executions and cancellations, recorded through the Recorder."""

    def __init__(
        self,
        recorder,
        policy,
        *,
        expiry: float = 1800.0,
        break_glass_groups=(),
        notifier=None,
        log: logging.Logger | None = None,
        tokens=None,
    ):
        self.recorder = recorder
        self.tokens = tokens  # the TokenStore: who created the service token an identity used
        self.policy = policy
        self.expiry = expiry
        self.break_glass_groups = frozenset(break_glass_groups)
        self.notifier = notifier
        self.log = log or logging.getLogger("jupyter_audit.approvals")
        self._approvals: dict[int, Approval] = {}
        self._next_id = 1
        # one change at a time, from its check to its commit: two reviewers, an expiry and a
        # cancellation cannot both act on what each saw pending
        self._lock = threading.RLock()
        # long polls waiting on a request; their own lock, never held across a commit, so the
        # event loop never waits for the trail
        self._waiters: dict[int, list] = {}
        self._waiters_lock = threading.Lock()

    # ------------------------------------------------------------------ the trail
    def rebuild(self) -> None:
        """State from the trail (server start): every approval event in order; then requests
        left pending when their kernel was interrupted, restarted or ended are cancelled, and
        overdue ones expired, each recorded now."""
        cur = self.recorder.writer.cursor()
        with self._lock:
            for record, identity in queries.approval_records(cur):
                if "origin" in record:
                    # a server's record forwarded to a collector: its own requests, never
                    # this broker's (a server could otherwise decide a request by forwarding)
                    continue
                self._apply(record, identity, cur)
            pending = [a for a in self._approvals.values() if a.state == PENDING]
            if pending:
                for a in self._stopped(cur, pending):
                    self._end(a, CANCELLED, "its kernel was interrupted, restarted or stopped")
        self.expire_due()

    def _stopped(self, cur, pending: list[Approval]) -> list[Approval]:
        """The pending requests whose kernel was interrupted, restarted or ended after they
        were asked (by the trail)."""
        stops = queries.kernel_stops(
            cur, sorted({a.kernel_id for a in pending if a.kernel_id}), min(a.seq for a in pending)
        )
        return [a for a in pending if any(seq > a.seq for seq in stops.get(a.kernel_id or "", ()))]

    def _more_payload(self, cell: dict) -> dict:
        """Fields a broker adds to an `approval.requested` payload (none here)."""
        return {}

    def _cell_code(self, cur, approval: Approval) -> str | None:
        """The (masked) code of the cell that asked."""
        return queries.cell_code(cur, approval.msg_id, approval.kernel_id)

    def _record(self, event: dict) -> Approval:
        """Append and commit `event`, then apply it as the trail stored it. Text the trail
        cannot hold (a lone surrogate, an id outside the id rules) is a 400 naming the field,
        and nothing is recorded."""
        try:
            result = self.recorder.record_now(event)
        except EventValidationError as e:
            raise Refused(400, f"not recorded: {e}") from None
        cur = self.recorder.writer.cursor()
        found = queries.record_at(cur, result.seq)
        if found is None:  # pragma: no cover - a committed event is readable
            raise RuntimeError(f"approval event {result.seq} not found after commit")
        approval = self._apply(found[0], found[1], cur)
        if approval is None:  # pragma: no cover - only events of known requests are recorded
            raise RuntimeError("approval event for an unknown request")
        return approval

    def _apply(self, record: dict, identity: dict | None, cur) -> Approval | None:
        approval: Approval | None
        if record["kind"] == "approval.requested":
            approval = Approval.from_record(record, identity or {})
            approval.cell_code = self._cell_code(cur, approval)
            approval.undecidable = self.nobody_decides()
            self._approvals[approval.id] = approval
            self._next_id = max(self._next_id, approval.id + 1)
        else:
            try:
                approval = self._approvals.get(int(record["payload"]["request_id"]))
            except ValueError:
                approval = None
            if approval is None:
                self.log.warning("jupyter-audit: %s of an unknown request", record["kind"])
                return None
            approval.apply(record, identity)
        self._wake(approval.id)
        return approval

    def _event(self, approval: Approval, kind: str, identity: dict, payload: dict) -> dict:
        return {
            "kind": kind,
            "identity": identity,
            "trace_id": approval.trace_id,
            "kernel_id": approval.kernel_id,
            "session_id": approval.session_id,
            "notebook": approval.notebook,
            "msg_id": approval.msg_id,
            "payload": {"request_id": str(approval.id), **payload},
        }

    def _end(self, approval: Approval, state: str, reason: str) -> Approval:
        """Record an expiry or a cancellation (under the server's own identity)."""
        approval = self._record(
            self._event(
                approval,
                "approval.decided",
                system_identity(),
                {"decision": state, "reviewer": None, "reason": reason, "state": state},
            )
        )
        self._notify("approval.decided", approval)
        return approval

    def _notify(self, kind: str, approval: Approval) -> None:
        if self.notifier is not None:
            try:
                self.notifier.send(kind, approval.to_json())
            except Exception as e:  # noqa: BLE001 - notifying never blocks a decision
                self.log.error("jupyter-audit: approval notification not queued: %s", type(e))

    # ------------------------------------------------------------------ kernels
    def check(self, ask: Ask, cell: dict | None):
        """The policy's Decision for an operation asked from `cell` (with the requester's
        groups), or None when no cell could be attributed. Cheap (the policy caches), so the
        event loop may call it: only `review` needs the trail (`ask`)."""
        if cell is None:
            return None
        groups = (cell.get("identity") or {}).get("groups") or ()
        if ask.operation == "sql":
            return self.policy.check_sql(ask.text, groups=groups, database=ask.database)
        if ask.operation == "shell":
            return self.policy.check_shell(ask.text, groups=groups)
        return self.policy.check_http(ask.method, ask.url, groups=groups)

    @staticmethod
    def answer(decision) -> dict:
        """The kernel's answer for a decision that opens no request (None: unattributable,
        so denied)."""
        if decision is None:
            return {"decision": "deny", "reasons": [UNATTRIBUTED], "request": None}
        return {**decision.to_json(), "request": None}

    def ask(self, kernel_id: str, ask: Ask, cell: dict | None, decision=None) -> dict:
        """A kernel asks whether it may run an operation; `cell` is the cell the server
        attributed the question to (None: unattributable, so denied), `decision` the
        policy's if `check` already ran. For `review`, a request is recorded (committed) and
        returned."""
        if decision is None:
            decision = self.check(ask, cell)
        if cell is None or decision is None or decision.action != "review":
            return self.answer(decision)
        answer = decision.to_json()
        reasons = answer["reasons"]
        with self._lock:
            request_id = self._next_id  # taken once recorded (`_apply`): a refusal leaves no gap
            expires = datetime.now(UTC) + timedelta(seconds=self.expiry)
            approval = self._record(
                {
                    "kind": "approval.requested",
                    "identity": cell["identity"],
                    "trace_id": cell.get("trace_id") or kernel_id,
                    "kernel_id": kernel_id,
                    "session_id": cell.get("session_id"),
                    "notebook": cell.get("notebook"),
                    "msg_id": ask.msg_id,
                    "payload": {
                        "request_id": str(request_id),
                        "decision": decision.action,  # the policy's: review
                        "operation": ask.operation,
                        "statement": ask.text,
                        "statement_sha256": ask.sha256,
                        "params_sha256": ask.params_sha256,
                        # masked by the Writer as op.sql's are (masking/structured)
                        "params": ask.params,
                        **({"executemany": True} if ask.many else {}),
                        "reasons": reasons,
                        "rules": [r["rule"] for r in reasons],
                        "driver": ask.driver,
                        "database": ask.database,
                        "min_approvals": max(1, int(decision.min_approvals)),
                        "expires_at": iso(expires),
                        **self._more_payload(cell),
                    },
                }
            )
        self._notify("approval.requested", approval)
        return {
            **answer,
            "reasons": approval.reasons,  # as stored: masked
            "request": {
                "id": approval.id,
                "state": approval.state,
                "expires_at": approval.expires_at,
                "message": approval.message(),
            },
        }

    def of_kernel(self, request_id: int, kernel_id: str) -> Approval:
        """A kernel's own request (404 for another kernel's: it does not learn it exists)."""
        approval = self._approvals.get(request_id)
        if approval is None or approval.kernel_id != kernel_id:
            raise Refused(404, f"no request #{request_id} of this kernel")
        return approval

    async def wait(self, request_id: int, kernel_id: str, seconds: float) -> dict:
        """The request's status once it is no longer pending, or after `seconds` (at most
        MAX_WAIT, and no later than its expiry), whichever is first."""
        approval = self.of_kernel(request_id, kernel_id)
        seconds = min(max(seconds, 0.0), MAX_WAIT)
        if approval.state == PENDING and seconds > 0:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            with self._waiters_lock:
                self._waiters.setdefault(request_id, []).append((loop, fut))
            left = (
                datetime.fromisoformat(approval.expires_at.replace("Z", "+00:00"))
                - datetime.now(UTC)
            ).total_seconds()
            try:
                if approval.state == PENDING:
                    await asyncio.wait_for(fut, max(0.0, min(seconds, left + 0.05)))
            except TimeoutError:
                pass
            finally:
                with self._waiters_lock:
                    waiting = self._waiters.get(request_id, [])
                    if (loop, fut) in waiting:
                        waiting.remove((loop, fut))
        if approval.expired_at(datetime.now(UTC)):
            await asyncio.to_thread(self.expire_due)
        return approval.status_json()

    def _wake(self, request_id: int) -> None:
        with self._waiters_lock:
            waiting = self._waiters.pop(request_id, ())
        for loop, fut in waiting:
            loop.call_soon_threadsafe(_resolve, fut)

    def executed(self, request_id: int, kernel_id: str, report: object) -> Approval:
        """The kernel ran the approved operation: recorded once, and only for exactly what
        was approved (409 otherwise: then it must not run)."""
        if not isinstance(report, dict):
            raise Refused(400, "executed must be an object")
        sha = report.get("statement_sha256")
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise Refused(400, "executed.statement_sha256 must be 64 lowercase hex digits")
        params = _hash(report, "params_sha256")
        rowcount = report.get("rowcount")
        if rowcount is not None and (not isinstance(rowcount, int) or isinstance(rowcount, bool)):
            raise Refused(400, "executed.rowcount must be an integer or null")
        error = _opt_str(report, "error", 65536)
        with self._lock:
            approval = self.of_kernel(request_id, kernel_id)
            if approval.state != APPROVED:
                raise Refused(409, f"request #{request_id} is {approval.state}, not approved")
            if sha != approval.statement_sha256 or params != approval.params_sha256:
                raise Refused(
                    409,
                    f"request #{request_id} approved another statement or other parameters "
                    "than these: it must not run",
                )
            return self._record(
                self._event(
                    approval,
                    "approval.executed",
                    approval.requester,
                    {
                        "statement_sha256": sha,
                        "params_sha256": params,
                        "rowcount": rowcount,
                        "error": error,
                    },
                )
            )

    def cancel(self, request_id: int, kernel_id: str, why: object) -> Approval:
        """The kernel gave up waiting (interrupt, restart, shutdown): the request is
        cancelled, and never runs."""
        if why not in ("interrupt", "restart", "shutdown"):
            raise Refused(400, 'cancel must be "interrupt", "restart" or "shutdown"')
        with self._lock:
            approval = self.of_kernel(request_id, kernel_id)
            if approval.state not in (PENDING, APPROVED):
                raise Refused(409, f"request #{request_id} is already {approval.state}")
            return self._end(approval, CANCELLED, f"cancelled by the kernel: {why}")

    def cancel_kernel(self, kernel_id: str, why: str, only=None) -> list[int]:
        """A kernel was interrupted, restarted, shut down or died: its requests still pending
        or approved but not run are cancelled (`only`: of those, the ones it admits). The ids
        cancelled."""
        if why not in CANCEL_REASONS:
            raise ValueError(f"unknown cancel reason {why!r}")
        done = []
        with self._lock:
            for approval in list(self._approvals.values()):
                if only is not None and not only(approval):
                    continue
                if approval.kernel_id == kernel_id and approval.state in (PENDING, APPROVED):
                    self._end(approval, CANCELLED, f"kernel {why}")
                    done.append(approval.id)
        return done

    # ------------------------------------------------------------------ people
    def nobody_decides(self) -> bool:
        """No one but the requester can decide here: review is not possible (the standard
        token login, or no reviewer groups; service tokens carry no groups) and no
        break-glass group is configured. A forced review then fails closed: it expires."""
        return not getattr(self.policy, "review_possible", True) and not self.break_glass_groups

    def is_break_glass(self, identity: dict) -> bool:
        return bool(set(identity.get("groups") or ()) & self.break_glass_groups)

    def visible(self, identity: dict, *, reviewer: bool, state: str | None) -> list[Approval]:
        """Newest first: every request for reviewers (and break-glass members), a person's
        own for everyone else."""
        if state not in (None, "all", *STATES):
            raise Refused(400, f"state must be one of {', '.join(('all', *STATES))}")
        everyone = reviewer or self.is_break_glass(identity)
        mine = person_filter(identity)
        out = [
            a
            # a snapshot (one C call, atomic under the GIL): requests are added by worker
            # threads while this runs on the event loop
            for a in list(self._approvals.values())
            if (state in (None, "all") or a.state == state) and (everyone or mine(a))
        ]
        return sorted(out, key=lambda a: a.id, reverse=True)

    def get(self, request_id: int, identity: dict, *, reviewer: bool) -> Approval:
        approval = self._approvals.get(request_id)
        everyone = reviewer or self.is_break_glass(identity)
        if approval is None or not (everyone or person_filter(identity)(approval)):
            raise Refused(404, f"no request #{request_id}")
        return approval

    def decide(
        self, request_id: int, identity: dict, *, reviewer: bool, decision: object, reason: object
    ) -> Approval:
        """One person's decision (model.Approval.judge has the rules), recorded."""
        with self._lock:
            approval = self._approvals.get(request_id)
            if approval is None:
                raise Refused(404, f"no request #{request_id}")
            if approval.expired_at(datetime.now(UTC)):
                self._end(approval, EXPIRED, self._expiry_reason())
            state, used = approval.judge(
                self._person(identity),
                reviewer=reviewer,
                break_glass=self.is_break_glass(identity),
                decision=decision,
                reason=reason,
                requester=self._person(approval.requester),
            )
            approval = self._record(
                self._event(
                    approval,
                    "approval.decided",
                    identity,
                    {
                        "decision": decision,
                        "reviewer": identity.get("username"),
                        "reason": reason,
                        "break_glass": used,
                        "state": state,
                    },
                )
            )
        self._notify("approval.decided", approval)
        return approval

    def _person(self, identity: dict) -> dict:
        """`identity` with the creator of the service token it used, if any: an admin who
        makes a token naming another owner is still its person (model.person_keys)."""
        token_id = (identity or {}).get("token_id")
        if not token_id or self.tokens is None:
            return identity
        row = self.tokens.get(token_id)
        creator = row.get("created_by") if row else None
        if not creator:
            # a token the store does not know: nobody can tell whose it is
            return {"username": None}
        return {**identity, "token_creator": creator}

    def _expiry_reason(self) -> str:
        return f"not decided within {self.expiry / 60:g} minutes"

    def expire_due(self) -> list[int]:
        """Pending requests past their expiry become `expired` (recorded). The ids."""
        now = datetime.now(UTC)
        done = []
        with self._lock:
            for approval in list(self._approvals.values()):
                if approval.expired_at(now):
                    self._end(approval, EXPIRED, self._expiry_reason())
                    done.append(approval.id)
        return done

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()


def person_filter(identity: dict):
    keys = person_keys(identity)
    return lambda a: bool(keys & person_keys(a.requester))


def _resolve(fut) -> None:
    if not fut.done():
        fut.set_result(None)
