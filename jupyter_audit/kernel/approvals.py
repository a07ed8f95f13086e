"""Risky operations wait for a human approver: the kernel side of the approval broker.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims: a request carries the running cell's msg_id and the server attributes it. Standard
library and IPython only.

Before a captured SQL statement, shell command or HTTP request reaches its driver, ``check``
decides whether it may run. SQL with no write/DDL keyword outside comments and literals
(``prefilter.might_write``) runs without asking, remembered in ``SQL_PASS`` (the sqlite3
fast path looks there first: one set lookup per statement); HTTP GET/HEAD/OPTIONS likewise.
Anything else asks the server (``POST kernel/approvals``): ``allow`` runs, ``warn`` runs and
says why on the cell's stderr (both remembered per kernel by kind, text and database:
never a review or a deny), ``deny`` raises :class:`ApprovalDenied`, ``review`` holds the
statement, shows a live status in the cell (a display updated in place) and long-polls the
request until a reviewer decided. Approved, exactly the text and parameters that were
asked about run, once (they are copied before asking, nested containers too: a list
mutated meanwhile changes nothing; reviewers see them masked as op.sql's are), and the
outcome is posted back (``executed``). Denied, expired or cancelled: it
never runs and the cell raises :class:`ApprovalDenied` / :class:`ApprovalExpired` /
:class:`ApprovalCancelled`. An interrupt during the wait cancels the request on the server.
A server that cannot be reached holds nothing back silently: the statement does not run
(:class:`ApprovalUnavailable`). Enforcement is cooperative: code that goes around the
captured paths (a raw socket, a driver not captured) is not held, only recorded as a gap.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from http.client import HTTPException
from urllib.parse import quote

from .context import current_msg_id, log, log_once
from .prefilter import might_write

__all__ = [
    "ApprovalCancelled",
    "ApprovalDenied",
    "ApprovalError",
    "ApprovalExpired",
    "ApprovalUnavailable",
    "SQL_PASS",
    "check_http",
    "check_shell",
    "check_sql",
]


class ApprovalError(Exception):
    """A held operation did not run. ``request_id`` names the approval request (None when
    none was made: denied outright, or the server could not be asked)."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class ApprovalDenied(ApprovalError):
    """The policy or a reviewer denied it."""


class ApprovalExpired(ApprovalError):
    """Nobody decided before the request expired."""


class ApprovalCancelled(ApprovalError):
    """The request was cancelled (kernel interrupt, restart or shutdown)."""


def _said(reply) -> str:
    """What the server's error answer says, if anything (`: <message>`), kept short."""
    message = reply.get("message") if isinstance(reply, dict) else None
    if not isinstance(message, str) or not message.strip():
        return ""
    return ": " + " ".join(message.split())[:500]


class ApprovalUnavailable(ApprovalError):
    """The approval broker could not be asked: the operation did not run (fail closed)."""


