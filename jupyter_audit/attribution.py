"""The server's memory of who asked for each cell, by execute_request msg_id.

Kernel reports (cell.started, op.*) carry only the msg_id of the cell that caused them; the
server attributes them by joining to its own `cell.requested`, never to anything the kernel
claims. Recent cells are kept in memory; older ones are looked up in the trail.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class CellRegistry:
    def __init__(self, maxsize: int = 100_000):
        self.maxsize = maxsize
        self._cells: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, msg_id: str | None, event: dict) -> None:
        """The cell's `cell.requested` event (as submitted: what is taken from it is masked
        again wherever it is stored) gives who asked, the trace and the notebook."""
        if msg_id is None:
            return
        entry = {
            "identity": event.get("identity"),
            "trace_id": event.get("trace_id"),
            "kernel_id": event.get("kernel_id"),
            "session_id": event.get("session_id"),
            "notebook": event.get("notebook"),
        }
        with self._lock:
            self._cells[msg_id] = entry
            self._cells.move_to_end(msg_id)
            while len(self._cells) > self.maxsize:
                self._cells.popitem(last=False)

    def replied(self, msg_id: str | None) -> None:
        """The kernel answered this cell (execute_reply seen by the gateway)."""
        with self._lock:
            entry = self._cells.get(msg_id) if msg_id else None
            if entry is not None and "replied_at" not in entry:
                entry["replied_at"] = time.monotonic()

    def reported(self, msg_id: str | None) -> None:
        """The kernel side reported this cell (cell.started / cell.finished arrived)."""
        with self._lock:
            entry = self._cells.get(msg_id) if msg_id else None
            if entry is not None:
                entry["reported"] = True

    def unreported(self, grace: float, skip_kernels=()) -> list[tuple[str, dict]]:
        """Cells the kernel answered more than `grace` seconds ago without reporting them:
        each is returned once."""
        now = time.monotonic()
        out = []
        with self._lock:
            for msg_id, entry in self._cells.items():
                replied = entry.get("replied_at")
                if (
                    replied is not None
                    and now - replied >= grace
                    and not entry.get("reported")
                    and not entry.get("flagged")
                    and entry.get("kernel_id") not in skip_kernels
                ):
                    entry["flagged"] = True
                    out.append((msg_id, dict(entry)))
        return out

    def lookup(self, msg_id: str | None) -> dict | None:
        if msg_id is None:
            return None
        # no lock: one OrderedDict.get is atomic under the GIL (the lock keeps the writers'
        # several steps together), and the gateway asks for every cell
        return self._cells.get(msg_id)
