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

import logging
import time
from concurrent.futures import Future
from pathlib import Path

from ..events import EventValidationError
from ..identity import system_identity
from ..store.errors import loggable_error
from ..store.records import safe_id
from .cells import CellRegistry, CellRequests
from .failures import failure_logger
from .ingest.secrets import KernelSecrets

REJECTIONS_PER_MINUTE = 20  # per source address; the rest are counted, not each recorded
_ADDRESSES = 10_000  # addresses remembered for the rate limit before it starts over


class Recorder:
    def __init__(self, store, *, fail_mode: str = "open", log: logging.Logger | None = None):
        self.writer = store
        self.fail_mode = fail_mode
        self.log = log or logging.getLogger("jupyter_audit")
        self.cells = CellRegistry()
        self.cell_requests = CellRequests(store, self.log)
        self.kernel_secrets = KernelSecrets()
        self.unaudited: set[str] = set()  # kernels started without the kernel side
        self.token_sockets: dict[str, set] = {}  # token id -> its open websockets
        # address -> [window start, recorded in the window, counted since the last record]
        self._rejections: dict[str, list] = {}

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
    ) -> bool:
        """A refused request or submission: logged and recorded as `security.rejected`
        under the server's own identity (never under what the request claimed, never a
        token). With an `address`, at most REJECTIONS_PER_MINUTE are recorded one by one per
        address and minute; the rest are counted into the next one recorded, so a flood
        cannot fill the trail. True if recorded now."""
        if address is not None:
            now = time.monotonic()
            if len(self._rejections) > _ADDRESSES:
                self._rejections.clear()
            window = self._rejections.setdefault(address, [now, 0, 0])
            if now - window[0] >= 60:
                window[:] = [now, 0, window[2]]
            if window[1] >= REJECTIONS_PER_MINUTE:
                window[2] += 1
                return False
            window[1] += 1
            if window[2]:
                source += f" ({window[2]} more refused since, not recorded one by one)"
                window[2] = 0
        self.log.warning("jupyter-audit: refused (%s): %s", source, reason)
        try:
            self.record(
                {
                    "kind": "security.rejected",
                    "identity": system_identity(),
                    "kernel_id": safe_id(kernel_id),
                    "payload": {"reason": reason, "source": source},
                }
            )
        except Exception as e:  # noqa: BLE001 - refusing must not fail on the trail
            self.log.error("jupyter-audit: security.rejected not stored: %s", loggable_error(e))
        return True

    # ------------------------------------------------------------------ cells
    def request_cell(self, event: dict, event_id: str) -> None:
        """fail_mode=open, after the cell was forwarded: remember who asked (for the
        kernel's reports) and queue its `cell.requested` (`CellRequests`)."""
        self.cells.remember(event["msg_id"], event)
        self.cell_requests.add(event, event_id)

    def prepare_cell(self, event: dict, event_id: str):
        """fail_mode=closed, before the cell is forwarded: its `cell.requested` validated
        and masked now (raises EventValidationError: the cell is then not run), and the
        cell remembered."""
        prepared = self.writer.prepare(event, event_id=event_id)
        self.cells.remember(event["msg_id"], event)
        return prepared

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
            try:
                handler.close(4001, "service token revoked")
            except Exception:  # noqa: BLE001 - already closing
                pass

    # ------------------------------------------------------------------ the trail's files
    def checkpoint_files(self) -> list[Path]:
        files = [self.writer.checkpoint_path]
        if self.writer.checkpoint_mirror:
            files.append(self.writer.checkpoint_mirror)
        return files

    def close(self) -> None:
        """Queued cells first, then the trail (with a final signed checkpoint)."""
        self.flush_cells()
        self.writer.close()