# SQL texts the prefilter found read-only (they never ask): looked up by the hot paths
SQL_PASS: set = set()
_SQL_WRITE: set = set()  # texts the prefilter found may write (they ask, or hit the cache)
_PASS_MAX = 4096
_DECISIONS_MAX = 4096
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_POLL = 30  # seconds the server holds a long-poll (it caps it at 30)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _params_sha256(params) -> str | None:
    """A stable hash of parameters as they were asked about (the server keeps it with the
    request; the outcome names it again)."""
    if params is None:
        return None
    try:
        text = json.dumps(params, sort_keys=True, default=repr, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(params)
    return _sha256(text)


def freeze_params(params, many: bool = False):
    """Parameters copied as they are now, nested lists, tuples, dicts, sets and bytearrays
    too: what runs after a wait is what was asked about, whatever a thread changes
    meanwhile. The top-level list becomes a tuple; nested containers keep their type."""
    if many:
        return [freeze_params(p) for p in params] if params is not None else None
    if params.__class__ is list:
        return tuple(_copy(p, {}) for p in params)
    return _copy(params, {})


def _copy(value, memo: dict):
    cls = value.__class__
    if cls not in _MUTABLE:
        return value
    key = id(value)
    done = memo.get(key)
    if done is not None:
        return done
    if cls is dict:
        out: dict = {}
        memo[key] = out
        for k, v in value.items():
            out[k] = _copy(v, memo)
        return out
    if cls is list:
        out_list: list = []
        memo[key] = out_list
        out_list.extend(_copy(v, memo) for v in value)
        return out_list
    if cls is bytearray:
        memo[key] = copy = bytearray(value)
        return copy
    copied = cls(_copy(v, memo) for v in value)  # tuple, set, frozenset
    memo[key] = copied
    return copied


_MUTABLE = frozenset({list, dict, tuple, set, frozenset, bytearray})


PARAMS_SHOWN_MAX = 256 * 1024  # bytes of JSON shown to reviewers; more is its size and hash


def params_shown(params, many: bool = False):
    """The parameters as the trail's op.sql records them (JSON, capped): what reviewers see
    once the server has masked them."""
    if params is None or (params.__class__ in (tuple, list, dict) and not params):
        return None  # none given (sqlite3's default is ``()``)
    # here, not at the top: the capture package imports this module
    from .capture.sql.encoding import PARAM_ITEMS_CAP, params_json

    shown = (
        [params_json(p) for p in list(params)[:PARAM_ITEMS_CAP]] if many else params_json(params)
    )
    raw = json.dumps(shown, default=repr, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if len(raw) > PARAMS_SHOWN_MAX:
        # what reviewers see is capped; what runs is still exactly what was asked about
        return [
            f"[not sent by the kernel: {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}]"
        ]
    return shown


class Ticket:
    """An approved request: report its outcome once it ran (never raises)."""

    __slots__ = ("broker", "request_id", "statement_sha256", "params_sha256", "_done")

    def __init__(self, broker, request_id: int, statement_sha256: str, params_sha256) -> None:
        self.broker = broker
        self.request_id = request_id
        self.statement_sha256 = statement_sha256
        self.params_sha256 = params_sha256
        self._done = False

    def done(self, rowcount=None, error: BaseException | str | None = None) -> None:
        if self._done:
            return
        self._done = True
        if rowcount is not None and (type(rowcount) is not int or rowcount < 0):
            rowcount = None
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"[:2000]
        body = {
            "executed": {
                "statement_sha256": self.statement_sha256,
                "params_sha256": self.params_sha256,
                "rowcount": rowcount,
                "error": error,
            }
        }
        try:
            status, _ = self.broker.call("POST", self.broker.request_url(self.request_id), body)
        except (OSError, HTTPException) as e:
            log.warning(
                "jupyter-audit: could not report the outcome of approval #%s: %s",
                self.request_id,
                e,
            )
            return
        if status != 200:
            # it ran: say so where the person running it looks, and in the kernel's log
            text = (
                f"the server did not record the outcome of approval #{self.request_id} "
                f"(HTTP {status})"
            )
            log.warning("jupyter-audit: %s", text)
            _say(f"jupyter-audit warning: {text}")


class Broker:
    """Asks the server's approval broker, with the transport's credentials."""

    def __init__(self, client, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self._lock = threading.Lock()
        self._decisions: dict[tuple, tuple[str, tuple]] = {}  # allow/warn only

    def call(self, method: str, url: str, body=None, timeout: float | None = None):
        return self.client.call(method, url, body, timeout)

    def request_url(self, request_id) -> str:
        return f"{self.url}/{quote(str(request_id), safe='')}"

    # -- deciding --------------------------------------------------------------------------

    def decided(self, key: tuple) -> bool:
        """Whether `key` was allowed (or warned about, warned again now) before: it runs
        without asking, and without its parameters being copied or rendered."""
        cached = self._decisions.get(key)
        if cached is None:
            return False
        if cached[0] == "warn":
            _warn(cached[1])
        return True

    def check(self, key: tuple, body: dict, params=None) -> Ticket | None:
        """None: run it. A Ticket: approved after review, run it and report. Raises an
        ApprovalError when it must not run."""
        if self.decided(key):
            return None
        body["msg_id"] = current_msg_id()
        statement_sha256 = _sha256(key[1])
        body["params_sha256"] = _params_sha256(params)
        try:
            status, reply = self.call("POST", self.url, body)
        except (OSError, HTTPException) as e:
            raise ApprovalUnavailable(_unreachable(e)) from None
        if status != 200 or not isinstance(reply, dict):
            raise ApprovalUnavailable(
                f"the approval broker answered HTTP {status}{_said(reply)}: the operation did "
                "not run"
            )
        decision = reply.get("decision")
        reasons = tuple(r for r in (reply.get("reasons") or ()) if isinstance(r, dict))
        if decision in ("allow", "warn"):
            with self._lock:
                if len(self._decisions) >= _DECISIONS_MAX:
                    self._decisions.clear()
                self._decisions[key] = (decision, reasons)
            if decision == "warn":
                _warn(reasons)
            return None
        request = reply.get("request")
        if decision == "review" and isinstance(request, dict) and request.get("id") is not None:
            return self._wait(request, statement_sha256, body["params_sha256"])
        text = _reasons_text(reasons) or "the approval policy does not allow it"
        raise ApprovalDenied(f"denied by the approval policy: {text}")

    def _wait(self, request: dict, statement_sha256: str, params_sha256) -> Ticket:
        rid = request["id"]
        status = None
        url = self.request_url(rid) + f"?wait={_POLL}"
        failures = 0
        try:
            status = _Status(str(request.get("message") or f"waiting for approval #{rid}"))
            while True:
                try:
                    code, reply = self.call("GET", url, timeout=_POLL + 15)
                except (OSError, HTTPException) as e:
                    code, reply = None, _unreachable(e)
                if code in (None, 502, 503, 504):  # away (the server, the Hub's collector)
                    failures += 1
                    if failures >= 5:
                        status.update(f"approval #{rid}: the approval broker cannot be reached")
                        why = reply if code is None else f"HTTP {code}{_said(reply)}"
                        raise ApprovalUnavailable(f"approval #{rid}: {why}", rid) from None
                    time.sleep(min(2.0 * failures, 10.0))
                    continue
                failures = 0
                if code != 200 or not isinstance(reply, dict):
                    status.update(f"approval #{rid}: the server answered HTTP {code}")
                    raise ApprovalUnavailable(
                        f"approval #{rid}: the approval broker answered HTTP {code}"
                        f"{_said(reply)}: the operation did not run",
                        rid,
                    )
                state = reply.get("state")
                if state == "pending":
                    if reply.get("message"):
                        status.update(str(reply["message"]))
                    continue
                return self._decided(rid, reply, status, statement_sha256, params_sha256)
        except KeyboardInterrupt:
            self._cancel(rid, "interrupt")
            if status is not None:
                status.update(f"approval #{rid} cancelled: the kernel was interrupted")
            raise

    def _decided(self, rid, reply: dict, status, statement_sha256, params_sha256) -> Ticket:
        state = reply.get("state")
        by = ", ".join(str(u) for u in reply.get("decided_by") or ())
        reason = reply.get("reason")
        tail = (f" by {by}" if by else "") + (f": {reason}" if reason else "")
        if state == "approved":
            status.update(f"approval #{rid} approved{tail}; running")
            return Ticket(self, rid, statement_sha256, params_sha256)
        if state == "denied":
            status.update(f"approval #{rid} denied{tail}")
            raise ApprovalDenied(f"approval #{rid} was denied{tail}", rid)
        if state == "expired":
            status.update(f"approval #{rid} expired: nobody decided in time")
            raise ApprovalExpired(f"approval #{rid} expired before anyone decided", rid)
        if state == "cancelled":
            status.update(f"approval #{rid} cancelled{tail}")
            raise ApprovalCancelled(f"approval #{rid} was cancelled{tail}", rid)
        status.update(f"approval #{rid}: {state}")
        raise ApprovalError(f"approval #{rid} is {state!r}: the operation did not run", rid)

    def _cancel(self, rid, why: str) -> None:
        try:
            self.call("POST", self.request_url(rid), {"cancel": why}, timeout=5)
        except (OSError, HTTPException) as e:
            log.warning("jupyter-audit: could not cancel approval #%s: %s", rid, e)


def _unreachable(e: BaseException) -> str:
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return (
        f"the approval broker cannot be reached ({reason}); operations that may write are "
        "held until it can (they did not run)"
    )


def _reasons_text(reasons) -> str:
    parts = []
    for r in reasons:
        msg = str(r.get("message") or r.get("rule") or "")
        rule = r.get("rule")
        parts.append(f"{msg} ({rule})" if rule and rule != msg else msg)
    return "; ".join(p for p in parts if p)


def _warn(reasons) -> None:
    _say(f"jupyter-audit warning: {_reasons_text(reasons) or 'flagged by the approval policy'}")


def _say(text: str) -> None:
    """One line on the cell's stderr."""
    try:
        print(text, file=sys.stderr, flush=True)
    except Exception as e:  # a closed stderr must not stop the statement
        log_once("approval warning", e)


class _Status:
    """The live line in the cell: one display, updated in place (plain text only)."""

    def __init__(self, text: str) -> None:
        self.handle = None
        self.text = text
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self.handle = display({"text/plain": text}, raw=True, display_id=True)
        except Exception as e:
            log_once("approval status", e)
        if self.handle is None:
            _say(f"jupyter-audit: {text}")

    def update(self, text: str) -> None:
        if text == self.text:
            return
        self.text = text
        try:
            if self.handle is not None:
                self.handle.update({"text/plain": text}, raw=True)
                return
        except Exception as e:
            log_once("approval status update", e)
        _say(f"jupyter-audit: {text}")


# -- what the captures call ------------------------------------------------------------------

_broker: Broker | None = None


def configure(client, url: str | None) -> None:
    """Hold operations for the server at ``url`` (None: hold nothing)."""
    global _broker
    _broker = Broker(client, url) if url else None
    SQL_PASS.clear()
    _SQL_WRITE.clear()


def _text(statement) -> str:
    if statement.__class__ is str:
        return statement
    if isinstance(statement, str):
        # the text the driver runs, not what a subclass's __str__ says
        return str.__str__(statement)
    if isinstance(statement, bytes | bytearray):
        return bytes(statement).decode("utf-8", "replace")
    return str(statement)


def _writes(text: str) -> bool:
    """``might_write``, remembered for texts that repeat (a loop of INSERTs)."""
    if text in _SQL_WRITE:
        return True
    if might_write(text):
        if len(_SQL_WRITE) >= _PASS_MAX:
            _SQL_WRITE.clear()
        _SQL_WRITE.add(text)
        return True
    return False


def held(statement) -> bool:
    """Must ``statement`` go through ``check_sql``? False (and remembered in ``SQL_PASS``)
    when nothing is held or it cannot write."""
    if _broker is not None and (statement.__class__ is not str or _writes(statement)):
        return True
    if statement.__class__ is str:
        if len(SQL_PASS) >= _PASS_MAX:
            SQL_PASS.clear()
        SQL_PASS.add(statement)
    return False


def check_sql(driver: str, database, statement, params=None, many: bool = False):
    """Before a statement reaches ``driver``: (ticket or None, the parameters to run with).
    Raises an ApprovalError when it must not run."""
    broker = _broker
    # only an exact str is looked up: a subclass's __eq__/__hash__ could match any entry
    if broker is None or (statement.__class__ is str and statement in SQL_PASS):
        return None, params
    text = _text(statement)
    if not _writes(text):
        if statement.__class__ is str:
            if len(SQL_PASS) >= _PASS_MAX:
                SQL_PASS.clear()
            SQL_PASS.add(statement)
        return None, params
    key = ("sql", text, driver, database)
    if broker.decided(key):
        return None, params
    params = freeze_params(params, many)
    body = {
        "kind": "sql",
        "statement": text,
        "driver": driver,
        "database": database or "",
        "params": params_shown(params, many),
    }
    if many:
        body["executemany"] = True
    ticket = broker.check(key, body, params)
    return ticket, params


def check_shell(command) -> Ticket | None:
    broker = _broker
    if broker is None:
        return None
    text = _text(command)
    body = {"kind": "shell", "command": text, "driver": "shell", "database": ""}
    return broker.check(("shell", text), body)


def check_http(method, url) -> Ticket | None:
    broker = _broker
    if broker is None:
        return None
    method = _text(method or "GET").upper()
    if method in _READ_METHODS:
        return None
    url = _text(url)
    body = {"kind": "http", "method": method, "url": url, "driver": "http", "database": ""}
    return broker.check(("http", f"{method} {url}"), body)
