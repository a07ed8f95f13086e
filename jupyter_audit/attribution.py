"""The server's memory of who asked for each cell, by execute_request msg_id.

Kernel reports (cell.started, op.*) carry only the msg_id of the cell that caused them; the
server attributes them by joining to its own `cell.requested`, never to anything the kernel
claims. Recent cells are kept in memory; older ones are looked up in the trail.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class CellRegistry:
    def __init__(self, maxsize: int = 100_000):
        self.maxsize = maxsize
        self._cells: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, msg_id: str | None, prepared) -> None:
        if msg_id is None:
            return
        entry = {
            "identity": prepared.identity,
            "trace_id": prepared.trace_id,
            "kernel_id": prepared.kernel_id,
            "session_id": prepared.session_id,
            "notebook": prepared.notebook,
        }
        with self._lock:
            self._cells[msg_id] = entry
            self._cells.move_to_end(msg_id)
            while len(self._cells) > self.maxsize:
                self._cells.popitem(last=False)

    def lookup(self, msg_id: str | None) -> dict | None:
        if msg_id is None:
            return None
        with self._lock:
            return self._cells.get(msg_id)
