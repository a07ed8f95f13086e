"""The Recorder: the one service everything in the server records through.

The AuditApp builds it (`AuditApp.recorder_class`) around the trail store and hands it to
the REST handlers, the gateway and the hooks through `settings["jupyter_audit"]`. It owns
what recording needs beside the store: the cells the server forwarded and their queued
`cell.requested` events, the kernels' secrets, the websockets opened with each service
token, and the rate limit on recorded rejections. Its verbs: `record` an event, `reject` a
request (`security.rejected`), `request_cell` / `prepare_cell` for a cell on its way to a
kernel, `prepare_kernel_events` for what kernels report. A failed record is logged by one
rule (`failures.failure_logger`), never with a value.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass

from tornado.ioloop import IOLoop

from ..events import EventValidationError
from ..identity import system_identity
from ..identity.sessions import close_socket
from ..store.errors import loggable_error
from ..store.records import safe_id
from .cells import CellRegistry
from .failures import failure_logger
from .forwarding import BacklogFull
from .hooks.sessions import NotebookNames
from .ingest.attribution import cell_in_trail
from .ingest.secrets import KernelSecrets

REJECTIONS_PER_MINUTE = 20  # per source address; the rest are counted, not each recorded
_ADDRESSES = 10_000  # addresses remembered for the rate limit before it starts over


@dataclass(slots=True)
class _Window:
    """Rejections from one address within a minute: recorded one by one, then counted."""

    start: float
    recorded: int = 0
    suppressed: int = 0
    last: tuple | None = None  # (reason, source, kernel_id) of the last one counted


class Recorder:
    def __init__(
        self,
        store,
        *,
        fail_mode: str = "open",
        kernel_key: bytes | None = None,
        log: logging.Logger | None = None,
    ):
        self.writer = store
        self.fail_mode = fail_mode
        self.log = log or logging.getLogger("jupyter_audit")
        self.cells = CellRegistry()
        self.cell_requests = CellRequests(store, self.log)
        self.kernel_secrets = KernelSecrets(kernel_key)
        self.unaudited: set[str] = set()  # kernels started without the kernel side
        self.notebooks = NotebookNames()  # kernel id -> its notebook now (hooks/sessions.py)
        self.ended_at_shutdown: set[str] = set()  # session.ended recorded as the server stops
        # spool files left in place as not this server's (file name, size): said once
        self.foreign_spools: set[tuple[str, int]] = set()
        self.token_sockets: dict[str, set] = {}  # token id -> its open websockets
        self._rejections: dict[str, _Window] = {}  # per source address
        self._earlier: set[str] | None = None  # see earlier_kernels
        self.forwarder = None  # forwarding.Forwarder when the trail goes to a collector

    # ------------------------------------------------------------------ recording
    def record(self, event: dict, what: str | None = None) -> Future:
        """Hand an event to the trail; if storing it fails, that is logged (never a value).
        Raises only when the store does not take events at all (not running)."""
        fut = self.writer.submit(event)
        fut.add_done_callback(failure_logger(self.log, what or event["kind"]))
        return fut

    def record_now(self, event: dict):
        """Record an event and wait until it is committed (its AppendResult)."""
        return self.writer.append(event)

    def reject(
        self,
        reason: str,
        source: str,
        *,
        address: str | None = None,
        kernel_id: str | None = None,
        identity: dict | None = None,
    ) -> bool:
        """A refused request or submission: logged and recorded as `security.rejected`
        under the server's own identity, or the `identity` the server authenticated for it
        (never under what the request claimed, never a token). With an `address`, at most
        REJECTIONS_PER_MINUTE are recorded one by one per address and minute; the rest are
        counted, and the count is recorded as one event when the minute is over
        (`flush_rejections`), so a flood cannot fill the trail and nothing goes uncounted.
        True if recorded now."""
        if address is not None:
            now = time.monotonic()
            window = self._rejections.get(address)
            if window is None or now - window.start >= 60:
                if window is not None:
                    self._record_suppressed(address, window)
                if len(self._rejections) >= _ADDRESSES:
                    self.flush_rejections(force=True)
                window = self._rejections[address] = _Window(now)
            if window.recorded >= REJECTIONS_PER_MINUTE:
                window.suppressed += 1
                window.last = (reason, source, kernel_id)
                return False
            window.recorded += 1
        self._record_rejection(reason, source, kernel_id, identity)
        return True

    def flush_rejections(self, force: bool = False) -> None:
        """Record the counts of rejections not recorded one by one, for every address whose
        minute is over (all of them with `force`: the server is stopping)."""
        now = time.monotonic()
        for address, window in list(self._rejections.items()):
            if force or now - window.start >= 60:
                del self._rejections[address]
                self._record_suppressed(address, window)

    def _record_suppressed(self, address: str, window: _Window) -> None:
        if window.suppressed and window.last is not None:
            reason, source, kernel_id = window.last
            self._record_rejection(
                f"{window.suppressed} more refused within a minute, not recorded one by one "
                f"(the last: {reason})",
                f"{source} (address {address})",
                kernel_id,
                None,
            )

    def _record_rejection(self, reason, source, kernel_id, identity) -> None:
        self.log.warning("jupyter-audit: refused (%s): %s", source, reason)
        try:
            self.record(
                {
                    "kind": "security.rejected",
                    "identity": identity or system_identity(),
                    "kernel_id": safe_id(kernel_id),
                    "payload": {"reason": reason, "source": source},
                }
            )
        except Exception as e:  # noqa: BLE001 - refusing must not fail on the trail
            self.log.error("jupyter-audit: security.rejected not stored: %s", loggable_error(e))

    # ------------------------------------------------------------------ cells
    def request_cell(self, event: dict, event_id: str) -> None:
        """fail_mode=open, after the cell was forwarded: remember who asked (for the
        kernel's reports) and queue its `cell.requested` (`CellRequests`)."""
        self.cells.remember(event["msg_id"], event)
        self.cell_requests.add(event, event_id)

    def prepare_cell(self, event: dict, event_id: str):
        """fail_mode=closed, before the cell is forwarded: its `cell.requested` validated
        and masked now (raises EventValidationError: the cell is then not run), and the
        cell remembered. Refused (BacklogFull) while the collector lags too far behind."""
        if self.forwarder is not None and (why := self.forwarder.refusal()):
            raise BacklogFull(why)
        prepared = self.writer.prepare(event, event_id=event_id)
        self.cells.remember(event["msg_id"], event)
        return prepared

    def msg_id_used(self, msg_id: str, kernel_id: str | None) -> bool:
        """Has a cell with this msg_id been requested on this kernel already (a msg_id joins
        a kernel's reports to one cell: a reused one would join them to another person's)?
        The registry knows this server's cells; the trail those of kernels it had before
        this server started, or whose cells the registry has forgotten."""
        if self.cells.lookup(msg_id) is not None:
            return True
        if kernel_id is None or (
            kernel_id not in self.earlier_kernels() and kernel_id not in self.cells.evicted_kernels
        ):
            return False
        return cell_in_trail(self.writer.cursor(), msg_id, kernel_id) is not None

    def earlier_kernels(self) -> set[str]:
        """Kernels the trail knew when this Recorder first asked (before any of its own):
        a client may choose a kernel id, so their msg_ids are checked against the trail."""
        if self._earlier is None:
            rows = self.writer.cursor().execute(
                "SELECT kernel_id FROM traces WHERE kernel_id IS NOT NULL"
            )
            self._earlier = {row[0] for row in rows.fetchall()}
        return self._earlier

    def flush_cells(self) -> None:
        """Hand queued `cell.requested` to the trail now: whatever is recorded next (a
        kernel's reports, a lifecycle event) follows the cells requested before it."""
        self.cell_requests.flush()

    def prepare_kernel_events(self, events: list) -> list:
        """Validate and mask attributed kernel events (`prepare_many`: big batches in worker
        processes) and note the cells they report. A Prepared or the EventValidationError
        for each event, in order."""
        results = self.writer.prepare_many(events)
        for event, p in zip(events, results, strict=True):
            if event["kind"] in ("cell.started", "cell.finished") and not isinstance(
                p, EventValidationError
            ):
                self.cells.reported(event["msg_id"])
        return results

    def flag_unreported(self, grace: float) -> None:
        """cell.unreported for cells the kernel answered but its kernel side never reported
        within `grace` seconds (e.g. user code unloaded it). Kernels without the kernel side
        are flagged once, on their session, instead."""
        for msg_id, cell in self.cells.unreported(grace, self.unaudited):
            self.record(
                {
                    "kind": "cell.unreported",
                    "identity": cell["identity"],
                    "trace_id": cell["trace_id"],
                    "kernel_id": cell["kernel_id"],
                    "session_id": cell["session_id"],
                    "notebook": cell["notebook"],
                    "msg_id": msg_id,
                    "flags": ["capture_gap"],
                    "payload": {
                        "reason": "the kernel answered this cell but its audit capture never "
                        f"reported it within {grace:g} s"
                    },
                }
            )

    # ------------------------------------------------------------------ service tokens
    def watch_token(self, token_id: str, handler) -> None:
        """A websocket or terminal opened with a service token: closed if it is revoked."""
        self.token_sockets.setdefault(token_id, set()).add(handler)

    def unwatch_token(self, token_id: str, handler) -> None:
        self.token_sockets.get(token_id, set()).discard(handler)

    def close_token_sockets(self, token_id: str) -> None:
        """A revoked token's open kernel websockets and terminals are closed at once."""
        for handler in list(self.token_sockets.pop(token_id, ())):
            close_socket(handler, "service token revoked")

    def close(self) -> None:
        """Queued cells and counted rejections first, then the trail (with a final signed
        checkpoint)."""
        self.flush_cells()
        self.flush_rejections(force=True)
        self.writer.close()


class CellRequests:
    """fail_mode=open: `cell.requested` events on their way to the writer, several a commit.

    A commit costs the writer thread several ms of CPU however few events it holds, part of
    it holding the GIL: one commit per cell would run inside the round trips of the cells that
    follow (and compete for the CPU). Events are submitted together once no cell has been
    requested for `quiet` seconds, or the oldest has waited `max_wait` (longer than the kernel
    side holds its reports back while cells follow each other, so that under load the kernel's
    post, which flushes them, and they make one commit). They are submitted raw, with the
    event ids already stamped on their messages: the writer thread validates and masks them
    in one batch (`Writer.submit_later`), so the gateway spends nothing on that between one
    cell and the next. An event that fails validation is stored as `_storable_part` instead.
    `flush()` submits them at once: the kernel ingest calls it before it queues a kernel's
    events (a cell's own record always comes first in the trail), the server before it
    stops."""

    def __init__(self, writer, log, quiet: float = 0.2, max_wait: float = 2.5) -> None:
        self.writer, self.log = writer, log  # log: a Recorder's logger (`Recorder.failed`)
        self.quiet, self.max_wait = quiet, max_wait
        self._events: list = []
        self._ids: list = []
        self._first = self._last = 0.0
        self._timer: object | None = None

    def add(self, event: dict, event_id: str) -> None:
        loop = IOLoop.current()
        self._last = loop.time()
        if not self._events:
            self._first = self._last
        self._events.append(event)
        self._ids.append(event_id)
        if self._timer is None:
            self._timer = loop.call_later(self.quiet, self._due)

    def _due(self) -> None:
        loop = IOLoop.current()
        due = min(self._last + self.quiet, self._first + self.max_wait)
        if loop.time() < due:
            self._timer = loop.call_at(due, self._due)
        else:
            self._timer = None
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            IOLoop.current().remove_timeout(self._timer)
            self._timer = None
        events, ids = self._events, self._ids
        if not events:
            return
        self._events, self._ids = [], []
        masker, log = self.writer.masker, self.log

        def storable(event: dict, error: Exception) -> dict:
            log.error(
                "jupyter-audit: cell.requested recorded without its text: %s",
                loggable_error(error),
            )
            return _storable_part(event, masker)

        try:
            fut = self.writer.submit_later(events, ids, storable)
        except Exception as e:  # noqa: BLE001 - the writer is not running
            log.error(
                "jupyter-audit: %d cell.requested not stored: %s", len(events), loggable_error(e)
            )
            return
        fut.add_done_callback(failure_logger(log, "cell.requested"))


def _storable_part(event: dict, masker) -> dict:
    """A cell's event reduced to what the trail always stores: the user, the ids that are
    valid, the code withheld as a pseudonym, and the flag `unstorable`."""
    payload = event["payload"]
    code = payload["code"].encode("utf-8", "surrogatepass")
    kept = {
        "code": masker.pseudonym("WITHHELD", code),
        "cell_id": None,
        "silent": payload["silent"],
    }
    if "user_expressions" in payload:
        raw = json.dumps(payload["user_expressions"], ensure_ascii=False)
        kept["user_expressions"] = masker.pseudonym(
            "WITHHELD", raw.encode("utf-8", "surrogatepass")
        )
    return {
        "kind": "cell.requested",
        "identity": event["identity"],
        "trace_id": safe_id(event["trace_id"]),
        "kernel_id": safe_id(event["kernel_id"]),
        "msg_id": event["msg_id"],
        "flags": ["unstorable"],
        "payload": kept,
    }
