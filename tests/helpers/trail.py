"""Events to write (sql_event for ALICE and BOB) and the events a running server's trail
holds (trail_events, wait_for)."""

import asyncio
import json
import time

ALICE = {"username": "alice", "auth_method": "token", "email": "alice@example.org"}
BOB = {"username": "bob", "auth_method": "token"}


def sql_event(i: int, trace: str = "trace-1", who=None) -> dict:
    return {
        "kind": "op.sql",
        "identity": who or ALICE,
        "trace_id": trace,
        "kernel_id": "kernel-1",
        "notebook": "analysis.ipynb",
        "msg_id": f"msg-{i // 3}",
        "op_index": i,
        "payload": {
            "driver": "sqlite3",
            "database": "loans.db",
            "statement": f"SELECT * FROM loans WHERE id = {i}",
            "params": [i],
            "rowcount": 1,
            "duration_us": 100 + i,
        },
    }


def trail_events(audit):
    audit.cell_requests.flush()
    audit.writer.flush()
    from jupyter_audit.store.queries import IdentityCache

    cur = audit.writer.cursor()
    ids = IdentityCache(audit.writer.cursor())
    out = []
    for (rec,) in cur.execute("SELECT record FROM events ORDER BY seq").fetchall():
        r = json.loads(rec)
        r["identity"] = ids.get(r["identity_id"])
        out.append(r)
    return out


async def wait_for(audit, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = trail_events(audit)
        if predicate(events):
            return events
        await asyncio.sleep(0.2)
    raise AssertionError("events did not arrive: " + str([e["kind"] for e in events]))


def writer_events(writer):
    """The events a bare Writer's trail holds (`trail_events` without a server)."""

    class _Audit:
        class cell_requests:
            @staticmethod
            def flush():
                pass

    _Audit.writer = writer
    return trail_events(_Audit)
