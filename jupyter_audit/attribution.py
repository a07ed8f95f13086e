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
        # cells answered and not reported yet, in the order they were answered: the gap
        # check looks at these only, not at every cell remembered
        self._awaiting: dict[str, dict] = {}
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
                old, _ = self._cells.popitem(last=False)
                self._awaiting.pop(old, None)

    def replied(self, msg_id: str | None) -> None:
        """The kernel answered this cell (execute_reply seen by the gateway)."""
        with self._lock:
            entry = self._cells.get(msg_id) if msg_id else None
            if entry is not None and "replied_at" not in entry:
                entry["replied_at"] = time.monotonic()
                if not entry.get("reported"):
                    self._awaiting[msg_id] = entry

    def reported(self, msg_id: str | None) -> None:
        """The kernel side reported this cell (cell.started / cell.finished arrived)."""
        with self._lock:
            entry = self._cells.get(msg_id) if msg_id else None
            if entry is not None:
                entry["reported"] = True
                self._awaiting.pop(msg_id, None)

    def unreported(self, grace: float, skip_kernels=()) -> list[tuple[str, dict]]:
        """Cells the kernel answered more than `grace` seconds ago without reporting them:
        each is returned once."""
        now = time.monotonic()
        out = []
        with self._lock:
            done = []
            for msg_id, entry in self._awaiting.items():
                if now - entry["replied_at"] < grace:
                    break  # answered in order: the rest are younger
                done.append(msg_id)
                if entry.get("kernel_id") in skip_kernels:
                    continue  # such kernels are flagged once, on their session
                entry["flagged"] = True
                out.append((msg_id, dict(entry)))
            for msg_id in done:
                del self._awaiting[msg_id]
        return out

    def lookup(self, msg_id: str | None) -> dict | None:
        if msg_id is None:
            return None
        # no lock: one OrderedDict.get is atomic under the GIL (the lock keeps the writers'
        # several steps together), and the gateway asks for every cell
        return self._cells.get(msg_id)
