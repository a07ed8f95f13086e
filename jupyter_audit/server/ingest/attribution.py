"""Attribution: the trail event for each raw event a kernel reports.

The server never takes identity from a kernel: it attributes each event by joining its
msg_id to the server's own `cell.requested` (the cells it forwarded, else the trail);
anything without such a record is flagged `unattributed`. A kernel event that claims what
only the server may say (who, which trace) is a `ForgedSubmission`.

A msg_id joins only the run the server forwarded: a kernel runs each execute_request once,
so a second `cell.started` for a msg_id (code in the kernel can send its own shell port a
request with an earlier cell's msg_id) is not that cell. It and everything reported under
that msg_id afterwards are stored `unattributed` with the flag `msg_id_reused`. Where a
cell stands is kept in the CellRegistry and, for cells of an earlier server, read back from
the trail, so a restart does not make a used msg_id fresh again.
"""

from __future__ import annotations

import json

from ...events import EventValidationError

KERNEL_KINDS = frozenset(
    {
        "cell.started",
        "cell.finished",
        "op.sql",
        "op.http",
        "op.shell",
        "op.uncaptured",
        "session.environment",
    }
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

    def cell(self, msg_id: str | None, kernel_id: str) -> dict | None:
        if msg_id is None:
            return None
        found = self.cells.lookup(msg_id)
        if found is not None:
            return found
        if msg_id not in self._from_trail:
            looked = cell_in_trail(self.cursor_factory(), msg_id, kernel_id)
            if looked is not None:
                # remembered with its state, so later batches see what this one does
                looked = self.cells.remember(msg_id, looked[0], looked[1])
            self._from_trail[msg_id] = looked
        return self._from_trail[msg_id]

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
        msg_id = raw.get("msg_id")
        cell = self.cell(msg_id, kernel_id) if isinstance(msg_id, str) else None
        if cell is not None and cell.get("kernel_id") not in (None, kernel_id):
            raise ForgedSubmission("msg_id belongs to a cell of another kernel")
        reused = False
        if cell is not None:
            if kind in ("cell.started", "cell.finished"):
                reused = not self.cells.step(msg_id, kind, raw["event_id"])
            else:
                reused = bool(cell.get("reused"))
            if reused:
                cell = None
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
        if kind == "op.uncaptured":  # egress no capture path saw: a gap, whoever caused it
            event["flags"] = ["capture_gap"]
        if cell is not None:
            event.update(
                identity=cell["identity"],
                trace_id=cell["trace_id"] or kernel_id,
                session_id=cell["session_id"],
                notebook=cell["notebook"],
            )
        elif kind != "session.environment":
            flags = ["unattributed", "msg_id_reused"] if reused else ["unattributed"]
            event["flags"] = [*event.get("flags", ()), *flags]
            if kind.startswith("op."):
                event["kind"] = "op.unattributed"
                event["payload"] = {**payload, "original_kind": kind}
        return event


def cell_in_trail(cur, msg_id: str, kernel_id: str) -> tuple[dict, dict] | None:
    """A cell of this kernel requested before this server started (spooled events,
    restarts): its `cell.requested` (who asked, the trace, the notebook) and where it stands
    by the trail (`started`, `finished`: attributed reports already stored; `reused`: a
    report of it already flagged)."""
    rows = cur.execute(
        "SELECT e.kind, e.identity_id IS NOT NULL, e.record, i.snapshot, e.event_id FROM events e "
        "LEFT JOIN identities i USING (identity_id) WHERE e.msg_id = ? AND e.kernel_id = ? "
        "AND e.kind IN ('cell.requested', 'cell.started', 'cell.finished') ORDER BY e.seq",
        [msg_id, kernel_id],
    ).fetchall()
    requested = next((r for r in rows if r[0] == "cell.requested"), None)
    if requested is None:
        return None
    rec = json.loads(requested[2])
    cell = {
        "identity": json.loads(requested[3]) if requested[3] else None,
        "trace_id": rec.get("trace_id"),
        "kernel_id": rec.get("kernel_id"),
        "session_id": rec.get("session_id"),
        "notebook": rec.get("notebook"),
    }
    state = {
        # the event ids that reported it (a retried batch carries the same ones)
        "started": next((r[4] for r in rows if r[0] == "cell.started" and r[1]), None),
        "finished": next((r[4] for r in rows if r[0] == "cell.finished" and r[1]), None),
        "reused": any(r[0] != "cell.requested" and not r[1] for r in rows),
    }
    return cell, state


def running_cell(cells, cursor_factory, kernel_id: str, msg_id: str) -> dict | None:
    """The cell a kernel's approval request comes from, as the server knows it: one the
    gateway forwarded to this kernel under `msg_id`, still running (the kernel has not
    answered or reported it finished) and not reused. None: the request cannot be
    attributed to a person, so it can only be denied."""
    cell = cells.lookup(msg_id)
    if cell is None:
        found = cell_in_trail(cursor_factory(), msg_id, kernel_id)
        if found is None:
            return None
        cell = {**found[0], **found[1]}
    if cell.get("kernel_id") != kernel_id or cell.get("reused"):
        return None
    if cell.get("finished") or "replied_at" in cell or not cell.get("identity"):
        return None
    return cell
