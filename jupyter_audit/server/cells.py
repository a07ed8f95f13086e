"""The cells the server forwarded: who asked for each (`CellRegistry`, by execute_request
msg_id) and where each stands in its kernel.

Kernel reports (cell.started, op.*) carry only the msg_id of the cell that caused them; the
server attributes them by joining to its own `cell.requested`, never to anything the kernel
claims. Recent cells are kept in memory; older ones are looked up in the trail
(`ingest.attribution`). Nothing here talks to tornado's handlers or jupyter_server.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class CellRegistry:
    """Cells by msg_id, with where each stands in its kernel: requested, started, finished.

    A kernel's shell runs one execute_request at a time and each once, so a second
    `cell.started` (or `cell.finished`) for a msg_id is not that cell: someone sent the
    kernel a request of their own with the msg_id of a forwarded cell (code in a kernel can
    reach its own ZMQ ports). Such a cell is `reused`: from then on nothing reported under
    its msg_id is attributed to the person who asked for it."""

    def __init__(self, maxsize: int = 100_000):
        self.maxsize = maxsize
        self._cells: OrderedDict[str, dict] = OrderedDict()
        # cells answered and not reported yet, in the order they were answered: the gap
        # check looks at these only, not at every cell remembered
        self._awaiting: dict[str, dict] = {}
        # kernels some of whose cells were forgotten (maxsize): their msg_ids are checked
        # against the trail too
        self.evicted_kernels: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, msg_id: str | None, event: dict, state: dict | None = None) -> dict | None:
        """The cell's `cell.requested` event (as submitted: what is taken from it is masked
        again wherever it is stored) gives who asked, the trace and the notebook; `state`
        what the trail says the kernel did with it already (a cell looked up after a
        restart). Returns the entry (the one already held if another thread was first)."""
        if msg_id is None:
            return None
        entry = {
            "identity": event.get("identity"),
            "trace_id": event.get("trace_id"),
            "kernel_id": event.get("kernel_id"),
            "session_id": event.get("session_id"),
            "notebook": event.get("notebook"),
            **(state or {}),
        }
        with self._lock:
            if state is not None and msg_id in self._cells:
                return self._cells[msg_id]  # looked up twice: the first copy has the state
            self._cells[msg_id] = entry
            self._cells.move_to_end(msg_id)
            while len(self._cells) > self.maxsize:
                old, dropped = self._cells.popitem(last=False)
                self._awaiting.pop(old, None)
                if dropped.get("kernel_id"):
                    self.evicted_kernels.add(dropped["kernel_id"])
        return entry

    def step(self, msg_id: str, kind: str, event_id: str) -> bool:
        """The kernel reports `cell.started` or `cell.finished` for a remembered cell: True if
        that is this cell's own (its first start; its first finish, which may come without
        a start for a request the kernel aborted; the same event again, as a retried batch
        sends it), False if the msg_id is being reused (the cell is marked `reused` for
        good)."""
        key = "started" if kind == "cell.started" else "finished"
        with self._lock:
            entry = self._cells.get(msg_id)
            if entry is None:
                return False
            seen = entry.get(key)  # the event id that reported it
            if seen == event_id and not entry.get("reused"):
                return True  # a retry: the writer keeps its first copy only
            if entry.get("reused") or seen or (key == "started" and entry.get("finished")):
                entry["reused"] = True
                return False
            entry[key] = event_id
            return True

    def replied(self, msg_id: str | None) -> None:
        """The kernel answered this cell (execute_reply seen by the gateway)."""
        with self._lock:
            entry = self._cells.get(msg_id) if msg_id else None
            if msg_id and entry is not None and "replied_at" not in entry:
                entry["replied_at"] = time.monotonic()
                if not entry.get("reported"):
                    self._awaiting[msg_id] = entry

    def reported(self, msg_id: str | None) -> None:
        """The kernel side reported this cell (cell.started / cell.finished arrived)."""
        with self._lock:
            entry = self._cells.get(msg_id) if msg_id else None
            if msg_id and entry is not None:
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
