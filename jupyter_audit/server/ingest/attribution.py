"""Attribution: the trail event for each raw event a kernel reports.

The server never takes identity from a kernel: it attributes each event by joining its
msg_id to the server's own `cell.requested` (the cells it forwarded, else the trail);
anything without such a record is flagged `unattributed`. A kernel event that claims what
only the server may say (who, which trace) is a `ForgedSubmission`.
"""

from __future__ import annotations

import json

from ...events import EventValidationError

KERNEL_KINDS = frozenset(
    {"cell.started", "cell.finished", "op.sql", "op.http", "op.shell", "session.environment"}
)
EVENT_FIELDS = frozenset({"event_id", "kind", "msg_id", "op_index", "kernel_time", "payload"})
CLAIMS = frozenset({"identity", "username", "user", "trace_id", "kernel_id", "notebook", "flags"})


class ForgedSubmission(EventValidationError):
    """A kernel tried to say something only the server may say (who, which trace)."""


class Attributor:
    """Join kernel events to the server's record of the cell that caused them."""

    def __init__(self, cells, cursor_factory):
        self.cells = cells
        self.cursor_factory = cursor_factory
        self._from_trail: dict[str, dict | None] = {}

    def cell(self, msg_id: str | None) -> dict | None:
        if msg_id is None:
            return None
        found = self.cells.lookup(msg_id)
        if found is not None:
            return found
        if msg_id not in self._from_trail:
            self._from_trail[msg_id] = self._lookup_trail(msg_id)
        return self._from_trail[msg_id]

    def _lookup_trail(self, msg_id: str) -> dict | None:
        """Cells requested before this server started (spooled events, restarts)."""
        cur = self.cursor_factory()
        row = cur.execute(
            "SELECT e.record, i.snapshot FROM events e LEFT JOIN identities i USING (identity_id) "
            "WHERE e.kind = 'cell.requested' AND e.msg_id = ? ORDER BY e.seq LIMIT 1",
            [msg_id],
        ).fetchone()
        if row is None:
            return None
        rec = json.loads(row[0])
        return {
            "identity": json.loads(row[1]) if row[1] else None,
            "trace_id": rec.get("trace_id"),
            "kernel_id": rec.get("kernel_id"),
            "session_id": rec.get("session_id"),
            "notebook": rec.get("notebook"),
        }

    def event(self, kernel_id: str, raw) -> dict:
        """The trail event for one raw kernel event (raises EventValidationError)."""
        if not isinstance(raw, dict):
            raise EventValidationError("each event must be an object")
        claimed = CLAIMS & set(raw)
        if claimed:
            raise ForgedSubmission(f"kernel events may not carry {sorted(claimed)}")
        unknown = set(raw) - EVENT_FIELDS
        if unknown:
            raise EventValidationError(f"unknown event fields {sorted(unknown)}")
        kind = raw.get("kind")
        if kind not in KERNEL_KINDS:
            raise EventValidationError(f"kernels may not report {kind!r} events")
        if not isinstance(raw.get("event_id"), str):
            raise EventValidationError("event_id is required")
        payload = raw.get("payload")
        if not isinstance(payload, dict):
            raise EventValidationError(f"{kind}: payload must be an object")
        cell = self.cell(raw.get("msg_id")) if isinstance(raw.get("msg_id"), str) else None
        if cell is not None and cell.get("kernel_id") not in (None, kernel_id):
            raise ForgedSubmission("msg_id belongs to a cell of another kernel")
        event = {
            "kind": kind,
            "payload": payload,
            "event_id": raw["event_id"],
            "msg_id": raw.get("msg_id"),
            "op_index": raw.get("op_index"),
            "kernel_time": raw.get("kernel_time"),
            "kernel_id": kernel_id,
            "trace_id": kernel_id,
        }
        if cell is not None:
            event.update(
                identity=cell["identity"],
                trace_id=cell["trace_id"] or kernel_id,
                session_id=cell["session_id"],
                notebook=cell["notebook"],
            )
        elif kind != "session.environment":
            event["flags"] = ["unattributed"]
            if kind.startswith("op."):
                event["kind"] = "op.unattributed"
                event["payload"] = {**payload, "original_kind": kind}
        return event
